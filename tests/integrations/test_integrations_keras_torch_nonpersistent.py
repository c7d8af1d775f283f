"""Keras: a wrapped PyTorch module's non-persistent buffers are refused as its other buffers are.

``keras.layers.TorchModuleWrapper`` (torch backend) gives Keras the wrapped module's parameters as
weights, not its buffers, so a wrapped module with buffers is refused
(:mod:`secagg.integrations._keras_torch`). The guard read the buffers from the module's state dict,
which leaves out a buffer registered with ``persistent=False`` (a scale, a mask, a table computed
from settings): two hospitals' models that differ only in such a buffer computed different outputs
under one model digest, and ``flatten_model`` took them without a word. Every buffer is now refused,
persistent or not, naming the layer and the buffer.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

from secagg.errors import ConfigurationError  # noqa: E402
from secagg.integrations.keras import flatten_model, model_digest  # noqa: E402

if keras.backend.backend() != "torch":  # pragma: no cover - the wrapper is the torch backend's
    pytest.skip("TorchModuleWrapper needs the torch backend", allow_module_level=True)


class _Scaled(torch.nn.Linear):  # type: ignore[misc]
    """A Linear(3, 2) whose output is multiplied by a buffer that is not in its state dict."""

    def __init__(self, scale: float) -> None:
        super().__init__(3, 2)
        self.register_buffer("scale", torch.tensor(scale), persistent=False)

    def forward(self, x: Any) -> Any:
        return super().forward(x) * self.scale


def _wrapped(scale: float) -> Any:
    torch.manual_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.TorchModuleWrapper(_Scaled(scale), name="wrapped")])
    model(np.zeros((2, 3), np.float32))
    return model


@pytest.mark.parametrize("read", [flatten_model, model_digest], ids=["flatten_model", "model_digest"])
def test_a_wrapped_module_with_a_non_persistent_buffer_is_refused_naming_it(read: Any) -> None:
    """Before: flattened, and two such models with scales 1 and 5 had one digest."""
    # Prepare: a model whose wrapped module's output depends on a buffer outside its state dict
    model = _wrapped(5.0)
    # Execute / Assert
    with pytest.raises(ConfigurationError, match=r"'wrapped'.*buffers \('scale'"):
        read(model)
