"""What every suite shares: the run context, option presets, number formatting."""

from __future__ import annotations

import copy
import datetime
import importlib
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from fl_core.aggregators.paillier_import import paillier_dependency

from . import PAILLIER_SUITES, floors
from .progress import on_terminal
from .report import Column, Row, SuiteReport, machine

__all__ = ["MODES", "RunContext", "format_value", "resolve", "row_line", "suite_module", "utc_now"]

MODES = ("quick", "full", "custom")
"""``--quick``, ``--full``, or neither (the options given, with the suite's defaults)."""

FLOOR_KEY_BITS = {"quick": (2048, 3072), "full": (2048, 3072, 4096), "custom": (2048, 3072)}
FLOOR_SAMPLES = {"quick": 7, "full": 15, "custom": 11}


@dataclass(frozen=True)
class RunContext:
    """How a suite runs: its mode, the command line that started it, progress bars, and
    ``keep``, which gets every result row as soon as it is measured (the runner writes
    them to ``SUITE.partial.jsonl``, so an interrupted run keeps what it measured)."""

    mode: str
    command: str
    progress: bool = True
    keep: Callable[[Row], None] | None = field(default=None, compare=False)

    def measured(self, row: Row) -> None:
        """Hand a freshly measured result row to :attr:`keep`."""
        if self.keep is not None:
            self.keep(row)

    def status(self, line: str) -> None:
        """A line on stderr before a wait without a bar (only on a terminal, with progress on)."""
        if self.progress and on_terminal():
            print(line, file=sys.stderr, flush=True)

    def report(self, suite: str, started: str, clock: float, **fields: Any) -> SuiteReport:
        """``suite``'s report with this run's bookkeeping filled in: mode, command,
        machine, start time and the seconds since ``clock`` (a perf_counter value)."""
        return SuiteReport(
            suite=suite,
            mode=self.mode,
            command=self.command,
            machine=machine(),
            started=started,
            seconds=time.perf_counter() - clock,
            **fields,
        )

    def floors(self) -> dict[str, Any]:
        """The hardware floors of this run (measured once per process)."""
        self.status("measuring the hardware floors (AES-128-CTR keystream, numpy adds, powmod)...")
        return floors.measure(key_bits=FLOOR_KEY_BITS[self.mode], powmod_samples=FLOOR_SAMPLES[self.mode])


def suite_module(suite: str) -> ModuleType:
    """``suite``'s module; for a suite of :data:`~secagg_bench.PAILLIER_SUITES`, gmpy2 and phe are
    imported first: ConfigurationError naming a missing one (make_aggregator's loader,
    :func:`~fl_core.aggregators.paillier_import.paillier_dependency`), not a traceback."""
    if suite in PAILLIER_SUITES:
        for package in ("gmpy2", "phe"):
            paillier_dependency(package, f"secagg bench {suite}")
    return importlib.import_module(f"{__package__}.{suite}")


def resolve(presets: Mapping[str, Mapping[str, Any]], mode: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The preset of ``mode`` with every option given explicitly (not None) replacing it."""
    options = copy.deepcopy(dict(presets[mode]))
    options.update({key: value for key, value in overrides.items() if value is not None})
    return options


def utc_now() -> str:
    """ISO-8601 UTC timestamp, seconds precision."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def format_value(value: Any, unit: str) -> str:
    """``value`` for a Markdown table or a console line, in ``unit``'s style."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, bool) or unit == "str":
        return str(value)
    number = float(value)
    if unit == "s":
        return _seconds(number)
    if unit == "x":
        return f"{number:.3g}x" if number < 100 else f"{number:,.0f}x"
    if unit == "bytes":
        return _bytes(number)
    if unit == "int":
        return f"{int(number):,}"
    if unit == "pct":
        return f"{100 * number:.0f}%"
    if unit == "f3":
        return f"{number:.3f}"
    if unit == "acc":
        return f"{100 * number:.2f}%"
    return str(value)


def _seconds(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f} s"
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.3g} ms"
    return f"{value * 1e6:.3g} us"


def _bytes(value: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:.0f} B"


def row_line(row: Row, columns: Sequence[Column]) -> str:
    """One console line for ``row``: ``header=value`` for each column."""
    return "  ".join(
        f"{column.header}={format_value(row[column.source].get(column.key), column.unit)}" for column in columns
    )
