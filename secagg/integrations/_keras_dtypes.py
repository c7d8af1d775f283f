"""How a Keras weight's dtype travels in the float64 vector, and which dtypes are refused.

Keras weights come as numpy arrays whose dtype may be numpy's or one of the
narrow formats of ``ml_dtypes`` (bfloat16, float8/6/4, int4, complex32, ...).
:func:`dtype_kind` says how one travels: :data:`REAL` (every value exactly a
float64, checked against ``ml_dtypes.finfo`` for the narrow formats),
:data:`COMPLEX` (two entries per element), :data:`INTEGER` or :data:`BOOL`
(exact integer segments); any other dtype is refused with a
:class:`~secagg.errors.ConfigurationError` naming the weight. :func:`to_float64` and
:func:`from_float64` convert a weight's values to the vector's entries and back. ``ml_dtypes`` is
optional: without it only numpy's dtypes are known.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg._validate import EXACT_INTEGER_LIMIT  # larger integer weights are refused
from secagg.errors import ConfigurationError
from secagg.integrations._layout import ArraySpec, check_cast

__all__ = [
    "BOOL",
    "COMPLEX",
    "EXACT_INTEGER_LIMIT",
    "INTEGER",
    "REAL",
    "dtype_kind",
    "float_info",
    "from_float64",
    "integer_bounds",
    "resolve_dtype",
    "to_float64",
]

REAL, COMPLEX, INTEGER, BOOL = "real", "complex", "integer", "bool"


def _ml_dtypes() -> Any | None:
    try:
        return importlib.import_module("ml_dtypes")
    except ImportError:
        return None


def resolve_dtype(name: str, who: str) -> np.dtype[Any]:
    """The numpy dtype called ``name``, including the ml_dtypes formats (``bfloat16``, ...)."""
    try:
        return np.dtype(name)
    except TypeError:
        pass
    ml_dtypes = _ml_dtypes()
    scalar = getattr(ml_dtypes, name, None) if ml_dtypes is not None else None
    if scalar is None:
        raise ConfigurationError(f"weight {who!r}: unknown dtype {name}")
    resolved: np.dtype[Any] = np.dtype(scalar)
    return resolved


def _float_fits_float64(dtype: np.dtype[Any]) -> bool:
    """True if every finite value of the ml_dtypes float ``dtype`` is exactly a float64."""
    ml_dtypes = _ml_dtypes()
    if ml_dtypes is None:
        return False
    try:
        info = ml_dtypes.finfo(dtype)
    except (TypeError, ValueError, KeyError):
        return False
    # float64: 52 stored mantissa bits, normal exponents down to -1022, subnormals to 2^-1074.
    return bool(info.nmant <= 52 and info.maxexp <= 1024 and info.minexp - info.nmant >= -1074)


def float_info(dtype: np.dtype[Any]) -> tuple[float, float]:
    """The largest finite value of a floating or complex dtype (of its parts for complex), numpy's
    or ml_dtypes', and the value just below it; ConfigurationError for another dtype."""
    try:
        info: Any = np.finfo(dtype) if dtype.kind in "fc" else _ml_dtypes().finfo(dtype)  # type: ignore[union-attr]
    except (AttributeError, TypeError, ValueError, KeyError) as exc:
        raise ConfigurationError(f"dtype {dtype.name} has no floating-point range") from exc
    part = np.dtype(info.dtype)
    largest = np.array([info.max]).astype(part)
    below = (largest.view(f"u{part.itemsize}") - 1).view(part)  # positive values: one bit pattern down
    return float(largest.astype(np.float64)[0]), float(below.astype(np.float64)[0])


def _is_complex(dtype: np.dtype[Any]) -> bool:
    """True if ``dtype`` keeps an imaginary part (ml_dtypes' complex32, bcomplex32)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            probe = np.array([1j]).astype(dtype).astype(np.complex128)
        except (TypeError, ValueError):
            return False
    return bool(probe[0].imag == 1.0)


def integer_bounds(dtype: np.dtype[Any]) -> tuple[int, int] | None:
    """(min, max) of an integer dtype (numpy's or ml_dtypes' int4/uint4/...), else None."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return int(info.min), int(info.max)
    ml_dtypes = _ml_dtypes()
    if ml_dtypes is None:
        return None
    try:
        ml_info = ml_dtypes.iinfo(dtype)
    except (TypeError, ValueError, KeyError):
        return None
    return int(ml_info.min), int(ml_info.max)


def dtype_kind(dtype: np.dtype[Any], who: str) -> str:
    """How a dtype travels in the vector; ConfigurationError if it cannot exactly."""
    if dtype.kind in "fc":
        if dtype.itemsize <= (8 if dtype.kind == "f" else 16):
            return REAL if dtype.kind == "f" else COMPLEX
        raise ConfigurationError(
            f"weight {who!r}: dtype {dtype.name} does not fit a float64 exactly and cannot be aggregated"
        )
    if dtype.kind == "b":
        return BOOL
    if integer_bounds(dtype) is not None:
        return INTEGER
    if dtype.kind == "V" and _float_fits_float64(dtype):
        return COMPLEX if _is_complex(dtype) else REAL
    raise ConfigurationError(
        f"weight {who!r}: dtype {dtype.name} cannot be aggregated (floating, complex, bool or integer weights only)"
    )


def to_float64(flat: npt.NDArray[Any], kind: str, name: str) -> npt.NDArray[np.float64]:
    """``flat`` (of kind ``kind``) as float64 entries, complex as (real, imaginary) pairs; integers
    beyond 2^53 in magnitude refused (ConfigurationError naming the weight)."""
    if kind == COMPLEX:
        values = flat.astype(np.complex128)  # exact: each part is a float64
        pairs = np.empty((flat.shape[0], 2), dtype=np.float64)
        pairs[:, 0], pairs[:, 1] = values.real, values.imag
        return pairs.reshape(-1)
    # Compare as Python ints: a float64 conversion would round 2^53 + 1 down.
    if kind == INTEGER and flat.size and max(int(flat.max()), -int(flat.min())) > EXACT_INTEGER_LIMIT:
        raise ConfigurationError(f"weight {name!r}: integers beyond 2^53 in magnitude do not fit a float64 exactly")
    with np.errstate(invalid="ignore"):  # NaNs of the narrow formats stay NaNs
        return flat.astype(np.float64)


def from_float64(piece: npt.NDArray[np.float64], dtype: np.dtype[Any], kind: str, spec: ArraySpec) -> npt.NDArray[Any]:
    """``piece`` back in ``dtype`` by the rules of :mod:`secagg.integrations.keras` (rounding; a value
    the dtype cannot hold refused with a ConfigurationError naming the weight)."""
    if kind == REAL:
        with np.errstate(over="ignore", invalid="ignore"):  # check_cast refuses what overflowed
            real: npt.NDArray[Any] = piece.astype(dtype)
            back = real.astype(np.float64)
        if dtype != np.float64:
            check_cast(spec, piece, back, *float_info(dtype))
        return real
    if kind == COMPLEX:
        # Real and imaginary parts set separately: arithmetic like 1j * inf would make NaNs.
        pairs: npt.NDArray[Any] = np.empty(piece.shape[0] // 2, dtype=np.complex128)
        pairs.real, pairs.imag = piece[0::2], piece[1::2]
        with np.errstate(over="ignore", invalid="ignore"):
            complex_: npt.NDArray[Any] = pairs.astype(dtype)
            wide = complex_.astype(np.complex128)
        if dtype != np.complex128:
            check_cast(spec, piece, np.stack([wide.real, wide.imag], axis=-1).reshape(-1), *float_info(dtype))
        return complex_
    if kind == BOOL:
        if not np.isfinite(piece).all():  # NaN would read as "nonzero": True
            raise ConfigurationError(f"weight {spec.name!r}: a value for a bool weight is not finite")
        rounded = np.rint(piece)
        if rounded.size and (rounded.min() < 0 or rounded.max() > 1):  # a bool holds 0 and 1 only: never "nonzero"
            raise ConfigurationError(f"weight {spec.name!r}: values fall outside the range of bool (0 and 1)")
        flags: npt.NDArray[np.bool_] = rounded != 0
        return flags
    integers = np.rint(piece)
    bounds = integer_bounds(dtype)
    assert bounds is not None  # dtype_kind said INTEGER
    # Bounds compared as Python ints: as a float64, int64's max 2^63 - 1 is 2^63, which would wrap.
    if integers.size and (
        not np.isfinite(integers).all() or int(integers.min()) < bounds[0] or int(integers.max()) > bounds[1]
    ):
        raise ConfigurationError(f"weight {spec.name!r}: values fall outside the range of {spec.dtype}")
    return integers.astype(dtype)
