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
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import sys
import time
from typing import Any

import gmpy2
import numpy as np
import phe

from secagg import wire
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
from secagg._outputs import write_output
from secagg.errors import ConfigurationError, SecAggError
from secagg.paillier._compute import Workers
from secagg.paillier.ceremony import (
    ThresholdKeyMaterial,
    deal_threshold_key,
    deal_threshold_key_from_primes,
    generate_safe_primes,
)
from secagg.paillier.encryption import Obfuscation
from secagg.paillier.keys import PublicKey, ThresholdPublicKey
from secagg.paillier.messages import EncryptedVector, upload_payload
from secagg.paillier.packing import SlotLayout
from secagg.paillier.parameters import check_dealt_shape, default_threshold
from secagg.paillier.protocol import Client, DecryptingParty, Server, SessionParameters
from secagg.primitives.signing import SigningKey, verify

__all__ = ["build_parser", "main", "measure_ceremony", "measure_floor", "measure_naive_phe", "run_config"]

FLOOR_SAMPLES = 50
DEFAULT_NAIVE_SAMPLE = 50
NOTES = {
    "sign_upload_s": "one client: SHA-256 of its ciphertexts + one Ed25519 signature (median of 5)",
    "verify_100_uploads_s": "one party verifying 100 signed uploads of this size, each from its own hospital "
    "(hashing included; median of 5)",
    "sign_over_encrypt": "sign_upload_s / encrypt_s: what signing adds to a client's upload",
    "verify_100_over_partial_decrypt": "verify_100_uploads_s / partial_decrypt_s (of this run's n uploads): "
    "what checking 100 signatures costs against the decryption it guards",
    "encrypt_s": "wall time per client (mean): pack + encrypt (incl. obfuscators and DJN table) + wire encode",
    "aggregate_s": "server: check every upload (Z*_(n^2)) and multiply them; each party repeats this inside "
    "partial_decrypt_s as its binding check",
    "partial_decrypt_s": "per decrypting party (mean over the t parties used): check uploads, recompute the sum, "
    "c^(2 Delta s_i) for every aggregate ciphertext",
    "partial_decrypt_s_includes": "the batched zero-knowledge proof of correct decryption (one per party)",
    "decrypt_s": "server: check t partial decryptions and verify their proofs, combine, unpack, overflow checks",
    "naive_phe_encrypt_s": "phe PaillierPublicKey.encrypt (one EncryptedNumber per value) timed on "
    "naive_phe_sample values and scaled linearly to dim",
    "floor_encrypt_s": "num_ciphertexts x median time of one gmpy2.powmod(r, n, n^2) on one core, same run",
    "ciphertext_bytes_per_value": "bytes of one client's EncryptedVector wire message / dim",
    "max_party_s": "largest wall time of any single party in its role (client, server, decrypting party)",
}


def measure_floor(key: PublicKey, samples: int = FLOOR_SAMPLES) -> float:
    """Median seconds of one full-size ``powmod(r, n, n^2)`` with r uniform below n."""
    n = gmpy2.mpz(key.n)
    nsquare = n * n
    times = []
    for _ in range(samples):
        r = gmpy2.mpz(secrets.randbelow(key.n - 1) + 1)
        started = time.perf_counter()
        gmpy2.powmod(r, n, nsquare)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure_naive_phe(key: PublicKey, values: np.ndarray[Any, Any]) -> float:
    """Seconds per value of phe's ``encrypt`` (EncodedNumber + obfuscation) over ``values``."""
    phe_key = key.phe
    started = time.perf_counter()
    for value in values.tolist():
        phe_key.encrypt(int(value))
    return (time.perf_counter() - started) / max(len(values), 1)


def run_config(
    material: ThresholdKeyMaterial,
    *,
    clients: int,
    dim: int,
    value_bits: int,
    obfuscation: Obfuscation,
    workers: Workers,
    naive_sample: int,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Run one session with timings; returns the ``metrics`` dict."""
    public: ThresholdPublicKey = material.public
    key = public.key
    layout = SlotLayout(value_bits, clients, key.key_bits)
    identities = {k: SigningKey.generate() for k in range(1, clients + 1)}
    params = SessionParameters(
        public=public, layout=layout, vector_length=dim, roster=tuple(range(1, clients + 1)),
        min_contributors=min(clients, max(2, public.threshold)),
        identity_keys=tuple(identities[k].public for k in range(1, clients + 1)), context=secrets.token_bytes(32),
    )
    low, high = layout.value_min, layout.value_max
    inputs = {k: rng.integers(low, high, size=dim, endpoint=True, dtype=np.int64) for k in range(1, clients + 1)}

    encrypt_times, uploads, digests = [], {}, {}
    for k, vector in inputs.items():
        started = time.perf_counter()
        client = Client(params, k, identities[k], obfuscation=obfuscation, workers=workers)
        uploads[k] = wire.encode(client.upload(vector))
        encrypt_times.append(time.perf_counter() - started)
        digests[k] = client.upload_digest

    server = Server(params, workers=workers)
    started = time.perf_counter()
    for data in uploads.values():
        server.receive_upload(data)
    server.aggregate_ciphertexts()
    aggregate_s = time.perf_counter() - started

    partial_times, answers, request_bytes = [], [], 0
    for party in range(1, public.threshold + 1):
        request = wire.encode(server.decryption_request(party))
        request_bytes = len(request)
        started = time.perf_counter()
        decryptor = DecryptingParty(params, material.shares[party - 1], own_upload=digests[party], workers=workers)
        answers.append(wire.encode(decryptor.respond(request)))
        partial_times.append(time.perf_counter() - started)

    started = time.perf_counter()
    for answer in answers:
        server.receive_partial(answer)
    aggregate = server.finish()
    decrypt_s = time.perf_counter() - started

    started = time.perf_counter()
    plain = np.sum(np.stack(list(inputs.values())), axis=0)
    plain_sum_s = time.perf_counter() - started

    signing = measure_signing(wire.decode(uploads[1], EncryptedVector).ciphertexts, params.session_id)
    sample = inputs[1][: min(dim, naive_sample)]
    naive_per_value = measure_naive_phe(key, sample)
    floor_one = measure_floor(key)
    encrypt_s = statistics.fmean(encrypt_times)
    partial_s = statistics.fmean(partial_times)
    upload_bytes = len(uploads[1])
    return {
        "encrypt_s": encrypt_s,
        "encrypt_max_s": max(encrypt_times),
        "aggregate_s": aggregate_s,
        "partial_decrypt_s": partial_s,
        "partial_decrypt_max_s": max(partial_times),
        "decrypt_s": decrypt_s,
        "naive_phe_encrypt_s": naive_per_value * dim,
        "naive_phe_sample": len(sample),
        "naive_phe_scaled": True,
        "floor_encrypt_s": floor_one * params.num_ciphertexts,
        "floor_powmod_s": floor_one,
        "plain_sum_s": plain_sum_s,
        "num_ciphertexts": params.num_ciphertexts,
        "slots_per_ciphertext": layout.slots_per_plaintext,
        "slot_bits": layout.width,
        "ciphertext_bytes_per_value": upload_bytes / dim,
        "upload_bytes": upload_bytes,
        "request_bytes_per_party": request_bytes,
        "partial_bytes_per_party": len(answers[0]),
        "exact": bool(np.array_equal(aggregate, plain)),
        "max_party_s": max(*encrypt_times, aggregate_s, *partial_times, decrypt_s),
        "ratio_naive_over_encrypt": naive_per_value * dim / encrypt_s,
        "ratio_encrypt_over_floor": encrypt_s / (floor_one * params.num_ciphertexts),
        **signing,
        "sign_over_encrypt": signing["sign_upload_s"] / encrypt_s,
        "verify_100_over_partial_decrypt": signing["verify_100_uploads_s"] / partial_s,
    }


SIGNED_UPLOADS = 100


def measure_signing(ciphertexts: bytes, session: bytes) -> dict[str, float]:
    """What signed uploads cost: one client signing an upload of these ciphertexts
    (hash + Ed25519), and one party verifying :data:`SIGNED_UPLOADS` uploads of this size,
    each from its own enrolled hospital (median of 5 runs each)."""
    keys = [SigningKey.generate() for _ in range(SIGNED_UPLOADS)]
    length = len(ciphertexts)
    payloads = [upload_payload(session, k + 1, length, ciphertexts) for k in range(SIGNED_UPLOADS)]
    signatures = [key.sign(payload) for key, payload in zip(keys, payloads, strict=True)]

    def sign_one() -> None:
        keys[0].sign(upload_payload(session, 1, length, ciphertexts))

    def verify_all() -> None:
        for key, signature, client in zip(keys, signatures, range(1, SIGNED_UPLOADS + 1), strict=True):
            verify(key.public, signature, upload_payload(session, client, length, ciphertexts))

    def median_of_5(operation: Any) -> float:
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            operation()
            runs.append(time.perf_counter() - started)
        return statistics.median(runs)

    return {"sign_upload_s": median_of_5(sign_one), "verify_100_uploads_s": median_of_5(verify_all)}


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
        write_output(option["json"], "benchmark report", (json.dumps(report, indent=2) + "\n").encode("utf-8"))
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
    try:
        return main(args)
    except SecAggError as exc:
        print(f"secagg.paillier.benchmark: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(_run_from_command_line())
