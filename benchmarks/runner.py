"""``secagg bench SUITE [--quick|--full] [--out DIR]``: run suites, write and check their reports.

For each suite: run it (progress bar on stderr, one line per configuration on
stdout), then, with ``--out``, write ``DIR/SUITE.json``, ``DIR/SUITE.csv`` and
``DIR/SUITE_*.png``, check the JSON against the shipped schema, and rebuild
``DIR/summary.md`` from every report in DIR. ``--json PATH`` also writes the
suite's report to PATH.

Every result row is also appended to ``DIR/SUITE.partial.jsonl`` (with
``--json PATH`` only: ``PATH.partial.jsonl``) the moment it is measured, one
JSON object a line, and that file is removed once the full report is written:
after Ctrl-C (or a crash) it holds what the run had measured, and the runner
says where.

Exit status: 0; 1 if an aggregate was not exact, a report failed its schema
or a suite of ``all`` failed (the others still run); Ctrl-C propagates
(``secagg`` exits 130).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from secagg._cli_stdout import StdoutBrokenPipeError, StdoutWriteError
from secagg._install import install_hint
from secagg._outputs import atomic_target, output_problem, standard_stream
from secagg.errors import ConfigurationError, SecAggError

from . import SUITES, plots
from .common import RunContext, format_value, suite_module
from .plotkit import PLOT_NAMES
from .progress import on_terminal
from .report import Row, SuiteReport, _finite_tree, validate
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


class PartialResults:
    """The rows of one suite as they are measured, appended to ``path`` (one JSON object
    a line, flushed at once); ``path`` None keeps them in memory only."""

    def __init__(self, suite: str, path: Path | None) -> None:
        self.suite = suite
        self.path = path
        self.rows = 0
        self.failed = False
        self._file: IO[str] | None = None

    def keep(self, row: Row) -> None:
        """Record one measured row. A file that cannot be written (a full disk) is given up with one
        warning: the run goes on, its report is still written at the end."""
        self.rows += 1
        if self.path is None or self.failed:
            return
        line = json.dumps({"suite": self.suite, **_finite_tree(row)}, allow_nan=False) + "\n"
        try:
            if self._file is None:
                self._file = self.path.open("w", encoding="utf-8")
            self._file.write(line)
            self._file.flush()
        except OSError as exc:
            self.failed = True
            self.close()
            print(
                f"secagg bench {self.suite}: cannot keep results in {self.path}: {exc.strerror or exc}; the run "
                "goes on (its report is written at the end, each result is printed as it comes)",
                file=sys.stderr,
            )

    def kept(self) -> str:
        """Where the rows measured so far are, for a message."""
        count = f"{self.rows} result{'s' if self.rows != 1 else ''}"
        if self.path is None or self.failed or self.rows == 0:
            return f"the {count} measured {'is' if self.rows == 1 else 'are'} printed above"
        return f"the {count} measured {'is' if self.rows == 1 else 'are'} kept in {self.path}"

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):  # its rows were flushed one by one
                self._file.close()
            self._file = None

    def discard(self) -> None:
        """The full report is written: the partial file has served."""
        self.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def interrupted(self) -> str:
        """Close the file; the line saying what was kept."""
        self.close()
        if self.rows == 0:
            return f"secagg bench {self.suite}: interrupted before the first result"
        count = f"{self.rows} result{'s' if self.rows != 1 else ''}"
        if self.path is None or self.failed:
            return f"secagg bench {self.suite}: interrupted after {count} (printed above; --out DIR keeps a file)"
        return f"secagg bench {self.suite}: interrupted; the {count} measured so far are in {self.path}"


def partial_path(suite: str, args: argparse.Namespace) -> Path | None:
    """Where ``suite``'s rows go as they are measured: ``DIR/SUITE.partial.jsonl``,
    ``PATH.partial.jsonl`` with ``--json PATH`` only, or nowhere."""
    if getattr(args, "out", None):
        return Path(args.out) / f"{suite}.partial.jsonl"
    if getattr(args, "json", None) and atomic_target(args.json) is not None:  # not beside /dev/stdout, a pipe
        return Path(f"{args.json}.partial.jsonl")
    return None


def check_outputs(suites: Sequence[str], args: argparse.Namespace) -> None:
    """Before any suite runs: every file the run will write at a known name (``DIR/SUITE.json``,
    ``.csv``, ``.partial.jsonl``, the suite's plots (:data:`~secagg_bench.plotkit.PLOT_NAMES`),
    ``DIR/summary.md``; ``PATH.partial.jsonl``) can be written (not a folder, not read-only);
    ConfigurationError naming the first that cannot."""
    out = Path(args.out) if getattr(args, "out", None) else None
    paths: list[tuple[str, Path]] = []
    for suite in suites:
        if out is not None:
            paths += [("benchmark report", out / f"{suite}.json"), ("benchmark CSV", out / f"{suite}.csv")]
            paths += [("benchmark plot", out / name) for name in PLOT_NAMES.get(suite, ())]  # written last
        partial = partial_path(suite, args)
        if partial is not None:
            paths.append(("file of partial results", partial))
    if out is not None:
        paths.append(("benchmark summary", out / "summary.md"))
    for what, path in paths:
        if not path.parent.exists():
            continue  # the --out folder, created when the run starts (checked while parsing)
        problem = output_problem(path)
        if problem is not None:
            raise ConfigurationError(f"cannot write the {what} {path}: {problem}")


def run_suite(suite: str, args: argparse.Namespace, partial: PartialResults | None = None) -> SuiteReport:
    """Run one suite with the options in ``args`` (those the suite takes); every row
    also goes to ``partial`` as soon as it is measured."""
    module = suite_module(suite)  # a Paillier suite without gmpy2 or phe: ConfigurationError naming it
    overrides = {name: getattr(args, name, None) for name in module.OPTIONS} if args.suite != "all" else {}
    context = RunContext(
        mode=getattr(args, "preset", None) or "custom",
        command=command_line(args, module.OPTIONS if args.suite != "all" else ()),
        progress=not getattr(args, "no_progress", False),
        keep=None if partial is None else partial.keep,
    )
    report: SuiteReport = module.run(overrides, context)
    return report


def _write(report: SuiteReport, out: Path) -> SuiteReport:
    """Plots, JSON and CSV of ``report`` into ``out``; returns the report with its plot names. The
    report goes before its CSV: a write that fails (a full disk) never leaves a new CSV without its
    report, which a re-run's ``--out`` check would take for the user's file
    (:mod:`secagg._cli_bench_out`); the plots carry their own mark."""
    out.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    if plots.available():
        names = plots.plot(report, out)
    else:
        print(f"{report.suite}: matplotlib is not installed ({install_hint('bench')}): no plots", file=sys.stderr)
    report = SuiteReport(**{**report.__dict__, "plots": tuple(names)})
    report.write_json(out / f"{report.suite}.json")
    report.write_csv(out / f"{report.suite}.csv")
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


def _summary_after_interrupt(out: Path) -> None:
    """On Ctrl-C, the summary of the suites that finished; a failed write is one line on stderr, so
    that the interrupt, not the write, ends the command (exit code 130)."""
    try:
        print(f"wrote {write_summary(out)} (the suites that finished)", file=sys.stderr)
    except SecAggError as exc:
        print(f"secagg bench: {exc} (the reports of the suites that finished are in {out})", file=sys.stderr)


def main(args: argparse.Namespace) -> int:
    """Entry point of ``secagg bench``: see the module docstring."""
    suites = list(SUITES) if args.suite == "all" else [args.suite]
    out = Path(args.out) if getattr(args, "out", None) else None
    created = out is not None and not out.exists()
    check_outputs(suites, args)
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)  # checked while parsing: it can be created
        except OSError as exc:
            raise ConfigurationError(f"cannot create the folder {out}: {exc.strerror or exc}") from exc
    status = 0
    began = time.perf_counter()
    written = 0
    for suite in suites:
        partial = PartialResults(suite, partial_path(suite, args))
        try:
            report = run_suite(suite, args, partial)
        except KeyboardInterrupt:
            print(("\n" if on_terminal() else "") + partial.interrupted(), file=sys.stderr)  # past the ^C
            if out is not None and written:
                _summary_after_interrupt(out)
            elif created and out is not None and not any(out.iterdir()):
                out.rmdir()  # nothing measured: leave no empty folder behind
            raise
        except (StdoutBrokenPipeError, StdoutWriteError):
            partial.close()  # stdout failed (`| head`, a full disk): the command ends (141 or 2), not the suite
            raise
        except Exception as exc:
            partial.close()  # in ``all``, one failing suite must not hide the others
            if len(suites) == 1:
                raise
            print(f"secagg bench {suite}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            status = EXIT_FAILED
            continue
        try:
            if out is not None:
                report = _write(report, out)
            if getattr(args, "json", None):
                report.write_json(Path(args.json))
                if standard_stream(args.json) is None:
                    print(f"wrote {args.json}")
        except SecAggError as exc:  # a full disk: say where the measured rows are (a --json path was
            partial.close()  # checked while parsing, DIR's files by check_outputs)
            raise ConfigurationError(f"{exc}; {partial.kept()}") from exc
        partial.discard()
        written += 1
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
