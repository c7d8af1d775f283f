"""The reference costs the Paillier benchmark sets a session against.

The hardware floor (one full-size ``powmod``), phe's per-value encryption, and
what signed uploads cost (a client signing, a party verifying 100 uploads).
:func:`secagg.paillier.benchmark_session.run_config` measures them in the same
run as the session they are compared with.
"""

from __future__ import annotations

import secrets
import statistics
import time
from typing import Any

import gmpy2
import numpy as np

from secagg.paillier.keys import PublicKey
from secagg.paillier.messages import upload_payload
from secagg.primitives.signing import SigningKey, verify

__all__ = ["FLOOR_SAMPLES", "SIGNED_UPLOADS", "measure_floor", "measure_naive_phe", "measure_signing"]

FLOOR_SAMPLES = 50


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
