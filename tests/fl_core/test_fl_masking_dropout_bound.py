"""fl_core's masking aggregators at the dropouts their printed guarantee states, and one past it.

The demo prints ``aggregator.guarantee`` ("completes with up to d dropouts"); the protocol's own
tests attack d in sessions (tests/masking/test_guarantee_bounds.py), but the aggregator maps its
:class:`~fl_core.aggregators.DropoutStage` onto protocol rounds itself. So here, through
``aggregate``: d hospitals dropping, spread over every stage, complete with the exact weighted mean
of the uploaders (as plain-quantized computes it); d + 1 that never join skip the round with a
reason that names them and the guarantee, never a wrong mean. At 10 hospitals d is 3 (active) and
5 (semi-honest), past the one dropout the other aggregator tests check.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fl_core.aggregators import ClientUpdate, DropoutStage, make_aggregator
from fl_core.aggregators.masking import MaskingAggregator
from secagg.primitives.randomness import InsecureDeterministicRandom

N = 10
STAGES = list(DropoutStage)


def _updates() -> list[ClientUpdate]:
    rng = np.random.default_rng(7)
    return [ClientUpdate(i, rng.uniform(-0.4, 0.4, size=12), 10 + i) for i in range(1, N + 1)]


@pytest.mark.parametrize(("name", "mode", "dropouts"), [
    ("secagg", "active", 3), ("secagg+", "active", 3), ("secagg", "semi-honest", 5),
])  # fmt: skip
def test_d_dropouts_at_every_stage_complete_exactly_and_d_plus_one_skip_naming_the_guarantee(
    name: str, mode: str, dropouts: int
) -> None:
    # Prepare: the printed guarantee of a full round of 10
    aggregator = make_aggregator(name, num_clients=N, mode=mode, random_bytes=InsecureDeterministicRandom(5))
    assert isinstance(aggregator, MaskingAggregator)
    d = aggregator.guarantee.dropouts
    assert d == dropouts
    reference = make_aggregator("plain-quantized", num_clients=N)
    updates = _updates()
    # Execute / Assert: at the bound, d hospitals drop, their stages rotated over every stage, twice
    for shift in range(2):
        dropped = {client: STAGES[(client + shift) % len(STAGES)] for client in range(1, d + 1)}
        result = aggregator.aggregate(updates, dropped, rng=np.random.default_rng(shift))
        assert result.skipped_reason is None, result.skipped_reason
        uploaders = {u.client_id for u in updates if dropped.get(u.client_id) in (None, DropoutStage.FINALIZE)}
        assert result.included == frozenset(uploaders)
        expected = reference.aggregate(updates, dropped, rng=np.random.default_rng(shift))
        assert result.mean is not None and expected.mean is not None
        np.testing.assert_array_equal(result.mean, expected.mean)
    # One past it: d + 1 hospitals never join: skipped, the reason naming them and the guarantee
    past = dict.fromkeys(range(1, d + 2), DropoutStage.JOIN)
    result = aggregator.aggregate(updates, past, rng=np.random.default_rng(9))
    assert result.mean is None and result.included == frozenset()
    reason = result.skipped_reason or ""
    assert f"completes with up to {d} dropouts" in reason
    assert all(f"{client} at join" in reason for client in past), reason
    # ... and with d + 1 dropouts the round is skipped whatever the stage (the last one after its upload)
    late = {**dict.fromkeys(range(1, d + 1), DropoutStage.UPLOAD), d + 1: DropoutStage.FINALIZE}
    assert aggregator.aggregate(updates, late, rng=np.random.default_rng(9)).mean is None


def test_the_ids_the_updates_carry_do_not_change_the_bound() -> None:
    # The same round with hospitals 101..110: the guarantee is the session's, ids are relabelled
    aggregator = make_aggregator("secagg", num_clients=N, random_bytes=InsecureDeterministicRandom(6))
    assert isinstance(aggregator, MaskingAggregator)
    d = aggregator.guarantee.dropouts
    updates = [dataclasses.replace(u, client_id=u.client_id + 100) for u in _updates()]
    at_bound = dict.fromkeys(range(101, 101 + d), DropoutStage.SETUP)
    assert aggregator.aggregate(updates, at_bound, rng=np.random.default_rng(1)).skipped_reason is None
    past = dict.fromkeys(range(101, 102 + d), DropoutStage.SETUP)
    assert aggregator.aggregate(updates, past, rng=np.random.default_rng(1)).mean is None
