"""The Poisson sample of a DP round is a secret of the hospitals, like their noise.

Zhu and Wang's amplification bound (secagg/dp/subsampling.py) holds only if nobody but the
hospital knows which patients a round sampled. fl_core's simulation derived every random choice
from the run's seed, the Poisson sample included, so whoever knew the seed (a command-line flag,
0 by default) knew every patient's inclusion in every round, and a sampled run's epsilon was not
met. The sample now comes from the DP noise source (the OS CSPRNG unless a test seeds it).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from fl_core import dp_training
from fl_core.aggregators import make_aggregator
from fl_core.data import ClientData
from fl_core.dp import DPAggregator
from fl_core.fedavg import FedAvgConfig, run_fedavg
from fl_core.models import LogisticRegression
from secagg.dp import DPConfig, SeededRandomSource

Federation = tuple[list[ClientData], np.ndarray, np.ndarray]
DP = DPConfig(epsilon=3.0, delta=1e-5, rounds=2, l2_clip=1.0, min_honest=3, sampling_rate=0.5)


def _samples(federation: Federation, noise_seed: bytes, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Every Poisson mask one two-round run (FedAvg seed 0) draws, concatenated."""
    clients, test_x, test_y = federation
    drawn: list[npt.NDArray[np.bool_]] = []
    original = dp_training.poisson_sample

    def record(num_rows: int, rate: float | None, rng: np.random.Generator) -> npt.NDArray[np.bool_]:
        mask = original(num_rows, rate, rng)
        drawn.append(mask)
        return mask

    monkeypatch.setattr(dp_training, "poisson_sample", record)
    aggregator = make_aggregator(
        "plain-quantized", num_clients=5, dp=DP, dimension=14, max_samples_per_client=100,
        noise_source=SeededRandomSource(noise_seed),
    )  # fmt: skip
    assert isinstance(aggregator, DPAggregator)
    model = LogisticRegression(6)
    run_fedavg(model, clients, aggregator, test_x, test_y, FedAvgConfig(rounds=2, learning_rate=0.5, seed=0))
    return [bool(v) for mask in drawn for v in mask]


def test_the_sample_does_not_follow_from_the_runs_seed(federation: Federation, monkeypatch: pytest.MonkeyPatch) -> None:
    # Same FedAvg seed, another noise source: the samples differ (equal with probability 2^-350).
    first = _samples(federation, bytes(32), monkeypatch)
    other = _samples(federation, bytes([1]) * 32, monkeypatch)
    assert len(first) == len(other) == 2 * 175
    assert first != other


def test_the_sample_is_reproducible_from_a_seeded_noise_source(
    federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _samples(federation, bytes(32), monkeypatch) == _samples(federation, bytes(32), monkeypatch)
