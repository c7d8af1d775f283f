"""The Flower adapter's overflow check on decoded sums, at the edges of Z_(2^64) and of the bound."""

from __future__ import annotations

import numpy as np
import pytest

from secagg.encoding import QuantizationConfig, dequantize, to_ring
from secagg.errors import OverflowDetectedError
from secagg.integrations.flower.protocol import decode_integers, decode_sum

CONFIG = QuantizationConfig(0.5, 16, 3, ring_bits=64, max_weight=4096)
SUMMANDS = 3
LIMIT = SUMMANDS * CONFIG.max_weight * CONFIG.qmax  # the largest |sum| three nodes can reach
WEIGHT_TOTAL = 30

REFUSED = [-(2**63), 2**63 - 1, LIMIT + 1, -LIMIT - 1]
ACCEPTED = [LIMIT, -LIMIT, 0]


def with_weight(value: int) -> np.ndarray:
    """An encoded sum ``(value, 0, weight total)`` as int64, as a Paillier round decrypts it."""
    return np.array([value, 0, WEIGHT_TOTAL], dtype=np.int64)


@pytest.mark.parametrize("value", REFUSED)
def test_a_sum_past_the_bound_is_refused_at_both_ring_edges(value: int) -> None:
    # Prepare: the same integers as a Paillier sum (int64) and as a masked sum in Z_(2^64)
    integers = with_weight(value)
    ring = to_ring(integers, CONFIG)
    # Execute / Assert: -2^63 used to pass (np.abs(-2^63) is still -2^63 in int64)
    with pytest.raises(OverflowDetectedError, match="exceeds"):
        decode_integers(integers, CONFIG, SUMMANDS)
    with pytest.raises(OverflowDetectedError, match="exceeds"):
        decode_sum(ring, CONFIG, SUMMANDS)
    with pytest.raises(OverflowDetectedError):  # the library's own decoder agrees
        dequantize(ring[:-1], CONFIG, SUMMANDS, WEIGHT_TOTAL)


@pytest.mark.parametrize("value", ACCEPTED)
def test_a_sum_at_the_bound_decodes_to_the_same_mean_as_dequantize(value: int) -> None:
    # Prepare
    integers = with_weight(value)
    ring = to_ring(integers, CONFIG)
    # Execute
    mean, weight_total = decode_integers(integers, CONFIG, SUMMANDS)
    ring_mean, ring_weight = decode_sum(ring, CONFIG, SUMMANDS)
    # Assert
    assert weight_total == ring_weight == WEIGHT_TOTAL
    expected = dequantize(ring[:-1], CONFIG, SUMMANDS, WEIGHT_TOTAL)
    assert mean.tobytes() == ring_mean.tobytes() == expected.tobytes()
    assert abs(mean[0]) <= SUMMANDS * CONFIG.max_weight * CONFIG.clip / WEIGHT_TOTAL
