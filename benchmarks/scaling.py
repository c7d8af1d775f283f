"""Suite ``scaling``: per-client cost against the number of clients, SecAgg vs SecAgg+.

At a fixed vector length (d = 10,000 by default) the number of clients n runs
from 10 to 1000. A SecAgg client has n - 1 neighbours, so its cost grows
linearly in n and the server's Shamir work quadratically; a SecAgg+ client
has k = O(log n) neighbours (Bell et al. 2020), so its cost should grow like
log n. The complete graph is capped (``--max-complete``, 200 by default):
beyond it one in-memory session takes minutes on two cores and says nothing
the trend up to there does not.

The fit: per-client seconds ~ a * log2(n) on the SecAgg+ rows (least squares
through the origin), and the log-log slope of each graph's per-client time
(about 1 for linear growth, about 1 / ln n, i.e. 0.1-0.3 here, for log n).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from secagg.masking.benchmark import run_configuration

from .common import RunContext, resolve, row_line, utc_now
from .floors import expansion_rate_note
from .progress import Progress
from .report import Column, Row, SuiteReport, Target

__all__ = ["COLUMNS", "OPTIONS", "PRESETS", "TITLE", "fit_log", "loglog_slope", "run"]

TITLE = "Scaling with the number of clients"

OPTIONS = ("clients", "dim", "dropout", "repeats", "max_complete")

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"clients": [10, 30, 100, 300], "dim": 10_000, "dropout": 0.1, "repeats": 1, "max_complete": 100},
    "full": {
        "clients": [10, 20, 50, 100, 200, 500, 1000],
        "dim": 10_000,
        "dropout": 0.1,
        "repeats": 1,
        "max_complete": 200,
    },
    "custom": {"clients": [10, 100, 1000], "dim": 10_000, "dropout": 0.1, "repeats": 1, "max_complete": 200},
}

COLUMNS = (
    Column("graph", "params", "graph"),
    Column("n", "params", "clients", "int"),
    Column("k", "params", "degree", "int"),
    Column("t", "params", "threshold", "int"),
    Column("client total", "metrics", "client_total_s", "s"),
    Column("client total / k", "metrics", "client_total_per_neighbour_s", "s"),
    Column("client mask", "metrics", "client_mask_s", "s"),
    Column("server", "metrics", "server_unmask_s", "s"),
    Column("sent/client", "metrics", "bytes_per_client_upload", "bytes"),
    Column("received/client", "metrics", "bytes_per_client_download", "bytes"),
    Column("session wall", "metrics", "session_wall_s", "s"),
    Column("exact", "metrics", "exact"),
)

METRIC_NOTES = {
    "client_total_s": "seconds, median included client: every client step after AdvertiseKeys",
    "client_total_per_neighbour_s": "client_total_s / k",
    "client_mask_s": "seconds, median client: the MaskedInputCollection step",
    "server_unmask_s": "seconds: server from the masked inputs to the aggregate",
    "session_wall_s": "seconds: the whole simulated session (every client and the server, one process) + its floor",
    "bytes_per_client_upload": "bytes sent per included client over the session",
    "bytes_per_client_download": "bytes received per included client over the session",
}


def run(overrides: Mapping[str, Any], context: RunContext) -> SuiteReport:
    """Both graphs over the clients axis (the complete graph up to ``max_complete``)."""
    started, clock = utc_now(), time.perf_counter()
    options = resolve(PRESETS, context.mode, overrides)
    floors = context.floors()
    clients = sorted(set(options["clients"]))
    plan = [("harary", n) for n in clients] + [("complete", n) for n in clients if n <= options["max_complete"]]
    results: list[Row] = []
    with Progress(len(plan), "scaling", enabled=context.progress) as progress:
        for graph, n in plan:
            progress.begin(f"{graph} n={n}")
            began = time.perf_counter()
            row = run_configuration(n, options["dim"], graph, options["dropout"], options["repeats"])
            row["metrics"]["session_wall_s"] = time.perf_counter() - began
            row["metrics"]["client_total_per_neighbour_s"] = row["metrics"]["client_total_s"] / row["params"]["degree"]
            results.append(row)
            progress.write("scaling  " + row_line(row, COLUMNS))
            progress.advance()
    skipped = [n for n in clients if n > options["max_complete"]]
    notes = [
        expansion_rate_note(floors),
        f"d = {options['dim']:,}, dropout {options['dropout']:g}; per-client cost is client_total_s, the client's "
        "compute over every round after AdvertiseKeys",
    ]
    if skipped:
        notes.append(
            f"SecAgg (complete graph) capped at n <= {options['max_complete']}: its per-client cost is linear and "
            f"the session's Shamir and routing work quadratic in n, so n = {', '.join(map(str, skipped))} would "
            "take minutes per simulated session on this machine"
        )
    notes.extend(_fit_notes(results))
    return context.report(
        "scaling",
        started,
        clock,
        floors=floors,
        results=results,
        targets=targets(results),
        notes=notes,
        metric_notes=METRIC_NOTES,
    )


def _series(results: Sequence[Row], graph: str, metric: str = "client_total_s") -> tuple[list[int], list[float]]:
    rows = sorted((r for r in results if r["params"]["requested_graph"] == graph), key=lambda r: r["params"]["clients"])
    return [r["params"]["clients"] for r in rows], [r["metrics"][metric] for r in rows]


def loglog_slope(n: Sequence[int], seconds: Sequence[float]) -> float | None:
    """Least-squares slope of log(seconds) against log(n) (None with fewer than two points)."""
    if len(n) < 2:
        return None
    xs, ys = [math.log(v) for v in n], [math.log(max(s, 1e-12)) for s in seconds]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / spread if spread else None


def fit_log(n: Sequence[int], seconds: Sequence[float]) -> tuple[float, float]:
    """``(a, r2)``: seconds ~ a * log2(n) by least squares through the origin, and its R^2."""
    xs = [math.log2(v) for v in n]
    a = sum(x * y for x, y in zip(xs, seconds, strict=True)) / sum(x * x for x in xs)
    mean = sum(seconds) / len(seconds)
    total = sum((y - mean) ** 2 for y in seconds)
    residual = sum((y - a * x) ** 2 for x, y in zip(xs, seconds, strict=True))
    return a, (1 - residual / total) if total else 1.0


def targets(results: Sequence[Row]) -> list[Target]:
    """SecAgg+ per-client cost grows like log n: over the top decade of n its log-log
    slope stays at or below 0.5 (log n has slope 1 / ln n there, about 0.15; linear
    growth has slope 1). The whole-range slopes of both graphs are reported."""
    n, seconds = _series(results, "harary")
    top = [(v, s) for v, s in zip(n, seconds, strict=True) if n and v >= n[-1] / 10]
    complete_n, complete_s = _series(results, "complete")

    def span(values: Sequence[int]) -> dict[str, Any]:
        return {"clients_min": min(values, default=0), "clients_max": max(values, default=0)}

    return [
        Target(
            "SecAgg+ per-client cost growth, top decade (log-log slope)",
            "slope of log(client_total_s) vs log(n) for SecAgg+ over the largest decade of n; log n growth has "
            "slope 1/ln n (about 0.15 there), linear growth 1",
            loglog_slope([v for v, _ in top], [s for _, s in top]),
            0.5,
            "<=",
            {"graph": "harary", **span([v for v, _ in top])},
        ),
        Target(
            "SecAgg+ per-client cost growth, all n (log-log slope)",
            "the same slope over every n run (k ramps up fastest at small n, where the graph is nearly complete)",
            loglog_slope(n, seconds),
            None,
            "report",
            {"graph": "harary", **span(n)},
        ),
        Target(
            "SecAgg per-client cost growth, all n (log-log slope)",
            "the same slope for the complete graph (linear growth has slope 1)",
            loglog_slope(complete_n, complete_s),
            None,
            "report",
            {"graph": "complete", **span(complete_n)},
        ),
    ]


def _fit_notes(results: Sequence[Row]) -> list[str]:
    n, seconds = _series(results, "harary")
    if len(n) < 2:
        return []
    a, r2 = fit_log(n, seconds)
    degrees = {
        r["params"]["clients"]: r["params"]["degree"] for r in results if r["params"]["requested_graph"] == "harary"
    }
    return [
        f"SecAgg+ per-client time ~ {a * 1e3:.3f} ms x log2(n), R^2 = {r2:.3f}; degree k = "
        + ", ".join(f"{degrees[v]} (n={v})" for v in n)
    ]
