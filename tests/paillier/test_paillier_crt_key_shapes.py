"""The constant-time CRT decryption of the single key holder, on many key shapes and edge ciphertexts.

Review of the CRT change: its answer must be ``c^(2d) mod n^2`` bit for bit for every unit c, on
keys whose primes differ in size (one of them 17 bits), for c = 1, n^2 - 1, c = 1 mod p (or mod p^2)
and the like, and with the factors in either order. The CRT constants (``((p-1) q)^-1 mod p``,
its twin mod q, ``p^-1 mod q``) depend on the secret factors only: they must not come from a
variable-time extended Euclid or gcd of p and q (the side channel that constant time closes for
the exponentiations), and are derived once per call, not once per chunk of ciphertexts.
Refusals name no factor.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
from typing import Any

import gmpy2
import pytest

from secagg.errors import ConfigurationError, DecodeError
from secagg.paillier import PrivateKey, SingleKeyMaterial
from secagg.paillier.ceremony import single_key_from_primes
from secagg.paillier.keys import insecure_key_sizes_for_testing, single_key_exponent
from secagg.paillier.threshold import single_key_partial_decrypt
from secagg.primitives.randomness import InsecureDeterministicRandom

from .helpers import SAFE_PRIMES, Exponentiations


def _prime_at_least(start: int, avoid_dividing: int = 1) -> int:
    prime = int(gmpy2.next_prime(start))
    while math.gcd(prime - 1, avoid_dividing) != 1:
        prime = int(gmpy2.next_prime(prime))
    return prime


def _shapes() -> dict[str, tuple[int, int]]:
    small_p = 65537  # the smallest prime the key checks let through (no factor below 65536)
    small_q = _prime_at_least(1 << 120, avoid_dividing=small_p)  # p must not divide q - 1: gcd(n, lambda) = 1
    return {
        "64-bit p, 200-bit q": (_prime_at_least((1 << 63) + 12345), _prime_at_least((1 << 199) + 6789)),
        "200-bit p, 64-bit q": (_prime_at_least((1 << 199) + 6789), _prime_at_least((1 << 63) + 12345)),
        "128-bit p, 129-bit q": (_prime_at_least((1 << 127) + 99), _prime_at_least((1 << 128) + 77)),
        "17-bit p, 121-bit q": (small_p, small_q),
        "384-bit safe primes, p > q given": SAFE_PRIMES[384],
    }


SHAPES = _shapes()


@functools.cache
def _material(shape: str) -> SingleKeyMaterial:
    p, q = SHAPES[shape]
    with insecure_key_sizes_for_testing():
        return single_key_from_primes(p, q, random_bytes=InsecureDeterministicRandom(11))


def _crt(p: int, q: int, mod_p: int, mod_q: int) -> int:
    """The c in [0, n^2) with c = mod_p mod p^2 and c = mod_q mod q^2."""
    psquare, qsquare = p * p, q * q
    return (mod_p + (mod_q - mod_p) * pow(psquare, -1, qsquare) % qsquare * psquare) % (psquare * qsquare)


def _edge_units(p: int, q: int) -> list[int]:
    n = p * q
    nsquare = n * n
    rng = random.Random(p ^ q)
    units = [1, nsquare - 1, nsquare - 2, n + 1, n - 1, 2 * n + 1, nsquare - n - 1]
    for mod_p in (1, 1 + p, p * p - 1, 1 + 2 * p):  # 1 mod p^2, 1 mod p only, -1 mod p^2, ...
        for mod_q in (1, 1 + q, q * q - 1, 2):
            units.append(_crt(p, q, mod_p, mod_q))
    units += [rng.randrange(1, nsquare) for _ in range(20)]
    return [c for c in units if math.gcd(c, n) == 1]


@pytest.mark.parametrize("shape", list(SHAPES))
def test_crt_decryption_is_c_to_the_2d_on_every_key_shape(shape: str) -> None:
    # Prepare: a key of this shape (factors sorted by the ceremony) and edge-case units
    material = _material(shape)
    private = material.private
    p, q = private.p, private.q
    n = p * q
    units = _edge_units(p, q)
    share_exponent = 2 * single_key_exponent(p, q)
    # Execute
    answer = single_key_partial_decrypt(private, units)
    # Assert: bit for bit the one-of-one share's c^(2d), and phe's opt-out
    assert answer == [gmpy2.powmod(c, share_exponent, n * n) for c in units]
    assert answer == single_key_partial_decrypt(private, units, constant_time=False)


@pytest.mark.parametrize("shape", ["64-bit p, 200-bit q", "128-bit p, 129-bit q"])
def test_crt_decryption_with_the_factors_in_the_other_order(shape: str) -> None:
    # Prepare: the same key with p > q (built past the constructor, which keeps p < q)
    material = _material(shape)
    swapped = object.__new__(PrivateKey)
    for field in dataclasses.fields(PrivateKey):
        object.__setattr__(swapped, field.name, getattr(material.private, field.name))
    object.__setattr__(swapped, "p", material.private.q)
    object.__setattr__(swapped, "q", material.private.p)
    units = _edge_units(material.private.p, material.private.q)
    # Execute / Assert: the CRT does not depend on the order of the factors
    assert single_key_partial_decrypt(swapped, units) == single_key_partial_decrypt(material.private, units)


class _SecretArithmetic:
    """Calls of gmpy2's variable-time number theory (invert, gcd, gcdext) whose arguments
    depend on the secret factors (a multiple of p or q other than a multiple of n, or p - 1,
    q - 1), and constant-time exponentiations other than the two per ciphertext."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, p: int, q: int) -> None:
        self.p, self.q, self.n = p, q, p * q
        self.variable_time: list[str] = []
        for name in ("invert", "gcd", "gcdext"):
            monkeypatch.setattr(gmpy2, name, self._spy(name, getattr(gmpy2, name)))
        self.powers = Exponentiations(monkeypatch)

    def _secret(self, value: Any) -> bool:
        value = int(value)
        if value in (self.p - 1, self.q - 1):
            return True
        return value % self.n != 0 and math.gcd(value, self.n) != 1

    def _spy(self, name: str, real: Any) -> Any:
        def spy(*args: Any) -> Any:
            if any(self._secret(a) for a in args):
                self.variable_time.append(name)
            return real(*args)

        return spy

    def auxiliary(self) -> int:
        """Exponentiations that are not c^(p-1) mod p^2 or c^(q-1) mod q^2, plus the variable-time calls."""
        per_ciphertext = (self.p - 1, self.q - 1)
        return len(self.variable_time) + sum(1 for e in self.powers.silent if e not in per_ciphertext)


def test_crt_constants_use_no_variable_time_arithmetic_on_the_factors(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: spies on gmpy2's extended Euclid and gcd
    material = _material("128-bit p, 129-bit q")
    p, q = material.private.p, material.private.q
    units = _edge_units(p, q)[:5]
    spies = _SecretArithmetic(monkeypatch, p, q)
    # Execute
    single_key_partial_decrypt(material.private, units)
    # Assert: no Euclid on p and q (the inverses mod a prime by Fermat, in constant time)
    assert spies.variable_time == []


def test_crt_constants_are_derived_once_per_call_not_per_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: one ciphertext, then 71 (three chunks of 32)
    material = _material("128-bit p, 129-bit q")
    p, q = material.private.p, material.private.q
    n = p * q
    many = [(1 + i * n) * pow(1000 + i, n, n * n) % (n * n) for i in range(71)]
    one = _SecretArithmetic(monkeypatch, p, q)
    single_key_partial_decrypt(material.private, many[:1])
    once = one.auxiliary()
    monkeypatch.undo()
    three = _SecretArithmetic(monkeypatch, p, q)
    # Execute
    single_key_partial_decrypt(material.private, many)
    # Assert: the same factor-derived work for 71 ciphertexts as for one
    assert three.auxiliary() == once


def test_refusals_name_no_factor(single_256: SingleKeyMaterial) -> None:
    # Prepare: a ciphertext that is a multiple of p, and a key forged with q = 3 p
    p, q = SAFE_PRIMES[256]
    n = single_256.public.key.n
    forged = object.__new__(PrivateKey)
    for field in dataclasses.fields(PrivateKey):
        object.__setattr__(forged, field.name, getattr(single_256.private, field.name))
    object.__setattr__(forged, "q", 3 * p)
    messages = []
    # Execute
    with pytest.raises(DecodeError) as non_unit:
        single_key_partial_decrypt(single_256.private, [n + 1, 5 * p])
    messages.append(str(non_unit.value))
    with pytest.raises(ConfigurationError) as not_coprime:
        single_key_partial_decrypt(forged, [n + 1])
    messages.append(str(not_coprime.value))
    # Assert: neither message carries a factor, in decimal or hex
    for message in messages:
        for secret in (p, q, 3 * p, 5 * p, p - 1, q - 1):
            assert str(secret) not in message
            assert f"{secret:x}" not in message
