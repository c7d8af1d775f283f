"""Keras: a wrapped PyTorch module whose buffers are not Keras weights is refused, not half-averaged.

``keras.layers.TorchModuleWrapper`` (torch backend) tracks the wrapped module's parameters as Keras
weights, but not its buffers: a wrapped ``BatchNorm1d``'s running statistics are in none of
``model.weights``, so ``aggregate_models`` averaged its scale and shift, left every hospital's
running statistics out of the sum and out of the model digest, and the new global model kept its
own (mean 0, variance 1) and computed with them. Such a model is now refused with a
ConfigurationError naming the layer and the PyTorch adapter; a wrapped module without buffers is
flattened as before.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

from fl_core.aggregators import make_aggregator  # noqa: E402
from secagg.errors import ConfigurationError  # noqa: E402
from secagg.integrations.keras import aggregate_models, flatten_model, model_digest  # noqa: E402

if keras.backend.backend() != "torch":  # pragma: no cover - the wrapper is the torch backend's
    pytest.skip("TorchModuleWrapper needs the torch backend", allow_module_level=True)


def _wrapped(module: Any) -> Any:
    model = keras.Sequential([keras.Input((3,)), keras.layers.TorchModuleWrapper(module, name="wrapped")])
    model(np.zeros((2, 3), np.float32))
    return model


def test_a_wrapped_module_with_buffers_is_refused_naming_the_layer() -> None:
    model = _wrapped(torch.nn.BatchNorm1d(3))
    for call in (lambda: flatten_model(model), lambda: model_digest(model)):
        with pytest.raises(ConfigurationError, match=r"'wrapped'.*running_mean.*secagg\.integrations\.torch"):
            call()
    with pytest.raises(ConfigurationError, match="'wrapped'"):
        aggregate_models(
            model, [_wrapped(torch.nn.BatchNorm1d(3)) for _ in range(3)], make_aggregator("plain"),
            num_samples=[1, 1, 1], rng=np.random.default_rng(0),
        )  # fmt: skip


def test_a_wrapped_module_without_buffers_is_flattened() -> None:
    # The control: a wrapped Linear has parameters only, all of them Keras weights
    vector, layout = flatten_model(_wrapped(torch.nn.Linear(3, 2)))
    assert vector.shape == (8,) and len(layout.specs) == 2


class _WithExtraState(torch.nn.Linear):  # type: ignore[misc]
    """A module with parameters only, and extra state in its state dict (a version, a tokenizer)."""

    def get_extra_state(self) -> Any:
        return {"version": 2}

    def set_extra_state(self, state: Any) -> None:
        pass


def test_a_wrapped_module_with_extra_state_is_refused_naming_extra_state_not_buffers() -> None:
    """The module has no buffers: its state dict's '_extra_state' entry is what Keras does not track.
    Before: refused saying "whose buffers ('_extra_state', ...) are not Keras weights"."""
    model = _wrapped(_WithExtraState(3, 2))
    for call in (lambda: flatten_model(model), lambda: model_digest(model)):
        with pytest.raises(ConfigurationError, match=r"'wrapped'.*extra state.*get_extra_state") as refused:
            call()
        assert "buffer" not in str(refused.value)
