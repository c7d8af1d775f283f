"""What a PyTorch DP round binds of the model its contributions are computed at
(:func:`dp_model_digest`; re-exported by :mod:`secagg.integrations.torch_dp`).

A DP contribution is the clipped gradient sum of ``loss_fn(model(x_i), y_i)`` over the trainable
parameters: the state dict gives the values it is taken at, but not which parameters train (the
contribution's layout), what the forward pass computes (the modules, their settings, what they
hold outside the state dict and their training mode) nor the loss. :func:`dp_model_digest` binds
the first two and the loss's declared name (tests/integrations/test_integrations_torch_dp_binding.py,
test_integrations_torch_dp_module_state.py).
"""

from __future__ import annotations

import hashlib
import importlib
from typing import TYPE_CHECKING, Any

import numpy as np

from secagg.errors import ConfigurationError
from secagg.integrations._extras import require
from secagg.integrations._model_binding import layout_digest
from secagg.integrations.torch import flatten_state_dict, model_digest

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module

__all__ = ["dp_model_digest"]

_DP_MODEL_DOMAIN = b"secagg/v1/torch-dp-model"
_HOOKS = (
    "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_forward_hooks", "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called", "_backward_pre_hooks", "_backward_hooks",
)  # fmt: skip
"""A module's hook tables (and, prefixed ``_global``, torch's process-wide ones): each run in the forward
or backward pass, in registration order."""
_MAX_DEPTH = 8
"""How deep :func:`_value` follows nested lists, tuples and dicts; deeper values are bound by type."""


def _torch() -> Any:
    require("torch", "torch")
    return importlib.import_module("torch")


def _trainable_parameters(model: Module) -> list[tuple[str, Tensor]]:
    """The trainable parameters in ``named_parameters`` order; ConfigurationError for a
    non-real one (a complex gradient cast to float64 would lose its imaginary part)."""
    if not isinstance(model, _torch().nn.Module):
        raise ConfigurationError(f"expected a torch.nn.Module, got {type(model).__name__}")
    params: list[tuple[str, Tensor]] = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    for name, p in params:
        if not p.dtype.is_floating_point:
            raise ConfigurationError(
                f"parameter {name!r} is {str(p.dtype).removeprefix('torch.')}: DP training takes real floating "
                "parameters only (complex gradients have no single L2 clip here)"
            )
    return params


def _text(what: str, text: object) -> bytes:
    """``text`` in UTF-8, length-prefixed; ConfigurationError naming ``what`` for anything else."""
    if not isinstance(text, str):
        raise ConfigurationError(f"{what} must be a str, got {type(text).__name__}")
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigurationError(f"{what} is not valid Unicode (it has no UTF-8 encoding): {text!r}") from exc
    return len(data).to_bytes(4, "big") + data


def _blob(data: bytes) -> bytes:
    return len(data).to_bytes(8, "big") + data


def _scalar(torch: Any, what: str, value: object) -> bytes | None:
    """``value`` as tagged bytes if it is None, a bool, a number, a str, bytes, a torch dtype, a tensor
    (its dtype, shape and values: :func:`~secagg.integrations._model_binding.layout_digest`; a sparse
    one by :func:`_tensor`) or a numpy scalar or array (its dtype, shape and bytes); None for anything
    else."""
    encoded: bytes | None = None
    if value is None or isinstance(value, bool):
        encoded = b"N" if value is None else b"B" + bytes((value,))
    elif isinstance(value, int | float | complex):
        # hex, not decimal: Python refuses decimal text for an integer of more than 4300 digits
        text = value.hex() if isinstance(value, float) else hex(value) if isinstance(value, int) else repr(value)
        encoded = b"R" + _text(what, f"{type(value).__name__}:{text}")
    elif isinstance(value, str):
        encoded = b"S" + _text(what, value)
    elif isinstance(value, bytes):
        encoded = b"Y" + _blob(value)
    elif isinstance(value, np.generic | np.ndarray) and not value.dtype.hasobject:
        array = np.ascontiguousarray(value)
        shape = len(array.shape).to_bytes(4, "big") + b"".join(int(d).to_bytes(8, "big") for d in array.shape)
        encoded = b"A" + _text(what, array.dtype.str) + shape + _blob(array.tobytes())
    elif isinstance(value, torch.dtype):
        encoded = b"D" + _text(what, str(value))
    elif isinstance(value, torch.Tensor):
        try:
            encoded = _tensor(torch, what, value)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{what}: {exc}") from None
        except RuntimeError as exc:  # torch's own, e.g. a tensor kept from inside torch.func's vmap
            raise ConfigurationError(
                f"{what}: torch cannot read this tensor (it raised {type(exc).__name__}), e.g. one the forward "
                "pass kept from inside the per-sample gradients (torch.func.vmap): keep no tensor computed in "
                "forward as a module attribute"
            ) from None
    return encoded


def _tensor(torch: Any, what: str, tensor: Tensor) -> bytes:
    """A dense tensor by its dtype, shape and values; a sparse one (a graph's adjacency) by its layout
    and shape, then the indices and values of its coalesced COO form (not made dense: that can be
    far larger)."""
    sparse = (torch.sparse_coo, torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc)
    if tensor.layout not in sparse or tensor.is_meta:  # flatten_state_dict refuses what it cannot read
        return b"T" + layout_digest(*flatten_state_dict({"": tensor}))
    coo = torch.Tensor.to_sparse_coo(tensor.detach()).coalesce()
    parts = flatten_state_dict({"indices": coo.indices(), "values": coo.values()})
    return b"P" + _text(what, f"{tensor.layout}:{tuple(tensor.shape)}") + layout_digest(*parts)


def _value(torch: Any, what: str, value: object, depth: int = 0) -> bytes:
    """``value`` (a module's plain attribute) as tagged bytes: :func:`_scalar`'s, a module that is not
    a submodule (a layer kept in a plain list) by its class and its state dict's
    :func:`~secagg.integrations.torch.model_digest`, a list, tuple or dict of those (:data:`_MAX_DEPTH`
    deep), a function or class by its qualified name (its code is not bound), anything else by its type."""
    encoded = _scalar(torch, what, value)
    if encoded is not None:
        return encoded
    if isinstance(value, torch.nn.Module):  # not a submodule (a layer in a plain list): its class and state
        kind = type(value)
        return b"W" + _text(what, f"{kind.__module__}.{kind.__qualname__}") + model_digest(value, buffers=True)
    if depth < _MAX_DEPTH and isinstance(value, list | tuple | dict):
        items = [part for pair in value.items() for part in pair] if isinstance(value, dict) else list(value)
        tag = b"M" if isinstance(value, dict) else b"L" if isinstance(value, list) else b"U"
        return tag + len(items).to_bytes(4, "big") + b"".join(_value(torch, what, item, depth + 1) for item in items)
    named = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    if callable(value) and all(isinstance(part, str) for part in named):
        return b"Q" + _text(what, f"{named[0]}.{named[1]}")
    kind = type(value)
    return b"O" + _text(what, f"{kind.__module__}.{kind.__qualname__}")


def _hooks(torch: Any, what: str, tables: dict[str, Any], prefix: str = "") -> bytes:
    """The hooks of ``tables`` (a module's ``vars``, or torch's module namespace with ``prefix``
    ``"_global"``), table by table in registration order, each by :func:`_value` (a function by its
    qualified name, an object by its type); the tables' keys are handle counters, not bound."""
    out = []
    for table in _HOOKS:
        hooks = tables.get(prefix + table) or {}
        encoded = (_value(torch, f"{what}: a hook", hook) for hook in hooks.values())
        out.append(len(hooks).to_bytes(4, "big") + b"".join(encoded))
    return b"".join(out)


def _module_state(torch: Any, name: str, module: Module, machinery: frozenset[str]) -> bytes:
    """What ``module`` holds outside the state dict that its forward pass may read: every plain
    attribute (``vars(module)`` beyond a bare ``torch.nn.Module``'s own, by name) by :func:`_value`,
    its forward and backward hooks (:func:`_hooks`) and its non-persistent buffers (in the module's
    ``_buffers`` only, not in the state dict)."""
    attributes = sorted((pair for pair in vars(module).items() if pair[0] not in machinery), key=lambda pair: pair[0])
    out = [len(attributes).to_bytes(4, "big")]
    for key, item in attributes:
        what = f"module {name!r}: attribute {key!r}"
        out.append(_text(what, key) + _value(torch, what, item))
    out.append(_hooks(torch, f"module {name!r}", vars(module)))
    hidden: set[str] = getattr(module, "_non_persistent_buffers_set", set())
    buffers = {key: b for key, b in module.named_buffers(recurse=False) if key in hidden}
    try:
        out.append(layout_digest(*flatten_state_dict(buffers)))
    except ConfigurationError as exc:
        raise ConfigurationError(f"module {name!r}: a non-persistent buffer: {exc}") from None
    return b"".join(out)


def dp_model_digest(model: Module, *, loss_name: str | None = None) -> bytes:
    """The 32-byte digest a DP round binds for ``model``: SHA-256 of a domain label,
    :func:`~secagg.integrations.torch.model_digest` (``buffers=True``: every state-dict tensor's
    key, dtype, shape and values), the names of the trainable parameters (``requires_grad``), in
    ``named_parameters`` order, every module of the forward pass (``named_modules`` order: its name,
    its class's module and qualified name, its ``extra_repr()``, whether it is in training mode,
    its plain attributes, hooks and non-persistent buffers), torch's global module hooks, and
    ``loss_name`` when given.

    A DP contribution is the clipped gradient sum over the trainable parameters only, back to back,
    and a state dict does not say which they are: a copy that trains another set of the same total
    size (a frozen layer swapped) has the same state-dict digest, so without the names its gradients
    would be summed into another parameter's coordinates. Nor does a state dict say what the forward
    pass computes: a copy in another mode (``model.eval()``: a module whose forward differs by
    ``training``), with another activation (``Tanh`` for ``ReLU``: no parameters) or another setting
    a module lists in its ``extra_repr`` (a ``LeakyReLU``'s slope) computes other gradients at the
    same tensors; so does one whose module holds another value outside the state dict: not every
    setting is in ``extra_repr`` (a ``MultiheadAttention``'s ``num_heads``, whose parameters have the
    same shapes for any number of heads; a ``TransformerEncoderLayer``'s ``norm_first`` and
    ``activation``), nor is a non-persistent buffer (a mask, a scale) in the state dict. So every
    module's plain attributes (``vars(module)`` beyond a bare ``torch.nn.Module``'s own) are bound by
    name and value (:func:`_value`: numbers, text, dtypes, tensors (a sparse one too) and numpy arrays
    by their values, a module that is not a submodule by its class and state dict, lists, tuples and dicts of them, a
    function or class by its qualified name, another object by its type only), its non-persistent
    buffers by name, dtype, shape and values, and its forward and backward hooks (and torch's global
    ones), which run inside the forward pass, in order, by the same rule. Not bound: the code of a
    module's ``forward`` (and of a function or hook it holds), and what an object attribute or hook
    holds beyond its type (docs/integrations.md).

    A loss function is code and has no digest: ``loss_name`` is the name the round declares for it
    (``"cross_entropy"``), bound when given, so a hospital declaring another name (or none, when the
    round names one) is refused; that the name matches the function is the integrator's to keep.

    ConfigurationError for a non-module, a trainable parameter that is not real floating point or
    whose name UTF-8 cannot encode (a lone surrogate), an ``extra_repr`` that is no str, a tensor
    attribute or non-persistent buffer the adapter cannot flatten
    (:func:`~secagg.integrations.torch.flatten_state_dict`), or a ``loss_name`` that is no
    non-empty text."""
    names = [_text("a parameter name", name) for name, _ in _trainable_parameters(model)]  # length-prefixed
    digest = hashlib.sha256(_DP_MODEL_DOMAIN + model_digest(model, buffers=True) + len(names).to_bytes(4, "big"))
    for name in names:
        digest.update(name)
    modules = list(model.named_modules())
    digest.update(len(modules).to_bytes(4, "big"))
    torch = _torch()
    machinery = frozenset(vars(torch.nn.Module()))  # a bare module's own (hooks, _parameters, training, ...)
    for name, module in modules:
        kind = type(module)
        digest.update(_text("a module name", name) + _text("a module class", f"{kind.__module__}.{kind.__qualname__}"))
        digest.update(_text(f"module {name!r}: extra_repr()", module.extra_repr()) + bytes((bool(module.training),)))
        digest.update(_module_state(torch, name, module, machinery))
    digest.update(_hooks(torch, "torch's global module hooks", vars(torch.nn.modules.module), "_global"))
    if loss_name is None:
        digest.update(b"\x00")
    elif loss_name == "":
        raise ConfigurationError("loss_name must be a non-empty str (or None: no loss name bound)")
    else:
        digest.update(b"\x01" + _text("loss_name", loss_name))
    return digest.digest()
