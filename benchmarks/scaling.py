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

__all__ = ["COLUMNS", "OPTIONS", "PRESETS", "TITLE", "affine_fit", "fit_log", "loglog_slope", "run"]

TITLE = "Scaling with the number of clients"

OPTIONS = ("clients", "dim", "dropout", "repeats", "max_complete")

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"clients": [10, 100, 300, 1000], "dim": 10_000, "dropout": 0.1, "repeats": 1, "max_complete": 100},
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
            context.measured(row)
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


def _rows(results: Sequence[Row], graph: str) -> list[Row]:
    rows = [r for r in results if r["params"]["requested_graph"] == graph]
    return sorted(rows, key=lambda r: r["params"]["clients"])


def _series(results: Sequence[Row], graph: str, metric: str = "client_total_s") -> tuple[list[int], list[float]]:
    rows = _rows(results, graph)
    return [r["params"]["clients"] for r in rows], [float(r["metrics"][metric]) for r in rows]


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


def _top_decade(n: Sequence[int], values: Sequence[float]) -> tuple[list[int], list[float]]:
    top = [(v, s) for v, s in zip(n, values, strict=True) if n and v >= n[-1] / 10]
    return [v for v, _ in top], [s for _, s in top]


def affine_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float] | None:
    """``(a, b)``: ys ~ a + b * xs by least squares (None without two distinct xs)."""
    if len(xs) < 2:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mx) ** 2 for x in xs)
    if not spread:
        return None
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / spread
    return my - b * mx, b


def _affine_residual(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    fit = affine_fit(xs, ys)
    if fit is None or min(ys, default=0) <= 0:
        return None
    a, b = fit
    return max(abs(y - (a + b * x)) / y for x, y in zip(xs, ys, strict=True))


def _spread(values: Sequence[float]) -> float | None:
    return max(values) / min(values) if values and min(values) > 0 else None


def targets(results: Sequence[Row]) -> list[Target]:
    """SecAgg+ per-client cost grows like log n.

    Two bounds: over the top decade of n the log-log slope of the per-client
    time stays at or below 0.5 (linear growth has slope 1), and the time is
    affine in the degree k (a fixed cost plus a cost per neighbour, largest
    relative residual at most 0.15), which the parameter derivation makes
    O(log n): no term grows with n itself. Reported beside them: the slope of k itself and of the bytes a
    client receives over the same decade, and the whole-range slopes.
    """
    n, seconds = _series(results, "harary")
    top_n, top_s = _top_decade(n, seconds)
    _, per_neighbour = _series(results, "harary", "client_total_per_neighbour_s")
    _, received = _series(results, "harary", "bytes_per_client_download")
    degrees = [float(r["params"]["degree"]) for r in _rows(results, "harary")]
    complete_n, complete_s = _series(results, "complete")

    def span(values: Sequence[int]) -> dict[str, Any]:
        return {"clients_min": min(values, default=0), "clients_max": max(values, default=0)}

    top = {"graph": "harary", **span(top_n)}
    return [
        Target(
            "SecAgg+ per-client cost growth, top decade (log-log slope)",
            "slope of log(client_total_s) vs log(n) for SecAgg+ over the largest decade of n; log n growth has "
            "slope 1/ln n (about 0.15 there), linear growth 1",
            loglog_slope(top_n, top_s),
            0.5,
            "<=",
            top,
        ),
        Target(
            "SecAgg+ per-client cost vs a + b k (largest relative residual)",
            "least-squares fit of client_total_s to a fixed cost plus a cost per neighbour, over every SecAgg+ n: "
            "a small residual means the cost is affine in k = O(log n), with no term in n",
            _affine_residual(degrees, seconds),
            0.15,
            "<=",
            {"graph": "harary", **span(n)},
        ),
        Target(
            "SecAgg+ per-neighbour cost spread (max / min over n)",
            "client_total_s / k across every SecAgg+ n run (the fixed cost weighs most at small k)",
            _spread(per_neighbour),
            None,
            "report",
            {"graph": "harary", **span(n)},
        ),
        Target(
            "SecAgg+ degree k growth, top decade (log-log slope)",
            "the slope of k itself over the same decade: what the per-client slope should follow",
            loglog_slope(top_n, _top_decade(n, degrees)[1]),
            None,
            "report",
            top,
        ),
        Target(
            "SecAgg+ bytes received per client, top decade (log-log slope)",
            "slope of log(bytes_per_client_download) vs log(n): neighbour-only rosters and unmask requests",
            loglog_slope(top_n, _top_decade(n, received)[1]),
            None,
            "report",
            top,
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
    notes = [
        f"SecAgg+ per-client time ~ {a * 1e3:.3f} ms x log2(n), R^2 = {r2:.3f}; degree k = "
        + ", ".join(f"{degrees[v]} (n={v})" for v in n)
    ]
    affine = affine_fit([float(degrees[v]) for v in n], seconds)
    if affine is not None:
        notes.append(
            f"SecAgg+ per-client time ~ {affine[0] * 1e3:.3f} ms + {affine[1] * 1e6:.1f} us x k (least squares)"
        )
    return notes
