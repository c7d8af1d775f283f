"""Which tensors a PyTorch model contributes, by name and in which order.

A module contributes its parameters (then its buffers when asked), a state dict its entries as
given; a lazy module's uninitialised tensor is refused before torch's own error; a tied (shared)
tensor is read once, under its first name (:mod:`secagg.integrations._torch_ties`), so a module
and its state dict are one model, one layout and one digest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from secagg.errors import ConfigurationError
from secagg.integrations._extras import require
from secagg.integrations._torch_ties import untied

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module

__all__ = ["model_tensors", "named", "refuse_lazy", "tensors_of", "write_into"]


def _torch() -> Any:
    return require("torch", "torch")


def refuse_lazy(torch: Any, name: str, tensor: Any) -> None:
    """ConfigurationError for a lazy module's parameter or buffer before its first forward pass
    (every torch call on it raises torch's own ValueError)."""
    if torch.nn.parameter.is_lazy(tensor):
        raise ConfigurationError(
            f"tensor {name!r} is uninitialized (a lazy module's): run one forward pass before flattening or loading"
        )


def model_tensors(model: Module, buffers: bool) -> dict[str, Tensor]:
    """Every name of a module's parameters (then buffers, if ``buffers``), a shared one under
    each of its names (``remove_duplicate=False``)."""
    torch = _torch()
    if not isinstance(model, torch.nn.Module):
        raise ConfigurationError(f"expected a torch.nn.Module, got {type(model).__name__}")
    tensors = dict(model.named_parameters(remove_duplicate=False))
    if buffers:
        tensors.update(model.named_buffers(remove_duplicate=False))
    for name, tensor in tensors.items():
        refuse_lazy(torch, name, tensor)
    return tensors


def tensors_of(model: Module | Mapping[str, Tensor], buffers: bool) -> Mapping[str, Tensor]:
    """A state dict as given, or a module's entries in its state dict's order (its parameters only
    if not ``buffers``), with a tied (shared) tensor once, under its first name: a module and its
    state dict are one model, one layout and one digest
    (:func:`secagg.integrations.torch.flatten_model` puts the buffers after the parameters instead)."""
    return untied(named(model, buffers))


def named(model: Module | Mapping[str, Tensor], buffers: bool) -> Mapping[str, Tensor]:
    """Every name of a state dict, or of a module's state dict (parameters only if not
    ``buffers``), a shared tensor under each of its names."""
    if isinstance(model, Mapping):
        return model
    if not buffers:
        return model_tensors(model, buffers)
    if not isinstance(model, _torch().nn.Module):
        raise ConfigurationError(f"expected a torch.nn.Module or a state dict, got {type(model).__name__}")
    state: Mapping[str, Tensor] = model.state_dict(keep_vars=True)
    return state


def write_into(torch: Any, target: Tensor, value: Tensor) -> None:
    """``target.copy_(value)`` (under ``torch.no_grad()``), inside ``torch.inference_mode()`` for an
    inference tensor (a model built under inference mode holds them): torch refuses an in-place write
    into one anywhere else, and allows it there."""
    if target.is_inference():
        with torch.inference_mode():
            target.copy_(value)
    else:
        target.copy_(value)
