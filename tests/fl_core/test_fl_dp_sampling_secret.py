"""The Poisson sample of a DP round is a secret of the hospitals, like their noise.

Zhu and Wang's amplification bound (secagg/dp/subsampling.py) holds only if nobody but the
hospital knows which patients a round sampled. fl_core's simulation derived every random choice
from the run's seed, the Poisson sample included, so whoever knew the seed (a command-line flag,
0 by default) knew every patient's inclusion in every round, and a sampled run's epsilon was not
met. The sample now comes from the DP noise source (the OS CSPRNG unless a test seeds it), read
directly by ``secagg.dp.poisson_mask`` (no numpy Generator in between: PCG64 is not a CSPRNG).
"""

from __future__ import annotations

import numpy as np
import pytest

from fl_core import dp_training
from fl_core.aggregators import make_aggregator
from fl_core.data import ClientData
from fl_core.dp import DPAggregator
from fl_core.fedavg import FedAvgConfig, run_fedavg
from fl_core.models import LogisticRegression
from secagg.dp import DPConfig, SeededRandomSource, poisson_mask
from secagg.errors import ConfigurationError
from tests.dp.poisson_recorder import record_poisson_masks

Federation = tuple[list[ClientData], np.ndarray, np.ndarray]
DP = DPConfig(epsilon=3.0, delta=1e-5, rounds=2, l2_clip=1.0, min_honest=3, sampling_rate=0.5)


def _samples(
    federation: Federation, noise_seed: bytes, monkeypatch: pytest.MonkeyPatch, seed: int = 0
) -> tuple[list[bool], list[object], DPAggregator]:
    """Every Poisson mask one two-round run (FedAvg ``seed``) draws, concatenated; the sources they
    were drawn from; the aggregator."""
    clients, test_x, test_y = federation
    drawn, sources = record_poisson_masks(monkeypatch, dp_training)
    aggregator = make_aggregator(
        "plain-quantized", num_clients=5, dp=DP, dimension=14, max_samples_per_client=100,
        noise_source=SeededRandomSource(noise_seed),
    )  # fmt: skip
    assert isinstance(aggregator, DPAggregator)
    model = LogisticRegression(6)
    run_fedavg(model, clients, aggregator, test_x, test_y, FedAvgConfig(rounds=2, learning_rate=0.5, seed=seed))
    return [bool(v) for mask in drawn for v in mask], sources, aggregator


def test_the_sample_does_not_follow_from_the_runs_seed(federation: Federation, monkeypatch: pytest.MonkeyPatch) -> None:
    # Same FedAvg seed, another noise source: the samples differ (equal with probability 2^-350).
    first = _samples(federation, bytes(32), monkeypatch)[0]
    other = _samples(federation, bytes([1]) * 32, monkeypatch)[0]
    assert len(first) == len(other) == 2 * 175
    assert first != other


def test_the_sample_is_read_from_the_dp_noise_source_itself(
    federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not a numpy Generator seeded from it (PCG64 is no CSPRNG): the source's own bytes.
    _, sources, aggregator = _samples(federation, bytes(32), monkeypatch)
    assert sources and all(source is aggregator.quantizer.noise_source for source in sources)


def test_another_run_seed_leaves_the_sample_as_the_noise_source_draws_it(
    federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _samples(federation, bytes(32), monkeypatch)[0] == _samples(federation, bytes(32), monkeypatch, seed=7)[0]


def test_the_sample_is_reproducible_from_a_seeded_noise_source(
    federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _samples(federation, bytes(32), monkeypatch)[0] == _samples(federation, bytes(32), monkeypatch)[0]


def _contribution(federation: Federation, source: object) -> np.ndarray:
    clients, _, _ = federation
    model = LogisticRegression(6)
    params = model.init(np.random.default_rng(0))
    return dp_training.dp_contribution(model, params, clients[0], DP, source)  # type: ignore[arg-type]


def test_a_contribution_sums_the_rows_its_source_samples(federation: Federation) -> None:
    clients, _, _ = federation
    model = LogisticRegression(6)
    params = model.init(np.random.default_rng(0))
    mask = poisson_mask(clients[0].num_samples, DP.sampling_rate, SeededRandomSource(bytes(32)))
    rows = clients[0].features[mask], clients[0].labels[mask]
    expected = np.concatenate([p.ravel() for p in model.clipped_gradient_sum(params, *rows, DP.l2_clip)])
    seeded = _contribution(federation, SeededRandomSource(bytes(32)))
    np.testing.assert_array_equal(seeded, expected)
    np.testing.assert_array_equal(seeded, _contribution(federation, SeededRandomSource(bytes(32))))
    assert not np.array_equal(seeded, _contribution(federation, SeededRandomSource(bytes([1]) * 32)))


def test_a_contribution_refuses_a_numpy_generator_for_its_sample(federation: Federation) -> None:
    with pytest.raises(ConfigurationError, match="random_bytes"):
        _contribution(federation, np.random.default_rng(0))


@pytest.mark.parametrize("source", [np.random.default_rng(0), np.random.RandomState(0), 7])
def test_a_dp_aggregator_refuses_a_noise_source_that_is_no_random_source_when_built(source: object) -> None:
    # The noise and every Poisson sample are drawn from it: a numpy Generator (predictable, and the
    # sample would follow from its seed) or an object without random_bytes is refused at setup,
    # not at the first round
    with pytest.raises(ConfigurationError, match="random_bytes"):
        make_aggregator(
            "plain-quantized", num_clients=5, dp=DP, dimension=14, max_samples_per_client=100,
            noise_source=source,  # type: ignore[arg-type]
        )  # fmt: skip
