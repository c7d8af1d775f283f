"""FedAvg: it converges, secure runs reproduce plain-quantized runs exactly, dropouts are survived."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from fl_core import fedavg
from fl_core.aggregators import (
    AggregationResult,
    Aggregator,
    ClientUpdate,
    DropoutStage,
    WeightedQuantizer,
    make_aggregator,
)
from fl_core.aggregators.base import skipped
from fl_core.data import ClientData
from fl_core.fedavg import FedAvgConfig, FedAvgResult, run_fedavg
from fl_core.models import LogisticRegression, flatten
from secagg.errors import ConfigurationError
from secagg.primitives.randomness import InsecureDeterministicRandom

Federation = tuple[list[ClientData], np.ndarray, np.ndarray]


def train(federation: Federation, aggregation: str, config: FedAvgConfig, **options: object) -> FedAvgResult:
    clients, test_x, test_y = federation
    aggregator = (
        make_aggregator("plain")
        if aggregation == "plain"
        else make_aggregator(aggregation, num_clients=len(clients), **options)
    )
    return run_fedavg(LogisticRegression(test_x.shape[1]), clients, aggregator, test_x, test_y, config)


def test_fedavg_converges_on_separable_data(federation: Federation) -> None:
    # Execute
    result = train(federation, "plain", FedAvgConfig(rounds=10, learning_rate=0.1, seed=3))
    # Assert: the loss falls and the model classifies well.
    assert result.initial_accuracy < 0.8
    assert result.rounds[-1].loss < 0.6 * result.initial_loss
    assert result.final_accuracy > 0.9
    assert [r.round for r in result.rounds] == list(range(1, 11))


class SkipsLike:
    """Wraps an aggregator and skips the rounds (1-based calls) a secure run skipped,
    so that a plain reference follows the same trajectory."""

    name = "skips-like"

    def __init__(self, inner: Aggregator, skip: set[int]) -> None:
        self.inner, self.skip, self.calls = inner, skip, 0

    def aggregate(
        self,
        updates: Sequence[ClientUpdate],
        dropouts: Mapping[int, DropoutStage] | None = None,
        *,
        rng: np.random.Generator,
        model_digest: bytes | None = None,
    ) -> AggregationResult:
        self.calls += 1
        if self.calls in self.skip:
            return skipped("skipped by the secure run", 0.0, 0.0)
        return self.inner.aggregate(updates, dropouts, rng=rng, model_digest=model_digest)


@pytest.mark.parametrize(("name", "options"), [("secagg", {}), ("secagg+", {"dropout_fraction": 0.25})])
def test_secure_fedavg_reproduces_plain_quantized_fedavg_exactly(
    federation: Federation, name: str, options: dict[str, float]
) -> None:
    # Prepare: same seed, hence the same sampling, dropouts, minibatches and rounding.
    clients, test_x, test_y = federation
    config = FedAvgConfig(rounds=8, learning_rate=0.1, dropout=0.15, client_fraction=0.8, seed=11)
    model = LogisticRegression(test_x.shape[1])
    # Execute: the secure run, then plain-quantized skipping the rounds the protocol could not finish.
    secure = make_aggregator(name, num_clients=5, random_bytes=InsecureDeterministicRandom(7), **options)
    result = run_fedavg(model, clients, secure, test_x, test_y, config)
    skip = {r.round for r in result.rounds if r.skipped_reason is not None}
    plain = SkipsLike(make_aggregator("plain-quantized", num_clients=5), skip)
    reference = run_fedavg(model, clients, plain, test_x, test_y, config)
    # Assert: the crypto changes nothing, bit for bit, round after round, with dropouts in play.
    for ours, theirs in zip(result.params, reference.params, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    for record, expected in zip(result.rounds, reference.rounds, strict=True):
        assert (record.included, record.loss) == (expected.included, expected.loss)
    assert any(r.skipped_reason is None and len(r.included) < len(r.sampled) for r in result.rounds)


def test_secure_fedavg_matches_float_fedavg_within_quantization_error(federation: Federation) -> None:
    # Prepare: one round isolates the aggregation (same local training for both).
    quantizer = WeightedQuantizer.create(5)
    one_round = FedAvgConfig(rounds=1, learning_rate=0.1, seed=5)
    # Execute
    float_run = train(federation, "plain", one_round)
    secure_run = train(federation, "secagg+", one_round)
    many_float = train(federation, "plain", FedAvgConfig(rounds=10, learning_rate=0.1, seed=5))
    many_secure = train(federation, "secagg+", FedAvgConfig(rounds=10, learning_rate=0.1, seed=5))
    # Assert: one round differs by less than one quantization step per coordinate (the
    # updates stay inside the clip range); ten rounds stay within a few steps and agree
    # on the test set.
    one_error = np.abs(flatten(secure_run.params) - flatten(float_run.params)).max()
    assert 0 < one_error < quantizer.config.step
    many_error = np.abs(flatten(many_secure.params) - flatten(many_float.params)).max()
    assert many_error < 20 * quantizer.config.step
    assert abs(many_secure.final_accuracy - many_float.final_accuracy) <= 0.01


class AlwaysSkips:
    """An aggregator whose protocol never completes."""

    name = "always-skips"

    def aggregate(
        self,
        updates: Sequence[ClientUpdate],
        dropouts: Mapping[int, DropoutStage] | None = None,
        *,
        rng: np.random.Generator,
        model_digest: bytes | None = None,
    ) -> AggregationResult:
        return skipped("only 1 client remains, fewer than 3", 0.0, 0.0)


def test_a_skipped_round_keeps_the_model_and_logs_why(federation: Federation, caplog: pytest.LogCaptureFixture) -> None:
    # Prepare
    clients, test_x, test_y = federation
    model = LogisticRegression(test_x.shape[1])
    start = [np.full((test_x.shape[1], 2), 0.3), np.array([0.1, -0.1])]
    # Execute
    with caplog.at_level(logging.WARNING, logger="fl_core.fedavg"):
        result = run_fedavg(model, clients, AlwaysSkips(), test_x, test_y, FedAvgConfig(rounds=3), initial_params=start)
    # Assert: parameters untouched, every round recorded as skipped, the reason logged.
    for ours, initial in zip(result.params, start, strict=True):
        np.testing.assert_array_equal(ours, initial)
    assert all(r.skipped_reason == "only 1 client remains, fewer than 3" for r in result.rounds)
    assert all(r.loss == result.initial_loss for r in result.rounds)
    assert "round 2 skipped, model unchanged: only 1 client remains" in caplog.text


def test_dropouts_skip_some_rounds_and_training_still_converges(federation: Federation) -> None:
    # Prepare: a high dropout rate, so that some rounds fall below the threshold.
    config = FedAvgConfig(rounds=15, learning_rate=0.1, dropout=0.35, seed=2)
    # Execute
    result = train(federation, "secagg", config, random_bytes=InsecureDeterministicRandom(3))
    # Assert
    skipped_rounds = [r for r in result.rounds if r.skipped_reason is not None]
    completed = [r for r in result.rounds if r.skipped_reason is None]
    assert skipped_rounds and completed
    assert any(len(r.included) < len(r.sampled) for r in completed)  # a round completed with survivors
    by_round = {r.round: r for r in result.rounds}
    for r in skipped_rounds:
        before = by_round.get(r.round - 1)
        previous_loss = result.initial_loss if before is None else before.loss
        assert r.loss == previous_loss and r.included == ()
    assert result.final_accuracy > 0.9


def test_client_sampling_and_dropouts_are_reproducible(federation: Federation) -> None:
    config = FedAvgConfig(rounds=4, client_fraction=0.6, dropout=0.3, seed=9)
    first = train(federation, "plain", config)
    second = train(federation, "plain", config)
    assert [r.sampled for r in first.rounds] == [r.sampled for r in second.rounds]
    assert [r.dropouts for r in first.rounds] == [r.dropouts for r in second.rounds]
    assert all(len(r.sampled) == 3 for r in first.rounds)
    assert len({r.sampled for r in first.rounds}) > 1


def test_training_stops_early_when_the_loss_settles(federation: Federation) -> None:
    result = train(federation, "plain", FedAvgConfig(rounds=200, learning_rate=0.1, tolerance=1e-3, patience=2))
    assert result.converged
    assert len(result.rounds) < 200


def test_fedavg_config_is_validated() -> None:
    with pytest.raises(ConfigurationError, match="client_fraction"):
        FedAvgConfig(client_fraction=0.0)
    with pytest.raises(ConfigurationError, match="dropout"):
        FedAvgConfig(dropout=1.0)
    with pytest.raises(ConfigurationError, match="at least 1"):
        FedAvgConfig(rounds=0)


class FixedMean:
    """An aggregator that records what it was given and returns a fixed mean."""

    name = "fixed-mean"

    def __init__(self, mean: np.ndarray) -> None:
        self.mean = mean
        self.seen: list[list[ClientUpdate]] = []

    def aggregate(
        self,
        updates: Sequence[ClientUpdate],
        dropouts: Mapping[int, DropoutStage] | None = None,
        *,
        rng: np.random.Generator,
        model_digest: bytes | None = None,
    ) -> AggregationResult:
        self.seen.append(list(updates))
        ids = frozenset(u.client_id for u in updates)
        return AggregationResult(mean=self.mean, included=ids, bytes_per_client=1.0, seconds=0.0)


def test_the_server_adds_the_aggregated_mean_to_the_model(federation: Federation) -> None:
    # Prepare: an aggregator whose mean we know; a start that is not zero.
    clients, test_x, test_y = federation
    model = LogisticRegression(test_x.shape[1])
    start = [np.full((test_x.shape[1], 2), 0.2), np.array([0.1, -0.1])]
    mean = np.linspace(-1.0, 1.0, flatten(start).size)
    aggregator = FixedMean(mean)
    # Execute
    result = run_fedavg(model, clients, aggregator, test_x, test_y, FedAvgConfig(rounds=1), initial_params=start)
    # Assert: w <- w + mean, and every client sent its sample count and a local-minus-global update.
    np.testing.assert_allclose(flatten(result.params), flatten(start) + mean, rtol=0, atol=1e-15)
    sent = aggregator.seen[0]
    assert [u.num_samples for u in sent] == [c.num_samples for c in clients]
    assert all(np.any(u.vector != 0) for u in sent)


@pytest.mark.parametrize("aggregation", ["plain", "secagg"])
def test_a_hospital_whose_update_is_not_finite_is_dropped_with_a_reason(
    federation: Federation, aggregation: str
) -> None:
    # Setup: hospital 2's data holds an infinite value, so its local update is NaN.
    clients, test_x, test_y = federation
    features = clients[2].features.copy()
    features[0, 0] = np.inf
    broken = [*clients[:2], ClientData(clients[2].client_id, features, clients[2].labels), *clients[3:]]
    options = {} if aggregation == "plain" else {"random_bytes": InsecureDeterministicRandom(b"nan")}
    # Execute: the run goes on without it (it does not crash).
    result = train((broken, test_x, test_y), aggregation, FedAvgConfig(rounds=2, learning_rate=0.1), **options)
    # Assert: every round ran with the others; the record names it and says why.
    others = tuple(c.client_id for c in clients if c.client_id != clients[2].client_id)
    for record in result.rounds:
        assert record.skipped_reason is None
        assert record.included == others
        assert (clients[2].client_id, "UPLOAD") in record.dropouts
        assert record.rejected == ((clients[2].client_id, "update contains NaN or infinite values"),)
    assert np.isfinite(result.rounds[-1].loss)


def test_a_hospital_whose_update_has_the_wrong_length_is_dropped_with_a_reason(
    federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Setup: hospital 1's training (a faulty model or integration) returns one coordinate too few.
    clients, _, _ = federation
    real = fedavg._local_update

    def short_for_one(*args: object) -> np.ndarray:
        update: np.ndarray = real(*args)  # type: ignore[arg-type]
        return update[:-1] if args[2] is clients[1] else update

    monkeypatch.setattr(fedavg, "_local_update", short_for_one)
    # Execute
    result = train(federation, "plain", FedAvgConfig(rounds=2, learning_rate=0.1))
    # Assert: the round goes on without it; the record says why.
    for record in result.rounds:
        assert record.skipped_reason is None and clients[1].client_id not in record.included
        assert record.rejected == ((clients[1].client_id, "update has length 13, expected 14"),)


@pytest.mark.parametrize(
    "options",
    [{"seed": -1}, {"seed": 1.5}, {"rounds": 2.5}, {"rounds": True}, {"local_epochs": 1.5}, {"batch_size": 0.5}],
)
def test_fedavg_config_refuses_a_seed_or_count_that_is_not_a_whole_number_in_range(options: dict[str, object]) -> None:
    # A negative seed used to reach numpy (ValueError) and a fractional count range() (TypeError), mid-run.
    with pytest.raises(ConfigurationError):
        FedAvgConfig(**options)  # type: ignore[arg-type]
