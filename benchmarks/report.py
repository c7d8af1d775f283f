"""One suite's results: the JSON document, its CSV rows, its schema check.

A report is ``{"schema", "suite", "mode", "command", "machine", "started",
"seconds", "floors", "results": [{"params", "metrics"}], "targets", "notes",
"metric_notes", "plots"}``; ``schemas/report.schema.json`` is the contract CI
checks. Floats that are not finite are written as null (JSON has no NaN).
"""

from __future__ import annotations

import csv
import importlib
import importlib.resources
import importlib.util
import io
import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cryptography
from cryptography.hazmat.backends.openssl.backend import backend as openssl_backend

from secagg._install import install_hint
from secagg._outputs import write_output
from secagg.errors import ConfigurationError
from secagg.masking.benchmark import machine as masking_machine

from .floors import gmpy2_module

__all__ = [
    "SCHEMA_ID",
    "Column",
    "SuiteReport",
    "Target",
    "load_schema",
    "machine",
    "validate",
]

SCHEMA_ID = "secagg-bench-report/1"
"""The ``schema`` field of every report this version writes."""

Row = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Target:
    """A figure the issue sets a bound on, and what this run achieved.

    ``comparison`` is ``"<="`` or ``">="`` against ``limit``, or ``"report"`` for a
    figure that is only reported (``limit`` None). ``achieved`` is None when the
    run did not measure it (say why in ``description``).
    """

    name: str
    description: str
    achieved: float | None
    limit: float | None
    comparison: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.comparison not in ("<=", ">=", "report"):
            raise ConfigurationError(f"target {self.name}: comparison must be '<=', '>=' or 'report'")
        if (self.limit is None) != (self.comparison == "report"):
            raise ConfigurationError(f"target {self.name}: a limit goes with '<=' or '>=', none with 'report'")

    @property
    def met(self) -> bool | None:
        """Whether ``achieved`` satisfies the bound (None if unbounded or not measured)."""
        if self.limit is None or self.achieved is None:
            return None
        return self.achieved <= self.limit if self.comparison == "<=" else self.achieved >= self.limit

    def to_json(self) -> dict[str, Any]:
        """The target as it appears in the report."""
        return {
            "name": self.name,
            "description": self.description,
            "achieved": _finite(self.achieved),
            "limit": self.limit,
            "comparison": self.comparison,
            "met": self.met,
            "params": dict(self.params),
        }


@dataclass(frozen=True)
class Column:
    """One column of a suite's Markdown table: ``source`` is ``params`` or ``metrics``;
    ``unit`` picks the formatting (``s``, ``x``, ``bytes``, ``int``, ``pct``, ``f3``, ``str``)."""

    header: str
    source: str
    key: str
    unit: str = "str"


@dataclass(frozen=True)
class SuiteReport:
    """Everything one suite measured in one run (see the module docstring)."""

    suite: str
    mode: str
    command: str
    machine: Mapping[str, Any]
    started: str
    seconds: float
    floors: Mapping[str, Any]
    results: Sequence[Row]
    targets: Sequence[Target] = ()
    notes: Sequence[str] = ()
    metric_notes: Mapping[str, str] = field(default_factory=dict)
    plots: Sequence[str] = ()

    @property
    def exact(self) -> bool:
        """False if any row reports ``exact: false`` (a wrong aggregate)."""
        return all(row["metrics"].get("exact", True) is not False for row in self.results)

    def to_json(self) -> dict[str, Any]:
        """The report document (finite numbers only)."""
        document = {
            "schema": SCHEMA_ID,
            "suite": self.suite,
            "mode": self.mode,
            "command": self.command,
            "machine": dict(self.machine),
            "started": self.started,
            "seconds": self.seconds,
            "floors": dict(self.floors),
            "results": [{"params": dict(r["params"]), "metrics": dict(r["metrics"])} for r in self.results],
            "targets": [target.to_json() for target in self.targets],
            "notes": list(self.notes),
            "metric_notes": dict(self.metric_notes),
            "plots": list(self.plots),
        }
        cleaned: dict[str, Any] = _finite_tree(document)
        return cleaned

    def write_json(self, path: Path) -> None:
        """Write :meth:`to_json` to ``path``, atomically (:func:`secagg._outputs.write_output`: a failed
        write leaves the previous file whole and raises ConfigurationError naming it)."""
        document = json.dumps(self.to_json(), indent=2, allow_nan=False) + "\n"
        write_output(path, "benchmark report", document.encode("utf-8"))

    def write_csv(self, path: Path) -> None:
        """One line per result: the params, then the metrics (a metric that shares
        a name with a param is written as ``metric:NAME``)."""
        param_keys = _ordered_keys(row["params"] for row in self.results)
        metric_keys = _ordered_keys(row["metrics"] for row in self.results)
        headers = param_keys + [f"metric:{k}" if k in param_keys else k for k in metric_keys]
        handle = io.StringIO(newline="")
        writer = csv.writer(handle)
        writer.writerow(headers)
        for row in self.results:
            writer.writerow(
                [_csv_cell(row["params"].get(k)) for k in param_keys]
                + [_csv_cell(row["metrics"].get(k)) for k in metric_keys]
            )
        write_output(path, "benchmark CSV", handle.getvalue().encode("utf-8"))  # atomically, as write_json


def _ordered_keys(mappings: Any) -> list[str]:
    keys: dict[str, None] = {}
    for mapping in mappings:
        keys.update(dict.fromkeys(mapping))
    return list(keys)


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if not math.isfinite(value) else repr(value)
    return str(value)


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def _finite_tree(value: Any) -> Any:
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, dict):
        return {str(k): _finite_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_tree(v) for v in value]
    return value


def machine() -> dict[str, Any]:
    """Where the figures were measured: platform, CPU, core count, library versions."""
    info = masking_machine()
    info.update(
        cpu_model=_cpu_model(),
        cpus_usable=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        memory_gib=_memory_gib(),
        implementation=platform.python_implementation(),
        cryptography=cryptography.__version__,
        openssl=openssl_backend.openssl_version_text(),
        load_average=_load_average(),
    )
    try:
        gmpy2 = gmpy2_module()
    except ConfigurationError:
        pass  # not installed: the suites that need no Paillier run without it (floors.py)
    else:
        info.update(gmpy2=gmpy2.version(), gmp=gmpy2.mp_version())
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / (1 << 20), 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _load_average() -> str:
    """1, 5 and 15-minute load when the run started (other jobs skew timings)."""
    if not hasattr(os, "getloadavg"):
        return "unknown"
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def load_schema() -> dict[str, Any]:
    """The report JSON Schema shipped with the package."""
    text = importlib.resources.files(__package__ or "secagg_bench").joinpath("schemas/report.schema.json")
    schema: dict[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return schema


def validate(document: Mapping[str, Any]) -> list[str]:
    """Schema violations of ``document`` (empty if valid).

    Needs ``jsonschema`` (the ``bench`` and ``test`` extras): ConfigurationError without it.
    """
    if importlib.util.find_spec("jsonschema") is None:
        raise ConfigurationError(f"checking a report needs jsonschema: {install_hint('bench')}")
    jsonschema = importlib.import_module("jsonschema")
    validator = jsonschema.Draft202012Validator(load_schema())
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    ]
