"""The single key holder decrypts by CRT in constant time, bit for bit what c^(2d) gives.

By default (``constant_time=True``) ``single_key_partial_decrypt`` raises each ciphertext to
p - 1 mod p^2 and q - 1 mod q^2 with GMP's ``powmod_sec`` and recombines the two halves by
CRT (phe's decryption, without the sliding window). Its answer must equal the one-of-one
share's ``c^(2d) mod n^2`` and the textbook ``1 + 2 L(c^lambda mod n^2) mu n`` for every unit
c, and it refuses what is not one (a non-unit gives no plaintext by either formula).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import gmpy2
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from phe import paillier as phe_paillier

from secagg.errors import ConfigurationError, DecodeError
from secagg.paillier import PrivateKey, SingleKeyMaterial
from secagg.paillier.threshold import combine_partials, single_key_partial_decrypt

from .helpers import SAFE_PRIMES, Exponentiations, single_material

SIZES = [256, 512]


def _textbook(material: SingleKeyMaterial, c: int) -> int:
    """``1 + 2 M n mod n^2`` with M = L(c^lambda mod n^2) * mu mod n (Paillier 1999, g = n + 1)."""
    p, q = material.private.p, material.private.q
    n = p * q
    nsquare = n * n
    carmichael = math.lcm(p - 1, q - 1)
    mu = pow(carmichael, -1, n)  # L(g^lambda mod n^2) = lambda mod n for g = n + 1
    plaintext = (pow(c, carmichael, nsquare) - 1) // n * mu % n
    return (1 + 2 * plaintext * n) % nsquare


def _encrypt(n: int, m: int, r: int) -> int:
    nsquare = n * n
    return (1 + m * n) * pow(r, n, nsquare) % nsquare


@settings(max_examples=40, deadline=None)
@given(bits=st.sampled_from(SIZES), m_seed=st.integers(min_value=0), r_seed=st.integers(min_value=0))
@example(bits=256, m_seed=0, r_seed=0)
@example(bits=256, m_seed=-1, r_seed=-1)
@example(bits=512, m_seed=0, r_seed=-1)
@example(bits=512, m_seed=-1, r_seed=0)
def test_crt_decryption_equals_the_textbook_and_the_share_exponent(bits: int, m_seed: int, r_seed: int) -> None:
    # Prepare: any plaintext in [0, n) (seed -1 picks n - 1) and any r in [1, n) coprime to n
    material = single_material(bits)
    n = material.public.key.n
    m = m_seed % n
    r = r_seed % (n - 1) + 1
    if math.gcd(r, n) != 1:
        r = 1
    c = _encrypt(n, m, r)
    # Execute
    answer = single_key_partial_decrypt(material.private, [c])
    # Assert: bit-identical to c^(2d), to the textbook decryption, and to the phe-style opt-out
    assert answer == [gmpy2.powmod(c, 2 * material.private.exponent_d, n * n)]
    assert answer == [_textbook(material, c)] == [(1 + 2 * m * n) % (n * n)]
    assert answer == single_key_partial_decrypt(material.private, [c], constant_time=False)


@settings(max_examples=40, deadline=None)
@given(bits=st.sampled_from(SIZES), seed=st.integers(min_value=0))
@example(bits=256, seed=0)
@example(bits=256, seed=-2)
def test_crt_decryption_of_any_unit_equals_the_share_exponent(bits: int, seed: int) -> None:
    # Prepare: a unit of Z*_(n^2) not made by our encryptor (seed 0 gives 1, seed -2 gives n^2 - 1)
    material = single_material(bits)
    n = material.public.key.n
    c = seed % (n * n - 1) + 1
    if math.gcd(c, n) != 1:
        c = 1
    # Execute / Assert
    assert single_key_partial_decrypt(material.private, [c]) == [
        gmpy2.powmod(c, 2 * material.private.exponent_d, n * n)
    ]


def test_many_ciphertexts_across_chunks_decrypt(single_256: SingleKeyMaterial) -> None:
    # Prepare: more than one 32-ciphertext chunk, ending in n - 1
    n = single_256.public.key.n
    plaintexts = [*range(70), n - 1]
    ciphertexts = [_encrypt(n, m, 1000 + i) for i, m in enumerate(plaintexts)]
    # Execute
    answer = single_key_partial_decrypt(single_256.private, ciphertexts)
    # Assert
    assert combine_partials(single_256.public, {1: answer}) == plaintexts


def test_the_default_path_is_crt_in_constant_time(
    single_256: SingleKeyMaterial, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the sliding window and phe's decryption fail if called at all
    private = single_256.private
    p, q = SAFE_PRIMES[256]
    n = single_256.public.key.n
    ciphertexts = [_encrypt(n, m, 5 + m) for m in (0, 1, 77)]
    powers = Exponentiations(monkeypatch)

    def forbidden(*args: Any) -> Any:
        raise AssertionError("the default single-key decryption used a variable-time exponentiation")

    monkeypatch.setattr(gmpy2, "powmod", forbidden)
    monkeypatch.setattr(phe_paillier.PaillierPrivateKey, "raw_decrypt", forbidden)
    # Execute
    answer = single_key_partial_decrypt(private, ciphertexts)
    # Assert: only the half-size exponents p - 1 and q - 1 were raised, each in constant time,
    # after the three CRT constants (Fermat inverses: p - 2 once, q - 2 twice)
    assert sorted(set(powers.silent)) == [p - 2, p - 1, q - 2, q - 1]
    assert len(powers.silent) == 2 * len(ciphertexts) + 3
    assert answer == [(1 + 2 * m * n) % (n * n) for m in (0, 1, 77)]


@pytest.mark.parametrize("options", [{}, {"constant_time": False}], ids=["default", "constant_time=False"])
@pytest.mark.parametrize("kind", ["zero", "multiple-of-p", "multiple-of-q", "n^2", "above-n^2"])
def test_a_ciphertext_outside_the_unit_group_is_refused(
    single_256: SingleKeyMaterial, kind: str, options: dict[str, bool]
) -> None:
    # Prepare: a valid ciphertext then one that is no unit of Z*_(n^2) (no plaintext by any formula)
    p, q = SAFE_PRIMES[256]
    n = single_256.public.key.n
    bad = {"zero": 0, "multiple-of-p": 3 * p, "multiple-of-q": q * q, "n^2": n * n, "above-n^2": n * n + 2}[kind]
    # Execute / Assert: the library's own error, naming the position
    with pytest.raises(DecodeError, match="ciphertext 1"):
        single_key_partial_decrypt(single_256.private, [_encrypt(n, 5, 7), bad], **options)


@pytest.mark.parametrize("options", [{}, {"constant_time": False}], ids=["default", "constant_time=False"])
def test_factors_that_are_not_coprime_are_refused(single_256: SingleKeyMaterial, options: dict[str, bool]) -> None:
    # Prepare: a private key forged past its constructor, q a multiple of p (CRT needs coprime factors)
    p, _ = SAFE_PRIMES[256]
    forged = object.__new__(PrivateKey)
    for field in dataclasses.fields(PrivateKey):
        object.__setattr__(forged, field.name, getattr(single_256.private, field.name))
    object.__setattr__(forged, "q", 3 * p)
    n = single_256.public.key.n
    # Execute / Assert: the library's own error, not an arithmetic exception or a wrong answer
    with pytest.raises(ConfigurationError, match="not coprime"):
        single_key_partial_decrypt(forged, [_encrypt(n, 5, 7)], **options)
