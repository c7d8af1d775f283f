"""A compressed round whose hospitals name no majority model is skipped, as the bare round is.

Without a ``model_digest`` argument the round's model is the one more than half of the declaring
hospitals declare (:func:`fl_core.aggregators.binding.check_models`); with none, the bare
aggregators skip the round with the reason, whatever the updates' lengths. The wrappers
(:class:`~fl_core.rotated.RotatedAggregator`, :class:`~fl_core.compression.SparseAggregator`)
skip it the same way, with the same reason: nothing rotated, no subset drawn, nothing sent, no
residual touched. They used to raise ConfigurationError for the lengths first.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from fl_core.aggregators import AggregationResult, Aggregator, ClientUpdate, make_aggregator
from fl_core.aggregators.binding import model_digest
from fl_core.compression import CompressionConfig, SparseAggregator
from fl_core.rotated import RotatedAggregator
from fl_core.wrapping import WrappingAggregator
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.segments import Segment, SegmentTable

HOSPITALS = (1, 2, 3, 4, 5)
LENGTH, OTHER = 8, 11
MODEL_A = model_digest([np.linspace(-1.0, 1.0, LENGTH)])
MODEL_B = model_digest([np.linspace(-1.0, 1.0, OTHER)])

INNERS: dict[str, Callable[[], Aggregator]] = {
    "plain": lambda: make_aggregator("plain"),
    "secagg+": lambda: make_aggregator(
        "secagg+", num_clients=len(HOSPITALS), random_bytes=InsecureDeterministicRandom(b"no-model")
    ),
}
WRAPPERS: dict[str, Callable[[Aggregator], WrappingAggregator]] = {
    "rotated": RotatedAggregator,
    "sparse": lambda inner: SparseAggregator(inner, CompressionConfig(fraction=0.5)),
    "sparse+feedback": lambda inner: SparseAggregator(inner, CompressionConfig(fraction=0.5, error_feedback=True)),
}


def split_round() -> list[ClientUpdate]:
    """Two hospitals declare model A (LENGTH values), two model B (OTHER values), one declares none:
    no model has more than half of the four declarations, and the lengths differ."""
    declared = {1: MODEL_A, 2: MODEL_A, 3: MODEL_B, 4: MODEL_B, 5: None}
    lengths = {1: LENGTH, 2: LENGTH, 3: OTHER, 4: OTHER, 5: LENGTH}
    return [
        ClientUpdate(h, np.random.default_rng([7, h]).uniform(-0.1, 0.1, lengths[h]), 10 + h, model_digest=declared[h])
        for h in HOSPITALS
    ]


def bare(inner: str) -> AggregationResult:
    return INNERS[inner]().aggregate(split_round(), rng=np.random.default_rng(5))


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
@pytest.mark.parametrize("inner", sorted(INNERS))
def test_a_wrapped_round_with_no_majority_model_is_skipped_with_the_bare_rounds_reason(
    inner: str, wrapper: str
) -> None:
    # Prepare: the bare aggregator's result for the same round (skipped, with its reason)
    expected = bare(inner)
    assert expected.mean is None and expected.skipped_reason is not None
    aggregator = WRAPPERS[wrapper](INNERS[inner]())
    # Execute
    result = aggregator.aggregate(split_round(), rng=np.random.default_rng(5))
    # Assert: skipped with the same reason, nobody refused, included or withheld, nothing sent
    assert result.mean is None
    assert result.skipped_reason == expected.skipped_reason
    assert "none is declared by more than half" in result.skipped_reason
    assert result.included == frozenset() and result.refused == () and result.withheld == ()
    assert result.bytes_per_client == expected.bytes_per_client


def test_a_skipped_round_with_no_majority_model_leaves_every_residual_as_it_was() -> None:
    # Prepare: a first round (no declarations, all LENGTH) gives every hospital a residual
    aggregator = SparseAggregator(make_aggregator("plain"), CompressionConfig(fraction=0.5, error_feedback=True))
    first = [ClientUpdate(h, np.full(LENGTH, 0.01 * h), 10) for h in HOSPITALS]
    assert aggregator.aggregate(first, rng=np.random.default_rng(4)).mean is not None
    before = {h: aggregator.residual(h) for h in HOSPITALS}
    subset = aggregator.last_subset
    # Execute: the split round
    result = aggregator.aggregate(split_round(), rng=np.random.default_rng(5))
    # Assert: skipped; every residual, and the last subset, as they were
    assert result.mean is None
    for h in HOSPITALS:
        residual = aggregator.residual(h)
        assert residual is not None and np.array_equal(residual, before[h])
    assert aggregator.last_subset is subset


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
def test_with_a_segment_table_too_the_round_with_no_majority_model_is_skipped_with_the_bare_reason(
    wrapper: str,
) -> None:
    # Prepare: the server's one-segment table of the round (LENGTH coordinates)
    table = SegmentTable((Segment("weights", LENGTH),))
    expected = INNERS["secagg+"]().aggregate(split_round(), rng=np.random.default_rng(5), segments=table)
    # Execute
    result = WRAPPERS[wrapper](INNERS["secagg+"]()).aggregate(
        split_round(), rng=np.random.default_rng(5), segments=table
    )
    # Assert
    assert result.mean is None and result.refused == ()
    assert result.skipped_reason == expected.skipped_reason is not None
