"""Packed threshold Paillier against phe and the powmod floor: the measurement.

:func:`run_config` measures one session; ``secagg bench paillier`` (the
``secagg_bench`` suite runner) calls it over its preset grids. This module is
also runnable on its own, with the key-ceremony timing::

    python -m secagg.paillier.benchmark --clients 10 --dim 1000000 --key-bits 2048 --json out.json
    python -m secagg.paillier.benchmark --key-bits 2048 3072 --ceremony-only --ceremony-repeats 5

For every (key bits, clients, dim, obfuscation) the run:

1. times the key ceremony (safe primes once per key size, then the dealing);
2. gives each client a random vector of ``--value-bits``-bit signed integers and
   times its packing + encryption + wire encoding (``encrypt_s``, mean over
   clients; the DJN fixed-base table each client builds is included);
3. times the server's checks and homomorphic addition of all uploads
   (``aggregate_s``);
4. times t decrypting parties, each checking the uploads, recomputing the sum
   and partially decrypting it (``partial_decrypt_s``, mean per party);
5. times the server's combination of t partial decryptions and unpacking
   (``decrypt_s``) and checks the result against the plain sum (``exact``);
6. measures in the same run: phe's per-value ``EncryptedNumber`` encryption on
   a sample of values, scaled to the vector (``naive_phe_encrypt_s``), and one
   full-size ``gmpy2.powmod(r, n, n^2)`` on one core times the number of
   ciphertexts (``floor_encrypt_s``), and the plain numpy sum (``plain_sum_s``).

JSON: ``{"suite", "command", "machine", "notes", "results": [{"params", "metrics"}]}``.

This module is the command line and the ceremony timing; steps 2 to 6 are
:func:`secagg.paillier.benchmark_session.run_config` (re-exported here), the
references of step 6 are in :mod:`secagg.paillier.benchmark_references`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any

import gmpy2
import numpy as np
import phe

from secagg._cli_bench import paillier_problem
from secagg._cli_options import (
    MAX_DIM,
    MAX_HOSPITALS_BENCH,
    MAX_REPEATS,
    MAX_SEED,
    MIN_PAILLIER_KEY_BITS,
    _integer,
    _output_file,
)
from secagg._outputs import run_tool, write_results
from secagg.errors import ConfigurationError
from secagg.paillier._compute import Workers
from secagg.paillier.benchmark_references import (
    FLOOR_SAMPLES,
    SIGNED_UPLOADS,
    measure_floor,
    measure_naive_phe,
    measure_signing,
)
from secagg.paillier.benchmark_session import NOTES, run_config
from secagg.paillier.ceremony import deal_threshold_key, deal_threshold_key_from_primes, generate_safe_primes
from secagg.paillier.encryption import Obfuscation
from secagg.paillier.parameters import check_dealt_shape, default_threshold

__all__ = [
    "FLOOR_SAMPLES",
    "NOTES",
    "SIGNED_UPLOADS",
    "build_parser",
    "main",
    "measure_ceremony",
    "measure_floor",
    "measure_naive_phe",
    "measure_signing",
    "run_config",
]

DEFAULT_NAIVE_SAMPLE = 50


def _machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gmpy2": gmpy2.version(),
        "gmp": gmpy2.mp_version(),
        "phe": getattr(phe, "__version__", "unknown"),
        "load_average_1_5_15min_at_end": list(os.getloadavg()),
    }


def measure_ceremony(key_bits: int, parties: int, threshold: int, repeats: int, workers: Workers) -> dict[str, Any]:
    """Run the full key ceremony ``repeats`` times; seconds per run (prime search, dealing, total)."""
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        material = deal_threshold_key(key_bits, num_parties=parties, threshold=threshold, workers=workers)
        runs.append({**material.seconds, "total": time.perf_counter() - started})
    totals = [run["total"] for run in runs]
    return {
        "key_bits": key_bits, "parties": parties, "threshold": threshold, "workers": workers.count,
        "runs": runs, "median_s": statistics.median(totals), "min_s": min(totals), "max_s": max(totals),
    }


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python -m secagg.paillier.benchmark``."""
    parser = argparse.ArgumentParser(
        prog="python -m secagg.paillier.benchmark",
        description="Packed threshold Paillier vs phe's per-value encryption and the powmod floor.",
    )
    parties, dim = _integer(2, MAX_HOSPITALS_BENCH), _integer(1, MAX_DIM)
    parser.add_argument("--clients", type=parties, nargs="+", default=[10], help="default: 10")
    parser.add_argument("--dim", type=dim, nargs="+", default=[10_000], help="default: 10000")
    parser.add_argument("--key-bits", type=_integer(MIN_PAILLIER_KEY_BITS, 8192), nargs="+", default=[2048],
                        help="2048..8192, even (default: 2048)")
    parser.add_argument("--value-bits", type=_integer(1, 64), default=16, help="default: 16")
    parser.add_argument("--workers", type=_integer(0, 1024), default=0, help="processes (default: 0, one per core)")
    parser.add_argument("--obfuscation", choices=["djn", "textbook"], nargs="+", default=["djn"])
    parser.add_argument("--threshold", type=parties, default=None, help="t, 2t > clients (default: 7 of 10)")
    parser.add_argument("--naive-sample", type=dim, default=DEFAULT_NAIVE_SAMPLE)
    parser.add_argument("--seed", type=_integer(0, MAX_SEED), default=0, help="seed of the random input vectors")
    parser.add_argument("--ceremony-repeats", type=_integer(0, MAX_REPEATS), default=0, metavar="N",
                        help="also time the full key ceremony N times per key size")
    parser.add_argument("--ceremony-only", action="store_true", help="time the key ceremony only")
    parser.add_argument("--json", metavar="PATH", type=_output_file, help="write the results as JSON")
    return parser


def _option(args: argparse.Namespace, name: str, default: Any) -> Any:
    value = getattr(args, name, None)
    return default if value is None else value


def main(args: argparse.Namespace) -> int:
    """Run the grid ``args`` describes (:func:`build_parser`); print a table, optionally write JSON.

    Options missing from ``args`` (or None) take :func:`build_parser`'s defaults.
    """
    defaults = vars(build_parser().parse_args([]))
    option = {name: _option(args, name, default) for name, default in defaults.items()}
    obfuscations = [Obfuscation(name) for name in option["obfuscation"]]
    naive_sample = option["naive_sample"]
    threshold_option = option["threshold"]
    ceremony_repeats = option["ceremony_repeats"]
    for clients in option["clients"]:  # a key every session refuses (2t <= l) stops the run before any work
        check_dealt_shape(clients, threshold_option or default_threshold(clients))
    rng = np.random.default_rng(option["seed"])
    load_at_start = list(os.getloadavg())
    results: list[dict[str, Any]] = []
    ceremonies: list[dict[str, Any]] = []
    with Workers(option["workers"]) as workers:
        workers.map(abs, [1, 2])  # start the pool before anything is timed
        for key_bits in option["key_bits"]:
            if key_bits % 2:
                raise ConfigurationError(f"key size must be even, got {key_bits}")
            if ceremony_repeats:
                parties = max(option["clients"])
                ceremony = measure_ceremony(
                    key_bits, parties, threshold_option or default_threshold(parties), ceremony_repeats, workers
                )
                ceremonies.append(ceremony)
                print(
                    f"key={key_bits} ceremony ({parties} parties, {workers.count} processes): median "
                    f"{ceremony['median_s']:.1f}s, min {ceremony['min_s']:.1f}s, max {ceremony['max_s']:.1f}s "
                    f"over {ceremony_repeats} runs",
                    flush=True,
                )
            if option["ceremony_only"]:
                continue
            started = time.perf_counter()
            p, q = generate_safe_primes(key_bits // 2, 2, workers=workers)
            primes_s = time.perf_counter() - started
            for clients in option["clients"]:
                threshold = threshold_option or default_threshold(clients)
                started = time.perf_counter()
                material = deal_threshold_key_from_primes(p, q, num_parties=clients, threshold=threshold)
                deal_s = time.perf_counter() - started
                for dim in option["dim"]:
                    for obfuscation in obfuscations:
                        params = {
                            "key_bits": key_bits, "clients": clients, "dim": dim, "value_bits": option["value_bits"],
                            "threshold": threshold, "obfuscation": obfuscation.value, "workers": workers.count,
                        }
                        metrics = run_config(
                            material, clients=clients, dim=dim, value_bits=option["value_bits"],
                            obfuscation=obfuscation, workers=workers, naive_sample=naive_sample, rng=rng,
                        )
                        metrics.update(ceremony_primes_s=primes_s, ceremony_deal_s=deal_s)
                        results.append({"params": params, "metrics": metrics})
                        _print_row(params, metrics)
    report = {
        "suite": "paillier",
        "command": _command(),
        "load_average_1_5_15min_at_start": load_at_start,
        "machine": _machine(),
        "notes": NOTES,
        "ceremonies": ceremonies,
        "results": results,
    }
    if option["json"]:
        write_results(option["json"], "benchmark report", json.dumps(report, indent=2) + "\n")  # or on stdout
    return 0


def _command() -> str:
    if sys.argv[0].endswith("secagg"):
        return "secagg " + " ".join(sys.argv[1:])
    if sys.argv[0].endswith("benchmark.py"):
        return "python -m secagg.paillier.benchmark " + " ".join(sys.argv[1:])
    return " ".join(sys.argv)


def _print_row(params: dict[str, Any], metrics: dict[str, Any]) -> None:
    print(
        f"key={params['key_bits']} clients={params['clients']} dim={params['dim']} {params['obfuscation']}: "
        f"encrypt {metrics['encrypt_s']:.2f}s (floor {metrics['floor_encrypt_s']:.2f}s, "
        f"phe {metrics['naive_phe_encrypt_s']:.0f}s, x{metrics['ratio_naive_over_encrypt']:.0f}), "
        f"aggregate {metrics['aggregate_s']:.2f}s, partial {metrics['partial_decrypt_s']:.2f}s/party, "
        f"decrypt {metrics['decrypt_s']:.2f}s, {metrics['ciphertext_bytes_per_value']:.2f} B/value, "
        f"exact={metrics['exact']}, ceremony primes {metrics['ceremony_primes_s']:.1f}s",
        flush=True,
    )


def _run_from_command_line() -> int:
    parser = build_parser()
    args = parser.parse_args()
    problem = paillier_problem(args.key_bits, args.clients, args.threshold)  # an odd key, 2t <= l, ...
    if problem is not None:
        parser.error(problem)  # a usage error naming the option, as argparse's (exit 2)
    return main(args)


if __name__ == "__main__":  # a failed write or Ctrl-C: one line, exit code 2 or 130
    raise SystemExit(run_tool("secagg.paillier.benchmark", _run_from_command_line))
