"""A rotation block beyond one block of the model is refused by fl_core, as over Flower.

A block larger than the next power of two of the coordinates rotated adds only padding: on a
64-value model, ``block=2**30`` would rotate, quantize and sum 2^30 values (8 GiB of doubles) per
hospital per round. Flower refuses such a block from the server (ProtocolError); fl_core refuses it
from the caller (ConfigurationError) with the same bound, :func:`secagg.rotation.largest_block`."""

from __future__ import annotations

import numpy as np
import pytest

from fl_core.aggregators import ClientUpdate, make_aggregator
from fl_core.rotated import RotatedAggregator
from secagg.errors import ConfigurationError


def _updates(length: int) -> list[ClientUpdate]:
    rng = np.random.default_rng(0)
    return [ClientUpdate(k, rng.normal(0, 0.05, length), num_samples=10) for k in range(1, 4)]


def test_a_block_beyond_one_block_of_the_model_is_refused_before_anything_is_padded() -> None:
    # Prepare: the auditor's block on a 64-value model, and the smallest block beyond one block of it
    huge = RotatedAggregator(make_aggregator("plain-quantized", num_clients=3), block=1 << 30)
    twice = RotatedAggregator(make_aggregator("plain-quantized", num_clients=3), block=128)
    # Execute / Assert: refused when the length is known (the padded length asked, or a round), naming the block
    with pytest.raises(ConfigurationError, match=r"block 1073741824 exceeds one block \(64\)"):
        huge.own_length(64)
    with pytest.raises(ConfigurationError, match=r"block 128 exceeds one block \(64\)"):
        twice.aggregate(_updates(64), rng=np.random.default_rng(1))
    assert twice.last_rotation is None


def test_one_block_of_the_model_is_accepted_at_the_bound() -> None:
    # Prepare: the bound itself, for 64 values and for 65 (the next power of two, 128)
    from secagg.rotation import largest_block  # noqa: PLC0415  # new with the bound

    assert largest_block(64) == 64 and largest_block(65) == 128 and largest_block(1) == 1
    for length in (64, 65):
        aggregator = RotatedAggregator(make_aggregator("plain-quantized", num_clients=3), block=largest_block(length))
        # Execute
        result = aggregator.aggregate(_updates(length), rng=np.random.default_rng(1))
        # Assert: one block, the model's mean within the quantization
        assert aggregator.last_rotation is not None and aggregator.last_rotation.block_size == largest_block(length)
        assert result.mean is not None and result.mean.shape == (length,)


@pytest.mark.parametrize("block", [3, 0, 1 << 33, "8", 8.0, True], ids=repr)
def test_a_block_that_is_no_block_is_refused_at_construction(block: object) -> None:
    # Execute / Assert: refused when the aggregator is built, not at its first round
    with pytest.raises(ConfigurationError, match="block"):
        RotatedAggregator(make_aggregator("plain-quantized", num_clients=3), block=block)  # type: ignore[arg-type]
