"""Argument checks shared by every public constructor and entry point.

Each helper returns the checked value (normalised to the plain Python type) or
raises :class:`~secagg.errors.ConfigurationTypeError` for a wrong type and
:class:`~secagg.errors.ConfigurationError` for a value out of range, so that no
foreign ``TypeError``, ``OverflowError`` or ``MemoryError`` escapes from deeper
code. Conventions:

- ``bool`` is not an integer; numpy integer scalars are (``np.int64(3)`` -> 3).
- floats are never integers, not even ``5.0``: a float count is a caller's bug.
- NaN and infinities are refused wherever a real number is expected.
- bytes parameters take ``bytes`` (``bytearray``/``memoryview`` are copied to
  ``bytes``); ``str`` and ``None`` are refused.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from secagg.errors import ConfigurationError, ConfigurationTypeError

__all__ = ["is_int", "require_bytes", "require_finite", "require_int", "require_optional_int", "require_rng"]


def is_int(value: object) -> bool:
    """True for a Python or numpy integer that is not a ``bool``."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def require_int(name: str, value: object, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as an ``int`` if it is an integer in ``lo..hi`` (both inclusive, None: unbounded)."""
    if not is_int(value):
        raise ConfigurationTypeError(f"{name} must be an integer, got {_describe(value)}")
    number = int(value)  # type: ignore[call-overload]
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        low = "" if lo is None else str(lo)
        high = "" if hi is None else str(hi)
        raise ConfigurationError(f"{name} must be in {low}..{high}, got {_short(number)}")
    return number


def require_optional_int(name: str, value: object, lo: int | None = None, hi: int | None = None) -> int | None:
    """:func:`require_int`, but ``None`` passes through unchanged."""
    return None if value is None else require_int(name, value, lo, hi)


def require_finite(
    name: str, value: object, lo: float | None = None, hi: float | None = None, *, open_hi: bool = False
) -> float:
    """``value`` as a ``float`` if it is a finite real number in ``[lo, hi]`` (``[lo, hi)`` if ``open_hi``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ConfigurationTypeError(f"{name} must be a real number, got {_describe(value)}")
    try:
        number = float(value)
    except OverflowError as exc:  # an int beyond the float range
        raise ConfigurationError(f"{name} is too large: {_short(value)}") from exc
    if not math.isfinite(number):
        raise ConfigurationError(f"{name} must be finite, got {number}")
    above = hi is not None and (number >= hi if open_hi else number > hi)
    if (lo is not None and number < lo) or above:
        bracket = ")" if open_hi else "]"
        raise ConfigurationError(f"{name} must be in [{lo}, {hi}{bracket}, got {number}")
    return number


def require_bytes(name: str, value: object, size: int | None = None, *, max_size: int | None = None) -> bytes:
    """``value`` as ``bytes`` if it is bytes-like, of exactly ``size`` bytes or at most ``max_size``."""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ConfigurationTypeError(f"{name} must be bytes, got {_describe(value)}")
    data = bytes(value)
    if size is not None and len(data) != size:
        raise ConfigurationError(f"{name} must be {size} bytes, got {len(data)}")
    if max_size is not None and len(data) > max_size:
        raise ConfigurationError(f"{name} must be at most {max_size} bytes, got {len(data)}")
    return data


def require_rng(name: str, value: object) -> np.random.Generator:
    """``value`` if it is a ``numpy.random.Generator``."""
    if not isinstance(value, np.random.Generator):
        raise ConfigurationTypeError(f"{name} must be a numpy.random.Generator, got {_describe(value)}")
    return value


def _describe(value: object) -> str:
    return f"{type(value).__name__} {_short(value)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
