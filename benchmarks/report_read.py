"""Reading a ``SUITE.json`` report back (for ``summary.md`` and ``secagg bench --out``'s check).

A report folder is the user's: whatever sits at ``DIR/SUITE.json`` may not be a report
``secagg bench`` wrote. :func:`read_report` reads it as an untrusted file: a regular file, not a
link (``secagg bench`` writes none), of at most :data:`MAX_REPORT_BYTES`, strict JSON
(:func:`secagg._strict_json.strict_loads`), a report of this schema and of the suite its name
says, every field the summary shows of the type it is shown as (finite numbers, strings free of
control characters, plot names that are bare file names). Anything else is refused with the
library's error, one line naming the file: DecodeError for the content, ConfigurationError for
what is at the path (a folder, a pipe, an unreadable file).
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from secagg._cli_bench_out import MAX_REPORT_BYTES
from secagg._files import read_regular_file
from secagg._strict_json import strict_loads
from secagg.errors import DecodeError

from .report import SCHEMA_ID, Column

__all__ = ["MAX_REPORT_BYTES", "check_report", "read_report"]

_NUMERIC_UNITS = frozenset({"s", "x", "bytes", "int", "pct", "f3", "acc"})
"""Units :func:`secagg_bench.common.format_value` shows as numbers (a string there is no value)."""


def read_report(path: Path, suite: str) -> dict[str, Any]:
    """The report of ``suite`` in the file ``path``, checked (see the module docstring)."""
    if os.path.islink(path):
        raise DecodeError(f"the benchmark report {path} is a symbolic link; secagg bench writes none: move it away")
    data = read_regular_file(path, "benchmark report", MAX_REPORT_BYTES, follow_symlinks=False, too_large=DecodeError)
    try:
        document = strict_loads(data)
    except DecodeError as exc:
        raise DecodeError(f"the benchmark report {path} is not valid JSON: {exc}") from exc
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise DecodeError(f"the benchmark report {path} is not valid JSON: {reason}") from exc
    try:
        check_report(document, suite)
    except DecodeError as exc:
        raise DecodeError(f"the benchmark report {path} is not a report secagg bench wrote: {exc}") from None
    return dict(document)


def check_report(document: object, suite: str) -> None:
    """Raise DecodeError (saying why, without the file's name) unless ``document`` is a report of
    ``suite`` the summary can show."""
    if not isinstance(document, dict):
        raise DecodeError("not a JSON object")
    if document.get("schema") != SCHEMA_ID:
        raise DecodeError(f"not of schema {SCHEMA_ID}")
    _no_control_characters(document)
    if document.get("suite") != suite:
        raise DecodeError(f"its suite is {_brief(document.get('suite'))}, not {suite!r}")
    for name in ("command", "mode", "started"):
        _text(document.get(name), name)
    _real(document.get("seconds"), "seconds")
    if not isinstance(document.get("machine"), dict):
        raise DecodeError("machine is not a JSON object")
    for note in _list(document.get("notes"), "notes"):
        _text(note, "a note")
    for plot in _list(document.get("plots"), "plots"):
        if not isinstance(plot, str) or "/" in plot or "\\" in plot or plot in ("", ".", ".."):
            raise DecodeError(f"the plot {_brief(plot)} is not a file name in the report's folder")
    for target in _list(document.get("targets"), "targets"):
        _target(target)
    columns: tuple[Column, ...] = importlib.import_module(f"{__package__}.{suite}").COLUMNS
    for row in _list(document.get("results"), "results"):
        _row(row, columns)


def _target(target: object) -> None:
    if not isinstance(target, dict):
        raise DecodeError("a target is not a JSON object")
    for name in ("name", "description", "comparison"):
        _text(target.get(name), f"a target's {name}")
    for name in ("limit", "achieved"):
        if target.get(name) is not None:
            _real(target.get(name), f"a target's {name}")
    met = target.get("met")
    if met is not None and not isinstance(met, bool):
        raise DecodeError(f"a target's met is {_brief(target.get('met'))}, not true, false or null")


def _row(row: object, columns: tuple[Column, ...]) -> None:
    if not isinstance(row, dict):
        raise DecodeError("a result is not a JSON object")
    for column in columns:
        values = row.get(column.source)
        if not isinstance(values, dict):
            raise DecodeError(f"a result's {column.source} is not a JSON object")
        value = values.get(column.key)
        where = f"a result's {column.source}.{column.key}"
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, str) and column.unit not in _NUMERIC_UNITS:
            continue
        _real(value, where)


def _text(value: object, where: str) -> None:
    if not isinstance(value, str):
        raise DecodeError(f"{where} is {_brief(value)}, not a string")


def _real(value: object, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DecodeError(f"{where} is {_brief(value)}, not a number")
    try:
        finite = math.isfinite(float(value))
    except OverflowError:
        finite = False
    if not finite:
        raise DecodeError(f"{where} is a number beyond binary64")


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise DecodeError(f"{where} is {_brief(value)}, not a list")
    return value


def _no_control_characters(document: Mapping[str, Any]) -> None:
    """Refuse a string (or an object's name) holding a control character: a line break in a cell
    or a note would reshape the Markdown summary around it."""
    pending: list[object] = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str) and any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value):
            raise DecodeError(f"the string {_brief(value)} holds a control character")


def _brief(value: object) -> str:
    """``value`` for an error message: its JSON type, or the start of a string or number."""
    if isinstance(value, str):
        return ascii(value[:40])
    if value is None or isinstance(value, bool | int | float):
        return ascii(value) if not isinstance(value, int) or abs(value) < 10**40 else "a huge integer"
    return "a JSON object" if isinstance(value, dict) else "a JSON array"
