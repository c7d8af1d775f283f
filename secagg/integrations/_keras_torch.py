"""The Keras adapter's guard for PyTorch modules wrapped in a Keras model (torch backend).

``keras.layers.TorchModuleWrapper`` tracks the wrapped module's parameters as Keras weights, but
nothing else: not its buffers (a wrapped ``BatchNorm1d``'s running statistics are in none of
``model.weights``; nor a buffer registered with ``persistent=False``, which is not even in the module's
state dict), and not its extra state (what a module's ``get_extra_state`` returns,
any Python object, saved in the state dict under ``_extra_state``). Flattened, such a model would
leave them out of the sum and out of the model digest (every hospital keeping its own, the new
global model its initial ones), so it is refused, naming which of the two it has
(tests/integrations/test_integrations_keras_torch_wrapper.py,
tests/integrations/test_integrations_keras_torch_nonpersistent.py).
"""

from __future__ import annotations

from typing import Any

from secagg.errors import ConfigurationError

__all__ = ["refuse_torch_state"]


def refuse_torch_state(keras: Any, model: Any) -> None:
    """ConfigurationError naming a ``TorchModuleWrapper`` layer of ``model`` whose PyTorch module has
    state that is not its parameters, which would be summed and bound by nobody: buffers, persistent
    or not (a BatchNorm's running statistics; the PyTorch adapter binds them), or extra state (from
    ``get_extra_state``: not a tensor, so nothing can sum it, and the PyTorch adapter's digests refuse
    it too); nothing on a backend without the wrapper."""
    wrapper: Any = getattr(keras.layers, "TorchModuleWrapper", None)
    if wrapper is None:
        return
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if not isinstance(layer, wrapper):
            continue
        module = layer.module
        parameters = {name for name, _ in module.named_parameters(remove_duplicate=False)}
        # Every buffer, persistent or not: a non-persistent one (in no state dict) shapes the output too.
        buffers = [name for name, _ in module.named_buffers(remove_duplicate=False)]
        known = set(buffers)
        state = [name for name in module.state_dict(keep_vars=True) if name not in parameters and name not in known]
        if buffers:
            hidden = [name for name in buffers if name not in module.state_dict(keep_vars=True)]
            what = (
                f" ({hidden[0]!r} is non-persistent, in no state dict: register it persistent first)" if hidden else ""
            )
            raise ConfigurationError(
                f"layer {layer.name!r} wraps a PyTorch module whose buffers ({buffers[0]!r}, ...) are not Keras "
                "weights: they would be left out of the sum and the model digest; aggregate it with "
                f"secagg.integrations.torch{what}"
            )
        if state:
            raise ConfigurationError(
                f"layer {layer.name!r} wraps a PyTorch module with extra state ({state[0]!r}, from its "
                "get_extra_state): it is no Keras weight and no tensor, so it would be neither summed nor bound "
                "into the model digest (every hospital keeping its own, the new global model its initial one); "
                "drop get_extra_state from the module and give every hospital that state alike, outside the model"
            )
