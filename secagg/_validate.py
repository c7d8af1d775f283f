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
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, SupportsIndex, TypeVar, cast

import numpy as np

from secagg.errors import ConfigurationError, ConfigurationTypeError

T = TypeVar("T")

__all__ = [
    "EXACT_INTEGER_LIMIT",
    "check_fields",
    "exact_float64",
    "is_int",
    "require_bool",
    "require_bytes",
    "require_callable",
    "require_finite",
    "require_instance",
    "require_int",
    "require_mapping",
    "require_optional_int",
    "require_optional_path",
    "require_real_array",
    "require_rng",
    "require_sequence",
]


def is_int(value: object) -> bool:
    """True for a Python or numpy integer that is not a ``bool``."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def require_int(name: str, value: object, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as an ``int`` if it is an integer in ``lo..hi`` (both inclusive, None: unbounded)."""
    if not is_int(value):
        raise ConfigurationTypeError(f"{name} must be an integer, got {_describe(value)}")
    number = int(cast(SupportsIndex, value))
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        low = "" if lo is None else str(lo)
        high = "" if hi is None else str(hi)
        raise ConfigurationError(f"{name} must be in {low}..{high}, got {_short(number)}")
    return number


def require_bool(name: str, value: object) -> bool:
    """``value`` if it is a real ``bool`` (``True``/``False``): not ``1``, ``"yes"`` nor ``numpy.bool_``."""
    if not isinstance(value, bool):
        raise ConfigurationTypeError(f"{name} must be True or False, got {_describe(value)}")
    return value


def require_optional_path(name: str, value: object) -> object:
    """``value`` if it is None, a ``str`` or an ``os.PathLike`` of ``str`` (a file to read later)."""
    if value is not None and not isinstance(value, str) and not (
        isinstance(value, os.PathLike) and isinstance(os.fspath(value), str)
    ):
        raise ConfigurationTypeError(f"{name} must be a path (str or os.PathLike) or None, got {_describe(value)}")
    return value


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


REAL_KINDS = "biuf"
"""numpy dtype kinds a float encoder takes: bool, signed and unsigned integers, floats."""


def require_real_array(action: str, values: object) -> np.ndarray[Any, np.dtype[np.float64]]:
    """``values`` as a flat float64 array if it holds real numbers (bool, integer or float dtype).

    Complex arrays are refused rather than cast (the cast drops the imaginary part with only
    numpy's ComplexWarning), and so are object, string, bytes and date/time arrays (the cast
    would parse or reinterpret them): the encoders are exact or refuse. ``action`` names
    what was attempted in the message ("quantize").
    """
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"cannot {action} non-numeric values: {exc}") from exc
    if array.dtype.kind not in REAL_KINDS:
        hint = (
            " (the imaginary part would be lost; pass real and imaginary parts as separate coordinates)"
            if array.dtype.kind == "c"
            else ""
        )
        raise ConfigurationError(
            f"cannot {action} values of dtype {array.dtype.str} ({array.dtype.name}): only real numbers "
            f"(bool, integer or float arrays) are taken{hint}"
        )
    return array.astype(np.float64, copy=False).ravel()


def require_rng(name: str, value: object) -> np.random.Generator:
    """``value`` if it is a ``numpy.random.Generator`` (a subclass too: the test vectors replay
    recorded uniforms through one).

    The one check of every ``rng`` the library takes (quantization's rounding, fl_core's
    aggregators, the Flower nodes): a legacy ``numpy.random.RandomState``, or any other object
    with a ``random`` method, is refused alike, never taken by one entry point and refused by
    another. Such an ``rng`` is never a secret's source: masks, keys, noise and Poisson samples
    come from ``secrets``/``os.urandom`` (or an injected ``random_bytes``/noise source).
    """
    if not isinstance(value, np.random.Generator):
        raise ConfigurationTypeError(
            f"{name} must be a numpy.random.Generator (numpy.random.default_rng()), got {_describe(value)}"
        )
    return value


def require_instance(name: str, value: object, kind: type[T]) -> T:
    """``value`` if it is an instance of ``kind``."""
    if not isinstance(value, kind):
        raise ConfigurationTypeError(f"{name} must be a {kind.__name__}, got {_describe(value)}")
    return value


def require_callable(name: str, value: object) -> Callable[..., Any]:
    """``value`` if it can be called (a randomness source, a callback)."""
    if not callable(value):
        raise ConfigurationTypeError(f"{name} must be callable, got {_describe(value)}")
    return value


def require_mapping(name: str, value: object) -> Mapping[Any, Any]:
    """``value`` if it is a mapping (e.g. client id -> message)."""
    if not isinstance(value, Mapping):
        raise ConfigurationTypeError(f"{name} must be a mapping, got {_describe(value)}")
    return value


EXACT_INTEGER_LIMIT = 1 << 53
"""The largest integer magnitude below which every integer is a float64, exactly."""


def exact_float64(who: str, array: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.float64]] | None:
    """``array`` flat as float64, exactly, for float16/32/64, bool and integers up to 2^53 in magnitude
    (ConfigurationError naming ``who`` for larger integers); None for any other dtype (complex, longdouble,
    str, object, ...), for the caller to convert or refuse in its own words."""
    kind = array.dtype.kind
    if kind in "iu":
        # Compare as integers: a float64 conversion would round 2^53 + 1 down.
        if array.size and (int(array.max()) > EXACT_INTEGER_LIMIT or int(array.min()) < -EXACT_INTEGER_LIMIT):
            raise ConfigurationError(f"{who}: integers beyond 2^53 in magnitude do not fit a float64 exactly")
    elif not (kind == "b" or (kind == "f" and array.dtype.itemsize <= 8)):
        return None
    return array.reshape(-1).astype(np.float64)


def require_sequence(name: str, value: object) -> Sequence[Any]:
    """``value`` if it is a sequence other than ``str``/bytes (a list or tuple of items)."""
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes, bytearray)):
        raise ConfigurationTypeError(f"{name} must be a sequence, got {_describe(value)}")
    return value


def check_fields(
    obj: object,
    *,
    ints: Sequence[str] = (),
    optional_ints: Sequence[str] = (),
    reals: Sequence[str] = (),
    byte_tuples: Sequence[str] = (),
) -> None:
    """Type-check the named fields of a (frozen) dataclass, normalising them in place.

    For use at the top of ``__post_init__``: numpy integers become ``int``,
    integral reals ``float``, sequences of bytes a ``tuple`` of ``bytes``. Ranges
    stay with the class's own checks, which now compare values of known types.
    """
    prefix = type(obj).__name__
    updates: dict[str, Any] = {}
    for name in ints:
        updates[name] = require_int(f"{prefix}.{name}", getattr(obj, name))
    for name in optional_ints:
        updates[name] = require_optional_int(f"{prefix}.{name}", getattr(obj, name))
    for name in reals:
        updates[name] = require_finite(f"{prefix}.{name}", getattr(obj, name))
    for name in byte_tuples:
        items = require_sequence(f"{prefix}.{name}", getattr(obj, name))
        updates[name] = tuple(require_bytes(f"{prefix}.{name}[{i}]", item) for i, item in enumerate(items))
    for name, value in updates.items():
        object.__setattr__(obj, name, value)


def _describe(value: object) -> str:
    return f"{type(value).__name__} {_short(value)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
