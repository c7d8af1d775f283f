"""What a PyTorch DP round binds of the model its contributions are computed at
(:func:`dp_model_digest`; re-exported by :mod:`secagg.integrations.torch_dp`).

A DP contribution is the clipped gradient sum of ``loss_fn(model(x_i), y_i)`` over the trainable
parameters: the state dict gives the values it is taken at, but not which parameters train (the
contribution's layout), what the forward pass computes (the modules, their settings and their
training mode) nor the loss. :func:`dp_model_digest` binds the first two and the loss's declared
name (tests/integrations/test_integrations_torch_dp_binding.py).
"""

from __future__ import annotations

import hashlib
import importlib
from typing import TYPE_CHECKING, Any

from secagg.errors import ConfigurationError
from secagg.integrations._extras import require
from secagg.integrations.torch import model_digest

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module

__all__ = ["dp_model_digest"]

_DP_MODEL_DOMAIN = b"secagg/v1/torch-dp-model"


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


def dp_model_digest(model: Module, *, loss_name: str | None = None) -> bytes:
    """The 32-byte digest a DP round binds for ``model``: SHA-256 of a domain label,
    :func:`~secagg.integrations.torch.model_digest` (``buffers=True``: every state-dict tensor's
    key, dtype, shape and values), the names of the trainable parameters (``requires_grad``), in
    ``named_parameters`` order, every module of the forward pass (``named_modules`` order: its name,
    its class's module and qualified name, its ``extra_repr()`` and whether it is in training mode),
    and ``loss_name`` when given.

    A DP contribution is the clipped gradient sum over the trainable parameters only, back to back,
    and a state dict does not say which they are: a copy that trains another set of the same total
    size (a frozen layer swapped) has the same state-dict digest, so without the names its gradients
    would be summed into another parameter's coordinates. Nor does a state dict say what the forward
    pass computes: a copy in another mode (``model.eval()``: a module whose forward differs by
    ``training``), with another activation (``Tanh`` for ``ReLU``: no parameters) or another setting
    a module lists in its ``extra_repr`` (a ``LeakyReLU``'s slope) computes other gradients at the
    same tensors. PyTorch's layers list every setting in ``extra_repr``; a custom module's settings
    that its ``extra_repr`` does not list, and its forward's code, are not bound (docs/integrations.md).

    A loss function is code and has no digest: ``loss_name`` is the name the round declares for it
    (``"cross_entropy"``), bound when given, so a hospital declaring another name (or none, when the
    round names one) is refused; that the name matches the function is the integrator's to keep.

    ConfigurationError for a non-module, a trainable parameter that is not real floating point, an
    ``extra_repr`` that is no str, or a ``loss_name`` that is no non-empty text."""
    names = [name.encode() for name, _ in _trainable_parameters(model)]
    digest = hashlib.sha256(_DP_MODEL_DOMAIN + model_digest(model, buffers=True) + len(names).to_bytes(4, "big"))
    for name in names:
        digest.update(len(name).to_bytes(4, "big") + name)
    modules = list(model.named_modules())
    digest.update(len(modules).to_bytes(4, "big"))
    for name, module in modules:
        kind = type(module)
        digest.update(_text("a module name", name) + _text("a module class", f"{kind.__module__}.{kind.__qualname__}"))
        digest.update(_text(f"module {name!r}: extra_repr()", module.extra_repr()) + bytes((bool(module.training),)))
    if loss_name is None:
        digest.update(b"\x00")
    elif loss_name == "":
        raise ConfigurationError("loss_name must be a non-empty str (or None: no loss name bound)")
    else:
        digest.update(b"\x01" + _text("loss_name", loss_name))
    return digest.digest()
