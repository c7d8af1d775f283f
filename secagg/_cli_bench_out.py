"""``secagg bench --out DIR``: the folder is the benchmark's; a file of the user's in it is never replaced.

A run replaces ``DIR/SUITE.json``, ``DIR/SUITE.csv``, the suite's plots (``DIR/SUITE_*.png``, the
names :data:`secagg_bench.plotkit.PLOT_NAMES` declares) and ``DIR/summary.md`` (a second run into DIR
supersedes the first), writes its rows as they come to ``DIR/SUITE.partial.jsonl`` (truncated first,
removed at the end) and reads every ``DIR/SUITE.json`` back into the summary. Before any work,
:func:`out_problem` refuses a DIR holding, at one of those names, a regular file ``secagg bench``
did not write: a summary that does not start as its summaries do, a ``.json`` the summary's own
reader refuses (:func:`secagg_bench.report_read.read_report`: a link, a folder or pipe at the name of
a suite not run now, huge, not strict JSON, another schema or suite, a field of the wrong type) or
that does not match the report schema when ``jsonschema`` is installed, a ``.csv`` of a suite run now
with no report of that suite beside it, a plot of a suite run now that
neither carries the PNG ``Software`` mark its plots carry nor is listed by that suite's report, a
partial-results file that does not start as that suite's rows do (an empty one is taken). Other
files in DIR are never touched. :func:`json_partial_problem` makes the same check of
``PATH.partial.jsonl``, where the rows go with ``--json PATH`` and no ``--out``. A folder or special
file at the names of a suite run now is the runner's to refuse
(:func:`secagg_bench.runner.check_outputs`).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
from collections.abc import Sequence
from pathlib import Path

from secagg._files import read_regular_file
from secagg._outputs import atomic_target
from secagg.errors import SecAggError

__all__ = ["PLOT_SOFTWARE", "SUMMARY_START", "json_partial_problem", "out_problem"]

SUMMARY_START = b"# secagg benchmarks\n"
"""How every ``summary.md`` ``secagg bench`` writes starts (:func:`secagg_bench.summary.markdown`)."""

PLOT_SOFTWARE = "secagg bench"
"""The PNG ``Software`` text of every plot ``secagg bench`` writes (:func:`secagg_bench.plotkit.save`)."""
_SOFTWARE_TEXT = b"Software\0" + PLOT_SOFTWARE.encode("ascii")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

MAX_REPORT_BYTES = 1 << 26
"""Largest report read back to tell whether ``secagg bench`` wrote it (64 MiB; a full run's is far smaller)."""


def out_problem(out: str | None, suites: Sequence[str]) -> str | None:
    """Why ``--out out`` would replace or read a file ``secagg bench`` did not write, running
    ``suites``; None if it would not (or if the folder does not exist yet)."""
    if not out or not Path(out).is_dir():
        return None
    folder = Path(out)
    package = importlib.import_module("secagg_bench")
    schema_id: str = importlib.import_module("secagg_bench.report").SCHEMA_ID
    summary = folder / "summary.md"
    if summary.is_file() and not _starts_as_a_summary(summary):
        return _refusal(summary, f"it does not start with {SUMMARY_START.decode().strip()!r}")
    listed: dict[str, frozenset[str]] = {}  # each report's plots, by suite
    for suite in package.SUITES:  # every report in the folder goes into the summary
        report = folder / f"{suite}.json"
        if not os.path.lexists(report) or (suite in suites and not report.is_file() and not report.is_symlink()):
            continue  # a folder or special file at a name the run writes: check_outputs says so
        plots, reason = _read_report(report, suite, schema_id)
        if reason is not None:
            return _refusal(report, reason)
        listed[suite] = plots
    names: dict[str, tuple[str, ...]] = importlib.import_module("secagg_bench.plotkit").PLOT_NAMES
    for suite in suites:
        problem = _suite_problem(folder, suite, listed, names.get(suite, ()))
        if problem is not None:
            return problem
    return None


def _suite_problem(folder: Path, suite: str, listed: dict[str, frozenset[str]], plots: Sequence[str]) -> str | None:
    """Why running ``suite`` into ``folder`` would replace a file of the user's (``listed``: the plots
    of each report in the folder; ``plots``: the suite's plot names), or None."""
    table = folder / f"{suite}.csv"
    if table.is_file() and suite not in listed:
        return _refusal(table, f"no report {suite}.json beside it")
    for name in plots:
        plot = folder / name
        if plot.is_file() and name not in listed.get(suite, ()) and not _marked_plot(plot):
            return _refusal(plot, f"no {PLOT_SOFTWARE!r} mark, and no report {suite}.json listing it")
    partial = folder / f"{suite}.partial.jsonl"
    if partial.is_file() and not _partial_rows(partial, suite):
        return _refusal(partial, f"it does not start as a row of suite {suite!r} does")
    return None


def _refusal(path: Path, reason: str) -> str:
    return (
        f"argument --out: {path} was not written by secagg bench ({reason}); the run would replace or read it: "
        "give a new or empty folder, or move the file"
    )


def json_partial_problem(json_path: str | None, out: str | None, suite: str) -> str | None:
    """Why ``--json json_path`` (without ``--out``) would truncate, then remove, a file ``secagg bench`` did
    not write: ``JSON_PATH.partial.jsonl``, where ``suite``'s rows go as they come, holding a file that does
    not start as those rows do (an empty one is taken); None if it would not."""
    if out or not json_path or atomic_target(json_path) is None:  # --out DIR takes the rows; none beside a pipe
        return None
    partial = Path(f"{json_path}.partial.jsonl")
    if partial.is_file() and not _partial_rows(partial, suite):
        return (
            f"argument --json: {partial} was not written by secagg bench (it does not start as a row of suite "
            f"{suite!r} does); the run would write its rows there, then remove it: move the file"
        )
    return None


def _starts_as_a_summary(path: Path) -> bool:
    try:
        start = read_regular_file(path, "benchmark summary", MAX_REPORT_BYTES)[: len(SUMMARY_START)]
    except SecAggError:
        return False
    return start == SUMMARY_START


def _read_report(path: Path, suite: str, schema_id: str) -> tuple[frozenset[str], str | None]:
    """The plots the report ``path`` of ``suite`` lists and None, or why it is no report of ``suite`` in
    ``schema_id`` the summary can read: the summary's own reader
    (:func:`secagg_bench.report_read.read_report`), then the schema."""
    try:
        document = importlib.import_module("secagg_bench.report_read").read_report(path, suite)
    except SecAggError as exc:
        return frozenset(), str(exc)[:300]
    plots = frozenset(document.get("plots") or ())  # the reader checked: a list of bare file names
    if importlib.util.find_spec("jsonschema") is None:
        return plots, None  # as the summary reads it: by its schema id
    errors: list[str] = importlib.import_module("secagg_bench.report").validate(document)
    return plots, (f"it does not match the report schema: {errors[0][:160]}" if errors else None)


def _marked_plot(path: Path) -> bool:
    """Whether the PNG ``path`` has the ``Software`` text :data:`PLOT_SOFTWARE` among its chunks before
    its image data (where ``secagg bench``'s plots carry it)."""
    try:
        data = read_regular_file(path, "benchmark plot", MAX_REPORT_BYTES)
    except SecAggError:
        return False
    if not data.startswith(_PNG_SIGNATURE):
        return False
    offset = len(_PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = int.from_bytes(data[offset : offset + 4], "big"), data[offset + 4 : offset + 8]
        if kind in (b"IDAT", b"IEND"):
            return False
        if kind == b"tEXt" and data[offset + 8 : offset + 8 + length] == _SOFTWARE_TEXT:
            return True
        offset += 12 + length  # length, type, data, CRC
    return False


def _partial_rows(path: Path, suite: str) -> bool:
    """Whether the file ``path`` starts as ``suite``'s partial results do (each row is
    ``{"suite": SUITE, ...}`` on a line), or is empty: a run that met a full disk may have left it
    so, and truncating an empty file loses nothing."""
    start = b'{"suite": ' + json.dumps(suite).encode("ascii")
    try:
        head = read_regular_file(path, "file of partial results", MAX_REPORT_BYTES)[: len(start)]
    except SecAggError:
        return False
    return start.startswith(head)  # a first row cut short (or none) is a prefix
