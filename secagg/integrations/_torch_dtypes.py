"""How every PyTorch dtype travels exactly in a float64 vector, and back (the PyTorch adapter's
conversions, :mod:`secagg.integrations.torch`).

Floating dtypes are all exactly representable as float64; complex ones take two entries per
element (real, imaginary); the packed ``float4_e2m1fn_x2`` two (low nibble first); integer and
bool buffers one, exact up to 2^53. Back from an aggregate, a value the dtype cannot hold is
refused (:func:`secagg.integrations._layout.check_cast`), never made an infinity, a NaN or the
dtype's largest value.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from secagg._validate import EXACT_INTEGER_LIMIT  # larger integer buffers are refused
from secagg.errors import ConfigurationError
from secagg.integrations._layout import ArraySpec, check_cast

__all__ = ["EXACT_INTEGER_LIMIT", "FLOAT4_DTYPE", "dtype_name", "from_float64", "kind_of", "to_float64", "top_of_range"]

FloatVector = npt.NDArray[np.float64]

REAL, COMPLEX, FLOAT4, INTEGER, BOOL = "real", "complex", "float4x2", "integer", "bool"
FLOAT4_DTYPE = "float4_e2m1fn_x2"
# The eight magnitudes of FP4 E2M1 (OCP MX): code c (3 bits) and sign bit 8.
_E2M1_MAGNITUDES = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
_E2M1_MIDPOINTS = (_E2M1_MAGNITUDES[1:] + _E2M1_MAGNITUDES[:-1]) / 2
_INTEGER_DTYPES = frozenset({"uint8", "int8", "int16", "int32", "int64"})


def dtype_name(dtype: Any) -> str:
    """A PyTorch dtype's name without the ``torch.`` prefix, e.g. ``"bfloat16"``."""
    return str(dtype).removeprefix("torch.")


def kind_of(name: str, dtype: Any, who: str) -> str:
    """How a dtype travels in the vector; ConfigurationError if it cannot exactly."""
    if name == FLOAT4_DTYPE:
        return FLOAT4
    if dtype.is_complex:
        return COMPLEX
    if dtype.is_floating_point:
        return REAL
    if name == "bool":
        return BOOL
    if name in _INTEGER_DTYPES:
        return INTEGER
    raise ConfigurationError(f"tensor {who!r}: dtype {name} is not supported (floating, complex, bool or int8..int64)")


def to_float64(torch: Any, flat: Any, kind: str, name: str) -> Any:
    """The flat CPU tensor ``flat`` of ``kind`` as float64 entries (two per complex or packed FP4 element)."""
    if kind == REAL:
        return flat.to(torch.float64)
    if kind == COMPLEX:
        return torch.view_as_real(flat).to(torch.float64).reshape(-1)
    if kind == FLOAT4:
        packed = flat.view(torch.uint8).to(torch.int64)
        codes = torch.stack([packed & 0xF, packed >> 4], dim=-1).reshape(-1)
        magnitudes = torch.from_numpy(_E2M1_MAGNITUDES)[codes & 0x7]
        return torch.where(codes >= 8, -magnitudes, magnitudes)
    values = flat.to(torch.float64)
    # Compare as integers (abs() of the most negative int64 would wrap).
    if kind == INTEGER and flat.numel() and max(int(flat.max()), -int(flat.min())) > EXACT_INTEGER_LIMIT:
        raise ConfigurationError(f"tensor {name!r}: integers beyond 2^53 in magnitude do not fit a float64 exactly")
    return values


def from_float64(torch: Any, piece: FloatVector, dtype: Any, kind: str, spec: ArraySpec) -> Any:
    """A flat tensor of ``dtype`` from ``spec``'s float64 entries, or ConfigurationError for a value it cannot hold."""
    if kind == REAL:
        real = torch.from_numpy(piece.copy()).to(dtype)
        if dtype != torch.float64:
            check_cast(spec, piece, real.to(torch.float64).numpy(), *top_of_range(torch, dtype))
        return real
    if kind == COMPLEX:
        # Real and imaginary parts set separately: arithmetic like 1j * inf would make NaNs.
        pairs = np.empty(piece.shape[0] // 2, dtype=np.complex128)
        pairs.real, pairs.imag = piece[0::2], piece[1::2]
        complex_ = torch.from_numpy(pairs).to(dtype)
        if dtype != torch.complex128:
            back = torch.view_as_real(complex_.to(torch.complex128)).reshape(-1).numpy()
            check_cast(spec, piece, back, *top_of_range(torch, _COMPLEX_PARTS[spec.dtype]))
        return complex_
    if kind == FLOAT4:
        codes = _e2m1_codes(piece, spec.name)
        magnitudes = _E2M1_MAGNITUDES[codes & 0x7]
        check_cast(spec, piece, np.where(codes >= 8, -magnitudes, magnitudes), *_E2M1_MAGNITUDES[-1:-3:-1])
        packed = (codes[0::2] | (codes[1::2] << 4)).astype(np.uint8)
        return torch.from_numpy(packed).view(dtype)
    if kind == BOOL:
        if not np.isfinite(piece).all():  # NaN would read as "nonzero": True
            raise ConfigurationError(f"tensor {spec.name!r}: a value for a bool tensor is not finite")
        flags = np.rint(piece)
        if flags.size and (flags.min() < 0 or flags.max() > 1):  # a bool holds 0 and 1 only: never "nonzero"
            raise ConfigurationError(f"tensor {spec.name!r}: values fall outside the range of bool (0 and 1)")
        return torch.from_numpy(flags != 0)
    integers = np.rint(piece)
    info = np.iinfo(np.dtype(spec.dtype))
    # Bounds compared as Python ints: as a float64, int64's max 2^63 - 1 is 2^63, which would wrap.
    if integers.size and (
        not np.isfinite(integers).all() or int(integers.min()) < info.min or int(integers.max()) > info.max
    ):
        raise ConfigurationError(f"tensor {spec.name!r}: values fall outside the range of {spec.dtype}")
    return torch.from_numpy(integers.astype(np.dtype(spec.dtype)))


_COMPLEX_PARTS = {"complex32": "float16", "complex64": "float32"}


def top_of_range(torch: Any, dtype: Any) -> tuple[float, float]:
    """The largest finite value of a real floating dtype (or the name of one) and the value just below it."""
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    largest = torch.tensor([torch.finfo(dtype).max], dtype=torch.float64).to(dtype)
    bits = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[largest.element_size()]
    below = (largest.view(bits) - 1).view(dtype)  # positive values: one bit pattern down is one value down
    return float(largest.to(torch.float64)), float(below.to(torch.float64))


def _e2m1_codes(piece: FloatVector, name: str) -> npt.NDArray[np.int64]:
    """FP4 E2M1 codes of ``piece``: nearest magnitude, ties to the even code, sign in bit 3
    (an infinity or a magnitude beyond 6 gets the code of 6: :func:`check_cast` refuses it)."""
    if np.isnan(piece).any():
        raise ConfigurationError(f"tensor {name!r}: float4_e2m1fn_x2 has no NaN")
    magnitude = np.abs(piece)
    codes = np.searchsorted(_E2M1_MIDPOINTS, magnitude, side="left")
    # side="left" sends a value on a midpoint down to the odd-or-even code below
    # it; ties go to the even code, so move odd codes at a midpoint up one.
    at_midpoint = (codes < len(_E2M1_MIDPOINTS)) & (magnitude == _E2M1_MIDPOINTS[np.minimum(codes, 6)])
    codes = codes + (at_midpoint & (codes % 2 == 1))
    sign: npt.NDArray[np.int64] = np.signbit(piece).astype(np.int64) << 3
    result: npt.NDArray[np.int64] = codes.astype(np.int64) | sign
    return result
