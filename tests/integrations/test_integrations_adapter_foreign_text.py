"""PyTorch and Keras ``aggregate_models``: a foreign exception's text stays out of the round's report.

A hospital whose model raises a foreign (non-library) exception while it is read is withheld
(tests/integrations/test_integrations_adapter_foreign_faults.py). The round's report
(``result.withheld``, ``result.skipped_reason``, the discovery round's) goes to the server and the
coordinator, and a foreign exception's text (torch's, Keras', a checkpoint loader's) can carry the
hospital's tensor shapes and values: the reason names the exception's type only, and the full
text is logged at DEBUG on the party that read the model (the adapter's logger), as
``run_dp_round`` does (tests/integrations/test_integrations_torch_dp_faults.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported
keras = pytest.importorskip("keras")

from fl_core.aggregators import make_aggregator  # noqa: E402
from secagg.integrations import keras as keras_adapter  # noqa: E402
from secagg.integrations import torch as torch_adapter  # noqa: E402

SECRET = "patient 4711 glucose=183.2"
HOSPITALS = 3
NOT_REPORTED = "(its message is not reported)"


class _Net(torch.nn.Module):  # type: ignore[misc]
    def __init__(self, shift: float = 0.0) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.full((2, 3), shift))
        self.b = torch.nn.Parameter(torch.full((3,), -shift))


class _LeakyNet(_Net):
    """A module whose reading raises with a patient's value in the message."""

    def named_parameters(self, *args: Any, **kwargs: Any) -> Iterator[tuple[str, Any]]:
        raise RuntimeError(f"checkpoint row for {SECRET} has shape (20x5)")

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"checkpoint row for {SECRET} has shape (20x5)")


class _LeakyStateDict(Mapping[str, Any]):
    """A state dict whose lookup raises naming a patient's value."""

    def __iter__(self) -> Iterator[str]:
        return iter(["a", "b"])

    def __len__(self) -> int:
        return 2

    def __getitem__(self, name: str) -> Any:
        raise KeyError(f"{name}: {SECRET}")


def _report(outcome: Any) -> str:
    """Everything of the outcome that leaves the aggregating party."""
    parts = [repr(outcome), repr(outcome.result.withheld), str(outcome.result.skipped_reason)]
    if outcome.discovery is not None:
        parts += [repr(outcome.discovery.withheld), str(outcome.discovery.skipped_reason)]
    return " ".join(parts)


def _assert_secret_absent(text: str) -> None:
    assert "4711" not in text and "183.2" not in text and "glucose" not in text and "20x5" not in text


def _torch_round(locals_: list[Any], **kwargs: Any) -> Any:
    return torch_adapter.aggregate_models(
        _Net(), locals_, make_aggregator("secagg", num_clients=HOSPITALS), num_samples=[1] * HOSPITALS,
        rng=np.random.default_rng(0), **kwargs,
    )  # fmt: skip


@pytest.mark.parametrize(("broken", "kind"), [(_LeakyNet, "RuntimeError"), (_LeakyStateDict, "KeyError")])
def test_a_torch_model_s_foreign_text_stays_out_of_the_report(
    broken: Any, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: hospital 1's model raises with a patient's value in its message
    # (before: "its model cannot be summed: reading it raised RuntimeError: checkpoint row for patient 4711 ...")
    locals_: list[Any] = [_Net((k + 1) / 8) for k in range(HOSPITALS)]
    locals_[1] = broken()
    # Execute
    with caplog.at_level(logging.DEBUG, logger="secagg.integrations.torch"):
        outcome = _torch_round(locals_)
    # Assert: withheld alone, the type named, the text only in the adapter's DEBUG log
    ((client, reason),) = outcome.result.withheld
    assert client == 1 and outcome.result.included == {0, 2}
    assert reason == f"its model cannot be summed: reading it raised {kind} {NOT_REPORTED}"
    _assert_secret_absent(_report(outcome))
    assert SECRET in caplog.text and "hospital 1" in caplog.text


def test_a_trained_from_copy_s_foreign_text_stays_out_of_the_report() -> None:
    # Prepare: hospital 2's model is fine, the copy it names raises with a patient's value
    locals_ = [_Net((k + 1) / 8) for k in range(HOSPITALS)]
    # Execute
    outcome = _torch_round(locals_, trained_from={2: _LeakyNet()})
    # Assert
    ((client, reason),) = outcome.result.withheld
    assert client == 2 and f"RuntimeError {NOT_REPORTED}" in reason
    _assert_secret_absent(_report(outcome))


def test_a_round_skipped_for_foreign_errors_reports_no_foreign_text() -> None:
    # Prepare: two of three hospitals' models raise; secagg needs more than one contributor
    # Execute
    outcome = _torch_round([_LeakyNet(), _Net(0.5), _LeakyStateDict()])
    # Assert: the skip's reason names the withheld hospitals, in the library's words only
    assert outcome.state_dict is None and outcome.result.skipped_reason is not None
    assert [client for client, _ in outcome.result.withheld] == [0, 2]
    assert NOT_REPORTED in outcome.result.skipped_reason
    _assert_secret_absent(_report(outcome))


class _LeakyLayer(keras.layers.Layer):  # type: ignore[misc]
    """A Keras layer whose weights raise with a patient's value in the message."""

    @property
    def weights(self) -> list[Any]:
        raise ValueError(f"variable restored from {SECRET} has shape (20x5)")


def test_a_keras_model_s_foreign_text_stays_out_of_the_report(caplog: pytest.LogCaptureFixture) -> None:
    # Prepare: hospital 0's Keras layer raises with a patient's value in its message
    # (before: "its model cannot be summed: reading it raised ValueError: variable restored from patient 4711 ...")
    global_weights = [np.zeros((2, 3), np.float32), np.zeros(3, np.float32)]
    locals_: list[Any] = [[np.full((2, 3), k / 8, np.float32), np.full(3, -k / 8, np.float32)] for k in range(3)]
    locals_[0] = _LeakyLayer()
    # Execute
    with caplog.at_level(logging.DEBUG, logger="secagg.integrations.keras"):
        outcome = keras_adapter.aggregate_models(
            global_weights, locals_, make_aggregator("secagg", num_clients=HOSPITALS), num_samples=[1] * HOSPITALS,
            rng=np.random.default_rng(0),
        )  # fmt: skip
    # Assert
    ((client, reason),) = outcome.result.withheld
    assert client == 0 and outcome.result.included == {1, 2}
    assert reason == f"its model cannot be summed: reading it raised ValueError {NOT_REPORTED}"
    _assert_secret_absent(_report(outcome))
    assert SECRET in caplog.text and "hospital 0" in caplog.text


class _UnprintableError(Exception):
    """A foreign exception whose message itself cannot be read."""

    def __str__(self) -> str:
        raise RuntimeError(SECRET)


class _UnprintableNet(_Net):
    def named_parameters(self, *args: Any, **kwargs: Any) -> Iterator[tuple[str, Any]]:
        raise _UnprintableError()

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        raise _UnprintableError()


def test_an_unreadable_foreign_message_is_named_by_its_type_with_debug_logging_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Prepare: hospital 1's exception's str() raises; its DEBUG log line is formatted
    # (before: "reading it raised _UnprintableError: (its message cannot be read)")
    locals_: list[Any] = [_Net((k + 1) / 8) for k in range(HOSPITALS)]
    locals_[1] = _UnprintableNet()
    # Execute
    with caplog.at_level(logging.DEBUG, logger="secagg.integrations.torch"):
        outcome = _torch_round(locals_)
    # Assert: withheld alone by its type; the log line was written without ending the round
    ((client, reason),) = outcome.result.withheld
    assert client == 1 and outcome.result.included == {0, 2}
    assert reason == f"its model cannot be summed: reading it raised _UnprintableError {NOT_REPORTED}"
    _assert_secret_absent(_report(outcome))
    assert "hospital 1: reading it raised _UnprintableError" in caplog.text
