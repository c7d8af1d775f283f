"""run_fedavg(initial_params=...): a starting model that is not the model's (other shapes, a
missing array, a list) or holds NaN is refused before training with ConfigurationError, not a
numpy ValueError from inside local training, nor a run whose every round is skipped."""

from __future__ import annotations

import numpy as np
import pytest

from fl_core import ClientData, FedAvgConfig, LogisticRegression, make_aggregator, run_fedavg
from secagg.errors import ConfigurationError


def rows(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).normal(size=(count, 4))
    return x, (x[:, 0] > 0).astype(np.int64)


@pytest.mark.parametrize(
    ("initial", "match"),
    [
        ([np.zeros((3, 2)), np.zeros(2)], "initial_params: parameter 0 has shape \\(3, 2\\), the model's \\(4, 2\\)"),
        ([np.zeros((4, 2))], "initial_params: 1 arrays, the model has 2"),
        ([[0.0, 0.0]] * 2, "initial_params: parameter 0 must be a numpy array, got list"),
        ([np.full((4, 2), np.nan), np.zeros(2)], "initial_params: parameter 0 holds NaN or infinite values"),
    ],
    ids=["shape", "missing", "list", "nan"],
)
def test_a_starting_model_that_is_not_the_models_is_refused(initial: object, match: str) -> None:
    hospitals = [ClientData(k, *rows(30, k)) for k in range(5)]
    with pytest.raises(ConfigurationError, match=match):
        run_fedavg(
            LogisticRegression(num_features=4), hospitals, make_aggregator("secagg", num_clients=5), *rows(50, 9),
            FedAvgConfig(rounds=1, seed=0), initial_params=initial,  # type: ignore[arg-type]
        )  # fmt: skip


def test_a_float32_starting_model_of_the_right_shapes_still_trains() -> None:
    hospitals = [ClientData(k, *rows(30, k)) for k in range(5)]
    initial = [np.zeros((4, 2), np.float32), np.zeros(2, np.float32)]
    result = run_fedavg(
        LogisticRegression(num_features=4), hospitals, make_aggregator("secagg", num_clients=5), *rows(50, 9),
        FedAvgConfig(rounds=2, seed=0), initial_params=initial,
    )  # fmt: skip
    assert result.final_accuracy > 0.8
