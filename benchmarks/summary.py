"""``summary.md``: every suite report in a folder as Markdown tables.

Built from the ``SUITE.json`` files themselves, so suites run one at a time
into the same folder add up to one summary.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from secagg._outputs import write_output

from . import SUITES
from .common import format_value
from .report import Column
from .report_read import read_report

__all__ = ["load_reports", "markdown", "write_summary"]


def load_reports(folder: Path) -> list[dict[str, Any]]:
    """The reports in ``folder``, in suite order: whatever is at a ``SUITE.json`` name must be a
    report of that suite in this schema (:func:`secagg_bench.report_read.read_report`: the library's
    DecodeError or ConfigurationError, one line naming the file, otherwise)."""
    paths = [(suite, folder / f"{suite}.json") for suite in SUITES]
    return [read_report(path, suite) for suite, path in paths if os.path.lexists(path)]


def write_summary(folder: Path) -> Path:
    """Write ``folder/summary.md`` from the reports in ``folder``, atomically; returns its path."""
    path = folder / "summary.md"
    write_output(path, "benchmark summary", markdown(load_reports(folder)).encode("utf-8"))
    return path


def _suite_module(suite: str) -> Any:
    return importlib.import_module(f"{__package__}.{suite}")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines.extend("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows)
    return lines


def _met(value: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "reported"}[value]


def targets_table(documents: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every target of every report: the bound, what was achieved, met or not."""
    rows = []
    for document in documents:
        for target in document["targets"]:
            bound = "-" if target["limit"] is None else f"{target['comparison']} {target['limit']:g}"
            achieved = "-" if target["achieved"] is None else f"{target['achieved']:.3g}"
            rows.append(
                [document["suite"], target["name"], bound, achieved, _met(target["met"]), target["description"]]
            )
    return _table(["suite", "target", "bound", "achieved", "", "what"], rows) if rows else []


def suite_section(document: Mapping[str, Any]) -> list[str]:
    """One suite: command, table, targets, notes and plots."""
    module = _suite_module(document["suite"])
    columns: Sequence[Column] = module.COLUMNS
    lines = [
        f"## {module.TITLE} (`{document['suite']}`)",
        "",
        f"`{document['command']}` — {document['mode']} run, {document['seconds']:.0f} s, started {document['started']}",
        "",
    ]
    lines.extend(
        _table(
            [c.header for c in columns],
            [[format_value(r[c.source].get(c.key), c.unit) for c in columns] for r in document["results"]],
        )
    )
    lines.append("")
    if document["notes"]:
        lines.extend(f"- {note}" for note in document["notes"])
        lines.append("")
    lines.extend(f"![{name}]({name})" for name in document["plots"])
    if document["plots"]:
        lines.append("")
    return lines


def markdown(documents: Sequence[Mapping[str, Any]]) -> str:
    """The whole summary: machine, targets across suites, then one section per suite."""
    if not documents:
        return "# secagg benchmarks\n\nNo reports found.\n"
    machine = documents[0]["machine"]
    lines = [
        "# secagg benchmarks",
        "",
        f"Machine: {machine.get('cpu_model')}, {machine.get('cpus')} CPUs, {machine.get('memory_gib')} GiB, "
        f"{machine.get('platform')}; Python {machine.get('python')}, numpy {machine.get('numpy')}, "
        f"{machine.get('openssl', 'OpenSSL ?')}, {machine.get('gmp', 'GMP ?')}; secagg {machine.get('secagg')}. "
        f"Load average at start: {machine.get('load_average', '?')}.",
        "",
    ]
    targets = targets_table(documents)
    if targets:
        lines.extend(["## Targets (ratios measured in the same run)", "", *targets, ""])
    for document in documents:
        lines.extend(suite_section(document))
    return "\n".join(lines).rstrip() + "\n"
