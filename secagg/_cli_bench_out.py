"""``secagg bench --out DIR``: the folder is the benchmark's; a file of the user's in it is never replaced.

A run replaces ``DIR/SUITE.json``, ``DIR/SUITE.csv`` and ``DIR/summary.md`` (a second run into DIR
supersedes the first) and reads every ``DIR/SUITE.json`` back into the summary. Before any work,
:func:`out_problem` refuses a DIR holding, at one of those names, a regular file ``secagg bench``
did not write: a summary that does not start as its summaries do, a ``.json`` the summary's own
reader refuses (:func:`secagg_bench.report_read.read_report`: a link, a folder or pipe at the name of
a suite not run now, huge, not strict JSON, another schema or suite, a field of the wrong type) or
that does not match the report schema when ``jsonschema`` is installed, a ``.csv`` of a suite run now
with no report of that suite beside it. Other files in DIR are never touched. A folder or special
file at the names of a suite run now is the runner's to refuse
(:func:`secagg_bench.runner.check_outputs`).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

from secagg._files import read_regular_file
from secagg.errors import SecAggError

__all__ = ["SUMMARY_START", "out_problem"]

SUMMARY_START = b"# secagg benchmarks\n"
"""How every ``summary.md`` ``secagg bench`` writes starts (:func:`secagg_bench.summary.markdown`)."""

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
    for suite in package.SUITES:  # every report in the folder goes into the summary
        report = folder / f"{suite}.json"
        if not os.path.lexists(report) or (suite in suites and not report.is_file() and not report.is_symlink()):
            continue  # a folder or special file at a name the run writes: check_outputs says so
        reason = _report_problem(report, suite, schema_id)
        if reason is not None:
            return _refusal(report, reason)
    for suite in suites:
        table = folder / f"{suite}.csv"
        if table.is_file() and not (folder / f"{suite}.json").is_file():
            return _refusal(table, f"no report {suite}.json beside it")
    return None


def _refusal(path: Path, reason: str) -> str:
    return (
        f"argument --out: {path} was not written by secagg bench ({reason}); the run would replace or read it: "
        "give a new or empty folder, or move the file"
    )


def _starts_as_a_summary(path: Path) -> bool:
    try:
        start = read_regular_file(path, "benchmark summary", MAX_REPORT_BYTES)[: len(SUMMARY_START)]
    except SecAggError:
        return False
    return start == SUMMARY_START


def _report_problem(path: Path, suite: str, schema_id: str) -> str | None:
    """Why ``path`` is no report of ``suite`` in ``schema_id`` the summary can read, or None: the
    summary's own reader (:func:`secagg_bench.report_read.read_report`), then the schema."""
    try:
        document = importlib.import_module("secagg_bench.report_read").read_report(path, suite)
    except SecAggError as exc:
        return str(exc)[:300]
    if importlib.util.find_spec("jsonschema") is None:
        return None  # as the summary reads it: by its schema id
    errors: list[str] = importlib.import_module("secagg_bench.report").validate(document)
    return f"it does not match the report schema: {errors[0][:160]}" if errors else None
