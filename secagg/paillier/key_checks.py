"""What a Paillier public key from untrusted bytes must show, beyond its fields' ranges.

A key file is written by the dealer but read by servers and nodes that must not trust its
bytes. Without the factors nothing proves that n = p q with p, q large safe primes, or that
v is a random square; what can be checked is checked here, by the key types on construction
and decoding (:class:`~secagg.paillier.keys.PublicKey`,
:class:`~secagg.paillier.keys.ThresholdPublicKey`) and by the loaders (:func:`check_loaded_key`):

- the modulus (besides its size, odd and not a perfect square, checked by ``PublicKey``) has
  no prime factor below :data:`SMALL_PRIME_BOUND` (such a modulus is factored at once);
- the verification base v and every verification key ``v_i = v^(Delta s_i)`` are squares mod
  n^2 as dealt, so their Jacobi symbol mod n is +1 (a non-residue is no square); v and the v_i
  are not 1 or -1 (elements of order at most 2: every proof against them is vacuous), and the
  v_i are distinct (two equal keys are two shares the proofs cannot tell apart);
- the generator is g = n + 1, implicit in the encoding: there is no g to check;
- a t-of-l key (l > 1) keeps ``2t > l`` (:func:`check_loaded_key`: every session refuses such
  a key, :func:`secagg.paillier.parameters.check_decryption_majority`; a loader refuses it at
  once rather than at the first round).

The first two raise ConfigurationError (DecodeError from wire decoding); the loaders'
check raises DecodeError.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import gmpy2

from secagg.errors import ConfigurationError, DecodeError

if TYPE_CHECKING:
    from secagg.paillier.keys import ThresholdPublicKey

__all__ = ["SMALL_PRIME_BOUND", "check_loaded_key", "check_modulus_factors", "check_verification_values"]

SMALL_PRIME_BOUND = 1 << 16
"""A modulus with a prime factor below this bound is refused (trial division by all of them at
once: one gcd with their product)."""

_SMALL_PRIMES_PRODUCT = gmpy2.primorial(SMALL_PRIME_BOUND - 1)


def check_modulus_factors(n: int) -> None:
    """ConfigurationError if the modulus ``n`` has a prime factor below :data:`SMALL_PRIME_BOUND`."""
    common = gmpy2.gcd(_SMALL_PRIMES_PRODUCT, n)
    if common != 1:
        factor = next(p for p in range(2, SMALL_PRIME_BOUND) if common % p == 0)
        raise ConfigurationError(
            f"Paillier modulus has a small prime factor ({factor} < {SMALL_PRIME_BOUND}): it is not a product "
            "of two large primes"
        )


def check_verification_values(n: int, base: int, keys: Sequence[int], threshold: int = 2) -> None:
    """ConfigurationError unless the verification base and keys (already in Z*_(n^2)) can be what
    the dealer publishes: squares (Jacobi symbol +1 mod n), none of them 1 or -1 (the base's 1 is
    refused by the key type), the keys distinct (which a 1-of-l key, l > 1, never has: its
    polynomial is constant, every share the whole secret)."""
    minus_one = n * n - 1
    if base == minus_one:
        raise ConfigurationError("verification base must not be -1 mod n^2 (order 2: every proof is vacuous)")
    if gmpy2.jacobi(base % n, n) != 1:
        raise ConfigurationError("verification base is not a square mod n^2 (its Jacobi symbol mod n is not +1)")
    seen: dict[int, int] = {}
    for party, value in enumerate(keys, start=1):
        if value in (1, minus_one):
            raise ConfigurationError(f"verification key of party {party} is 1 or -1 mod n^2: no share gives it")
        if gmpy2.jacobi(value % n, n) != 1:
            raise ConfigurationError(f"verification key of party {party} is not a square mod n^2, as v^(Delta s_i) is")
        if value in seen:
            why = "a 1-of-l key: every share is the whole secret" if threshold == 1 else "no honest dealing gives it"
            raise ConfigurationError(
                f"parties {seen[value]} and {party} have the same verification key ({why}): their proofs cannot "
                "be told apart"
            )
        seen[value] = party


def check_loaded_key(public: ThresholdPublicKey, what: str) -> ThresholdPublicKey:
    """``public``, read from ``what`` (a file or sealed share), if every session could use it; DecodeError
    naming ``what`` for a t-of-l key with l > 1 and ``2t <= l``."""
    t, parties = public.threshold, public.num_parties
    if parties > 1 and 2 * t <= parties:
        raise DecodeError(
            f"{what}: a {t}-of-{parties} threshold key, which every session refuses (2t > l is needed: two disjoint "
            f"groups of holders could decrypt two sums that differ in one upload); the least safe threshold for "
            f"l = {parties} is {parties // 2 + 1}"
        )
    return public
