"""run_fedavg: one hospital whose data the model cannot take costs only that hospital.

A hospital with another feature count than the model's, labels that are not integers, or a
label outside the model's classes used to crash the whole run with numpy's ValueError or
IndexError from inside local training. It is now left out of every round, with the reason in
the round's ``rejected``, as a hospital whose update holds NaN is; the test set, the server's
own, is checked before any training (ConfigurationError).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pytest

from fl_core import ClientData, FedAvgConfig, LogisticRegression, make_aggregator, run_fedavg
from fl_core.data import data_problem
from secagg.errors import ConfigurationError

FEATURES = 4


def rows(count: int, seed: int, width: int = FEATURES) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(count, width))
    return x, (x[:, 0] > 0).astype(np.int64)


def hospitals() -> list[ClientData]:
    return [ClientData(k, *rows(40, k)) for k in range(5)]


def bad_width() -> ClientData:
    return ClientData(1, *rows(40, 1, width=FEATURES + 1))


def float_labels() -> ClientData:
    x, y = rows(40, 1)
    return ClientData(1, x, y.astype(np.float64))


def label_out_of_range() -> ClientData:
    x, y = rows(40, 1)
    y[7] = 5
    return ClientData(1, x, y)


def negative_label() -> ClientData:
    x, y = rows(40, 1)
    y[3] = -1
    return ClientData(1, x, y)


def string_features() -> ClientData:
    x, y = rows(40, 1)
    return ClientData(1, x.astype(str), y)


@pytest.mark.parametrize(
    ("make_bad", "reason"),
    [
        (bad_width, "its features have 5 columns, the model takes 4"),
        (float_labels, "labels must be integers, got float64"),
        (label_out_of_range, "label 5 outside the model's 2 classes"),
        (negative_label, "label -1 outside the model's 2 classes"),
        (string_features, "features must be real numbers, got <U"),
    ],
    ids=["width", "float-labels", "label-too-large", "negative-label", "string-features"],
)
def test_a_hospital_the_model_cannot_take_costs_only_itself(
    make_bad: object, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare
    clients = hospitals()
    clients[1] = make_bad()  # type: ignore[operator]
    x_test, y_test = rows(100, 99)
    # Execute
    with caplog.at_level(logging.WARNING, logger="fl_core"):
        result = run_fedavg(
            LogisticRegression(num_features=FEATURES), clients, make_aggregator("secagg", num_clients=5),
            x_test, y_test, FedAvgConfig(rounds=2, local_epochs=1, learning_rate=0.1, seed=0),
        )  # fmt: skip
    # Assert: every round ran with the four others; hospital 1 is left out with its reason
    for record in result.rounds:
        assert record.skipped_reason is None
        assert record.included == (0, 2, 3, 4)
        assert [client for client, _ in record.rejected] == [1]
        assert reason in record.rejected[0][1]
    assert result.final_accuracy > 0.8


@pytest.mark.parametrize(
    ("test_set", "match"),
    [
        (lambda: rows(50, 9, width=FEATURES - 1), "test set: its features have 3 columns, the model takes 4"),
        (lambda: (rows(50, 9)[0], rows(50, 9)[1].astype(np.float64)), "test set: labels must be integers, got float64"),
        (lambda: (rows(50, 9)[0], np.full(50, 2)), "test set: label 2 outside the model's 2 classes"),
        (lambda: (rows(50, 9)[0], rows(40, 9)[1]), "test set: features \\(50, 4\\) and labels \\(40,\\)"),
    ],
    ids=["width", "float-labels", "label-out-of-range", "row-mismatch"],
)
def test_a_test_set_the_model_cannot_take_is_refused_before_training(test_set: object, match: str) -> None:
    # Prepare
    x_test, y_test = test_set()  # type: ignore[operator]
    # Execute / Assert
    with pytest.raises(ConfigurationError, match=match):
        run_fedavg(
            LogisticRegression(num_features=FEATURES), hospitals(), make_aggregator("secagg", num_clients=5),
            x_test, y_test, FedAvgConfig(rounds=1, seed=0),
        )  # fmt: skip


@pytest.mark.parametrize(
    ("features", "labels", "match"),
    [
        ([[0.0, 1.0], [1.0, 0.0]], np.zeros(2, np.int64), "hospital 3: features must be a numpy array, got list"),
        (np.zeros((2, 2)), [0, 1], "hospital 3: labels must be a numpy array, got list"),
        (np.zeros((2, 2)), None, "hospital 3: labels must be a numpy array, got NoneType"),
    ],
    ids=["features-list", "labels-list", "labels-none"],
)
def test_client_data_refuses_non_arrays_with_the_librarys_error(features: object, labels: object, match: str) -> None:
    # Execute / Assert: not an AttributeError from reading .ndim
    with pytest.raises(ConfigurationError, match=match):
        ClientData(3, features, labels)  # type: ignore[arg-type]


def test_a_hospital_left_out_is_reported_before_training_even_when_never_sampled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Prepare: six hospitals, half sampled per round; round 1 (seed 0) samples 2, 4 and 5, not
    # hospital 1, whose label -1 leaves it out of every round
    clients = [ClientData(k, *rows(40, k)) for k in range(6)]
    clients[1] = negative_label()
    # Execute
    with caplog.at_level(logging.WARNING, logger="fl_core"):
        result = run_fedavg(
            LogisticRegression(num_features=FEATURES), clients, make_aggregator("plain", num_clients=6),
            *rows(100, 99), FedAvgConfig(rounds=1, local_epochs=1, client_fraction=0.5, seed=0),
        )  # fmt: skip
    # Assert: no round names it (it was not sampled), yet the run reports it, with its reason
    assert 1 not in result.rounds[0].sampled and result.rounds[0].rejected == ()
    assert result.left_out == ((1, "label -1 outside the model's 2 classes"),)
    assert any(
        "hospital 1 is left out of every round: label -1" in message for message in caplog.messages
    ), caplog.messages


@dataclass(frozen=True)
class TwoClassModel:
    """A model of the user's own, as docs/fedavg.md's WeightedLogistic: two classes, no ``num_classes``
    field (its class count is its ``predict_proba``'s width)."""

    num_features: int

    def init(self, rng: np.random.Generator) -> list[np.ndarray]:
        return [np.zeros((self.num_features, 2)), np.zeros(2)]

    def predict_proba(self, params: list[np.ndarray], x: np.ndarray) -> np.ndarray:
        logits = x @ params[0] + params[1]
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]

    def loss_and_grad(self, params: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[float, list[np.ndarray]]:
        p = self.predict_proba(params, x)
        loss = float(-np.log(p[np.arange(len(y)), y]).mean())
        delta = (p - np.eye(2)[y]) / len(y)
        return loss, [x.T @ delta, delta.sum(axis=0)]


def test_a_label_beyond_a_user_models_classes_costs_only_its_hospital() -> None:
    # Prepare: the model says no num_classes; hospital 1 holds a label 2
    clients = hospitals()
    clients[1] = label_out_of_range()
    # Execute: the label crashed the whole run with numpy's IndexError from inside local training
    result = run_fedavg(
        TwoClassModel(num_features=FEATURES), clients, make_aggregator("secagg", num_clients=5),
        *rows(100, 99), FedAvgConfig(rounds=2, local_epochs=1, learning_rate=0.1, seed=0),
    )  # fmt: skip
    # Assert: the class count is read from the model's probabilities; hospital 1 alone is left out
    assert result.left_out == ((1, "label 5 outside the model's 2 classes"),)
    assert all(record.included == (0, 2, 3, 4) for record in result.rounds)


@pytest.mark.parametrize(
    ("labels", "hint"),
    [
        (np.array([0.0, 1.0, -0.0]), True),
        (np.array([True, False, True]), True),
        (np.array([0.0, 1.0, 1.0], dtype=np.float32), True),
        (np.array([0.0, 0.5, 1.0]), False),
        (np.array([0.0, np.nan, 1.0]), False),
        (np.array([0.0, np.inf, 1.0]), False),
        (np.array([0.0, 2.0**60, 1.0]), False),
    ],
    ids=["whole-floats", "bools", "whole-float32", "fractional", "nan", "inf", "beyond-2^53"],
)
def test_labels_of_whole_numbers_in_another_dtype_are_told_the_exact_cast(labels: np.ndarray, hint: bool) -> None:
    # Execute: a hospital whose labels are whole numbers held as floats or bools (a CSV column, a
    # boolean outcome) is still left out, but its reason now says how to give them exactly
    reason = data_problem(np.zeros((3, FEATURES)), labels, FEATURES, 2)
    # Assert
    assert reason is not None and reason.startswith(f"labels must be integers, got {labels.dtype}")
    assert ("labels.astype(np.int64)" in reason) is hint
