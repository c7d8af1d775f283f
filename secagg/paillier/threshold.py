"""Threshold decryption arithmetic: partial decryptions and their combination.

For an aggregate ciphertext c = (1+n)^M * r^n mod n^2 (Shoup 2000, Damgard-Jurik 2001):

- party i's partial decryption is ``c_i = c^(2 * Delta * s_i) mod n^2``;
- for any set S of t parties, with integer coefficients
  ``mu_i = Delta * prod_{j in S, j != i} j / (j - i)`` (Delta = l! clears the
  denominators), ``prod c_i^(2 mu_i) = c^(4 Delta^2 d) = 1 + 4 Delta^2 M n mod n^2``
  because d = 0 mod m kills r^n and d = 1 mod n leaves M; so
  ``M = L(prod c_i^(2 mu_i)) * (4 Delta^2)^-1 mod n`` with L(u) = (u - 1) / n.
- fewer than t partials determine nothing about d beyond what t - 1 shares
  reveal, which is nothing (Shamir over Z_(nm), with the usual Shoup caveat
  that the parties do not know nm; the shares are uniform in Z_(nm)).

The single-key mode is the t = l = 1 case: its key holder knows p, q and
answers with the value a one-of-one share would give, ``c^(2d) = 1 + 2Mn``,
computed from a CRT decryption (c^(p-1) mod p^2 and c^(q-1) mod q^2, GMP's
constant-time exponentiation by default, phe's with ``constant_time=False``),
about 7.4x cheaper than c^(2d) mod n^2 at 2048 bits.

Partial decryptions are checked with the batched proofs of
:mod:`secagg.paillier.proofs` before they reach :func:`combine_partials`; the
combination's own test (the product must be 1 mod n) is a second, weaker line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import gmpy2
from phe import paillier as phe_paillier

from secagg.errors import AuthenticationError, ConfigurationError, ThresholdError
from secagg.paillier._compute import (
    CHUNK,
    IN_PROCESS,
    Workers,
    blob_to_ints,
    chunked,
    combine_chunk,
    crt_decrypt_chunk,
    ints_to_blob,
    power_chunk,
)
from secagg.paillier.keys import DEFAULT_CONSTANT_TIME, KeyShare, PrivateKey, ThresholdPublicKey

__all__ = ["combine_partials", "lagrange_exponents", "partial_decrypt", "single_key_partial_decrypt"]


def lagrange_exponents(parties: Sequence[int], delta: int) -> dict[int, int]:
    """``2 * mu_i`` for each i in ``parties``: ``mu_i = Delta * prod_{j != i} j / (j - i)``, an integer.

    ConfigurationError unless ``parties`` are distinct positive ints (at least one) and
    ``delta`` clears every denominator (Delta = l! does for parties in 1..l).
    """
    if not parties or any(isinstance(i, bool) or not isinstance(i, int) or i < 1 for i in parties):
        raise ConfigurationError(f"parties must be one or more positive ints, got {list(parties)}")
    if len(set(parties)) != len(parties):
        raise ConfigurationError(f"parties must be distinct, got {list(parties)}")
    exponents = {}
    for i in parties:
        coefficient = Fraction(delta)
        for j in parties:
            if j != i:
                coefficient *= Fraction(j, j - i)
        if coefficient.denominator != 1:
            raise ConfigurationError(
                f"Delta = {delta} does not clear the Lagrange denominators of parties {list(parties)}"
            )
        exponents[i] = 2 * coefficient.numerator
    return exponents


def partial_decrypt(
    share: KeyShare,
    ciphertexts: Sequence[Any],
    workers: Workers = IN_PROCESS,
    *,
    constant_time: bool = DEFAULT_CONSTANT_TIME,
) -> list[Any]:
    """``c^(2 * Delta * s_i) mod n^2`` for each ciphertext (already checked to lie in Z*_(n^2)).

    By default (:data:`~secagg.paillier.keys.DEFAULT_CONSTANT_TIME`) GMP's side-channel-silent
    exponentiation raises the secret exponent; ``constant_time=False`` uses the sliding window
    (about 1.4x faster at 2048 bits), which leaves timing and cache side channels on the share open.
    """
    key = share.public.key
    width = key.ciphertext_bytes
    tasks = [
        (key.nsquare, share.exponent, ints_to_blob(ciphertexts[start:stop], width), constant_time)
        for start, stop in chunked(len(ciphertexts), CHUNK)
    ]
    return blob_to_ints(b"".join(workers.map(power_chunk, tasks)), width)


def _single_key_chunk(task: tuple[int, int, bytes]) -> bytes:
    """``1 + 2*M*n mod n^2`` (= c^(2d)) per ciphertext, M from phe's CRT decryption."""
    p, q, blob = task
    n = p * q
    private = phe_paillier.PaillierPrivateKey(phe_paillier.PaillierPublicKey(n), p, q)
    width = 2 * ((n.bit_length() + 7) // 8)
    nsquare = n * n
    return ints_to_blob(
        ((1 + 2 * private.raw_decrypt(int(c)) * n) % nsquare for c in blob_to_ints(blob, width)), width
    )


def _crt_constants(p: int, q: int) -> tuple[int, int, int]:
    """``((p-1) q)^-1 mod p``, ``((q-1) p)^-1 mod q`` and ``p^-1 mod q``: the CRT decryption's constants.

    Each is an inverse modulo a prime by Fermat's little theorem, ``x^(r-2) mod r``, through
    GMP's constant-time ``powmod_sec`` (which reduces x itself), not by ``gmpy2.invert``, whose
    extended Euclid runs as long as the quotients of p and q dictate. Each result is checked to
    be the inverse (a product mod r and a comparison, ordinary arithmetic), which holds for
    distinct odd primes; ConfigurationError otherwise (factors forged past the key's checks),
    naming no factor.
    """
    if p < 3 or q < 3 or p % 2 == 0 or q % 2 == 0:
        raise ConfigurationError("private key factors are not odd primes: no CRT decryption")
    constants = []
    for prime, value in ((p, (p - 1) * q), (q, (q - 1) * p), (q, p)):
        inverse = gmpy2.powmod_sec(value, prime - 2, prime)
        if inverse * value % prime != 1:
            raise ConfigurationError("private key factors are not coprime primes: no CRT decryption")
        constants.append(int(inverse))
    return constants[0], constants[1], constants[2]


def single_key_partial_decrypt(
    private: PrivateKey,
    ciphertexts: Sequence[Any],
    workers: Workers = IN_PROCESS,
    *,
    constant_time: bool = DEFAULT_CONSTANT_TIME,
) -> list[Any]:
    """The key holder's answer: what a one-of-one share would give, ``c^(2d) mod n^2``.

    Computed as ``1 + 2*M*n`` from a CRT decryption of M (c^(p-1) mod p^2, c^(q-1) mod q^2;
    bit for bit c^(2d) for every unit c). By default
    (:data:`~secagg.paillier.keys.DEFAULT_CONSTANT_TIME`) both exponentiations use GMP's
    side-channel-silent ``powmod_sec`` (:func:`~secagg.paillier._compute.crt_decrypt_chunk`);
    ``constant_time=False`` uses phe's decryption (sliding window, about 1.15x faster at 2048
    bits: timing and cache side channels on p and q stay open). The CRT constants are derived
    once per call, by default in constant time too (:func:`_crt_constants`: Fermat inverses, no
    extended Euclid on p and q). DecodeError if a ciphertext is not a unit of Z*_(n^2) (it has
    no plaintext); ConfigurationError for factors that are not coprime (or, by default, not odd
    primes: a key forged past its checks).
    """
    key = private.public.key
    key.check_ciphertexts(ciphertexts, "single-key decryption")
    width = key.ciphertext_bytes
    blobs = [ints_to_blob(ciphertexts[start:stop], width) for start, stop in chunked(len(ciphertexts), CHUNK)]
    if not constant_time:
        if gmpy2.gcd(private.p, private.q) != 1:
            raise ConfigurationError("private key factors are not coprime: no CRT decryption")
        tasks = [(private.p, private.q, blob) for blob in blobs]
        return blob_to_ints(b"".join(workers.map(_single_key_chunk, tasks)), width)
    h_p, h_q, p_inverse = _crt_constants(private.p, private.q)
    tasks_ct = [(private.p, private.q, h_p, h_q, p_inverse, blob) for blob in blobs]
    return blob_to_ints(b"".join(workers.map(crt_decrypt_chunk, tasks_ct)), width)


def combine_partials(
    public: ThresholdPublicKey, partials: Mapping[int, Sequence[Any]], workers: Workers = IN_PROCESS
) -> list[Any]:
    """The plaintexts from the partial decryptions of at least t parties.

    ``partials`` maps party index -> its partial decryption of every aggregate
    word (already checked to lie in Z*_(n^2), all of one length). Exactly t of
    them are used (the lowest indices). Raises ThresholdError with fewer than t,
    AuthenticationError if the combination is not of the form 1 + x*n (some
    partial is wrong).
    """
    if len(partials) < public.threshold:
        raise ThresholdError(
            f"{len(partials)} partial decryptions from parties {sorted(partials)}; {public.threshold} are needed"
        )
    for party in partials:
        public.verification_key(party)  # raises ConfigurationError for an unknown party
    chosen = sorted(partials)[: public.threshold]
    lengths = {len(partials[party]) for party in chosen}
    if len(lengths) != 1:
        raise ConfigurationError("partial decryptions to combine must have one common length")
    (length,) = lengths
    n = public.key.n
    delta = public.delta
    inverse = int(gmpy2.invert(4 * delta * delta, n))
    exponents = lagrange_exponents(chosen, delta)
    width = public.key.ciphertext_bytes
    tasks = [
        (n, inverse, [(exponents[party], ints_to_blob(partials[party][start:stop], width)) for party in chosen])
        for start, stop in chunked(length, CHUNK)
    ]
    results = workers.map(combine_chunk, tasks)
    invalid = sum(count for _, count in results)
    if invalid:
        raise AuthenticationError(
            f"partial decryptions of parties {chosen} do not combine to valid plaintexts "
            f"({invalid} of {length} words): at least one partial decryption is wrong"
        )
    return blob_to_ints(b"".join(blob for blob, _ in results), public.key.plaintext_bytes)
