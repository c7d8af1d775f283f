"""Tied (shared) tensors of a PyTorch model: one tensor listed under several names.

``lin2.weight = lin1.weight`` (an output layer tied to an embedding) makes one parameter that
``named_parameters`` lists once and ``state_dict`` lists under both names, each entry sharing
its storage. The adapter reads each distinct tensor once, under its first name
(:func:`untied`), so a module and its state dict have one layout and one digest, and a shared
weight is averaged (and quantized, and written back) once. Two entries are one tensor when they
view the same elements of the same storage the same way (device, storage, offset, shape,
strides, dtype, lazy conjugation and negation); equal values alone never tie two tensors (two
zero biases are two tensors), so a state dict whose shared weight was cloned apart is another
model, with one tensor more.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from secagg.errors import ConfigurationError
from secagg.integrations._extras import require
from secagg.integrations._layout import FlatLayout

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["ties", "untied", "written_once"]


def _tensor_key(torch: Any, tensor: object) -> tuple[object, ...] | None:
    """What makes two entries one tensor (the same elements of the same storage, seen the same
    way), or None for an entry never shared (not a dense tensor with data, or empty)."""
    if not isinstance(tensor, torch.Tensor) or torch.nn.parameter.is_lazy(tensor):
        return None
    if tensor.layout != torch.strided or tensor.is_meta or tensor.is_nested or tensor.numel() == 0:
        return None
    try:
        storage = tensor.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # a tensor subclass without storage shares none
        return None
    return (
        str(tensor.device), storage, tensor.storage_offset(), tuple(tensor.shape),
        tuple(tensor.stride()), tensor.dtype, tensor.is_conj(), tensor.is_neg(),
    )  # fmt: skip


def ties(tensors: Mapping[str, Tensor]) -> dict[str, str]:
    """Each name mapped to the first name of its tensor: a tied (shared) weight's later names to
    its first one (``state_dict`` lists a shared weight under each name, sharing its storage)."""
    return {name: first for name, first, _ in _read(tensors)}


def untied(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``tensors`` with each distinct tensor once, under its first name, in their order."""
    return {name: tensor for name, first, tensor in _read(tensors) if name == first}


def _read(tensors: Mapping[str, Tensor]) -> list[tuple[str, str, Tensor]]:
    """Each entry's name, the first name of its tensor and the entry, read once."""
    torch = require("torch", "torch")
    first: dict[tuple[object, ...], str] = {}
    entries = []
    for name, tensor in tensors.items():
        key = _tensor_key(torch, tensor)
        entries.append((name, name if key is None else first.setdefault(key, name), tensor))
    return entries


def written_once(targets: Mapping[str, Tensor], values: npt.NDArray[np.float64], layout: FlatLayout) -> dict[str, str]:
    """Each name of ``layout`` mapped to the first of its names that ``targets`` (a module's
    tensors) tie together, so that a tied tensor is written once; ConfigurationError naming both if
    the layout gives two names of one tensor different values (the second write would overwrite
    the first)."""
    specs = {spec.name: spec for spec in layout.specs}
    written = ties({name: targets[name] for name in specs})
    for name, first in written.items():
        mine, theirs = (values[s.offset : s.offset + s.length] for s in (specs[name], specs[first]))
        if name != first and not np.array_equal(mine, theirs, equal_nan=True):
            raise ConfigurationError(
                f"tensor {name!r} and tensor {first!r} are one tensor in the model (tied weights), but the layout "
                "gives them different values: the second write would overwrite the first"
            )
    return written
