"""The PyTorch adapter's flat vectors: a state dict or a module as one float64 vector and back.

Split from :mod:`secagg.integrations.torch`, which re-exports every name here and documents the
conversion (exactness, order, tied tensors): :class:`TensorSpec`, :class:`FlatLayout`,
:func:`flatten_state_dict` / :func:`unflatten_state_dict` (any mapping of names to tensors), and
:func:`flatten_model` / :func:`load_into_model` (a module's tensors, read and written through one
check, :func:`~secagg.integrations._torch_tensors.readable_tensors`). PyTorch is imported on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt

from secagg._validate import require_bool
from secagg.errors import ConfigurationError
from secagg.integrations._extras import require
from secagg.integrations._layout import ArraySpec, float_vector, require_layout
from secagg.integrations._layout import FlatLayout as _FlatLayout
from secagg.integrations._torch_dtypes import FLOAT4_DTYPE, dtype_name, from_float64, kind_of, to_float64
from secagg.integrations._torch_tensors import readable_tensors, refuse_entry, write_into
from secagg.integrations._torch_ties import untied, written_once

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module

__all__ = [
    "FlatLayout",
    "FloatVector",
    "TensorSpec",
    "flatten_model",
    "flatten_state_dict",
    "load_into_model",
    "unflatten_state_dict",
]

FloatVector = npt.NDArray[np.float64]


def _torch() -> Any:
    return require("torch", "torch")


@dataclass(frozen=True)
class TensorSpec(ArraySpec):
    """Where one named tensor sits in a flat vector (see :class:`~secagg.integrations._layout.ArraySpec`).

    ``dtype`` is the PyTorch dtype name without the ``torch.`` prefix, e.g.
    ``"bfloat16"``; ``length`` is numel, or 2 * numel for complex and
    ``float4_e2m1fn_x2`` (two values per element).
    """

    NOUN: ClassVar[str] = "tensor"

    def entries_per_element(self) -> int:
        """2 for complex dtypes and ``float4_e2m1fn_x2``, else 1."""
        return 2 if self.dtype == FLOAT4_DTYPE or self.dtype.startswith("complex") else 1


@dataclass(frozen=True)
class FlatLayout(_FlatLayout):
    """The named tensors of a flat vector, back to back from index 0 (see
    :class:`~secagg.integrations._layout.FlatLayout`; :meth:`segments` gives one
    segment per tensor, integer buffers exact)."""

    NOUN: ClassVar[str] = "tensor"


def flatten_state_dict(tensors: Mapping[str, Tensor]) -> tuple[FloatVector, FlatLayout]:
    """All tensors of ``tensors`` in one float64 vector, and the layout to undo it.

    Works for any mapping of names to tensors (``model.state_dict()``, an
    optimizer-free snapshot, a dict you built); tensors may live on any device
    and require grad. Raises ConfigurationError for an unsupported dtype or an
    integer beyond 2^53 in magnitude.
    """
    torch = _torch()
    if not isinstance(tensors, Mapping):
        raise ConfigurationError(f"expected a mapping of names to tensors (a state dict), got {type(tensors).__name__}")
    specs: list[TensorSpec] = []
    pieces: list[Any] = []
    offset = 0
    for name, tensor in tensors.items():
        refuse_entry(torch, name, tensor)
        name_of_dtype = dtype_name(tensor.dtype)
        kind = kind_of(name_of_dtype, tensor.dtype, name)
        # resolve_conj/resolve_neg: a lazy conj() or negation is a bit view_as_real refuses.
        dense = tensor.detach().to("cpu").resolve_conj().resolve_neg()
        flat = to_float64(torch, dense.reshape(-1), kind, name)
        spec = TensorSpec(name, tuple(int(d) for d in tensor.shape), name_of_dtype, offset, int(flat.shape[0]))
        specs.append(spec)
        pieces.append(flat)
        offset += spec.length
    layout = FlatLayout(tuple(specs))
    if not pieces:
        return np.zeros(0, dtype=np.float64), layout
    vector: FloatVector = torch.cat(pieces).numpy()
    return vector, layout


def unflatten_state_dict(vector: npt.ArrayLike, layout: FlatLayout) -> dict[str, Tensor]:
    """New CPU tensors named and shaped as ``layout`` describes, from ``vector``.

    Inverse of :func:`flatten_state_dict`, bit for bit on its output. A vector
    that did not come from flattening (an aggregate) is converted with
    PyTorch's rounding for floating dtypes, rounded half to even for integers
    (refused if out of the dtype's range) and for bool (refused if not finite or
    outside 0 and 1), and rounded to the nearest E2M1 value (ties to even) for
    ``float4_e2m1fn_x2``. A value a
    floating dtype cannot hold is refused with a ConfigurationError, never
    turned into an infinity, a NaN or the dtype's largest value: beyond the
    range (more than half a unit in the last place past the largest finite
    value; 6 for E2M1, 448 for float8_e4m3fn, 65504 for float16), an infinity
    or NaN the format has no code for, a negative value for an unsigned format. ConfigurationError
    too for a ``vector`` numpy cannot read as one float array of the layout's size (a tensor that
    requires grad or is on another device: detach it and move it to the CPU) and for a layout that
    names a dtype by a torch alias (``cfloat``, ``half``) rather than as flattening does.
    """
    torch = _torch()
    require_layout(layout)
    values = float_vector(vector, layout)
    out: dict[str, Tensor] = {}
    for spec in layout.specs:
        dtype = getattr(torch, spec.dtype, None)
        # The dtype's own name only: an alias ("cfloat" for complex64) would size the entries otherwise.
        if not isinstance(dtype, torch.dtype) or dtype_name(dtype) != spec.dtype:
            raise ConfigurationError(
                f"tensor {spec.name!r}: unknown dtype {spec.dtype} (a layout names a dtype as flattening does: "
                "float16, complex64, ...)"
            )
        piece = values[spec.offset : spec.offset + spec.length]
        out[spec.name] = from_float64(torch, piece, dtype, kind_of(spec.dtype, dtype, spec.name), spec).reshape(
            spec.shape
        )
    return out


def flatten_model(model: Module, *, buffers: bool = False) -> tuple[FloatVector, FlatLayout]:
    """A module's parameters (in ``named_parameters`` order), then its buffers if
    ``buffers`` (non-persistent ones too), as one float64 vector and its layout (see
    :func:`flatten_state_dict`); a tied (shared) tensor once, under its first name.
    ConfigurationError for a module with extra state (``get_extra_state``: no tensor, never
    silently left out), in either mode."""
    return flatten_state_dict(untied(readable_tensors(model, require_bool("buffers", buffers))))


def load_into_model(model: Module, vector: npt.ArrayLike, layout: FlatLayout) -> None:
    """Write ``vector`` into the parameters (and buffers) of ``model`` named in ``layout``, in place.

    Each tensor keeps its device and dtype; a tied (shared) tensor is written once. Raises
    ConfigurationError, with the model untouched, for a module :func:`flatten_model` refuses to read
    (extra state, a tensor on the meta device: the same check), if the module lacks a name of the layout, a shape
    or dtype differs, the layout gives two names of one tied tensor different values, or a tensor
    to write shares memory with another or between its own elements (an expanded view). An inference
    tensor (a model built under ``torch.inference_mode()``) is written inside inference mode, the only
    place torch allows it.
    """
    targets = readable_tensors(model, buffers=True)
    for spec in require_layout(layout).specs:
        target = targets.get(spec.name)
        if target is None:
            raise ConfigurationError(f"the model has no parameter or buffer named {spec.name!r}")
        if tuple(target.shape) != spec.shape or dtype_name(target.dtype) != spec.dtype:
            raise ConfigurationError(
                f"tensor {spec.name!r}: the model holds {dtype_name(target.dtype)} {tuple(target.shape)}, "
                f"the layout {spec.dtype} {spec.shape}"
            )
    tensors = unflatten_state_dict(vector, layout)
    written = written_once(targets, float_vector(vector, layout), layout)
    torch = _torch()
    with torch.no_grad():
        for name, first in written.items():
            if name == first:
                write_into(torch, targets[name], tensors[name])
