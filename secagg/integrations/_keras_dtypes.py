"""How a Keras weight's dtype travels in the float64 vector, and which dtypes are refused.

Keras weights come as numpy arrays whose dtype may be numpy's or one of the
narrow formats of ``ml_dtypes`` (bfloat16, float8/6/4, int4, complex32, ...).
:func:`dtype_kind` says how one travels: :data:`REAL` (every value exactly a
float64, checked against ``ml_dtypes.finfo`` for the narrow formats),
:data:`COMPLEX` (two entries per element), :data:`INTEGER` or :data:`BOOL`
(exact integer segments); any other dtype is refused with a
:class:`~secagg.errors.ConfigurationError` naming the weight. ``ml_dtypes`` is
optional: without it only numpy's dtypes are known.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

import numpy as np

from secagg.errors import ConfigurationError

__all__ = ["BOOL", "COMPLEX", "INTEGER", "REAL", "dtype_kind", "float_info", "integer_bounds", "resolve_dtype"]

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
