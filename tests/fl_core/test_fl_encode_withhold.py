"""One hospital whose update the quantizer cannot encode costs only itself.

A hospital declaring more samples than ``max_samples_per_client``, or whose exact integer segment
holds a fractional value or one beyond +-qmax, cannot be encoded
(:meth:`~fl_core.aggregators.quantizer.WeightedQuantizer.encode_integers` refuses it). It is
withheld: silent at UPLOAD, named with the reason in the round's ``withheld``, and the others' mean
is bit for bit that of the same round without it (same ``rng`` state), in every quantized
aggregator. A round left with too few hospitals is skipped with the reason naming them. Under DP,
a hospital whose contribution leaves the encoding's range, or that declares more patients than
its range was sized for, is withheld before the round is charged: never a release with fewer
honest noise shares than h, and a skipped round costs no budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterator, Mapping

import numpy as np
import numpy.typing as npt
import pytest

from fl_core import fedavg
from fl_core.aggregators import Aggregator, ClientUpdate, DropoutStage, make_aggregator
from fl_core.aggregators.paillier import PaillierAggregator
from fl_core.aggregators.quantizer import WeightedQuantizer
from fl_core.dp import DPAggregator
from fl_core.fedavg import FedAvgConfig, run_fedavg
from fl_core.models import LogisticRegression, flatten
from fl_core.rotated import RotatedAggregator
from secagg.dp import DPConfig, SeededRandomSource
from secagg.errors import ConfigurationError, InsufficientNoiseError
from secagg.paillier import insecure_key_sizes_for_testing
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.segments import Segment, SegmentTable
from tests.fl_core import dp_noise
from tests.paillier.helpers import threshold_material

HOSPITALS = (1, 2, 3, 4, 5)
LENGTH = 8
TABLE = SegmentTable((Segment("weights", LENGTH - 2), Segment("steps", 2, integer=True)))
Vector = npt.NDArray[np.float64]
PROTOCOLS = ("secagg", "secagg+", "plain-quantized", "paillier")


@pytest.fixture(autouse=True)
def _small_keys_allowed() -> Iterator[None]:
    with insecure_key_sizes_for_testing():
        yield


def protocol(name: str) -> Aggregator:
    if name == "paillier":
        # 4-of-5 (the default for 5 hospitals), min_contributors 4: survives one hospital silent.
        quantizer = WeightedQuantizer.create(len(HOSPITALS))
        with pytest.warns(UserWarning, match="NOT secure"):
            return PaillierAggregator(quantizer, insecure_small_key=True, key_material=threshold_material(256, 5, 4))
    options = {"random_bytes": InsecureDeterministicRandom(b"withhold")} if name.startswith("secagg") else {}
    return make_aggregator(name, num_clients=len(HOSPITALS), **options)


def updates(
    bad: Mapping[int, tuple[Vector | None, int | None]] | None = None, without: Collection[int] = ()
) -> list[ClientUpdate]:
    """Every hospital's benign update (whole steps in the integer segment); ``bad`` replaces a
    hospital's vector and/or sample count."""
    rng = np.random.default_rng(7)
    benign = {h: np.concatenate([rng.normal(0, 0.05, LENGTH - 2), [float(h), -2.0]]) for h in HOSPITALS}
    chosen = {h: (benign[h], 10 + h) for h in HOSPITALS}
    for hospital, (vector, samples) in (bad or {}).items():
        chosen[hospital] = (benign[hospital] if vector is None else vector, samples or 10 + hospital)
    return [ClientUpdate(h, *chosen[h]) for h in HOSPITALS if h not in without]


def fractional_step(hospital: int) -> Vector:
    vector = updates()[hospital - 1].vector.copy()
    vector[-1] = 1.5
    return vector


FAULTS: dict[str, tuple[Vector | None, int | None]] = {
    "samples": (None, 5000),  # above max_samples_per_client = 4096 (the default)
    "integer": (fractional_step(3), None),
}
REASONS = {"samples": "5000 samples exceeds the declared bound", "integer": "integer segment 'steps'"}


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("name", PROTOCOLS)
def test_a_hospital_the_quantizer_cannot_encode_is_withheld_and_the_others_mean_is_exact(name: str, fault: str) -> None:
    # Prepare: hospital 3 declares 5000 samples, or sends 1.5 in an exact integer segment
    faulty, reference = protocol(name), protocol(name)
    # Execute: the round with it, and the same round (same rng state) without it
    result = faulty.aggregate(updates({3: FAULTS[fault]}), rng=np.random.default_rng(5), segments=TABLE)
    alone = reference.aggregate(updates(without={3}), rng=np.random.default_rng(5), segments=TABLE)
    # Assert: withheld with the reason; the others' mean and clipped counts bit for bit
    assert result.mean is not None and alone.mean is not None
    assert result.included == alone.included == frozenset({1, 2, 4, 5})
    np.testing.assert_array_equal(result.mean, alone.mean)
    assert result.clipping == alone.clipping
    ((client, reason),) = result.withheld
    assert client == 3 and REASONS[fault] in reason and not reason.startswith("client 3")


@pytest.mark.parametrize("name", PROTOCOLS)
def test_withholding_more_hospitals_than_the_protocol_survives_skips_the_round_with_the_reason(name: str) -> None:
    # Prepare: 5 hospitals survive one silent hospital (secagg, paillier's 4 contributors); 2 and 3 cannot be encoded
    aggregator = protocol(name)
    bad = {2: FAULTS["samples"], 3: (fractional_step(3), None)}
    # Execute
    result = aggregator.aggregate(updates(bad), rng=np.random.default_rng(5), segments=TABLE)
    # Assert: named either way; a protocol with a threshold skips, naming them; plain-quantized goes on
    assert [client for client, _ in result.withheld] == [2, 3]
    if name == "plain-quantized":
        assert result.included == frozenset({1, 4, 5})
        return
    assert result.skipped and not result.included
    assert result.skipped_reason is not None and "withheld (update not encodable)" in result.skipped_reason
    assert "client 2: 5000 samples" in result.skipped_reason and "client 3: integer segment" in result.skipped_reason


def test_a_hospital_that_drops_at_join_anyway_is_named_and_keeps_its_stage() -> None:
    # Prepare: hospital 3 cannot be encoded and drops at JOIN anyway
    dropouts = {3: DropoutStage.JOIN}
    faulty, reference = protocol("secagg"), protocol("secagg")
    # Execute: the same round with hospital 3's update benign (it sends nothing either way)
    result = faulty.aggregate(updates({3: FAULTS["samples"]}), dropouts, rng=np.random.default_rng(5), segments=TABLE)
    benign = reference.aggregate(updates(), dropouts, rng=np.random.default_rng(5), segments=TABLE)
    # Assert: named; the same session as the benign one (at UPLOAD it would have sent its keys: more bytes)
    assert [client for client, _ in result.withheld] == [3] and benign.withheld == ()
    assert result.included == benign.included == frozenset({1, 2, 4, 5})
    assert result.bytes_per_client == benign.bytes_per_client
    np.testing.assert_array_equal(result.mean, benign.mean)  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore::secagg.segments.ClippingWarning")  # the integer steps, rotated, clipped
def test_a_hospital_a_wrapper_and_the_quantizer_both_refuse_is_named_once_with_both_reasons() -> None:
    # Prepare: hospital 3's rotation overflows binary64 and it declares 5000 samples: the rotation
    # withholds it, and the quantizer refuses the stand-in it hands on (same sample count)
    faulty, reference = RotatedAggregator(protocol("secagg")), RotatedAggregator(protocol("secagg"))
    bad = {3: (np.full(LENGTH, 1.5e308), 5000)}
    # Execute
    result = faulty.aggregate(updates(bad), rng=np.random.default_rng(5))
    alone = reference.aggregate(updates(without={3}), rng=np.random.default_rng(5))
    # Assert: one entry, both reasons; the others' mean bit for bit
    ((client, reason),) = result.withheld
    assert client == 3 and "rotation input overflows" in reason and "5000 samples exceeds" in reason
    assert result.included == alone.included == frozenset({1, 2, 4, 5})
    np.testing.assert_array_equal(result.mean, alone.mean)  # type: ignore[arg-type]


def test_a_table_that_could_overflow_for_everyone_is_still_refused() -> None:
    # A configuration-time refusal stays one: 3 clients x a 64-long segment's clipped counts could
    # wrap Z_(2^8)'s signed range (127), whoever's update it is.
    aggregator = make_aggregator("plain-quantized", num_clients=3, bits=2, ring_bits=8, max_samples_per_client=1)
    benign = [ClientUpdate(h, np.zeros(64), 1) for h in (1, 2, 3)]
    with pytest.raises(ConfigurationError, match="clipped counts could overflow"):
        aggregator.aggregate(benign, rng=np.random.default_rng(0))


def test_fedavg_goes_on_without_a_hospital_above_the_sample_bound_exactly(federation: tuple) -> None:  # type: ignore[type-arg]
    # Prepare: hospital 2 has 60 samples, above max_samples_per_client = 50
    clients, x, y = federation

    def train(chosen: list) -> fedavg.FedAvgResult:  # type: ignore[type-arg]
        aggregator = make_aggregator(
            "secagg+", num_clients=5, max_samples_per_client=50, random_bytes=InsecureDeterministicRandom(b"fedavg")
        )
        model = LogisticRegression(x.shape[1], 2)
        return run_fedavg(model, chosen, aggregator, x, y, FedAvgConfig(rounds=2, learning_rate=0.1, seed=1))

    # Execute
    reference = train([c for c in clients if c.client_id != 2])
    result = train(list(clients))
    # Assert: every round goes on without it, named with the reason; the model bit for bit the reference's
    for record in result.rounds:
        assert record.skipped_reason is None and record.included == (0, 1, 3, 4)
        assert (2, "UPLOAD") in record.dropouts
        ((client, reason),) = record.rejected
        assert client == 2 and "60 samples exceeds the declared bound max_samples_per_client=50" in reason
    assert np.array_equal(flatten(result.params), flatten(reference.params))


# --- DP: withheld before the round is charged ------------------------------------------------


def dp_aggregator(name: str, min_honest: int) -> DPAggregator:
    return dp_noise.dp_aggregator(name, min_honest, dimension=LENGTH, label=b"dp")


def dp_updates(bad: Mapping[int, tuple[Vector | None, int | None]] | None = None) -> list[ClientUpdate]:
    rng = np.random.default_rng(3)
    chosen: dict[int, tuple[Vector, int]] = {h: (rng.normal(0, 1.0, LENGTH), 10 * h) for h in HOSPITALS}
    for hospital, (vector, patients) in (bad or {}).items():
        chosen[hospital] = (chosen[hospital][0] if vector is None else vector, patients or chosen[hospital][1])
    return [ClientUpdate(h, *chosen[h]) for h in HOSPITALS]


OUT_OF_RANGE = np.full(LENGTH, 1e4)  # beyond max_samples_per_client * l2_clip = 100 and its noise room
DP_FAULTS: dict[str, tuple[Vector | None, int | None]] = {"range": (OUT_OF_RANGE, None), "patients": (None, 101)}
DP_REASONS = {"range": "exceeds the range", "patients": "101 patients"}


@pytest.mark.parametrize("fault", sorted(DP_FAULTS))
@pytest.mark.parametrize(("name", "min_honest"), [("plain-quantized", 4), ("secagg", 2)])
def test_dp_a_hospital_that_cannot_be_encoded_is_withheld_and_the_round_charged_once(
    name: str, min_honest: int, fault: str
) -> None:
    # Prepare: hospital 3's contribution leaves the range, or it declares 101 > 100 patients
    faulty, reference = dp_aggregator(name, min_honest), dp_aggregator(name, min_honest)
    # Execute: the round with it, and the same round in which it drops at UPLOAD (same noise, same rng)
    result = faulty.aggregate(dp_updates({3: DP_FAULTS[fault]}), {}, rng=np.random.default_rng(5))
    dropped = reference.aggregate(dp_updates(), {3: DropoutStage.UPLOAD}, rng=np.random.default_rng(5))
    # Assert: released without it, bit for bit; charged once, as the reference
    assert result.mean is not None and dropped.mean is not None
    assert result.included == dropped.included == frozenset({1, 2, 4, 5})
    np.testing.assert_array_equal(result.mean, dropped.mean)
    ((client, reason),) = result.withheld
    assert client == 3 and DP_REASONS[fault] in reason
    assert faulty.accountant.num_releases == reference.accountant.num_releases == 1
    assert faulty.spent() == reference.spent()


def test_dp_withholding_below_h_skips_the_round_uncharged_and_names_the_hospitals() -> None:
    # Prepare: h = 4 of 5 hospitals; hospitals 2 (range) and 4 (patients) cannot be encoded: 3 contributors
    aggregator = dp_aggregator("plain-quantized", 4)
    bad = {2: DP_FAULTS["range"], 4: DP_FAULTS["patients"]}
    # Execute
    result = aggregator.aggregate(dp_updates(bad), {}, rng=np.random.default_rng(5))
    # Assert: skipped, not released under-noised, nothing charged; both named
    assert result.skipped and not result.included
    assert [client for client, _ in result.withheld] == [2, 4]
    reason = result.skipped_reason or ""
    assert "not released under-noised" in reason and "client 2" in reason and "client 4: 101 patients" in reason
    assert aggregator.accountant.num_releases == 0 and aggregator.spent()[0] == 0.0
    # Assert: the next round, every hospital benign, is released and charged
    assert aggregator.aggregate(dp_updates(), {}, rng=np.random.default_rng(6)).mean is not None
    assert aggregator.accountant.num_releases == 1


def test_dp_a_round_of_the_wrong_dimension_is_still_refused() -> None:
    # Every hospital's vector has the wrong length: the round breaks the contract, nobody is withheld.
    aggregator = dp_aggregator("plain-quantized", 4)
    short = [dataclasses.replace(u, vector=u.vector[:-1]) for u in dp_updates()]
    with pytest.raises(ConfigurationError, match=f"{LENGTH} coordinates"):
        aggregator.aggregate(short, {}, rng=np.random.default_rng(5))
    assert aggregator.accountant.num_releases == 0


def test_dp_the_inner_sum_refuses_a_round_its_withheld_hospitals_leave_under_h() -> None:
    # Prepare: the DP quantizer's own aggregator, called without DPAggregator's screening (h = 4 of 5)
    inner = dp_aggregator("plain-quantized", 4).inner
    one, two = {2: DP_FAULTS["range"]}, {2: DP_FAULTS["range"], 4: DP_FAULTS["range"]}
    # Execute / Assert: one withheld leaves 4 = h: summed without it, named
    result = inner.aggregate(dp_updates(one), {}, rng=np.random.default_rng(5))
    assert result.included == frozenset({1, 3, 4, 5}) and [client for client, _ in result.withheld] == [2]
    # Execute / Assert: two withheld leave 3 < h: refused before anything is summed, never under-noised
    with pytest.raises(InsufficientNoiseError, match="not released under-noised"):
        inner.aggregate(dp_updates(two), {}, rng=np.random.default_rng(5))


# --- Paillier under DP: a faulty hospital is neither charged for nor counted ------------------


def dp_paillier() -> DPAggregator:
    # 4-of-5, min_contributors 4 (the defaults for 5 hospitals): h = 2, the Paillier floor.
    config = DPConfig(epsilon=3.0, delta=1e-5, rounds=4, l2_clip=1.0, min_honest=2)
    with pytest.warns(UserWarning, match="NOT secure"):
        aggregator = make_aggregator(
            "paillier", num_clients=5, dp=config, dimension=LENGTH, max_samples_per_client=100,
            noise_source=SeededRandomSource(bytes(32)), insecure_small_key=True,
            key_material=threshold_material(512, 5, 4), random_bytes=InsecureDeterministicRandom(b"dp-paillier"),
        )  # fmt: skip
    assert isinstance(aggregator, DPAggregator)
    return aggregator


PAILLIER_FAULTS = {"patients": "101 patients", "range": "exceeds the range", "model": "another model"}


def paillier_fault(fault: str) -> list[ClientUpdate]:
    if fault == "model":
        return [dataclasses.replace(u, model_digest=bytes([7]) * 32) if u.client_id == 3 else u for u in dp_updates()]
    return dp_updates({3: DP_FAULTS[fault]})


@pytest.mark.parametrize("fault", sorted(PAILLIER_FAULTS))
def test_dp_paillier_a_faulty_hospital_is_not_counted_and_the_round_charged_once(fault: str) -> None:
    # Prepare: hospital 3 declares 101 > 100 patients, leaves the range, or trained from another model
    faulty, reference = dp_paillier(), dp_paillier()
    # Execute: the round with it, and the same round in which it drops at UPLOAD
    result = faulty.aggregate(paillier_fault(fault), {}, rng=np.random.default_rng(5), model_digest=bytes(32))
    dropped = reference.aggregate(
        dp_updates(), {3: DropoutStage.UPLOAD}, rng=np.random.default_rng(5), model_digest=bytes(32)
    )
    # Assert: released over the four others, charged once as the reference, the hospital named
    assert result.mean is not None and dropped.mean is not None
    assert result.included == dropped.included == frozenset({1, 2, 4, 5})
    named = dict(result.refused if fault == "model" else result.withheld)
    assert list(named) == [3] and PAILLIER_FAULTS[fault] in named[3]
    if fault != "model":  # the refused one never encodes: its noise is not drawn, the others' shift
        np.testing.assert_array_equal(result.mean, dropped.mean)
    assert faulty.accountant.num_releases == reference.accountant.num_releases == 1
    assert faulty.spent() == reference.spent()


def test_dp_paillier_faults_below_its_contributors_skip_the_round_uncharged() -> None:
    # Prepare: two of five faulty (one over max_patients, one of another model): 3 uploaders remain,
    # below Paillier's min_contributors = 4 (h = 2 is not the binding limit here)
    bad = [dataclasses.replace(u, model_digest=bytes([7]) * 32) if u.client_id == 4 else u for u in dp_updates()]
    bad = [dataclasses.replace(u, num_samples=101) if u.client_id == 2 else u for u in bad]
    aggregator = dp_paillier()
    # Execute
    result = aggregator.aggregate(bad, {}, rng=np.random.default_rng(5), model_digest=bytes(32))
    # Assert: skipped with both named, nothing released, nothing charged (before: charged)
    assert result.mean is None and result.skipped_reason is not None
    assert [c for c, _ in result.withheld] == [2] and [c for c, _ in result.refused] == [4]
    assert aggregator.accountant.num_releases == 0 and aggregator.spent()[0] == 0.0


def test_dp_secagg_faults_below_its_threshold_skip_the_round_uncharged() -> None:
    # Prepare: h = 2 of 5 (t = 4, c = 2); hospitals 2 and 4 declare more patients than the bound:
    # 3 uploaders remain, at least h but below t, so the session could unmask nothing
    aggregator = dp_aggregator("secagg", 2)
    # Execute
    bad = dp_updates({2: DP_FAULTS["patients"], 4: DP_FAULTS["patients"]})
    result = aggregator.aggregate(bad, {}, rng=np.random.default_rng(5))
    # Assert: skipped before the charge (before: skipped by the session, after the charge), both named
    assert aggregator.accountant.num_releases == 0 and aggregator.spent()[0] == 0.0
    assert result.mean is None and "below the session's threshold" in (result.skipped_reason or "")
    assert [client for client, _ in result.withheld] == [2, 4]
