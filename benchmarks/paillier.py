"""Suite ``paillier``: packed threshold Paillier against phe and the powmod floor.

Every configuration is one session of :func:`secagg.paillier.benchmark.run_config`
(the Paillier suite's own measurement): each client packs and encrypts its
vector of 16-bit values, the server multiplies the ciphertexts, t hospitals
return partial decryptions with proofs, the server combines them. In the same
run it times phe's per-value ``encrypt`` on a sample of the values (scaled to
the vector) and one ``gmpy2.powmod(r, n, n^2)`` on one core, the cost of one
textbook obfuscator: ``floor_encrypt_s`` is that times the number of
ciphertexts. Sweeps: d, key size, n, obfuscator (DJN vs textbook) and worker
processes; the issue's target row is 10 clients, 16-bit values, 2048-bit key,
one process.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from secagg.errors import ConfigurationError
from secagg.paillier._compute import Workers
from secagg.paillier.benchmark import NOTES, run_config
from secagg.paillier.ceremony import ThresholdKeyMaterial, deal_threshold_key_from_primes, generate_safe_primes
from secagg.paillier.encryption import Obfuscation
from secagg.paillier.parameters import check_dealt_shape, default_threshold

from .common import RunContext, resolve, row_line, utc_now
from .floors import expansion_rate_note
from .progress import Progress
from .report import Column, Row, SuiteReport, Target

__all__ = ["COLUMNS", "OPTIONS", "PRESETS", "TITLE", "configurations", "key_material", "run"]

TITLE = "Packed threshold Paillier"

OPTIONS = ("clients", "dim", "key_bits", "value_bits", "workers", "obfuscation", "threshold", "naive_sample", "seed")
"""Command-line options (``secagg bench paillier``); the grid ones replace every sweep's axis."""

_GRID = ("key_bits", "clients", "dim", "obfuscation", "workers")

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "sweeps": [
            {"key_bits": [2048], "clients": [10], "dim": [10_000], "obfuscation": ["djn"], "workers": [1]},
            {"key_bits": [2048], "clients": [3], "dim": [100, 1000], "obfuscation": ["djn"], "workers": [1]},
        ],
        "value_bits": 16,
        "threshold": None,
        "naive_sample": 20,
        "seed": 0,
    },
    "full": {
        "sweeps": [
            {
                "key_bits": [2048],
                "clients": [10],
                "dim": [1000, 10_000, 30_000],
                "obfuscation": ["djn"],
                "workers": [2],
            },
            {"key_bits": [3072], "clients": [10], "dim": [10_000], "obfuscation": ["djn"], "workers": [2]},
            {"key_bits": [2048], "clients": [5, 20], "dim": [10_000], "obfuscation": ["djn"], "workers": [2]},
            {"key_bits": [2048], "clients": [10], "dim": [10_000], "obfuscation": ["textbook"], "workers": [2]},
            {"key_bits": [2048], "clients": [10], "dim": [10_000], "obfuscation": ["djn"], "workers": [1]},
        ],
        "value_bits": 16,
        "threshold": None,
        "naive_sample": 50,
        "seed": 0,
    },
    "custom": {
        "sweeps": [{"key_bits": [2048], "clients": [10], "dim": [10_000], "obfuscation": ["djn"], "workers": [0]}],
        "value_bits": 16,
        "threshold": None,
        "naive_sample": 50,
        "seed": 0,
    },
}

COLUMNS = (
    Column("key bits", "params", "key_bits", "int"),
    Column("n", "params", "clients", "int"),
    Column("d", "params", "dim", "int"),
    Column("obfuscator", "params", "obfuscation"),
    Column("procs", "params", "workers", "int"),
    Column("encrypt/client", "metrics", "encrypt_s", "s"),
    Column("x powmod floor", "metrics", "ratio_encrypt_over_floor", "x"),
    Column("phe per-value", "metrics", "naive_phe_encrypt_s", "s"),
    Column("faster than phe", "metrics", "ratio_naive_over_encrypt", "x"),
    Column("aggregate", "metrics", "aggregate_s", "s"),
    Column("partial decrypt/party", "metrics", "partial_decrypt_s", "s"),
    Column("combine", "metrics", "decrypt_s", "s"),
    Column("sign/upload", "metrics", "sign_upload_s", "s"),
    Column("verify 100", "metrics", "verify_100_uploads_s", "s"),
    Column("verify 100 / partial", "metrics", "verify_100_over_partial_decrypt", "x"),
    Column("sent/client", "metrics", "upload_bytes", "bytes"),
    Column("sent / f32", "metrics", "upload_expansion", "x"),
    Column("exact", "metrics", "exact"),
)

_PRIMES: dict[int, tuple[int, int, float]] = {}


def key_material(
    key_bits: int, clients: int, threshold: int, workers: Workers
) -> tuple[ThresholdKeyMaterial, float, float]:
    """``(ThresholdKeyMaterial, seconds to find the safe primes, seconds to deal)``.

    Safe primes are generated once per key size and process (the suites of one
    run share them); the dealing is per (clients, threshold).
    """
    if key_bits % 2:
        raise ConfigurationError(f"key size must be even, got {key_bits}")
    if key_bits not in _PRIMES:
        started = time.perf_counter()
        p, q = generate_safe_primes(key_bits // 2, 2, workers=workers)
        _PRIMES[key_bits] = (p, q, time.perf_counter() - started)
    p, q, primes_s = _PRIMES[key_bits]
    started = time.perf_counter()
    material = deal_threshold_key_from_primes(p, q, num_parties=clients, threshold=threshold)
    return material, primes_s, time.perf_counter() - started


def configurations(options: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The grid points of every sweep (explicit options replace a sweep's axis), without duplicates."""
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for sweep in options["sweeps"]:
        axes = {key: _as_list(options.get(key)) or sweep[key] for key in _GRID}
        points: list[dict[str, Any]] = [{}]
        for key in _GRID:
            points = [{**point, key: value} for point in points for value in axes[key]]
        for point in points:
            seen.setdefault(tuple(point[key] for key in _GRID), point)
    return list(seen.values())


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def run(overrides: Mapping[str, Any], context: RunContext) -> SuiteReport:
    """Run the preset of ``context.mode`` with ``overrides`` (see :data:`OPTIONS`)."""
    started, clock = utc_now(), time.perf_counter()
    options = resolve(PRESETS, context.mode, overrides)
    plan = configurations(options)
    for point in plan:  # a key shape every session refuses (2t <= l) stops the run before anything is measured
        check_dealt_shape(point["clients"], options["threshold"] or default_threshold(point["clients"]))
    floors = context.floors()
    rng = np.random.default_rng(options["seed"])
    results: list[Row] = []
    pools: dict[int, Workers] = {}
    try:
        with Progress(len(plan), "paillier", enabled=context.progress) as progress:
            for point in plan:
                progress.begin(" ".join(f"{k}={v}" for k, v in point.items()))
                workers = pools.setdefault(point["workers"], Workers(point["workers"]))
                workers.map(abs, [1, 2])  # start the pool before anything is timed
                clients = point["clients"]
                threshold = options["threshold"] or default_threshold(clients)
                material, primes_s, deal_s = key_material(point["key_bits"], clients, threshold, workers)
                metrics = run_config(
                    material,
                    clients=clients,
                    dim=point["dim"],
                    value_bits=options["value_bits"],
                    obfuscation=Obfuscation(point["obfuscation"]),
                    workers=workers,
                    naive_sample=options["naive_sample"],
                    rng=rng,
                )
                metrics.update(_derived(metrics, point["dim"]), ceremony_primes_s=primes_s, ceremony_deal_s=deal_s)
                params = {
                    **point,
                    "workers": workers.count,
                    "value_bits": options["value_bits"],
                    "threshold": threshold,
                }
                row: Row = {"params": params, "metrics": metrics}
                results.append(row)
                context.measured(row)
                progress.write("paillier  " + row_line(row, COLUMNS))
                progress.advance()
    finally:
        for pool in pools.values():
            pool.close()
    return context.report(
        "paillier",
        started,
        clock,
        floors=floors,
        results=results,
        targets=targets(results),
        notes=_notes(floors),
        metric_notes={
            **NOTES,
            "upload_expansion": "upload_bytes / (4 d), the float32 update sent in the clear",
            "sent_by_decrypting_client": "upload + one partial decryption (a client among the t decrypting parties)",
            "received_by_decrypting_client": "the decryption request: every upload in full, which the party "
            "multiplies itself to check the aggregate (52.8 MB per party at 10 clients x 10^6 values)",
        },
    )


def _derived(metrics: Mapping[str, Any], dim: int) -> dict[str, Any]:
    plain = 4 * dim
    sent = metrics["upload_bytes"] + metrics["partial_bytes_per_party"]
    return {
        "bytes_plain_float32": plain,
        "upload_expansion": metrics["upload_bytes"] / plain,
        "sent_by_decrypting_client": sent,
        "received_by_decrypting_client": metrics["request_bytes_per_party"],
        "sent_expansion_decrypting_client": sent / plain,
        "encrypt_per_value_s": metrics["encrypt_s"] / dim,
    }


def target_row(results: list[Row]) -> Row | None:
    """The issue's configuration (10 clients, 16-bit values), preferring one process,
    2048 bits, DJN and the longest vector."""
    rows = [r for r in results if r["params"]["clients"] == 10 and r["params"]["value_bits"] == 16]
    if not rows:
        return None
    return max(
        rows,
        key=lambda r: (
            r["params"]["workers"] == 1,
            r["params"]["key_bits"] == 2048,
            r["params"]["obfuscation"] == "djn",
            r["params"]["dim"],
        ),
    )


def targets(results: list[Row]) -> list[Target]:
    """>= 300x faster than phe's per-value encryption, <= 1.0x the single-core powmod floor."""
    row = target_row(results)
    if row is None:
        return []
    p, m = row["params"], row["metrics"]
    params = {k: p[k] for k in ("key_bits", "clients", "dim", "value_bits", "obfuscation", "workers")}
    where = (
        f"{p['clients']} clients, {p['value_bits']}-bit values, {p['key_bits']}-bit key, d = {p['dim']:,}, "
        f"{p['obfuscation']} obfuscators, {p['workers']} process(es)"
    )
    return [
        Target(
            "paillier encryption over phe",
            f"phe per-value encryption time / ours ({where})",
            m["ratio_naive_over_encrypt"],
            300.0,
            ">=",
            params,
        ),
        Target(
            "paillier encryption over powmod floor",
            f"our encryption / (ciphertexts x one powmod(r, n, n^2) on one core) ({where})",
            m["ratio_encrypt_over_floor"],
            1.0,
            "<=",
            params,
        ),
    ]


def _notes(floors: dict[str, Any]) -> list[str]:
    return [
        expansion_rate_note(floors),
        "floor_encrypt_s is textbook encryption's cost: one r^n mod n^2 per ciphertext. DJN obfuscators "
        "(h^x with a short exponent and a fixed-base table, Damgard-Jurik-Nielsen) go below it; with more than one "
        "process the wall time also divides by the cores",
        "phe is timed on naive_phe_sample values of the vector and scaled linearly to d (phe's cost per value "
        "does not depend on d)",
        "the key ceremony (safe primes, then dealing) runs once per key size and is not part of any round",
    ]
