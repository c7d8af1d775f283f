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


@pytest.mark.parametrize("dtype", [np.int64, np.bool_, np.float32], ids=["int64", "bool", "float32"])
def test_a_starting_model_of_exact_other_dtypes_trains_as_its_float64_values(dtype: type) -> None:
    # Prepare: the same zeros as integers, bools or float32 (each exactly a float64), and as float64
    hospitals = [ClientData(k, *rows(30, k)) for k in range(5)]
    config = FedAvgConfig(rounds=2, seed=0)

    def run(start: list[np.ndarray]) -> list[np.ndarray]:
        return run_fedavg(
            LogisticRegression(num_features=4), hospitals, make_aggregator("plain", num_clients=5), *rows(50, 9),
            config, initial_params=start,
        ).params  # fmt: skip

    # Execute: integers and bools crashed local SGD (numpy's UFuncTypeError, writing float64 steps
    # into the caller's dtype); float32 trained its first round in float32
    given = run([np.zeros((4, 2), dtype), np.zeros(2, dtype)])
    exact = run([np.zeros((4, 2)), np.zeros(2)])
    # Assert: the starting model is taken as its exact float64 values, and trains as they do
    for mine, theirs in zip(given, exact, strict=True):
        assert mine.dtype == np.float64
        np.testing.assert_array_equal(mine, theirs)
