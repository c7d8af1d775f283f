"""Distributed DP in fl_core: per-example clipping, noised encodings, refusals, the server's view."""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np
import pytest

from fl_core import fedavg
from fl_core.aggregators import make_aggregator
from fl_core.aggregators.base import AggregationResult, ClientUpdate, DropoutStage, client_rounding_rng
from fl_core.data import ClientData
from fl_core.dp import DPAggregator, DPQuantizer, dp_quantization, noised_encoding
from fl_core.dp_training import dp_contribution, public_denominator
from fl_core.fedavg import FedAvgConfig, run_fedavg
from fl_core.models import MLP, LogisticRegression, flatten
from secagg.dp import DPConfig, SeededRandomSource, poisson_mask
from secagg.dp.encoding import noise_room
from secagg.errors import ConfigurationError, InsufficientNoiseError, OverflowDetectedError
from secagg.masking import run_session
from secagg.segments import Segment, SegmentTable

RNG = np.random.default_rng
SECURE_FLOOR = 2
"""The largest h secagg, secagg+ (both modes) and paillier (defaults) support at 5 hospitals."""
Federation = tuple[list[ClientData], np.ndarray, np.ndarray]


def _config(**changes: object) -> DPConfig:
    base = DPConfig(epsilon=3.0, delta=1e-5, rounds=4, l2_clip=1.0, min_honest=4)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _dp_aggregator(
    name: str = "plain-quantized", *, dimension: int = 14, protocol: dict[str, object] | None = None, **changes: object
) -> DPAggregator:
    source = SeededRandomSource(bytes(32))
    if name != "plain-quantized":
        # Five hospitals over a secure sum: every sum the server can release holds 2 honest
        # inputs (t - c, secagg.dp.floors), so h is at most 2 there; plain-quantized keeps h = 4.
        changes.setdefault("min_honest", SECURE_FLOOR)
    aggregator = make_aggregator(
        name, num_clients=5, dp=_config(**changes), dimension=dimension, max_samples_per_client=100,
        noise_source=source, **(protocol or {}),
    )  # fmt: skip
    assert isinstance(aggregator, DPAggregator)
    return aggregator


# --- per-example gradients and clipping ---------------------------------------------------


@pytest.mark.parametrize("model", [LogisticRegression(5, 3), MLP(5, 3, hidden=4)])
def test_per_example_gradients_match_single_example_backprop(model: LogisticRegression | MLP) -> None:
    rng = RNG(1)
    x, y = rng.normal(size=(7, 5)), rng.integers(0, 3, size=7)
    params = model.init(rng)
    per_example = model.per_example_gradients(params, x, y)
    for i in range(7):
        _, single = model.loss_and_grad(params, x[i : i + 1], y[i : i + 1])
        np.testing.assert_allclose(flatten([g[i] for g in per_example]), flatten(single), atol=1e-12)


@pytest.mark.parametrize("model", [LogisticRegression(5, 3), MLP(5, 3, hidden=4)])
@pytest.mark.parametrize("clip", [0.05, 0.5, 100.0])
def test_clipped_sum_equals_explicit_clipping_and_bounds_each_example(
    model: LogisticRegression | MLP, clip: float
) -> None:
    rng = RNG(2)
    x, y = 3 * rng.normal(size=(9, 5)), rng.integers(0, 3, size=9)
    params = model.init(rng)
    per_example = np.stack([flatten([g[i] for g in model.per_example_gradients(params, x, y)]) for i in range(9)])
    norms = np.linalg.norm(per_example, axis=1)
    expected = (per_example * np.minimum(1.0, clip / norms)[:, None]).sum(axis=0)
    np.testing.assert_allclose(flatten(model.clipped_gradient_sum(params, x, y, clip)), expected, atol=1e-10)
    # Sensitivity: removing any one example moves the sum by at most the clip.
    for i in range(9):
        rest = np.delete(np.arange(9), i)
        without = flatten(model.clipped_gradient_sum(params, x[rest], y[rest], clip))
        assert np.linalg.norm(expected - without) <= clip * (1 + 1e-9)


def test_per_example_gradients_refuse_an_l2_penalty() -> None:
    model = LogisticRegression(3, l2=0.1)
    with pytest.raises(ConfigurationError, match="l2 = 0"):
        model.clipped_gradient_sum(model.init(RNG(0)), np.ones((2, 3)), np.array([0, 1]), 1.0)


def test_poisson_sampling_rate_and_public_denominator(federation: Federation) -> None:
    mask = poisson_mask(100_000, 0.3, SeededRandomSource(bytes(32)))
    assert abs(mask.mean() - 0.3) < 0.01
    assert poisson_mask(5, None).all()
    assert public_denominator([10, 30], _config(sampling_rate=0.5)) == 20.0
    clients, _, _ = federation
    model = LogisticRegression(6)
    contribution = dp_contribution(model, model.init(RNG(0)), clients[0], _config())
    assert contribution.shape == (14,)


def test_the_step_divides_by_the_included_hospitals_declared_sizes_only(
    federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hospital 2 (60 patients) drops before uploading: the released sum holds only the other
    # four's patients, so the public denominator is q * (40 + 25 + 15 + 35), not q * 175.
    clients, test_x, test_y = federation
    monkeypatch.setattr(fedavg, "_draw_dropouts", lambda sampled, p, rng: {2: DropoutStage.UPLOAD})
    aggregator = make_aggregator(
        "plain-quantized", num_clients=5, dp=_config(min_honest=3, sampling_rate=0.5), dimension=14,
        max_samples_per_client=100, noise_source=SeededRandomSource(bytes(32)),
    )  # fmt: skip
    assert isinstance(aggregator, DPAggregator)
    released: list[np.ndarray] = []
    inner = aggregator.aggregate

    def capture(*args: object, **kwargs: object) -> AggregationResult:
        result = inner(*args, **kwargs)  # type: ignore[arg-type]
        assert result.mean is not None
        released.append(result.mean)
        return result

    monkeypatch.setattr(aggregator, "aggregate", capture)
    model = LogisticRegression(6)
    start = model.init(RNG(0))
    config = FedAvgConfig(rounds=1, learning_rate=0.5, seed=0)
    result = run_fedavg(model, clients, aggregator, test_x, test_y, config, initial_params=start)
    assert result.rounds[0].included == (0, 1, 3, 4)
    denominator = 0.5 * (40 + 25 + 15 + 35)
    assert public_denominator([c.num_samples for c in clients if c.client_id != 2], aggregator.config) == denominator
    np.testing.assert_allclose(flatten(result.params), flatten(start) - 0.5 * released[0] / denominator, rtol=1e-12)


# --- the encoding: noise on the hospital, before the secure sum ---------------------------


def test_noised_encoding_adds_exact_noise_of_the_planned_variance() -> None:
    aggregator = _dp_aggregator(dimension=20_000)
    quantizer = aggregator.quantizer
    vector = np.full(20_000, 0.25)
    encoded = noised_encoding(quantizer.plan, quantizer.config, vector, RNG(0), SeededRandomSource(bytes(32)))
    noise = encoded - vector * quantizer.config.scale  # 0.25 * scale is an integer: rounding is exact
    assert abs(noise.mean()) < 5 * np.sqrt(float(quantizer.plan.variance) / 20_000)
    assert noise.var() == pytest.approx(float(quantizer.plan.variance), rel=0.05)


def test_noised_encoding_refuses_a_coordinate_beyond_the_range_instead_of_clipping() -> None:
    quantizer = _dp_aggregator().quantizer
    too_big = np.zeros(14)
    too_big[3] = quantizer.config.clip * 1.01
    with pytest.raises(ConfigurationError, match="never clips"):
        noised_encoding(quantizer.plan, quantizer.config, too_big, RNG(0))
    with pytest.raises(ConfigurationError, match="14 coordinates"):
        noised_encoding(quantizer.plan, quantizer.config, np.zeros(13), RNG(0))


def test_noised_encoding_refuses_a_coordinate_its_own_noise_could_push_past_the_range() -> None:
    # qmax = reach (max_samples * l2_clip * scale) + the one-share noise room, rounded up to 2^k - 1.
    # A coordinate in (qmax - tail, qmax] used to pass, and then whether its noised value left the
    # range (a refusal the server sees) was likely and depended on it: one share of noise, not h.
    quantizer = _dp_aggregator().quantizer
    scale, qmax = quantizer.config.scale, quantizer.config.qmax
    own_tail = noise_room(quantizer.plan)  # noise_tail_bound(plan, 1, 2^-64): the accounted refusal probability
    edge = np.zeros(14)
    edge[3] = (qmax - own_tail + 1) / scale
    with pytest.raises(ConfigurationError, match="never clips"):
        noised_encoding(quantizer.plan, quantizer.config, edge, RNG(0), SeededRandomSource(bytes(32)))
    edge[3] = (qmax - own_tail) / scale  # the largest accepted: its noise leaves the range w.p. < 2^-64
    noised_encoding(quantizer.plan, quantizer.config, edge, RNG(0), SeededRandomSource(bytes(32)))
    assert 100 * 1.0 * scale <= qmax - own_tail  # every honest sum (100 patients, clip 1) is accepted


def test_a_hospital_with_more_patients_than_the_public_bound_is_refused_before_the_round() -> None:
    # Its clipped sum may leave [-R, R]: the range refusal would then depend on its data. It is
    # withheld on its public count before the round (tests/fl_core/test_fl_encode_withhold.py):
    # here 4 others remain, h = 4, so the round is released without it and charged once.
    aggregator = _dp_aggregator()
    updates = _updates()
    updates[2] = dataclasses.replace(updates[2], num_samples=101)  # max_samples_per_client = 100
    result = aggregator.aggregate(updates, {}, rng=RNG(0))
    ((client, reason),) = result.withheld
    assert client == 3 and "101 patients exceeds max_samples_per_client = 100" in reason
    assert result.included == frozenset({1, 2, 4, 5}) and aggregator.accountant.num_releases == 1
    updates[2] = dataclasses.replace(updates[2], num_samples=100)
    assert aggregator.aggregate(updates, {}, rng=RNG(0)).included == frozenset({1, 2, 3, 4, 5})


def test_the_range_covers_every_hospital_sum_so_no_coordinate_is_ever_clipped() -> None:
    quantizer = _dp_aggregator().quantizer
    assert quantizer.config.clip >= 100 * 1.0  # max_samples_per_client * l2_clip
    assert quantizer.encoded_length(14) == 14  # no count coordinate, no clipped-count coordinate


def test_overflow_check_covers_the_noise() -> None:
    config = _config()
    plan, quantization, tail = dp_quantization(config, num_clients=5, dimension=14, max_samples_per_client=100)
    assert 5 * quantization.qmax + tail <= quantization.limit
    with pytest.raises(ConfigurationError, match="overflow"):
        dp_quantization(config, num_clients=5, dimension=14, max_samples_per_client=2**20, ring_bits=32)
    quantizer = DPQuantizer(quantization, plan=plan, tail_bound=tail, max_patients=100)
    beyond = np.full(14, 5 * quantization.qmax + tail + 1, dtype=np.int64)
    with pytest.raises(OverflowDetectedError):
        quantizer.decode_integers(beyond, 5)


def test_the_patient_bound_is_named_never_left_out_by_default() -> None:
    # Before: max_patients defaulted to None, so a DPQuantizer built without it skipped the
    # refusal of a hospital declaring more patients than the range was sized for, and that
    # hospital's encoding was refused (or not) by its data, which the server sees.
    plan, quantization, tail = dp_quantization(_config(), num_clients=5, dimension=14, max_samples_per_client=100)
    with pytest.raises(TypeError, match="max_patients"):
        DPQuantizer(quantization, plan=plan, tail_bound=tail)  # type: ignore[call-arg]
    assert DPQuantizer(quantization, plan=plan, tail_bound=tail, max_patients=100).max_patients == 100
    assert DPQuantizer(quantization, plan=plan, tail_bound=tail, max_patients=None).max_patients is None


def test_descriptor_binds_the_dp_parameters() -> None:
    digests = {
        _dp_aggregator(**changes).quantizer.descriptor(1)
        for changes in ({}, {"epsilon": 2.0}, {"delta": 1e-6}, {"l2_clip": 0.5}, {"min_honest": 3})
    }
    assert len(digests) == 5


def test_make_aggregator_dp_refusals() -> None:
    with pytest.raises(ConfigurationError, match="dimension"):
        make_aggregator("secagg", num_clients=5, dp=_config())
    with pytest.raises(ConfigurationError, match="integer encoding"):
        make_aggregator("plain", num_clients=5, dp=_config(), dimension=14)
    with pytest.raises(ConfigurationError, match="clip and bits"):
        make_aggregator("secagg", num_clients=5, dp=_config(), dimension=14, clip=0.5)


# --- refusals: too few honest contributors, budget ----------------------------------------


def _updates(count: int = 5, d: int = 14) -> list[ClientUpdate]:
    return [ClientUpdate(i, RNG(i).normal(size=d), 10) for i in range(1, count + 1)]


@pytest.mark.parametrize(("name", "dropped"), [("plain-quantized", 2), ("secagg", 4), ("secagg+", 4)])
def test_round_with_fewer_than_h_uploaders_is_skipped_and_not_charged(name: str, dropped: int) -> None:
    aggregator = _dp_aggregator(name)
    stages = (DropoutStage.UPLOAD, DropoutStage.JOIN)
    dropouts = {client: stages[client % 2] for client in range(1, dropped + 1)}  # 5 - dropped uploaders < h
    assert 5 - dropped < aggregator.plan.honest
    result = aggregator.aggregate(_updates(), dropouts, rng=RNG(0))
    assert result.mean is None and "must be skipped" in (result.skipped_reason or "")
    assert aggregator.accountant.num_releases == 0
    # One dropout still leaves h: released, and charged.
    result = aggregator.aggregate(_updates(), {1: DropoutStage.UPLOAD}, rng=RNG(0))
    assert result.mean is not None and len(result.included) == 4
    assert aggregator.accountant.num_releases == 1


def test_decoding_a_sum_of_fewer_than_h_encodings_is_refused() -> None:
    quantizer = _dp_aggregator().quantizer
    with pytest.raises(InsufficientNoiseError):
        quantizer.decode_integers(np.zeros(14, dtype=np.int64), 3)


def test_round_beyond_the_budget_is_refused_and_training_stops(federation: Federation) -> None:
    clients, test_x, test_y = federation
    aggregator = make_aggregator(
        "plain-quantized", num_clients=5, dp=_config(rounds=3), dimension=14, max_samples_per_client=100
    )
    result = run_fedavg(LogisticRegression(6), clients, aggregator, test_x, test_y, FedAvgConfig(rounds=6, seed=0))
    released = [r for r in result.rounds if r.skipped_reason is None]
    assert len(released) == 3
    assert "privacy budget" in (result.rounds[-1].skipped_reason or "")
    assert len(result.rounds) == 4  # the refused round is recorded, then training stops
    spent = [r.epsilon_spent for r in released]
    assert spent == sorted(spent) and spent[0] > 0 and spent[-1] is not None and spent[-1] <= 3.0 + 1e-9
    assert result.rounds[-1].epsilon_spent == spent[-1]


def test_the_stop_names_the_rounds_the_budget_released_not_this_calls_rounds(
    federation: Federation, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: a 3-round budget spent by a first run
    clients, test_x, test_y = federation
    aggregator = make_aggregator(
        "plain-quantized", num_clients=5, dp=_config(rounds=3), dimension=14, max_samples_per_client=100
    )
    run_fedavg(LogisticRegression(6), clients, aggregator, test_x, test_y, FedAvgConfig(rounds=3, seed=0))
    # Execute: a second run on the same aggregator (the budget it holds is spent)
    with caplog.at_level("WARNING", logger=fedavg.LOGGER.name):
        result = run_fedavg(LogisticRegression(6), clients, aggregator, test_x, test_y, FedAvgConfig(rounds=2, seed=0))
    # Assert: its first round is refused, and the stop names the 3 released rounds, not "0 rounds"
    assert len(result.rounds) == 1 and "privacy budget" in (result.rounds[0].skipped_reason or "")
    assert "privacy budget exhausted after 3 released rounds" in caplog.text


def test_dp_training_learns_on_a_separable_problem(federation: Federation) -> None:
    clients, test_x, test_y = federation
    aggregator = make_aggregator(
        "secagg", num_clients=5, dp=_config(epsilon=8.0, rounds=10, min_honest=SECURE_FLOOR), dimension=14,
        max_samples_per_client=100,
    )  # fmt: skip
    result = run_fedavg(
        LogisticRegression(6), clients, aggregator, test_x, test_y, FedAvgConfig(rounds=10, learning_rate=2.0)
    )
    assert result.final_accuracy > 0.9


# --- the server's view: never the noise-free sum ------------------------------------------


def _noise_free_sum(quantizer: DPQuantizer, updates: list[ClientUpdate], round_seed: int) -> np.ndarray:
    total = np.zeros(updates[0].vector.shape[0], dtype=np.int64)
    for update in updates:
        scaled = update.vector * quantizer.config.scale
        floor = np.floor(scaled)
        rng = client_rounding_rng(round_seed, update.client_id)
        total += (floor + (rng.random(scaled.shape[0]) < scaled - floor)).astype(np.int64)
    return total


@pytest.mark.parametrize("name", ["plain-quantized", "secagg", "secagg+"])
def test_aggregator_output_is_the_noised_sum_never_the_noise_free_one(name: str) -> None:
    aggregator = _dp_aggregator(name, dimension=2000)
    updates = _updates(d=2000)
    result = aggregator.aggregate(updates, {}, rng=RNG(5))
    assert result.mean is not None
    # Everything the aggregator returns: the mean (here the noised sum), ids, bytes, time.
    seed = DPQuantizer.round_seed(RNG(5))
    clean = _noise_free_sum(aggregator.quantizer, updates, seed)
    released = np.rint(result.mean * aggregator.quantizer.config.scale).astype(np.int64)
    noise = released - clean
    assert not np.any(np.all(released == clean))
    variance = 5 * float(aggregator.plan.variance)
    assert noise.var() == pytest.approx(variance, rel=0.15)


def test_masking_server_receives_only_noised_inputs_and_unmasks_a_noised_sum() -> None:
    aggregator = _dp_aggregator("secagg", dimension=2000)
    inner = aggregator.inner
    updates = _updates(d=2000)
    encodings = aggregator.quantizer.encode_all(updates, RNG(9))
    keys, identities = inner.session_identities(range(1, 6))  # type: ignore[attr-defined]
    config = dataclasses.replace(
        inner.masking_config(5, 2000),
        descriptor=aggregator.quantizer.descriptor(1),
        identity_keys=keys,  # type: ignore[attr-defined]
    )
    assert config.mode == "active"  # the default: signed keys and the consistency round in the transcript too
    session = run_session(
        config, {u.client_id: encodings[u.client_id] for u in updates}, {}, identities=identities,
        record_transcript=True,
    )  # fmt: skip
    clean = _noise_free_sum(aggregator.quantizer, updates, DPQuantizer.round_seed(RNG(9)))
    total = aggregator.quantizer.config.ring.sum(list(encodings.values()), 2000)
    assert np.array_equal(session.aggregate, total)  # the server's result is the sum of noised encodings
    unmasked = aggregator.quantizer.decode_integers(
        np.asarray(session.aggregate).view(np.int32).astype(np.int64)
        if aggregator.quantizer.config.ring_bits == 32
        else np.asarray(session.aggregate).view(np.int64),
        5,
    )
    noise = np.rint(unmasked * aggregator.quantizer.config.scale).astype(np.int64) - clean
    assert noise.var() == pytest.approx(5 * float(aggregator.plan.variance), rel=0.15)
    # No message the server received carries the noise-free sum (or any client's noise-free encoding).
    clean_bytes = [clean.astype(np.uint32).tobytes()[:64], clean.astype(np.uint64).tobytes()[:64]]
    for entry in session.transcript:
        assert all(chunk not in entry.data for chunk in clean_bytes)


def test_noise_variance_is_exact_fraction_bound_in_the_plan() -> None:
    plan = _dp_aggregator().plan
    assert isinstance(plan.variance, Fraction) and plan.honest == 4


def test_each_encoding_range_covers_its_own_noise_and_paillier_sums_it() -> None:
    quantizer = _dp_aggregator().quantizer
    assert quantizer.config.qmax >= 100 * quantizer.config.scale + noise_room(quantizer.plan)
    aggregator = _dp_aggregator("paillier", protocol={"insecure_small_key": True, "key_bits": 512})
    result = aggregator.aggregate(_updates(), {}, rng=RNG(3))
    assert result.mean is not None and len(result.included) == 5


def test_dp_mode_refuses_the_adaptive_clip_and_segment_tables() -> None:
    # The adaptive clip learns from clipped counts that are not noised: never in DP mode.
    with pytest.raises(ConfigurationError, match="adaptive"):
        make_aggregator("secagg", num_clients=5, dp=_config(), dimension=14, clipping="adaptive")
    aggregator = _dp_aggregator()
    table = SegmentTable((Segment("a", 7, 1.0), Segment("b", 7, 1.0)))
    with pytest.raises(ConfigurationError, match="flat range"):
        aggregator.aggregate(_updates(), {}, rng=RNG(0), segments=table)
    result = aggregator.aggregate(_updates(), {}, rng=RNG(0))
    assert result.clipping is not None and result.clipping.clipped == 0


def test_the_guarantee_states_the_refusal_residual_inside_delta() -> None:
    # The stated (epsilon, delta) is the total: delta includes (1 + e^epsilon) x 2^-64 per noised
    # coordinate encoded (rounds x hospitals x d), and the noise is calibrated at what remains.
    aggregator = _dp_aggregator()
    plan = aggregator.plan
    residual = (1 + math.exp(plan.config.epsilon)) * plan.config.rounds * 5 * 14 * 2.0**-64
    assert plan.tail_delta == pytest.approx(residual, rel=1e-9)
    text = aggregator.guarantee()
    assert f"refusal residual {residual:.2g}" in text
    assert "the noise is calibrated at delta less it" in text
