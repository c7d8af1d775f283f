"""A hospital whose local model raises a foreign exception costs only itself.

The PyTorch and Keras adapters flatten every hospital's local model (and the copy it trained
from) on the aggregating party. A model object that raises something other than a library error
while it is read (a torch module whose ``state_dict`` or ``named_parameters`` raises ``RuntimeError``, a state dict
whose lookup raises ``TypeError``, a Keras layer whose weights raise ``ValueError``) is that
hospital's fault: it is withheld with a reason naming the exception's type (its text stays on the
aggregating party's DEBUG log: tests/integrations/test_integrations_adapter_foreign_text.py), and the
others' aggregate is, bit for bit, the round without its upload. The global model is the
caller's own object: its failure still raises. ``KeyboardInterrupt``, ``SystemExit`` and
``MemoryError`` are never turned into a withheld hospital.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported
keras = pytest.importorskip("keras")

from fl_core.aggregators import make_aggregator  # noqa: E402
from fl_core.aggregators.base import DropoutStage  # noqa: E402
from secagg.integrations import keras as keras_adapter  # noqa: E402
from secagg.integrations import torch as torch_adapter  # noqa: E402

HOSPITALS = 3


class _Net(torch.nn.Module):  # type: ignore[misc]
    def __init__(self, shift: float = 0.0) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.full((2, 3), shift))
        self.b = torch.nn.Parameter(torch.full((3,), -shift))


class _BrokenNet(_Net):
    """A module whose parameters cannot be read (a hospital's broken model class)."""

    def named_parameters(self, *args: Any, **kwargs: Any) -> Iterator[tuple[str, Any]]:
        raise RuntimeError("CUDA error: device-side assert triggered")

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:  # how the adapters read a module's buffers too
        raise RuntimeError("CUDA error: device-side assert triggered")


class _BrokenStateDict(Mapping[str, Any]):
    """A state dict whose lookup raises (a lazily loaded checkpoint that fails)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def __getitem__(self, name: str) -> Any:
        raise TypeError(f"cannot load {name!r}: unsupported storage")

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


class _Stop(_Net):
    """A module whose parameter access raises ``error`` (not to be withheld)."""

    error: BaseException = KeyboardInterrupt()

    def named_parameters(self, *args: Any, **kwargs: Any) -> Iterator[tuple[str, Any]]:
        raise self.error

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


def _torch_locals() -> list[Any]:
    return [_Net((k + 1) / 8) for k in range(HOSPITALS)]


def _torch_round(locals_: list[Any], **kwargs: Any) -> Any:
    return torch_adapter.aggregate_models(
        _Net(), locals_, make_aggregator("secagg", num_clients=HOSPITALS), num_samples=[1] * HOSPITALS,
        rng=np.random.default_rng(0), **kwargs,
    )  # fmt: skip


def _assert_torch_withheld_alone(outcome: Any, kind: str) -> None:
    without = _torch_round(_torch_locals(), dropouts={1: DropoutStage.UPLOAD})
    assert [client for client, _ in outcome.result.withheld] == [1]
    reason = outcome.result.withheld[0][1]
    assert reason.startswith("its model cannot be summed") and kind in reason
    assert outcome.result.included == frozenset({0, 2}) == without.result.included
    assert outcome.state_dict is not None and without.state_dict is not None
    got, expected = (torch_adapter.flatten_state_dict(o.state_dict)[0] for o in (outcome, without))
    assert got.tobytes() == expected.tobytes()


@pytest.mark.parametrize(
    ("broken", "kind"),
    [
        (lambda: _BrokenNet(0.25), "raised RuntimeError (its message is not reported)"),
        (lambda: _BrokenStateDict(["a", "b"]), "raised TypeError (its message is not reported)"),
    ],
)
def test_a_torch_model_raising_a_foreign_error_is_withheld_and_the_others_are_exact(broken: Any, kind: str) -> None:
    # Prepare: hospital 1's model raises a non-library exception when read
    # (before: that exception ended the round for everyone)
    locals_ = _torch_locals()
    locals_[1] = broken()
    # Execute
    outcome = _torch_round(locals_)
    # Assert
    _assert_torch_withheld_alone(outcome, kind)


def test_a_trained_from_copy_raising_a_foreign_error_withholds_only_that_hospital() -> None:
    # Prepare: hospital 1's model is fine, the copy it names raises
    # Execute
    outcome = _torch_round(_torch_locals(), trained_from={1: _BrokenNet()})
    # Assert
    _assert_torch_withheld_alone(outcome, "raised RuntimeError (its message is not reported)")


def test_a_round_left_too_small_by_foreign_errors_is_skipped_with_the_reasons() -> None:
    # Prepare: two of three hospitals' models raise; secagg needs more than one contributor
    locals_ = [_BrokenNet(), _Net(0.5), _BrokenStateDict(["a", "b"])]
    # Execute
    outcome = _torch_round(locals_)
    # Assert
    assert outcome.state_dict is None and [client for client, _ in outcome.result.withheld] == [0, 2]
    assert outcome.result.skipped_reason is not None
    assert "raised RuntimeError (its message is not reported)" in outcome.result.skipped_reason


def test_a_global_model_raising_a_foreign_error_still_raises_for_everyone() -> None:
    # Prepare: the caller's own global model is broken
    # Execute / Assert
    with pytest.raises(RuntimeError, match="CUDA error"):
        torch_adapter.aggregate_models(
            _BrokenNet(), _torch_locals(), make_aggregator("plain"), num_samples=[1] * HOSPITALS,
            rng=np.random.default_rng(0),
        )  # fmt: skip


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(3), MemoryError("out of memory")])
def test_an_interrupt_or_memory_error_in_a_hospital_model_is_not_withheld(error: BaseException) -> None:
    # Prepare: reading hospital 1's model is interrupted, or memory runs out
    stop = _Stop()
    stop.error = error
    locals_ = _torch_locals()
    locals_[1] = stop
    # Execute / Assert: it propagates, never a withheld hospital
    with pytest.raises(type(error)):
        _torch_round(locals_)


class _BrokenLayer(keras.layers.Layer):  # type: ignore[misc]
    """A Keras layer whose weights cannot be read."""

    @property
    def weights(self) -> list[Any]:
        raise ValueError("weights are not built on this device")


def _keras_locals() -> list[Any]:
    return [[np.full((2, 3), (k + 1) / 8, np.float32), np.full(3, -(k + 1) / 8, np.float32)] for k in range(HOSPITALS)]


def _keras_round(locals_: list[Any], **kwargs: Any) -> Any:
    global_weights = [np.zeros((2, 3), np.float32), np.zeros(3, np.float32)]
    return keras_adapter.aggregate_models(
        global_weights, locals_, make_aggregator("secagg", num_clients=HOSPITALS), num_samples=[1] * HOSPITALS,
        rng=np.random.default_rng(0), **kwargs,
    )  # fmt: skip


def test_a_keras_model_raising_a_foreign_error_is_withheld_and_the_others_are_exact() -> None:
    # Prepare: hospital 1's Keras layer raises ValueError when its weights are read
    # (before: that ValueError ended the round for everyone)
    locals_ = _keras_locals()
    locals_[1] = _BrokenLayer()
    # Execute
    outcome = _keras_round(locals_)
    without = _keras_round(_keras_locals(), dropouts={1: DropoutStage.UPLOAD})
    # Assert
    assert [client for client, _ in outcome.result.withheld] == [1]
    assert "raised ValueError (its message is not reported)" in outcome.result.withheld[0][1]
    assert outcome.weights is not None and without.weights is not None
    got, expected = (keras_adapter.flatten_weights(o.weights)[0] for o in (outcome, without))
    assert got.tobytes() == expected.tobytes()


class _UnprintableError(Exception):
    """A foreign exception whose message itself cannot be read."""

    def __str__(self) -> str:
        raise RuntimeError("no message")


class _UnprintableNet(_Net):
    def named_parameters(self, *args: Any, **kwargs: Any) -> Iterator[tuple[str, Any]]:
        raise _UnprintableError()

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        raise _UnprintableError()


def test_a_foreign_error_whose_message_raises_still_withholds_only_its_hospital() -> None:
    # Prepare: hospital 1's model raises an exception whose str() raises
    # (before: reading that message raised RuntimeError out of the round, ending it for everyone)
    locals_ = _torch_locals()
    locals_[1] = _UnprintableNet(0.25)
    # Execute
    outcome = _torch_round(locals_)
    # Assert
    _assert_torch_withheld_alone(outcome, "raised _UnprintableError (its message is not reported)")
