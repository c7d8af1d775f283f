"""Strict JSON for the files the library reads back (test vectors, the DP accountant's state).

Python's ``json`` keeps the last of a repeated name in an object (another reader may keep the
first or refuse), accepts ``NaN`` and ``Infinity``, which are not JSON, and reads ``1e999`` as an
infinity, silently. :func:`strict_loads` refuses all three with :class:`~secagg.errors.DecodeError`,
so two readers of one file never see two different documents.
"""

from __future__ import annotations

import json
import math
from typing import Any

from secagg.errors import DecodeError

__all__ = ["strict_loads"]


def strict_loads(data: bytes | str) -> Any:
    """The JSON value in ``data``; DecodeError (saying why) for a repeated name in an object, a
    non-JSON constant or a number beyond binary64; ``json``'s own ValueError (UnicodeDecodeError
    included) or RecursionError for text that is not JSON, for the caller to word."""
    return json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_no_constant, parse_float=_finite)


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
    return value
