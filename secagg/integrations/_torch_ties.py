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

__all__ = ["refuse_shared_memory", "ties", "untied", "written_once"]


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


def _memory(torch: Any, tensor: Tensor) -> tuple[str, int, int, int] | None:
    """The device, the storage and the byte span [start, end) an entry's elements lie in, or None
    for an entry never shared (as :func:`_tensor_key`)."""
    if _tensor_key(torch, tensor) is None:
        return None
    size = tensor.element_size()
    offset = int(tensor.storage_offset())
    last = offset + sum((int(n) - 1) * int(stride) for n, stride in zip(tensor.shape, tensor.stride(), strict=True))
    return str(tensor.device), tensor.untyped_storage().data_ptr(), offset * size, (last + 1) * size


def _bytes(tensor: Tensor) -> npt.NDArray[np.int64]:
    """The storage bytes an entry's elements occupy."""
    positions = np.array([int(tensor.storage_offset())], dtype=np.int64)
    for n, stride in zip(tensor.shape, tensor.stride(), strict=True):
        positions = (positions[:, None] + np.arange(n, dtype=np.int64) * stride).ravel()
    size = tensor.element_size()
    return np.unique((positions[:, None] * size + np.arange(size, dtype=np.int64)).ravel())


def _overlap(tensor: Tensor, span: int, other: Tensor, other_span: int) -> bool:
    """Whether two entries whose byte spans overlap hold a byte in common: yes if each fills its span
    (the usual case, decided without listing bytes), else listed."""
    if tensor.numel() * tensor.element_size() == span and other.numel() * other.element_size() == other_span:
        return True
    return bool(np.intersect1d(_bytes(tensor), _bytes(other)).size)


def _refuse_aliases(tensors: Mapping[str, Tensor]) -> None:
    """ConfigurationError naming both if two distinct tensors (not one tied tensor) share memory: a
    view of another dtype, offset, shape or strides. Averaged apart, the second write would change
    what the first holds (an int32 average of a float's bits is no float average)."""
    torch = require("torch", "torch")
    by_storage: dict[tuple[str, int], list[tuple[str, int, int, Tensor]]] = {}
    for name, tensor in tensors.items():
        memory = _memory(torch, tensor)
        if memory is None:
            continue
        device, storage, start, end = memory
        for other, start2, end2, tensor2 in by_storage.get((device, storage), []):
            if start < end2 and start2 < end and _overlap(tensor, end - start, tensor2, end2 - start2):
                raise ConfigurationError(
                    f"tensor {name!r} and tensor {other!r} share memory in the model but are not one tensor (another "
                    "dtype, offset, shape or strides): writing one would overwrite the other; give the model one "
                    "tensor per memory, or tie them as one parameter"
                )
        by_storage.setdefault((device, storage), []).append((name, start, end, tensor))


def _overlaps_itself(tensor: Tensor) -> bool:
    """Whether two elements of ``tensor`` lie at one memory location (``expand``, a stride 0, strides
    that overlap): decided from the strides when each dimension (by increasing stride) steps past all
    that the smaller ones reach, the usual case; else from the elements' positions, listed."""
    reach = 0
    for stride, size in sorted((int(st), int(n)) for n, st in zip(tensor.shape, tensor.stride(), strict=True) if n > 1):
        if stride <= reach:
            break
        reach += (size - 1) * stride
    else:
        return False
    positions = np.zeros(1, dtype=np.int64)
    for size, stride in zip(tensor.shape, tensor.stride(), strict=True):
        positions = (positions[:, None] + np.arange(int(size), dtype=np.int64) * int(stride)).ravel()
    return bool(np.unique(positions).size < positions.size)


def _refuse_self_overlap(torch: Any, tensors: Mapping[str, Tensor]) -> None:
    """ConfigurationError naming a tensor two of whose elements share one memory location: writing an
    aggregate into it fails (torch's RuntimeError) or, for strides torch cannot check, leaves each
    location holding the last value written to it."""
    for name, tensor in tensors.items():
        if _tensor_key(torch, tensor) is not None and _overlaps_itself(tensor):
            raise ConfigurationError(
                f"tensor {name!r}: its elements share memory (an expanded or overlapping view), so a vector cannot "
                "be written into it; give the model a tensor of its own (.clone() it)"
            )


def refuse_shared_memory(tensors: Mapping[str, Tensor]) -> None:
    """ConfigurationError naming a tensor of ``tensors`` (distinct tensors, each once) two of whose
    elements share one memory location (:func:`_refuse_self_overlap`), or two of them that share memory
    (:func:`_refuse_aliases`): no value can be written into them in turn. Run before the first write."""
    _refuse_self_overlap(require("torch", "torch"), tensors)
    _refuse_aliases(tensors)


def written_once(targets: Mapping[str, Tensor], values: npt.NDArray[np.float64], layout: FlatLayout) -> dict[str, str]:
    """Each name of ``layout`` mapped to the first of its names that ``targets`` (a module's
    tensors) tie together, so that a tied tensor is written once; ConfigurationError naming both if
    the layout gives two names of one tensor different values (the second write would overwrite
    the first), two of its tensors share memory without being one tensor (:func:`_refuse_aliases`),
    or two elements of one tensor share memory (:func:`_refuse_self_overlap`)."""
    specs = {spec.name: spec for spec in layout.specs}
    written = ties({name: targets[name] for name in specs})
    refuse_shared_memory({name: targets[name] for name, first in written.items() if name == first})
    for name, first in written.items():
        mine, theirs = (values[s.offset : s.offset + s.length] for s in (specs[name], specs[first]))
        if name != first and not np.array_equal(mine, theirs, equal_nan=True):
            raise ConfigurationError(
                f"tensor {name!r} and tensor {first!r} are one tensor in the model (tied weights), but the layout "
                "gives them different values: the second write would overwrite the first"
            )
    return written
