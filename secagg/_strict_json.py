"""Strict JSON for the files the library reads back (test vectors, the DP accountant's state).

Python's ``json`` keeps the last of a repeated name in an object (another reader may keep the
first or refuse), accepts ``NaN`` and ``Infinity``, which are not JSON, reads ``1e999`` as an
infinity and ``1e-400`` as 0.0, silently. :func:`strict_loads` refuses all four with
:class:`~secagg.errors.DecodeError`, so two readers of one file never see two different documents.

It also refuses an integer of more than :data:`MAX_INT_DIGITS` digits before converting it: Python
converts d decimal digits in time superlinear in d, and only the process-wide
``sys.set_int_max_str_digits`` setting (which any code of the process may turn off) would otherwise
stop a file of one long number.
"""

from __future__ import annotations

import json
import math
from typing import Any

from secagg.errors import DecodeError

__all__ = ["MAX_INT_DIGITS", "strict_loads"]

MAX_INT_DIGITS = len(str((1 << 64) - 1))
"""The most digits of an integer the files hold (20: a u64 word of a test vector; a count of the
accountant's state is at most 2^32 - 1), its sign aside."""


def strict_loads(data: bytes | str) -> Any:
    """The JSON value in ``data``; DecodeError (saying why) for a repeated name in an object, a
    non-JSON constant, a number beyond binary64 (or nonzero that would read as 0) or an integer of
    more than :data:`MAX_INT_DIGITS` digits; ``json``'s own ValueError (UnicodeDecodeError included)
    or RecursionError for text that is not JSON, for the caller to word."""
    return json.loads(
        data, object_pairs_hook=_no_duplicates, parse_constant=_no_constant, parse_float=_finite, parse_int=_short_int
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DecodeError(f"it repeats the name {key[:40]!r} in one object")
        out[key] = value
    return out


def _no_constant(name: str) -> None:
    raise DecodeError(f"it holds {name}, which is not JSON (non-finite floats are the strings \"NaN\", ...)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise DecodeError(f"it holds the number {text[:40]}, beyond binary64")
    if value == 0.0 and any(digit in "123456789" for digit in text.partition("e")[0].partition("E")[0]):
        raise DecodeError(f"it holds the number {text[:40]}, nonzero but below binary64 (it would read as 0)")
    return value


def _short_int(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > MAX_INT_DIGITS:
        raise DecodeError(f"it holds an integer of {digits} digits, more than the widest it may ({MAX_INT_DIGITS})")
    return int(text)
