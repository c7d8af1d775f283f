"""The Keras adapter's guard for PyTorch modules wrapped in a Keras model (torch backend).

``keras.layers.TorchModuleWrapper`` tracks the wrapped module's parameters as Keras weights, but
not its buffers: a wrapped ``BatchNorm1d``'s running statistics are in none of ``model.weights``.
Flattened, such a model would leave them out of the sum and out of the model digest (every
hospital keeping its own, the new global model its initial ones), so it is refused
(tests/integrations/test_integrations_keras_torch_wrapper.py).
"""

from __future__ import annotations

from typing import Any

from secagg.errors import ConfigurationError

__all__ = ["refuse_torch_buffers"]


def refuse_torch_buffers(keras: Any, model: Any) -> None:
    """ConfigurationError naming a ``TorchModuleWrapper`` layer of ``model`` whose PyTorch module has
    buffers in its state dict (a BatchNorm's running statistics), which would be summed and bound by
    nobody; nothing on a backend without the wrapper."""
    wrapper: Any = getattr(keras.layers, "TorchModuleWrapper", None)
    if wrapper is None:
        return
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if not isinstance(layer, wrapper):
            continue
        parameters = {name for name, _ in layer.module.named_parameters(remove_duplicate=False)}
        buffers = [name for name in layer.module.state_dict(keep_vars=True) if name not in parameters]
        if buffers:
            raise ConfigurationError(
                f"layer {layer.name!r} wraps a PyTorch module whose buffers ({buffers[0]!r}, ...) are not Keras "
                "weights: they would be left out of the sum and the model digest; aggregate it with "
                "secagg.integrations.torch"
            )
