"""Prime generation for the key ceremony: the safe-prime search and random primes.

Safe primes (threshold keys) are found fast by sieving: candidates
q' = start + 6k (q' = 5 mod 6, so neither q' nor 2q'+1 is divisible by 2 or 3)
in windows of :data:`SIEVE_WINDOW` values; a numpy sieve removes every k for
which q' or 2q'+1 has a prime factor below :data:`SIEVE_LIMIT`; survivors face
a Fermat test of q' and of p = 2q'+1 (gmpy2), then :data:`PRIME_TEST_ROUNDS`
rounds of gmpy2's BPSW + Miller-Rabin on q'. p is then prime by Pocklington's
criterion (q' prime, q' > sqrt(p), 2^(p-1) = 1 mod p, gcd(2^2 - 1, p) = 1).
Windows are searched in parallel by :class:`~secagg.paillier._compute.Workers`;
the result depends only on the 32-byte seed (the first primes in window
order), not on the number of processes.

The single-key mode's ordinary primes are the first prime after a random start
drawn from the same kind of seed (:func:`_random_prime`). The dealers that use
both are in :mod:`secagg.paillier.ceremony`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import gmpy2
import numpy as np

from secagg._validate import require_int
from secagg.paillier._arguments import require_random_bytes, require_workers
from secagg.paillier._compute import IN_PROCESS, RANDOMNESS_MARGIN_BYTES, Workers
from secagg.paillier.keys import MAX_KEY_BITS
from secagg.primitives import prg
from secagg.primitives.randomness import RandomBytes, system_random
from secagg.ring import RING64

__all__ = [
    "MAX_SAFE_PRIMES",
    "PRIME_TEST_ROUNDS",
    "SEED_SIZE",
    "SIEVE_LIMIT",
    "SIEVE_WINDOW",
    "generate_safe_primes",
    "is_safe_prime",
]

SIEVE_LIMIT = 1 << 18
"""Small primes up to this bound are sieved out of q' and 2q' + 1."""

SIEVE_WINDOW = 1 << 16
"""Candidates q' per window (spanning 6 * SIEVE_WINDOW integers)."""

PRIME_TEST_ROUNDS = 64
"""Rounds passed to gmpy2.is_prime (BPSW plus Miller-Rabin) for the final test."""

SEED_SIZE = 32
WINDOW_LABEL = b"paillier-safe-prime-window/"
PRIME_LABEL = b"paillier-prime/"


@lru_cache(maxsize=1)
def _sieve_primes() -> tuple[tuple[int, int], ...]:
    """(l, 6^-1 mod l) for every prime 5 <= l < SIEVE_LIMIT."""
    flags = np.ones(SIEVE_LIMIT, dtype=bool)
    flags[:2] = False
    for i in range(2, math.isqrt(SIEVE_LIMIT) + 1):
        if flags[i]:
            flags[i * i :: i] = False
    return tuple((int(p), pow(6, -1, int(p))) for p in np.flatnonzero(flags) if p >= 5)


def _random_bits(seed: bytes, label: bytes, bits: int) -> int:
    """A ``bits``-bit integer with its top two bits set, from the seed's labelled expansion."""
    size = (bits + 7) // 8 + RANDOMNESS_MARGIN_BYTES
    raw = prg.expand(seed, label, (size + 7) // 8, RING64).tobytes()[:size]
    value = int.from_bytes(raw, "big") >> (8 * size - bits)
    return value | (3 << (bits - 2))


def _window_start(seed: bytes, bits: int, index: int) -> int:
    """First candidate q' (= 5 mod 6) of window ``index``; the window stays within bits-1 bits."""
    start = _random_bits(seed, WINDOW_LABEL + index.to_bytes(8, "big"), bits - 1)
    start = start - start % 6 + 5
    ceiling = 1 << (bits - 1)
    if start + 6 * SIEVE_WINDOW >= ceiling:
        start -= 6 * SIEVE_WINDOW + 6  # stays >= 2^(bits-2) + 2^(bits-3) for bits >= 24
    return start


def _search_window(task: tuple[bytes, int, int]) -> int:
    """The first safe prime p = 2q' + 1 of ``bits`` bits in window ``index``, or 0 if none."""
    seed, bits, index = task
    start = _window_start(seed, bits, index)
    alive = np.ones(SIEVE_WINDOW, dtype=bool)
    for small, inverse_six in _sieve_primes():
        residue = start % small
        # q' = start + 6k is divisible by `small` when k = -start/6, and 2q'+1 is when q' = (small-1)/2.
        alive[(-residue * inverse_six) % small :: small] = False
        alive[(((small - 1) // 2 - residue) * inverse_six) % small :: small] = False
    two = gmpy2.mpz(2)
    for k in np.flatnonzero(alive):
        candidate = gmpy2.mpz(start + 6 * int(k))
        if gmpy2.powmod(two, candidate - 1, candidate) != 1:
            continue
        p = 2 * candidate + 1
        if gmpy2.powmod(two, p - 1, p) != 1:
            continue
        if gmpy2.is_prime(candidate, PRIME_TEST_ROUNDS):
            return int(p)
    return 0


MAX_SAFE_PRIMES = 16
"""The most safe primes one call searches for (a key needs two)."""


def generate_safe_primes(
    bits: int, count: int = 2, *, random_bytes: RandomBytes = system_random, workers: Workers = IN_PROCESS
) -> list[int]:
    """``count`` distinct safe primes of exactly ``bits`` bits, top two bits set.

    Windows are searched ``workers.count`` at a time; the primes returned are the
    first ones in window order, so the output is a function of the 32-byte seed
    drawn from ``random_bytes`` alone.
    """
    bits = require_int("bits", bits, 24, MAX_KEY_BITS // 2)
    count = require_int("count", count, 1, MAX_SAFE_PRIMES)
    random_bytes, workers = require_random_bytes(random_bytes), require_workers(workers)
    seed = random_bytes(SEED_SIZE)
    found: list[int] = []
    index = 0
    while len(found) < count:
        batch = [(seed, bits, index + i) for i in range(max(workers.count, 1))]
        index += len(batch)
        for prime in workers.map(_search_window, batch):
            if prime and prime not in found and len(found) < count:
                found.append(prime)
    return found


def is_safe_prime(p: int) -> bool:
    """True if p and (p - 1) / 2 are both (probable) primes."""
    return p > 5 and p % 2 == 1 and bool(gmpy2.is_prime(p, PRIME_TEST_ROUNDS)) and bool(
        gmpy2.is_prime((p - 1) // 2, PRIME_TEST_ROUNDS)
    )


def _random_prime(seed: bytes, bits: int, index: int) -> int:
    """The first prime after a random ``bits``-bit start with the top two bits set (0 if it
    ran past ``bits`` bits, which needs a prime gap of about 2^(bits-2))."""
    prime = int(gmpy2.next_prime(_random_bits(seed, PRIME_LABEL + index.to_bytes(8, "big"), bits)))
    return prime if prime.bit_length() == bits else 0
