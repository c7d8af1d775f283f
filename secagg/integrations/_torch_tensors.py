"""Which tensors a PyTorch model contributes, by name and in which order.

A module contributes its parameters (then its buffers when asked), a state dict its entries as
given; a lazy module's uninitialised tensor is refused before torch's own error, and so is an entry
the adapter cannot read (:func:`refuse_entry`: no tensor, on the meta device, not dense); a tied
(shared) tensor is read once, under its first name (:mod:`secagg.integrations._torch_ties`), so a
module and its state dict are one model and one layout. What a module holds outside its state dict
is bound or refused, never skipped: its non-persistent buffers (:func:`hidden_buffers`) are bound
into its model digest, its extra state (``get_extra_state``) is refused (:func:`refuse_extra_state`).
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

__all__ = [
    "hidden_buffers",
    "model_tensors",
    "named",
    "readable_tensors",
    "refuse_entry",
    "refuse_extra_state",
    "refuse_lazy",
    "tensors_of",
    "write_into",
]


def _torch() -> Any:
    return require("torch", "torch")


def refuse_lazy(torch: Any, name: str, tensor: Any) -> None:
    """ConfigurationError for a lazy module's parameter or buffer before its first forward pass
    (every torch call on it raises torch's own ValueError)."""
    if torch.nn.parameter.is_lazy(tensor):
        raise ConfigurationError(
            f"tensor {name!r} is uninitialized (a lazy module's): run one forward pass before flattening or loading"
        )


_EXTRA_STATE = "_extra_state"
"""The suffix of a module's extra state in its state dict (torch's ``EXTRA_STATE_KEY_SUFFIX``)."""


def refuse_entry(torch: Any, name: str, tensor: object) -> None:
    """ConfigurationError for a state-dict entry the adapter cannot flatten: no tensor (a module's
    extra state named as such), a lazy module's uninitialised tensor (:func:`refuse_lazy`), a tensor
    on the meta device (a shape and no values), or one that is not dense (sparse, nested)."""
    if not isinstance(tensor, torch.Tensor):
        if isinstance(name, str) and name.endswith(_EXTRA_STATE):
            raise ConfigurationError(
                f"entry {name!r} is a module's extra state (get_extra_state), a {type(tensor).__name__}: no "
                "tensor, so the adapter can neither sum it nor bind it; leave it out of the state dict"
            )
        raise ConfigurationError(f"entry {name!r} is a {type(tensor).__name__}, not a torch.Tensor")
    refuse_lazy(torch, name, tensor)
    if tensor.is_meta:
        raise ConfigurationError(
            f"tensor {name!r} is on the meta device: it has a shape but no values; materialize the model "
            "(model.to_empty(device='cpu'), then load_state_dict with its real values) before flattening"
        )
    if tensor.layout != torch.strided or tensor.is_nested:
        what = "nested" if tensor.is_nested else f"of layout {str(tensor.layout).removeprefix('torch.')}"
        raise ConfigurationError(f"tensor {name!r} is {what}: only dense tensors are supported (to_dense() it)")


def refuse_extra_state(model: Module) -> None:
    """ConfigurationError naming the first module of ``model`` (``named_modules`` order) with extra
    state (its class overrides ``get_extra_state``, as torch's ``state_dict`` checks): any Python
    object, not a tensor, so the adapter can neither sum it nor bind it, and a hospital's would
    otherwise be left out without a word (every hospital keeping its own, the new global model its
    initial one)."""
    base = _torch().nn.Module.get_extra_state
    for name, module in model.named_modules():
        if getattr(type(module), "get_extra_state", base) is not base:
            raise ConfigurationError(
                f"module {name!r} has extra state (get_extra_state): it is no tensor, so the adapter can neither "
                "sum it nor bind it into the model digest; drop get_extra_state from the module and give every "
                "hospital that state alike, outside the model, or keep it in a (persistent) buffer"
            )


def hidden_buffers(model: object) -> dict[str, Tensor]:
    """A module's non-persistent buffers (``register_buffer(..., persistent=False)``: in no state
    dict), by their full names in ``named_modules`` order; none for a state dict or anything else."""
    if not isinstance(model, _torch().nn.Module):
        return {}
    hidden: dict[str, Tensor] = {}
    for prefix, module in model.named_modules():
        names: set[str] = getattr(module, "_non_persistent_buffers_set", set())
        for key, buffer in module.named_buffers(recurse=False):
            if key in names:
                hidden[f"{prefix}.{key}" if prefix else key] = buffer
    return hidden


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


def readable_tensors(model: Module, buffers: bool) -> dict[str, Tensor]:
    """:func:`model_tensors` of a module the adapter can read, and so write: ConfigurationError for
    extra state (:func:`refuse_extra_state`) and for a tensor :func:`refuse_entry` refuses (on the meta
    device, not dense). The one check of both sides: :func:`~secagg.integrations.torch.flatten_model`
    reads through it, and every write-back (``load_into_model``, ``ModelAggregation.load_into``,
    ``torch_dp.apply_dp_step``) runs it before its first write, so a module the adapter would not read
    is never half written (a write into a meta tensor is a no-op torch does not report)."""
    tensors = model_tensors(model, buffers)
    refuse_extra_state(model)
    torch = _torch()
    for name, tensor in tensors.items():
        refuse_entry(torch, name, tensor)
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
    if isinstance(model, _torch().nn.Module):
        refuse_extra_state(model)
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
