"""Suite ``dropouts``: do the default configurations survive the dropouts hospitals have?

Issue 14's targets, measured on the library's defaults
(:meth:`secagg.masking.MaskingConfig.secagg_plus` with nothing but n and d, semi-honest
and active), through the in-memory driver with every message on the wire:

- **one dropout, exhaustive** (n = 3, 5, 10): every hospital, dropped at every round of
  the protocol in turn (n x 4 sessions semi-honest, n x 5 active); the target is that
  every session completes with the exact sum of the hospitals that sent a masked input.
- **10% per stage, sampled** (n = 20, 100): 10% of n (at least one) drop at each of
  the four stages of one session, a fresh random choice of who and, in active mode, of
  ConsistencyCheck or Unmasking for the last stage, per session; the target is at least
  99% of sessions complete, each with the exact sum.

A session that does not complete ends in ThresholdError (the server learns nothing);
any other outcome, or a completed sum that is not exact, fails the run. The row's
``seconds_per_session`` is the wall time of one whole simulated session (every client
and the server in one process), to show what the defaults cost.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from secagg.errors import ThresholdError
from secagg.masking import ACTIVE, SEMI_HONEST, MaskingConfig, Round, make_identities, run_session
from secagg.primitives.signing import SigningKey

from .common import RunContext, resolve, row_line, utc_now
from .progress import Progress
from .report import Column, Row, SuiteReport, Target

__all__ = ["COLUMNS", "OPTIONS", "PRESETS", "TITLE", "one_dropout_schedules", "run", "ten_percent_schedule"]

TITLE = "Dropouts the default configurations survive"

OPTIONS = ("clients", "sessions", "dim")

SINGLE_DROPOUT_MAX = 10
"""Federations up to this size are checked exhaustively for one dropout; larger ones at
10% of n per stage."""

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"sweeps": [{"clients": [3, 5, 20], "sessions": 10}], "dim": 100},
    # An active session at n = 100 takes ~4-8 s here (the complete graph): 40 of them, 200 at n = 20.
    "full": {"sweeps": [{"clients": [3, 5, 10, 20], "sessions": 200}, {"clients": [100], "sessions": 40}], "dim": 100},
    "custom": {"sweeps": [{"clients": [3, 5, 10, 20], "sessions": 50}], "dim": 100},
}
"""Each sweep is (clients, sessions per n above 10); ``--clients`` or ``--sessions`` replace a
preset's value in every sweep."""

COLUMNS = (
    Column("mode", "params", "mode"),
    Column("n", "params", "clients", "int"),
    Column("schedule", "params", "schedule"),
    Column("graph", "params", "graph"),
    Column("t", "params", "threshold", "int"),
    Column("c", "params", "colluders", "int"),
    Column("sessions", "metrics", "sessions", "int"),
    Column("completed", "metrics", "completed", "int"),
    Column("rate", "metrics", "completion_rate", "pct"),
    Column("exact", "metrics", "exact"),
    Column("per session", "metrics", "seconds_per_session", "s"),
)

METRIC_NOTES = {
    "sessions": "simulated sessions in this row",
    "completed": "sessions that ended with an aggregate (each checked against the plain ring sum)",
    "completion_rate": "completed / sessions",
    "exact": "every completed aggregate equalled the ring sum of exactly the clients that sent a masked input",
    "seconds_per_session": "median wall seconds of one simulated session (all clients and the server)",
}

_STAGES = (Round.ADVERTISE_KEYS, Round.SHARE_KEYS, Round.MASKED_INPUT, Round.UNMASKING)


def one_dropout_schedules(config: MaskingConfig) -> list[dict[int, Round]]:
    """Every hospital dropped at every round of the protocol, one at a time."""
    rounds = [r for r in Round if config.mode == ACTIVE or r != Round.CONSISTENCY_CHECK]
    return [{client: round_} for client in range(1, config.num_clients + 1) for round_ in rounds]


def ten_percent_schedule(config: MaskingConfig, rng: np.random.Generator) -> dict[int, Round]:
    """10% of n (rounded down, at least one) drop at each of the four stages; in active mode
    the last stage is ConsistencyCheck or Unmasking, at random."""
    per_stage = max(1, math.floor(0.1 * config.num_clients + 1e-9))
    order = [int(c) for c in rng.permutation(np.arange(1, config.num_clients + 1))]
    schedule: dict[int, Round] = {}
    for index, stage in enumerate(_STAGES):
        for client in order[index * per_stage : (index + 1) * per_stage]:
            late = config.mode == ACTIVE and stage == Round.UNMASKING and rng.random() < 0.5
            schedule[client] = Round.CONSISTENCY_CHECK if late else stage
    return schedule


def _session(
    config: MaskingConfig, identities: Mapping[int, SigningKey] | None, dropouts: Mapping[int, Round], seed: int
) -> tuple[bool, bool]:
    """(completed, exact) of one session with uniform random inputs."""
    generator = np.random.default_rng(seed)
    inputs = {
        client: generator.integers(0, config.ring.modulus, size=config.vector_length, dtype=config.ring.dtype)
        for client in range(1, config.num_clients + 1)
    }
    try:
        result = run_session(config, inputs, dropouts, identities=identities, record_transcript=False)
    except ThresholdError:
        return False, True
    uploaded = [c for c in inputs if dropouts.get(c, Round.UNMASKING + 1) > Round.MASKED_INPUT]
    expected = np.zeros(config.vector_length, dtype=config.ring.dtype)
    for client in uploaded:
        expected += inputs[client]  # wraps in the ring's dtype, as the protocol does
    exact = result.included == frozenset(uploaded) and np.array_equal(result.aggregate, expected)
    return True, exact


def _row(mode: str, n: int, dim: int, sessions: int, seed: int) -> Row:
    identities, public = make_identities(n)
    config = MaskingConfig.secagg_plus(n, dim, mode=mode, identity_keys=public if mode == ACTIVE else ())
    rng = np.random.default_rng(seed)
    exhaustive = n <= SINGLE_DROPOUT_MAX
    schedules = (
        one_dropout_schedules(config) if exhaustive else [ten_percent_schedule(config, rng) for _ in range(sessions)]
    )
    completed, exact, times = 0, True, []
    for index, schedule in enumerate(schedules):
        began = time.perf_counter()
        done, right = _session(config, identities if mode == ACTIVE else None, schedule, seed * 100_003 + index)
        times.append(time.perf_counter() - began)
        completed += done
        exact = exact and right
    return {
        "params": {
            "mode": mode,
            "clients": n,
            "dim": dim,
            "schedule": "one dropout, every hospital x round" if exhaustive else "10% of n at each of 4 stages",
            "graph": config.graph,
            "degree": config.degree,
            "threshold": config.threshold,
            "colluders": config.guarantee.colluders,
            "planned_dropouts": config.guarantee.dropouts,
        },
        "metrics": {
            "sessions": len(schedules),
            "completed": completed,
            "completion_rate": completed / len(schedules),
            "exact": exact,
            "seconds_per_session": float(np.median(times)),
        },
    }


def run(overrides: Mapping[str, Any], context: RunContext) -> SuiteReport:
    """Every mode x n of the preset (or the options given)."""
    started, clock = utc_now(), time.perf_counter()
    options = resolve(PRESETS, context.mode, {"dim": overrides.get("dim")})
    floors = context.floors()
    sweeps = [resolve({"sweep": sweep}, "sweep", overrides) for sweep in options["sweeps"]]
    sizes = sorted({(n, sweep["sessions"]) for sweep in sweeps for n in sweep["clients"]})
    plan = [(mode, n, sessions) for n, sessions in sizes for mode in (SEMI_HONEST, ACTIVE)]
    results: list[Row] = []
    with Progress(len(plan), "dropouts", enabled=context.progress) as progress:
        for mode, n, sessions in plan:
            progress.begin(f"{mode} n={n}")
            row = _row(mode, n, options["dim"], sessions, seed=n)
            results.append(row)
            context.measured(row)
            progress.write("dropouts  " + row_line(row, COLUMNS))
            progress.advance()
    notes = [
        "the library's default configuration for each n and mode: MaskingConfig.secagg_plus(n, d, mode=...)",
        f"n <= {SINGLE_DROPOUT_MAX}: every hospital dropped at every round, one session each; larger n: "
        "the row's sessions, each with 10% of n dropping at each of the four stages",
        f"d = {options['dim']}: completion does not depend on d; per-session times are for this d",
    ]
    return context.report(
        "dropouts",
        started,
        clock,
        floors=floors,
        results=results,
        targets=targets(results),
        notes=notes,
        metric_notes=METRIC_NOTES,
    )


def targets(results: Sequence[Row]) -> list[Target]:
    """Issue 14: every session completes for n <= 10 with one dropout; >= 99% at 10% per stage."""
    found = []
    for row in results:
        params, metrics = row["params"], row["metrics"]
        n, mode = params["clients"], params["mode"]
        exhaustive = n <= SINGLE_DROPOUT_MAX
        found.append(
            Target(
                f"{mode}, n = {n}: sessions completing exactly ({params['schedule']})",
                "completed / sessions, every completed sum exact; the default configuration"
                + (" must survive any one dropout" if exhaustive else " must survive 10% of n at each stage"),
                metrics["completion_rate"] if metrics["exact"] else 0.0,
                1.0 if exhaustive else 0.99,
                ">=",
                {"mode": mode, "clients": n},
            )
        )
    return found
