"""Review of the DP round's checks before the charge: what the round will lack is found before it
is charged, and a hospital's noise drawn before the charge is the noise it sends (edge cases).

A DP round over a secure sum is charged to the accountant before anything is sent; a round that
the protocol would then skip for what is already known before the charge (the withheld, the
refused, the noise beyond its room) must be skipped uncharged instead (never charged for nothing).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from fractions import Fraction

import numpy as np
import numpy.typing as npt
import pytest

from fl_core.aggregators import ClientUpdate, DropoutStage, make_aggregator
from fl_core.aggregators.paillier import PaillierAggregator
from fl_core.aggregators.quantizer import WeightedQuantizer
from fl_core.dp import DPAggregator
from secagg.dp import DPConfig, RandomSource, SeededRandomSource
from secagg.dp import encoding as dp_encoding
from secagg.errors import ConfigurationError, OverflowDetectedError
from secagg.paillier import insecure_key_sizes_for_testing
from secagg.primitives.randomness import InsecureDeterministicRandom
from tests.fl_core.dp_noise import Sampler
from tests.fl_core.dp_noise import overflowing as overflowing_at
from tests.paillier.helpers import threshold_material

LENGTH = 6
HOSPITALS = (1, 2, 3, 4, 5)


@pytest.fixture(autouse=True)
def _small_keys_allowed() -> Iterator[None]:
    with insecure_key_sizes_for_testing():
        yield


def config(min_honest: int) -> DPConfig:
    return DPConfig(epsilon=3.0, delta=1e-5, rounds=4, l2_clip=1.0, min_honest=min_honest)


def updates(hospitals: Collection[int], patients: dict[int, int] | None = None) -> list[ClientUpdate]:
    rng = np.random.default_rng(3)
    return [ClientUpdate(h, rng.normal(0, 1.0, LENGTH), (patients or {}).get(h, 10 * h)) for h in hospitals]


def paillier_3_of_4(min_contributors: int) -> DPAggregator:
    # A 3-of-4 key: t = 3 hospitals must decrypt; h = 2 (its floor with min_contributors 2).
    with pytest.warns(UserWarning, match="NOT secure"):
        built = make_aggregator(
            "paillier", num_clients=4, dp=config(2), dimension=LENGTH, max_samples_per_client=100,
            noise_source=SeededRandomSource(bytes(32)), insecure_small_key=True, threshold=3,
            min_contributors=min_contributors, key_material=threshold_material(512, 4, 3),
            random_bytes=InsecureDeterministicRandom(b"precharge"),
        )  # fmt: skip
    assert isinstance(built, DPAggregator)
    return built


def test_dp_paillier_withheld_hospitals_below_its_decryption_threshold_skip_the_round_uncharged() -> None:
    # Prepare: min_contributors 2 < t = 3; hospitals 2 and 4 declare 101 > 100 patients (withheld):
    # 2 upload (>= h and >= min_contributors), but a hospital decrypts only a sum holding its own
    # upload, so 2 < t can decrypt: the session can release nothing
    aggregator = paillier_3_of_4(min_contributors=2)
    # Execute
    result = aggregator.aggregate(updates((1, 2, 3, 4), {2: 101, 4: 101}), {}, rng=np.random.default_rng(5))
    # Assert: skipped, both named, and not charged (before: charged, then skipped by the session)
    assert result.mean is None and [c for c, _ in result.withheld] == [2, 4]
    assert aggregator.accountant.num_releases == 0 and aggregator.spent()[0] == 0.0
    # Assert: one withheld leaves 3 = t uploaders: released, charged once
    released = aggregator.aggregate(updates((1, 2, 3, 4), {2: 101}), {}, rng=np.random.default_rng(5))
    assert released.mean is not None and released.included == frozenset({1, 3, 4})
    assert aggregator.accountant.num_releases == 1


# --- noise beyond its room: edge cases ---------------------------------------------------------


def secagg(min_honest: int = 2) -> DPAggregator:
    built = make_aggregator(
        "secagg", num_clients=5, dp=config(min_honest), dimension=LENGTH, max_samples_per_client=100,
        noise_source=SeededRandomSource(bytes(32)), random_bytes=InsecureDeterministicRandom(b"edge"),
    )  # fmt: skip
    assert isinstance(built, DPAggregator)
    return built


def overflowing(monkeypatch: pytest.MonkeyPatch, calls: Collection[int]) -> None:
    """The draws numbered ``calls`` (one per hospital in round order) get -2^40 at coordinate 0."""
    overflowing_at(monkeypatch, calls, coordinate=0, value=-(2**40))


@pytest.mark.parametrize(
    ("own_stage", "named"),
    [(None, True), (DropoutStage.FINALIZE, True), (DropoutStage.UPLOAD, False), (DropoutStage.JOIN, False)],
)
def test_the_first_hospital_beyond_its_room_is_withheld_whatever_its_own_dropout(
    own_stage: DropoutStage | None, named: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: hospital 1 (the first draw) draws noise beyond its room and itself drops at no stage,
    # after its upload, at UPLOAD or at JOIN; the reference round has it silent at UPLOAD (or earlier)
    own = {} if own_stage is None else {1: own_stage}
    reference_stages = {1: min(own_stage or DropoutStage.UPLOAD, DropoutStage.UPLOAD)}
    reference = secagg().aggregate(updates(HOSPITALS), reference_stages, rng=np.random.default_rng(5))
    faulty = secagg()
    overflowing(monkeypatch, {0})
    # Execute
    result = faulty.aggregate(updates(HOSPITALS), own, rng=np.random.default_rng(5))
    # Assert: bit for bit the round without it; named only if it would have sent; charged once
    assert result.mean is not None and reference.mean is not None
    assert result.included == reference.included == frozenset({2, 3, 4, 5})
    np.testing.assert_array_equal(result.mean, reference.mean)
    assert [client for client, _ in result.withheld] == ([1] if named else [])
    assert faulty.accountant.num_releases == 1 and not faulty.quantizer.drawn_noise


def test_every_hospital_beyond_its_room_skips_the_round_uncharged(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    aggregator = secagg()
    overflowing(monkeypatch, set(range(5)))
    # Execute
    result = aggregator.aggregate(updates(HOSPITALS), {}, rng=np.random.default_rng(5))
    # Assert: all named, nothing released or charged, nothing left for a later round
    assert result.mean is None and not result.included
    assert [client for client, _ in result.withheld] == list(HOSPITALS)
    assert aggregator.accountant.num_releases == 0 and aggregator.spent()[0] == 0.0
    assert not aggregator.quantizer.drawn_noise


def test_noise_drawn_for_a_round_whose_sum_raises_is_never_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: the inner secure sum raises (after the charge) in the first round
    aggregator = secagg()
    inner_aggregate = aggregator.inner.aggregate
    draws: list[int] = []
    real: Sampler = dp_encoding.sample_discrete_gaussian

    def counting(variance: Fraction | int, size: int, source: RandomSource | None = None) -> npt.NDArray[np.int64]:
        draws.append(size)
        return real(variance, size, source)

    monkeypatch.setattr(dp_encoding, "sample_discrete_gaussian", counting)
    monkeypatch.setattr(aggregator.inner, "aggregate", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    # Execute / Assert: the interrupt ends the call; the drawn noise is dropped
    with pytest.raises(KeyboardInterrupt):
        aggregator.aggregate(updates(HOSPITALS), {}, rng=np.random.default_rng(5))
    assert len(draws) == 5 and not aggregator.quantizer.drawn_noise
    # Execute / Assert: the next round draws its own five, once each, and encodes with them only
    monkeypatch.setattr(aggregator.inner, "aggregate", inner_aggregate)
    assert aggregator.aggregate(updates(HOSPITALS), {}, rng=np.random.default_rng(6)).mean is not None
    assert len(draws) == 10 and not aggregator.quantizer.drawn_noise


# --- a round its secure sum refuses outright is refused before the charge -----------------------


def test_dp_secagg_a_round_of_fewer_than_three_hospitals_is_refused_before_the_charge() -> None:
    # Prepare: h = 2; two hospitals sampled (at least h), but a masking session needs three
    aggregator = secagg()
    # Execute / Assert: refused for everyone, as without DP, and not charged (before: charged, then raised)
    with pytest.raises(ConfigurationError, match="at least 3 clients"):
        aggregator.aggregate(updates((1, 2)), {}, rng=np.random.default_rng(5))
    assert aggregator.accountant.num_releases == 0 and aggregator.spent()[0] == 0.0
    assert not aggregator.quantizer.drawn_noise


def test_dp_paillier_a_new_hospital_beyond_the_key_shares_is_refused_before_the_charge() -> None:
    # Prepare: a 3-of-4 key whose four shares hospitals 1-4 took in the first round
    aggregator = paillier_3_of_4(min_contributors=3)
    assert aggregator.aggregate(updates((1, 2, 3, 4)), {}, rng=np.random.default_rng(5)).mean is not None
    # Execute / Assert: hospital 9 is new and no key share is left: refused, and the round not
    # charged (before: charged, then raised)
    with pytest.raises(ConfigurationError, match="key shares are taken"):
        aggregator.aggregate(updates((1, 2, 3, 9)), {}, rng=np.random.default_rng(6))
    assert aggregator.accountant.num_releases == 1
    assert not aggregator.quantizer.drawn_noise


def test_paillier_a_refused_round_assigns_no_key_share() -> None:
    # Prepare: a 3-of-4 key without DP; hospitals 1-3 take shares 1-3 in the first round
    with pytest.warns(UserWarning, match="NOT secure"):
        aggregator = PaillierAggregator(
            WeightedQuantizer.create(4), insecure_small_key=True, key_material=threshold_material(512, 4, 3),
            random_bytes=InsecureDeterministicRandom(b"shares"),
        )  # fmt: skip
    plain = [ClientUpdate(u.client_id, 0.01 * u.vector, u.num_samples) for u in updates((1, 2, 3, 4))]
    assert aggregator.aggregate(plain[:3], {}, rng=np.random.default_rng(5)).mean is not None
    # Execute: hospitals 8 and 9 are new, one share is left: the round is refused
    newcomers = [ClientUpdate(c, plain[0].vector, 10) for c in (8, 9)]
    with pytest.raises(ConfigurationError, match="client 9 is a new hospital"):
        aggregator.aggregate([*plain[:2], *newcomers], {}, rng=np.random.default_rng(6))
    # Assert: the refused round took no share (before: hospital 8 kept the last), so 9 can join later
    result = aggregator.aggregate([*plain[:2], newcomers[1]], {}, rng=np.random.default_rng(7))
    assert result.mean is not None and result.included == frozenset({1, 2, 9})


# --- noise_overflow: exact on every integer noise it is handed ------------------------------------


@pytest.mark.parametrize(
    "noise",
    [
        np.array([-(2**63), 0, 0, 0, 0, 0], dtype=np.int64),  # np.abs(-2^63) stays -2^63
        np.array([2**63, 0, 0, 0, 0, 0], dtype=np.uint64),  # read as int64: -2^63
        np.array([2**64 - 1, 0, 0, 0, 0, 0], dtype=np.uint64),  # read as int64: -1, inside the room
    ],
    ids=["int64-min", "uint64-2^63", "uint64-max"],
)
def test_noise_far_beyond_its_room_is_refused_whatever_its_integer_type(noise: npt.NDArray[np.int64]) -> None:
    # Prepare: the DP quantizer's plan; a zero contribution, whose encoding is its noise
    quantizer = secagg().quantizer
    # Execute / Assert: before, these passed noise_overflow (and -2^63 went into an encoding)
    assert "exceeds its room" in (dp_encoding.noise_overflow(quantizer.plan, noise) or "")
    with pytest.raises(OverflowDetectedError, match="exceeds its room"):
        dp_encoding.noised_encoding(
            quantizer.plan, quantizer.config, np.zeros(LENGTH), np.random.default_rng(0), noise=noise
        )


def test_noise_beyond_the_room_leaving_at_least_h_but_below_t_skips_the_round_uncharged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: secagg over 5 (t = 4), h = 2; hospitals 2 and 4 draw noise beyond their room
    aggregator = secagg()
    overflowing(monkeypatch, {1, 3})
    # Execute
    result = aggregator.aggregate(updates(HOSPITALS), {}, rng=np.random.default_rng(5))
    # Assert: 3 uploaders >= h but < t: skipped before the charge, both named
    assert result.mean is None and "below the session's threshold" in (result.skipped_reason or "")
    assert [client for client, _ in result.withheld] == [2, 4]
    assert aggregator.accountant.num_releases == 0 and not aggregator.quantizer.drawn_noise
