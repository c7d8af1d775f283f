"""Key ceremony: a trusted dealer creates the Paillier key and the hospitals' key shares.

Who runs it, and what they must destroy (docs/paillier.md, "Key ceremony"):
one dealer, trusted by every hospital for this single step, on a machine that
is offline or at least runs nothing else, in a fresh process that exits when
done. It calls :func:`deal_threshold_key`, writes each :class:`KeyShare` to its
hospital protected by that hospital's passphrase
(:func:`secagg.paillier.storage.protect`), publishes the
:class:`ThresholdPublicKey`, and then destroys p, q, p', q', m, d, the
polynomial coefficients and every share: this module keeps none of them after
returning, and the process must exit so that nothing lingers in memory
(Python cannot reliably wipe integers). Anyone who keeps p or q, or t shares,
can decrypt every hospital's individual update.

Threshold key (Shoup, EUROCRYPT 2000; Damgard-Jurik, PKC 2001, s = 1):

- p = 2p' + 1 and q = 2q' + 1 are safe primes of key_bits/2 bits each with the
  top two bits set (so n = pq has exactly key_bits bits); m = p'q'.
- d is the unique d mod nm with d = 0 (mod m) and d = 1 (mod n).
- f(X) = d + a_1 X + ... + a_(t-1) X^(t-1) with a_j uniform in Z_(nm);
  party i (1..l) gets s_i = f(i) mod nm.
- v is a random square mod n^2; v_i = v^(Delta * s_i) with Delta = l!.

The primes come from :mod:`secagg.paillier.primes` (the sieved safe-prime
search; ordinary primes for the single-key mode).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import gmpy2

from secagg._validate import require_int
from secagg.errors import ConfigurationError
from secagg.paillier._arguments import require_flag, require_random_bytes, require_workers
from secagg.paillier._compute import IN_PROCESS, RANDOMNESS_MARGIN_BYTES, Workers
from secagg.paillier.keys import (
    DEFAULT_KEY_BITS,
    MAX_KEY_BITS,
    MAX_PARTIES,
    KeyShare,
    PrivateKey,
    PublicKey,
    ThresholdPublicKey,
    check_key_bits,
    key_policy,
    single_key_exponent,
)
from secagg.paillier.parameters import check_dealt_shape
from secagg.paillier.primes import (
    MAX_SAFE_PRIMES,
    PRIME_TEST_ROUNDS,
    SEED_SIZE,
    SIEVE_LIMIT,
    SIEVE_WINDOW,
    _random_prime,
    generate_safe_primes,
    is_safe_prime,
)
from secagg.primitives.randomness import RandomBytes, system_random

__all__ = [
    "MAX_SAFE_PRIMES",
    "PRIME_TEST_ROUNDS",
    "SIEVE_LIMIT",
    "SIEVE_WINDOW",
    "SingleKeyMaterial",
    "ThresholdKeyMaterial",
    "deal_single_key",
    "deal_threshold_key",
    "deal_threshold_key_from_primes",
    "generate_safe_primes",
    "is_safe_prime",
    "single_key_from_primes",
]


def _uniform_below(bound: int, random_bytes: RandomBytes) -> int:
    """Uniform in [0, bound) up to a bias below 2^-128."""
    size = (bound.bit_length() + 7) // 8 + RANDOMNESS_MARGIN_BYTES
    return int.from_bytes(random_bytes(size), "big") % bound


def _random_unit_square(n: int, random_bytes: RandomBytes) -> int:
    """A random square in Z*_(n^2), not 1."""
    nsquare = n * n
    while True:
        r = _uniform_below(nsquare, random_bytes)
        if r > 1 and math.gcd(r, n) == 1:
            v = r * r % nsquare
            if v != 1:
                return v


@dataclass(frozen=True, repr=False)
class ThresholdKeyMaterial:
    """What the dealer hands out: the public parameters and one share per party.

    ``shares[i - 1]`` belongs to party i. ``seconds`` records how long the
    ceremony took (prime search, dealing). Destroy this object after the shares
    are delivered.
    """

    public: ThresholdPublicKey
    shares: tuple[KeyShare, ...]
    seconds: dict[str, float] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"ThresholdKeyMaterial(bits={self.public.key.key_bits}, t={self.public.threshold}, l={len(self.shares)})"


@dataclass(frozen=True, repr=False)
class SingleKeyMaterial:
    """The single-key mode's public parameters (t = l = 1) and the key holder's private key."""

    public: ThresholdPublicKey
    private: PrivateKey
    seconds: dict[str, float] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"SingleKeyMaterial(bits={self.public.key.key_bits})"


def _check_parties(num_parties: int, threshold: int) -> None:
    num_parties = require_int("num_parties", num_parties, 1, MAX_PARTIES)
    threshold = require_int("threshold", threshold)
    if not 1 <= threshold <= num_parties:
        raise ConfigurationError(f"threshold must be in 1..{num_parties}, got {threshold}")
    check_dealt_shape(num_parties, threshold)


def _check_prime_arguments(p: object, q: object, random_bytes: object, insecure_for_testing: object) -> tuple[int, int]:
    """p and q as positive ints of at most half the largest modulus (before any primality test);
    the randomness source and the flag of the caller checked too."""
    require_random_bytes(random_bytes)
    require_flag("insecure_for_testing", insecure_for_testing)
    limit = 1 << (MAX_KEY_BITS // 2)
    return require_int("p", p, 2, limit), require_int("q", q, 2, limit)


def _check_even_key_bits(key_bits: int, insecure_for_testing: bool) -> None:
    require_flag("insecure_for_testing", insecure_for_testing)
    check_key_bits(key_bits, insecure_for_testing=insecure_for_testing)
    if key_bits % 2:
        raise ConfigurationError(f"key size must be even (two primes of key_bits/2 bits), got {key_bits}")


def deal_threshold_key(
    key_bits: int = DEFAULT_KEY_BITS,
    *,
    num_parties: int,
    threshold: int,
    random_bytes: RandomBytes = system_random,
    workers: Workers = IN_PROCESS,
    insecure_for_testing: bool = False,
) -> ThresholdKeyMaterial:
    """Generate a safe-prime Paillier key and deal t-of-l shares (see the module docstring).

    ``key_bits`` must satisfy the key-size policy (>= 2048 unless
    ``insecure_for_testing``) and be even. Every secret comes from ``random_bytes``.
    A shape every session refuses, 2t <= l (l > 1), is refused before the prime search
    (ConfigurationError naming the least safe threshold, l // 2 + 1;
    :func:`~secagg.paillier.parameters.check_dealt_shape`); with c colluders to keep out,
    deal t >= (l + c) // 2 + 1.
    """
    _check_parties(num_parties, threshold)
    _check_even_key_bits(key_bits, insecure_for_testing)
    random_bytes, workers = require_random_bytes(random_bytes), require_workers(workers)
    started = time.perf_counter()
    p, q = generate_safe_primes(key_bits // 2, 2, random_bytes=random_bytes, workers=workers)
    primes_done = time.perf_counter()
    material = _deal(p, q, num_parties, threshold, random_bytes, insecure_for_testing)
    material.seconds.update(primes=primes_done - started, deal=time.perf_counter() - primes_done)
    return material


def deal_threshold_key_from_primes(
    p: int,
    q: int,
    *,
    num_parties: int,
    threshold: int,
    random_bytes: RandomBytes = system_random,
    insecure_for_testing: bool = False,
) -> ThresholdKeyMaterial:
    """Deal shares of the key n = p*q from given safe primes (test keys, external prime generation).

    Checks that p and q are distinct safe primes of equal size giving a modulus
    the policy accepts, and refuses, as :func:`deal_threshold_key` does, a shape with
    2t <= l; ConfigurationError otherwise.
    """
    _check_parties(num_parties, threshold)
    p, q = _check_prime_arguments(p, q, random_bytes, insecure_for_testing)
    if p == q or not (is_safe_prime(p) and is_safe_prime(q)):
        raise ConfigurationError("threshold Paillier needs two distinct safe primes")
    if p.bit_length() != q.bit_length():
        raise ConfigurationError("safe primes must have the same bit length")
    return _deal(p, q, num_parties, threshold, random_bytes, insecure_for_testing)


def _deal(
    p: int, q: int, num_parties: int, threshold: int, random_bytes: RandomBytes, insecure_for_testing: bool
) -> ThresholdKeyMaterial:
    # Private and unchecked: the public dealers check the shape (_check_parties) first. Tests
    # build keys sessions must refuse through it, by name (tests/paillier/helpers.py).
    with key_policy(insecure_for_testing):
        return _deal_shares(p, q, num_parties, threshold, random_bytes)


def _deal_shares(p: int, q: int, num_parties: int, threshold: int, random_bytes: RandomBytes) -> ThresholdKeyMaterial:
    n = p * q
    check_key_bits(n.bit_length())
    m = ((p - 1) // 2) * ((q - 1) // 2)
    if math.gcd(n, m) != 1:
        raise ConfigurationError("gcd(n, p'q') != 1: the primes are unsuitable")
    nm = n * m
    d = m * pow(m, -1, n) % nm  # d = 0 mod m, d = 1 mod n
    coefficients = [d] + [_uniform_below(nm, random_bytes) for _ in range(threshold - 1)]
    secrets_ = [_evaluate(coefficients, index, nm) for index in range(1, num_parties + 1)]
    while any(secret == 0 for secret in secrets_):  # probability about l/nm; redraw rather than hand out 0
        coefficients[1:] = [_uniform_below(nm, random_bytes) for _ in range(threshold - 1)]
        secrets_ = [_evaluate(coefficients, index, nm) for index in range(1, num_parties + 1)]
    nsquare = n * n
    delta = math.factorial(num_parties)
    v = _random_unit_square(n, random_bytes)
    public = _public(n, threshold, num_parties, v, [gmpy2.powmod_sec(v, delta * s, nsquare) for s in secrets_])
    shares = tuple(KeyShare(public, index, secret) for index, secret in enumerate(secrets_, start=1))
    return ThresholdKeyMaterial(public=public, shares=shares)


def _public(n: int, threshold: int, num_parties: int, v: int, keys: Sequence[int]) -> ThresholdPublicKey:
    return ThresholdPublicKey(
        key=PublicKey(n),
        threshold=threshold,
        num_parties=num_parties,
        verification_base=int(v),
        verification_keys=tuple(int(value) for value in keys),
    )


def _evaluate(coefficients: Sequence[int], x: int, modulus: int) -> int:
    """f(x) mod modulus by Horner's rule."""
    result = 0
    for coefficient in reversed(coefficients):
        result = (result * x + coefficient) % modulus
    return result


def deal_single_key(
    key_bits: int = DEFAULT_KEY_BITS,
    *,
    random_bytes: RandomBytes = system_random,
    insecure_for_testing: bool = False,
) -> SingleKeyMaterial:
    """Generate the single-key mode's key: ordinary primes p < q of key_bits/2 bits.

    The key holder keeps the :class:`PrivateKey` and decrypts aggregates only;
    the server never holds it. Every secret comes from ``random_bytes``.
    """
    _check_even_key_bits(key_bits, insecure_for_testing)
    random_bytes = require_random_bytes(random_bytes)
    started = time.perf_counter()
    seed = random_bytes(SEED_SIZE)
    index = 0
    while True:
        p, q = _random_prime(seed, key_bits // 2, index), _random_prime(seed, key_bits // 2, index + 1)
        index += 2
        if p and q and p != q and math.gcd(p * q, (p - 1) * (q - 1)) == 1:
            break
    material = single_key_from_primes(p, q, random_bytes=random_bytes, insecure_for_testing=insecure_for_testing)
    material.seconds["primes"] = time.perf_counter() - started
    return material


def single_key_from_primes(
    p: int, q: int, *, random_bytes: RandomBytes = system_random, insecure_for_testing: bool = False
) -> SingleKeyMaterial:
    """Single-key material for given primes p != q (test keys). ConfigurationError if unsuitable."""
    p, q = sorted(_check_prime_arguments(p, q, random_bytes, insecure_for_testing))
    if p == q or not (gmpy2.is_prime(p, PRIME_TEST_ROUNDS) and gmpy2.is_prime(q, PRIME_TEST_ROUNDS)):
        raise ConfigurationError("single-key Paillier needs two distinct primes")
    n = p * q
    with key_policy(insecure_for_testing):
        check_key_bits(n.bit_length())
        d = single_key_exponent(p, q)
        v = _random_unit_square(n, random_bytes)
        public = _public(n, 1, 1, v, [gmpy2.powmod_sec(v, d, n * n)])
        return SingleKeyMaterial(public=public, private=PrivateKey(public, p, q))
