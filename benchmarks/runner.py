"""``secagg bench SUITE [--quick|--full] [--out DIR]``: run suites, write and check their reports.

For each suite: run it (progress bar on stderr, one line per configuration on
stdout), then, with ``--out``, write ``DIR/SUITE.json``, ``DIR/SUITE.csv`` and
``DIR/SUITE_*.png``, check the JSON against the shipped schema, and rebuild
``DIR/summary.md`` from every report in DIR. ``--json PATH`` also writes the
suite's report to PATH.

Exit status: 0; 1 if an aggregate was not exact, a report failed its schema
or a suite of ``all`` failed (the others still run).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from secagg.errors import install_hint

from . import SUITES, plots
from .common import RunContext, format_value
from .report import SuiteReport, validate
from .summary import targets_table, write_summary

__all__ = ["command_line", "main", "run_suite"]

EXIT_FAILED = 1


def command_line(args: argparse.Namespace, options: Sequence[str] = ()) -> str:
    """The ``secagg bench`` command equivalent to ``args`` (recorded in every report)."""
    parts = ["secagg", "bench", args.suite]
    if getattr(args, "preset", None):
        parts.append(f"--{args.preset}")
    for name in options:
        value = getattr(args, name, None)
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, list | tuple):
            parts.extend([flag, *map(str, value)])
        else:
            parts.extend([flag, str(value)])
    if getattr(args, "out", None):
        parts.extend(["--out", str(args.out)])
    return " ".join(parts)


def run_suite(suite: str, args: argparse.Namespace) -> SuiteReport:
    """Run one suite with the options in ``args`` (those the suite takes)."""
    module = importlib.import_module(f"{__package__}.{suite}")
    overrides = {name: getattr(args, name, None) for name in module.OPTIONS} if args.suite != "all" else {}
    context = RunContext(
        mode=getattr(args, "preset", None) or "custom",
        command=command_line(args, module.OPTIONS if args.suite != "all" else ()),
        progress=not getattr(args, "no_progress", False),
    )
    report: SuiteReport = module.run(overrides, context)
    return report


def _write(report: SuiteReport, out: Path) -> SuiteReport:
    """Plots, CSV and JSON of ``report`` into ``out``; returns the report with its plot names."""
    out.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    if plots.available():
        names = plots.plot(report, out)
    else:
        print(f"{report.suite}: matplotlib is not installed ({install_hint('bench')}): no plots", file=sys.stderr)
    report = SuiteReport(**{**report.__dict__, "plots": tuple(names)})
    report.write_csv(out / f"{report.suite}.csv")
    report.write_json(out / f"{report.suite}.json")
    return report


def _check(report: SuiteReport) -> list[str]:
    """Schema violations of the report; none (with a note) when jsonschema is missing."""
    if importlib.util.find_spec("jsonschema") is None:
        print(f"{report.suite}: jsonschema is not installed: report not checked against its schema", file=sys.stderr)
        return []
    return validate(report.to_json())


def _print_targets(report: SuiteReport) -> None:
    for line in targets_table([report.to_json()]):
        print(line)


def main(args: argparse.Namespace) -> int:
    """Entry point of ``secagg bench``: see the module docstring."""
    suites = list(SUITES) if args.suite == "all" else [args.suite]
    out = Path(args.out) if getattr(args, "out", None) else None
    status = 0
    began = time.perf_counter()
    for suite in suites:
        try:
            report = run_suite(suite, args)
        except Exception as exc:  # in ``all``, one failing suite must not hide the others
            if len(suites) == 1:
                raise
            print(f"secagg bench {suite}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            status = EXIT_FAILED
            continue
        if out is not None:
            report = _write(report, out)
        if getattr(args, "json", None):
            report.write_json(Path(args.json))
            print(f"wrote {args.json}")
        errors = _check(report)
        if errors:
            print(f"{suite}: report does not match the schema:", *errors, sep="\n  ", file=sys.stderr)
            status = EXIT_FAILED
        if not report.exact:
            print(f"{suite}: an aggregate was NOT exact", file=sys.stderr)
            status = EXIT_FAILED
        rows = len(report.results)
        print(f"{suite}: {rows} result{'s' if rows != 1 else ''} in {format_value(report.seconds, 's')}")
        _print_targets(report)
    if out is not None:
        print(f"wrote {write_summary(out)} ({format_value(time.perf_counter() - began, 's')} in all)")
    return status
