"""Partial updates with error feedback keep no residual for exact integer segments.

An integer segment (an adapter's ``num_batches_tracked``) must hold whole numbers within +-qmax,
or the hospital is withheld. A residual for it would be a backlog of unsent whole-number changes:
a counter rising by 50 per round, left out of a few subsets, passes qmax = 127 at bits=8, and from
then on every hospital is withheld (and the round skipped) whenever the subset draws it, while the
withheld hospitals' residuals grow on. So the residual covers the float segments only: an integer
coordinate not sent keeps the global value that round, and each round sends its own change."""

from __future__ import annotations

import numpy as np

from fl_core.aggregators import ClientUpdate, make_aggregator
from fl_core.compression import CompressionConfig, SparseAggregator
from secagg.segments import Segment, SegmentTable

TABLE = SegmentTable((Segment("w", 3, 0.5), Segment("n", 1, integer=True)))
HOSPITALS = (1, 2, 3)


def _sparse() -> SparseAggregator:
    return SparseAggregator(make_aggregator("plain-quantized", num_clients=3, bits=8), CompressionConfig(fraction=0.5))


def _round(aggregator: SparseAggregator, seed: int) -> tuple[frozenset[int], np.ndarray | None]:
    updates = [ClientUpdate(k, np.array([0.01, 0.01, 0.01, 50.0]), 1) for k in HOSPITALS]
    result = aggregator.aggregate(updates, rng=np.random.default_rng(seed), segments=TABLE)
    return frozenset(result.included), result.mean


def test_a_counter_left_out_of_subsets_never_outgrows_its_integer_segment() -> None:
    # Prepare: half the coordinates per round, 8 bits (qmax 127), a counter rising by 50 a round
    aggregator = _sparse()
    # Execute / Assert: every round includes every hospital; a round that draws the counter sends this
    # round's change alone, exact; no hospital holds a residual for it
    drawn = 0
    for seed in range(12):
        included, mean = _round(aggregator, seed)
        assert included == frozenset(HOSPITALS), seed
        assert mean is not None
        assert aggregator.last_subset is not None
        if 3 in aggregator.last_subset.indices:
            drawn += 1
            assert mean[3] == 50.0
        for k in HOSPITALS:
            residual = aggregator.residual(k)
            assert residual is not None and residual[3] == 0.0
    assert 0 < drawn < 12  # the seeds both draw the counter and leave it out


def test_the_float_segments_keep_their_residual() -> None:
    # Prepare / Execute: one round
    aggregator = _sparse()
    _round(aggregator, 0)
    # Assert: the float coordinates not sent are held back whole; those sent and the counter hold nothing
    subset = aggregator.last_subset
    assert subset is not None
    expected = np.array([0.01, 0.01, 0.01, 0.0])
    expected[subset.indices] = 0.0
    np.testing.assert_array_equal(aggregator.residual(1), expected)  # type: ignore[arg-type]
