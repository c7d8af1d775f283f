"""A hospital whose own drawn noise exceeds its room costs only itself, and is never charged for.

A noised encoding keeps ``noise_room(plan)`` for its hospital's own noise: exceeded with probability
below 2^-64 per coordinate whatever the data (the refusal residual, accounted in delta:
docs/privacy.md). :class:`~fl_core.dp.DPAggregator` draws every hospital's noise before the round
is charged; a hospital whose noise exceeds its room is withheld with the reason (its noise never
released), the round goes on for the others if at least h remain, and is skipped uncharged
otherwise. The overflow is forced by a sampler that moves one hospital's noise past any range.
"""

from __future__ import annotations

import numpy as np
import pytest

from fl_core.aggregators import ClientUpdate, DropoutStage
from fl_core.dp import DPAggregator
from secagg.dp import encoding as dp_encoding
from secagg.errors import InsufficientNoiseError, OverflowDetectedError
from tests.fl_core.dp_noise import dp_aggregator, overflowing

HOSPITALS = (1, 2, 3, 4, 5)
LENGTH = 6



def aggregator(name: str, min_honest: int) -> DPAggregator:
    return dp_aggregator(name, min_honest, dimension=LENGTH, label=b"room")


def updates() -> list[ClientUpdate]:
    rng = np.random.default_rng(3)
    return [ClientUpdate(h, rng.normal(0, 1.0, LENGTH), 10 * h) for h in HOSPITALS]


@pytest.mark.parametrize(("name", "min_honest"), [("plain-quantized", 4), ("secagg", 2)])
def test_a_hospital_whose_noise_exceeds_its_room_is_withheld_and_the_others_released(
    name: str, min_honest: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: hospital 3's noise (the third draw) leaves its room
    # (before: OverflowDetectedError after the charge, ending the round for everyone)
    reference = aggregator(name, min_honest)
    dropped = reference.aggregate(updates(), {3: DropoutStage.UPLOAD}, rng=np.random.default_rng(5))
    faulty = aggregator(name, min_honest)
    overflowing(monkeypatch, {2})
    # Execute
    result = faulty.aggregate(updates(), {}, rng=np.random.default_rng(5))
    # Assert: released without it, bit for bit the round in which it dropped; charged once; named
    assert result.mean is not None and dropped.mean is not None
    assert result.included == dropped.included == frozenset({1, 2, 4, 5})
    np.testing.assert_array_equal(result.mean, dropped.mean)
    ((client, reason),) = result.withheld
    assert client == 3 and "noise exceeds its room" in reason
    assert faulty.accountant.num_releases == reference.accountant.num_releases == 1
    assert faulty.spent() == reference.spent()


def test_noise_beyond_the_room_below_h_skips_the_round_uncharged(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: h = 4 of 5; hospitals 2 and 5 draw noise beyond their room: 3 would upload
    faulty = aggregator("plain-quantized", 4)
    overflowing(monkeypatch, {1, 4})
    # Execute
    result = faulty.aggregate(updates(), {}, rng=np.random.default_rng(5))
    # Assert: skipped, both named, nothing released under-noised, nothing charged
    assert result.mean is None and not result.included
    assert [client for client, _ in result.withheld] == [2, 5]
    assert "dp:" in (result.skipped_reason or "") and "noise exceeds its room" in (result.skipped_reason or "")
    assert faulty.accountant.num_releases == 0 and faulty.spent()[0] == 0.0
    # Assert: the next round draws afresh and is released
    assert faulty.aggregate(updates(), {}, rng=np.random.default_rng(6)).mean is not None
    assert faulty.accountant.num_releases == 1


def test_the_inner_sum_withholds_noise_beyond_the_room_and_never_sums_under_h(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: the DP quantizer's own aggregator, without DPAggregator's draw before the charge (h = 4)
    inner = aggregator("plain-quantized", 4).inner
    # Execute / Assert: one hospital's noise leaves its room: withheld, summed without it
    overflowing(monkeypatch, {2})
    result = inner.aggregate(updates(), {}, rng=np.random.default_rng(5))
    assert result.included == frozenset({1, 2, 4, 5}) and [client for client, _ in result.withheld] == [3]
    # Execute / Assert: two leave 3 < h: refused before anything is summed
    overflowing(monkeypatch, {0, 3})
    with pytest.raises(InsufficientNoiseError, match="not released under-noised"):
        inner.aggregate(updates(), {}, rng=np.random.default_rng(5))


def test_noise_is_refused_one_past_its_room_and_accepted_at_it() -> None:
    # Prepare: a zero contribution, whose encoding is its noise (qmax leaves room for R too)
    quantizer = aggregator("plain-quantized", 4).quantizer
    plan, room = quantizer.plan, dp_encoding.noise_room(quantizer.plan)
    assert room < quantizer.config.qmax  # one past the room still fits qmax: the refusal is the noise's alone
    at, past = np.zeros(LENGTH, dtype=np.int64), np.zeros(LENGTH, dtype=np.int64)
    at[0], past[0] = -room, room + 1
    zero = np.zeros(LENGTH)
    # Execute / Assert
    encoded = dp_encoding.noised_encoding(plan, quantizer.config, zero, np.random.default_rng(0), noise=at)
    assert encoded[0] == -room and dp_encoding.noise_overflow(plan, at) is None
    assert "exceeds its room" in (dp_encoding.noise_overflow(plan, past) or "")
    with pytest.raises(OverflowDetectedError, match="exceeds its room"):
        dp_encoding.noised_encoding(plan, quantizer.config, zero, np.random.default_rng(0), noise=past)
