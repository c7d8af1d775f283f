"""``max_weight`` is a u32 in the session descriptor (and a Flower RoundSetup), so a quantization
whose bound cannot be bound is refused when it is made (ConfigurationError naming the bound),
not at its first round by the wire encoder (EncodeError "does not fit in u32"). At the bound
and one past it."""

from __future__ import annotations

import numpy as np
import pytest

from fl_core.aggregators import ClientUpdate, WeightedQuantizer
from secagg.descriptor import SessionDescriptor
from secagg.encoding import QuantizationConfig
from secagg.errors import ConfigurationError

U32_MAX = (1 << 32) - 1


def test_the_largest_u32_weight_bound_is_accepted_and_bound() -> None:
    config = QuantizationConfig(0.5, 2, 2, 64, max_weight=U32_MAX)
    assert len(SessionDescriptor.create(config).digest()) == 32
    quantizer = WeightedQuantizer(config)
    encoded = quantizer.encode_integers(ClientUpdate(0, np.array([0.5, -0.5]), U32_MAX), np.random.default_rng(0))
    assert encoded.tolist() == [U32_MAX, -U32_MAX, 0, U32_MAX]


def test_one_past_it_the_quantization_is_refused_when_made() -> None:
    with pytest.raises(ConfigurationError, match="max_weight"):
        QuantizationConfig(0.5, 2, 2, 64, max_weight=U32_MAX + 1)
    with pytest.raises(ConfigurationError, match="max_weight"):
        WeightedQuantizer.create(2, bits=2, ring_bits=64, max_samples_per_client=U32_MAX + 1)
