"""Partial updates through fl_core with per-tensor segments: the round's table is checked at the
longest segment any draw can give (all k coordinates in one tensor), as the Flower adapter checks
it (tests/integrations/test_integrations_flower_compression_draw.py). A setting some draw would
overflow is refused at every round, whatever that round drew, rather than by an unlucky later draw
in the middle of a run; one every draw fits runs every round."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fl_core.aggregators import ClientUpdate, make_aggregator
from fl_core.compression import CompressionConfig, SparseAggregator
from fl_core.rotated import RotatedAggregator
from secagg.errors import ConfigurationError
from secagg.segments import ClippingWarning, Segment, SegmentTable

HOSPITALS = range(1, 6)
TABLE = SegmentTable((Segment("a", 410, 1.0), Segment("b", 90, 1.0)))
UPDATES = [ClientUpdate(h, np.linspace(-0.4, 0.4, TABLE.size) * h / 5, 1) for h in HOSPITALS]


def narrow() -> SparseAggregator:
    """8 bits in the smallest ring for 5 hospitals of weight 1: Z_(2^11), so a segment's clipped counts
    fit up to 204 coordinates (5 x 204 <= 1023); "a" holds 205 or more in about half the draws of 250."""
    inner = make_aggregator("secagg", num_clients=5, bits=8, ring_bits="smallest", max_samples_per_client=1,
                            clipping="fixed")  # fmt: skip
    assert inner.quantizer.config.ring_bits == 11  # type: ignore[attr-defined]
    return SparseAggregator(inner, CompressionConfig(fraction=0.5))


def test_a_setting_some_draw_would_overflow_is_refused_whatever_the_round_drew() -> None:
    # Execute / Assert: every round refused, the rounds whose own draw fits included
    aggregator = narrow()
    for seed in range(6):
        with pytest.raises(ConfigurationError, match="whatever this round drew"):
            aggregator.aggregate(UPDATES, rng=np.random.default_rng(seed), segments=TABLE)
        assert aggregator.last_subset is None  # refused before a subset was drawn or bound


def test_a_setting_every_draw_fits_runs_every_round() -> None:
    # Prepare: 200 coordinates a round, so no draw puts more than 200 in one segment
    inner = make_aggregator("secagg", num_clients=5, bits=8, ring_bits="smallest", max_samples_per_client=1,
                            clipping="fixed")  # fmt: skip
    aggregator = SparseAggregator(inner, CompressionConfig(fraction=0.4))
    # Execute / Assert
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClippingWarning)
        for seed in range(6):
            result = aggregator.aggregate(UPDATES, rng=np.random.default_rng(seed), segments=TABLE)
            assert result.mean is not None and sorted(result.included) == list(HOSPITALS)


def test_a_paillier_slot_some_draw_would_overflow_is_refused_whatever_the_round_drew() -> None:
    # Prepare: a clipped count must fit the packing slot, max_weight * qmax = 127 at 8 bits and weight 1;
    # 150 coordinates a round, of which "a" (200 long) holds over 127 in only a few draws
    inner = make_aggregator("paillier", num_clients=5, bits=8, max_samples_per_client=1, clipping="fixed",
                            insecure_small_key=True)  # fmt: skip
    aggregator = SparseAggregator(inner, CompressionConfig(fraction=0.5))
    table = SegmentTable((Segment("a", 200, 1.0), Segment("b", 100, 1.0)))
    updates = [ClientUpdate(h, np.linspace(-0.4, 0.4, 300) * h / 5, 1) for h in HOSPITALS]
    # Execute / Assert
    for seed in range(3):
        with pytest.raises(ConfigurationError, match="whatever this round drew"):
            aggregator.aggregate(updates, rng=np.random.default_rng(seed), segments=table)


def test_per_tensor_segments_under_a_rotation_are_refused_whatever_the_round_drew() -> None:
    # Prepare: a rotated round is one flat float segment; 2 of 60 coordinates over two tensors fall in
    # one tensor in about half the draws, whose restricted table is then one segment and ran
    inner = make_aggregator("plain-quantized", num_clients=5)
    aggregator = SparseAggregator(RotatedAggregator(inner), CompressionConfig(coordinates=2))
    table = SegmentTable((Segment("a", 30, 1.0), Segment("b", 30, 1.0)))
    updates = [ClientUpdate(h, np.full(60, 0.01 * h), 10) for h in HOSPITALS]
    # Execute / Assert: every round refused, the draws inside one tensor included
    for seed in range(8):
        with pytest.raises(ConfigurationError, match="flat float segment"):
            aggregator.aggregate(updates, rng=np.random.default_rng(seed), segments=table)
        assert aggregator.last_subset is None


def test_one_coordinate_a_round_under_a_rotation_runs_every_round() -> None:
    # Prepare: every draw of one coordinate is one segment, whatever the tensors
    inner = make_aggregator("plain-quantized", num_clients=5)
    aggregator = SparseAggregator(RotatedAggregator(inner), CompressionConfig(coordinates=1))
    table = SegmentTable((Segment("a", 30, 1.0), Segment("b", 30, 1.0)))
    updates = [ClientUpdate(h, np.full(60, 0.01 * h), 10) for h in HOSPITALS]
    # Execute / Assert
    for seed in range(4):
        assert aggregator.aggregate(updates, rng=np.random.default_rng(seed), segments=table).mean is not None
