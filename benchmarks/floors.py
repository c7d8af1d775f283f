"""What the hardware allows, measured in the same run as the figures.

- AES-128-CTR keystream rate: one OpenSSL ``update_into`` into a warm buffer
  (the masking PRG cannot produce mask bytes faster);
- numpy add rate: one in-place uint32 add (the cost of applying a mask or
  summing an input);
- one keystream expansion added into an accumulator, the masking suite's unit
  (:class:`secagg.masking.benchmark.FloorTimer`);
- gmpy2 ``powmod(r, n, n^2)`` per modulus size, on one core: the cost of one
  textbook Paillier obfuscator, the floor of Paillier encryption. gmpy2 is imported
  only for it (:func:`gmpy2_module`): where it does not import, the floors leave
  ``powmod_s`` out and say why in ``powmod_skipped``, so the suites that need no
  Paillier still run (the Paillier suites are refused first, by the runner).

Floors are measured once per process and shared by the suites of one
``secagg bench all`` run.
"""

from __future__ import annotations

import os
import secrets
import statistics
import time
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fl_core.aggregators.paillier_import import paillier_dependency
from secagg.errors import ConfigurationError
from secagg.masking.benchmark import FloorTimer, median_seconds
from secagg.ring import RING32

__all__ = ["REFERENCE_DIM", "expansion_rate_note", "gmpy2_module", "keystream_s", "measure", "powmod_s"]

REFERENCE_DIM = 1 << 20
"""Vector length (uint32 words, 4 MiB) of the rate measurements."""

_CACHE: dict[tuple[int, tuple[int, ...], int], dict[str, Any]] = {}


def keystream_s(nbytes: int, repeats: int = 7) -> float:
    """Median seconds of ``nbytes`` of raw AES-128-CTR keystream into a warm buffer."""
    zeros = bytes(nbytes)
    out = bytearray(nbytes + 16)

    def once() -> None:
        Cipher(algorithms.AES(os.urandom(16)), modes.CTR(bytes(16))).encryptor().update_into(zeros, out)

    once()
    return median_seconds(once, repeats)


def gmpy2_module() -> ModuleType:
    """gmpy2; ConfigurationError naming it, with how to install it, if it does not import
    (:func:`fl_core.aggregators.paillier_import.paillier_dependency`, make_aggregator's loader)."""
    return paillier_dependency("gmpy2", "the powmod floor of secagg bench")


def powmod_s(key_bits: int, samples: int = 15) -> float:
    """Median seconds of one ``gmpy2.powmod(r, n, n^2)``, n a random odd ``key_bits``-bit
    modulus and r uniform below n (the cost does not depend on n's factors)."""
    gmpy2 = gmpy2_module()
    n = gmpy2.mpz(secrets.randbits(key_bits) | (1 << (key_bits - 1)) | 1)
    nsquare = n * n
    times = []
    for _ in range(samples):
        r = gmpy2.mpz(secrets.randbelow(int(n) - 2) + 2)
        started = time.perf_counter()
        gmpy2.powmod(r, n, nsquare)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(
    dim: int = REFERENCE_DIM, key_bits: Sequence[int] = (2048, 3072), powmod_samples: int = 15
) -> dict[str, Any]:
    """The floors for vectors of ``dim`` uint32 words and each Paillier modulus size.

    Cached per process: every suite of one run reports the same floors. Where gmpy2 does not
    import, ``powmod_s`` is left out and ``powmod_skipped`` says why.
    """
    cache_key = (dim, tuple(sorted(key_bits)), powmod_samples)
    if cache_key not in _CACHE:
        nbytes = 4 * dim
        timer = FloorTimer(dim, RING32)
        stream_s = keystream_s(nbytes)
        add_s = timer.add_s()
        found: dict[str, Any] = {
            "reference_dim": dim,
            "aes128_ctr_bytes_per_s": nbytes / stream_s,
            "aes128_ctr_gib_per_s": nbytes / stream_s / (1 << 30),
            "numpy_add_uint32_per_s": dim / add_s,
            "expansion_add_s": timer.expansion_s(),
        }
        try:
            gmpy2_module()
        except ConfigurationError as exc:
            found["powmod_skipped"] = str(exc)
        else:
            found["powmod_s"] = {str(bits): powmod_s(bits, powmod_samples) for bits in sorted(key_bits)}
        _CACHE[cache_key] = found
    return dict(_CACHE[cache_key])


def expansion_rate_note(floors: dict[str, Any]) -> str:
    """One line for the report: the keystream and add rates in human units."""
    return (
        f"floors (this run): AES-128-CTR keystream {floors['aes128_ctr_gib_per_s']:.2f} GiB/s, "
        f"numpy uint32 add {floors['numpy_add_uint32_per_s'] / 1e9:.2f} G elements/s"
        + "".join(f", powmod(r, n, n^2) {bits}-bit {s * 1e3:.2f} ms" for bits, s in floors.get("powmod_s", {}).items())
    )
