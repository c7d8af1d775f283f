"""Suite ``masking``: SecAgg and SecAgg+ client and server time against the PRG floor.

Each configuration is one (or ``repeats``) full sessions of the in-memory
driver (:func:`secagg.masking.benchmark.run_configuration`: every message through
the wire format, dropouts half after ShareKeys and half after the masked
input) followed by the floor for the same number of mask vectors, in the same
process. Sweeps: the vector length d, the dropout rate, and the complete graph
(SecAgg) against the Harary graph (SecAgg+); the clients axis is the
``scaling`` suite's.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from secagg.masking.benchmark import run_configuration

from .common import RunContext, resolve, row_line, utc_now
from .floors import expansion_rate_note
from .progress import Progress
from .report import Column, Row, SuiteReport, Target

__all__ = ["COLUMNS", "OPTIONS", "PRESETS", "TARGET_CONFIG", "TITLE", "configurations", "run"]

TITLE = "Pairwise masking (SecAgg, SecAgg+)"

OPTIONS = ("clients", "dim", "graph", "dropout", "repeats", "ring_bits")
"""Command-line options that override every sweep of a preset."""

TARGET_CONFIG = {"clients": 100, "dim": 1_000_000, "graph": "harary", "dropout": 0.1}
"""The issue's target: n = 100, d = 1,000,000, SecAgg+, 10% dropout."""

_TARGET_SWEEP = {k: [v] for k, v in TARGET_CONFIG.items()}

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "sweeps": [
            {"clients": [20], "dim": [10_000, 100_000], "graph": ["complete", "harary"], "dropout": [0.1]},
            {"clients": [20], "dim": [10_000], "graph": ["complete", "harary"], "dropout": [0.0, 0.2]},
            _TARGET_SWEEP,
        ],
        "repeats": 1,
    },
    "full": {
        "sweeps": [
            {"clients": [100], "dim": [10_000, 100_000, 1_000_000], "graph": ["complete", "harary"], "dropout": [0.1]},
            {"clients": [100], "dim": [100_000], "graph": ["complete", "harary"], "dropout": [0.0, 0.2, 0.3]},
            {**_TARGET_SWEEP, "repeats": 5},
        ],
        "repeats": 1,
    },
    "custom": {
        "sweeps": [{"clients": [100], "dim": [100_000], "graph": ["harary"], "dropout": [0.1]}],
        "repeats": 1,
    },
}

COLUMNS = (
    Column("n", "params", "clients", "int"),
    Column("d", "params", "dim", "int"),
    Column("graph", "params", "graph"),
    Column("k", "params", "degree", "int"),
    Column("t", "params", "threshold", "int"),
    Column("dropout", "params", "dropout", "pct"),
    Column("client mask", "metrics", "client_mask_s", "s"),
    Column("client x floor", "metrics", "client_over_floor", "x"),
    Column("client total", "metrics", "client_total_s", "s"),
    Column("server", "metrics", "server_unmask_s", "s"),
    Column("server x floor", "metrics", "server_over_floor", "x"),
    Column("sent/client", "metrics", "bytes_per_client_upload", "bytes"),
    Column("received/client", "metrics", "bytes_per_client_download", "bytes"),
    Column("sent / f32", "metrics", "upload_expansion", "x"),
    Column("ring b", "params", "ring_bits", "int"),
    Column("masked B/param", "metrics", "masked_bytes_per_parameter", "f3"),
    Column("bind", "metrics", "descriptor_s", "s"),
    Column("exact", "metrics", "exact"),
)

METRIC_NOTES = {
    "client_mask_s": "seconds, median client: the MaskedInputCollection step (open k share boxes, k X25519 + HKDF, "
    "k + 1 mask expansions added in place, wire encoding)",
    "client_total_s": "seconds, median included client: every client step after AdvertiseKeys (ShareKeys: Shamir "
    "split + sealing; MaskedInput; Unmasking)",
    "server_unmask_s": "seconds: server from the masked inputs to the aggregate (decode and sum n inputs, "
    "reconstruct secrets, regenerate self-masks and the dropped clients' pairwise masks)",
    "floor_client_s": "seconds: (k + 1) x one raw AES-128-CTR keystream of 4d bytes added into a uint32 vector",
    "floor_server_s": "seconds: (survivors + dropped-after-ShareKeys x k) expansions + n vector adds",
    "client_over_floor": "client_mask_s / floor_client_s",
    "server_over_floor": "server_unmask_s / floor_server_s",
    "bytes_per_client_upload": "bytes sent by the clients over the session / included clients",
    "bytes_per_client_download": "bytes received by the clients over the session / included clients",
    "upload_expansion": "bytes_per_client_upload / (4 d), the float32 update sent in the clear",
    "download_expansion": "bytes_per_client_download / (4 d)",
    "exact": "the aggregate equals the ring sum of the included inputs, bit for bit",
    "masked_input_bytes": "bytes of one MaskedInput message (header, session id, u8 b, u32 d, ceil(d b / 8) "
    "bytes of values packed b bits each)",
    "masked_bytes_per_parameter": "masked_input_bytes / d: the protected update's cost per parameter (4.0 at b = 32)",
    "descriptor_s": "seconds, median of repeats: build the round's SessionDescriptor (quantization, weight, model, "
    "round, 4 training parameters), re-validate the config with its digest and hash the larger record; every "
    "session measured here carries such a descriptor",
    "descriptor_over_client_total": "descriptor_s / client_total_s",
}


def configurations(options: Mapping[str, Any]) -> list[tuple[int, int, str, float, int, int]]:
    """``(n, d, graph, dropout, repeats, ring_bits)`` of every sweep, without duplicates (the most
    repeats wins); explicit ``clients``/``dim``/``graph``/``dropout``/``ring_bits`` replace the
    sweeps' axes (ring_bits: Z_(2^32) unless a sweep or the option names others)."""
    found: dict[tuple[int, int, str, float, int], int] = {}
    for sweep in options["sweeps"]:
        axes = {key: options.get(key) or sweep[key] for key in ("clients", "dim", "graph", "dropout")}
        rings = options.get("ring_bits") or sweep.get("ring_bits", [32])
        repeats = int(options.get("repeats_override") or sweep.get("repeats", options["repeats"]))
        for n in axes["clients"]:
            for d in axes["dim"]:
                for graph in axes["graph"]:
                    for dropout in axes["dropout"]:
                        for ring_bits in rings:
                            key = (int(n), int(d), str(graph), float(dropout), int(ring_bits))
                            found[key] = max(found.get(key, 0), repeats)
    return [(n, d, graph, dropout, repeats, ring_bits) for (n, d, graph, dropout, ring_bits), repeats in found.items()]


def run(overrides: Mapping[str, Any], context: RunContext) -> SuiteReport:
    """Run the preset of ``context.mode`` with ``overrides`` (see :data:`OPTIONS`)."""
    started, clock = utc_now(), time.perf_counter()
    options = resolve(PRESETS, context.mode, {k: v for k, v in overrides.items() if k != "repeats"})
    options["repeats_override"] = overrides.get("repeats")
    floors = context.floors()
    plan = configurations(options)
    results: list[Row] = []
    with Progress(len(plan), "masking", enabled=context.progress) as progress:
        for n, d, graph, dropout, repeats, ring_bits in plan:
            progress.begin(f"n={n} d={d:,} {graph} drop={dropout:g} b={ring_bits}")
            row = run_configuration(n, d, graph, dropout, repeats, ring_bits)
            results.append(row)
            context.measured(row)
            progress.write("masking  " + row_line(row, COLUMNS))
            progress.advance()
    return context.report(
        "masking",
        started,
        clock,
        floors=floors,
        results=results,
        targets=targets(results),
        notes=_notes(results, floors),
        metric_notes=METRIC_NOTES,
    )


def target_row(results: list[Row]) -> Row | None:
    """The row of :data:`TARGET_CONFIG`, if the grid has it."""
    for row in results:
        p = row["params"]
        at = (p["clients"], p["dim"], p["requested_graph"], p["dropout"])
        if at == tuple(TARGET_CONFIG.values()) and p.get("ring_bits", 32) == 32:
            return row
    return None


def targets(results: list[Row]) -> list[Target]:
    """The issue's masking targets, from the target row (none if it was not run)."""
    row = target_row(results)
    if row is None:
        return []
    m, p = row["metrics"], row["params"]
    params = {"clients": p["clients"], "dim": p["dim"], "graph": p["graph"], "degree": p["degree"], "dropout": 0.1}
    return [
        Target(
            "masking client over floor",
            "SecAgg+, n = 100, d = 1,000,000: client masked-input step / (k + 1) raw AES-128-CTR expansions + adds",
            m["client_over_floor"],
            1.5,
            "<=",
            params,
        ),
        Target(
            "masking server over floor (10% dropout)",
            "SecAgg+, n = 100, d = 1,000,000, 10% dropout: server unmasking / regenerated expansions + n adds",
            m["server_over_floor"],
            2.0,
            "<=",
            params,
        ),
    ]


def _notes(results: list[Row], floors: dict[str, Any]) -> list[str]:
    notes = [
        expansion_rate_note(floors),
        "dropouts: round(rate x n) random clients, half drop after ShareKeys (their pairwise masks are regenerated "
        "by the server), half after sending their masked input (still included)",
        "SecAgg+ sizes its graph as the defaults do (one dropout below 20 clients, 10% of n at each of the four "
        "stages from 20 on: 40% of n over a session), or for the simulated rate if larger, and 5% corrupt clients "
        "(2^-40 security, 2^-20 failure); where no sparse graph qualifies it is the complete graph, as in "
        "production SecAgg+",
        "mode: semi-honest (by name): private only against a server that follows the protocol; the default, "
        "active mode, adds signed keys, a ConsistencyCheck round and (on the complete graph) a higher threshold",
    ]
    if target_row(results) is None:
        notes.append("the target configuration (n = 100, d = 1,000,000, SecAgg+, 10% dropout) is not in this grid")
    return notes
