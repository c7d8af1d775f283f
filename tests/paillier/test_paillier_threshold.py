"""Threshold decryption: every t-subset decrypts, t - 1 shares do not, wrong partials are caught.

Also the single-key mode (the t = l = 1 case) and interoperability with phe.
"""

from __future__ import annotations

import itertools
import math

import gmpy2
import pytest

from secagg.errors import AuthenticationError, ConfigurationError, ThresholdError
from secagg.paillier import Encryptor, Obfuscation, SingleKeyMaterial, ThresholdKeyMaterial
from secagg.paillier.threshold import (
    combine_partials,
    lagrange_exponents,
    partial_decrypt,
    single_key_partial_decrypt,
)
from secagg.primitives.randomness import InsecureDeterministicRandom

from .helpers import threshold_material

PLAINTEXTS = [0, 1, 2, 12345, 2**100 + 7]


def _encrypt(material: ThresholdKeyMaterial | SingleKeyMaterial, plaintexts: list[int]) -> list[int]:
    key = material.public.key
    return Encryptor(key, random_bytes=InsecureDeterministicRandom(3)).encrypt([*plaintexts, key.n - 1])


def test_every_t_subset_decrypts(material_3_of_5: ThresholdKeyMaterial) -> None:
    # Prepare
    material = material_3_of_5
    ciphertexts = _encrypt(material, PLAINTEXTS)
    partials = {share.index: partial_decrypt(share, ciphertexts) for share in material.shares}
    expected = [*PLAINTEXTS, material.public.key.n - 1]
    # Execute / Assert: all C(5, 3) = 10 subsets
    subsets = list(itertools.combinations(range(1, 6), 3))
    assert len(subsets) == 10
    for subset in subsets:
        assert combine_partials(material.public, {i: partials[i] for i in subset}) == expected, subset


@pytest.mark.parametrize(("parties", "threshold"), [(1, 1), (2, 2), (4, 3), (6, 4), (7, 7)])
def test_threshold_shapes_decrypt(parties: int, threshold: int) -> None:
    # Prepare
    material = threshold_material(256, parties, threshold)
    ciphertexts = _encrypt(material, PLAINTEXTS)
    chosen = material.shares[-threshold:]
    # Execute
    partials = {share.index: partial_decrypt(share, ciphertexts) for share in chosen}
    # Assert
    assert combine_partials(material.public, partials) == [*PLAINTEXTS, material.public.key.n - 1]


def test_fewer_than_t_partials_raise_threshold_error(material_3_of_5: ThresholdKeyMaterial) -> None:
    ciphertexts = _encrypt(material_3_of_5, PLAINTEXTS)
    partials = {share.index: partial_decrypt(share, ciphertexts) for share in material_3_of_5.shares[:2]}
    with pytest.raises(ThresholdError, match="3 are needed"):
        combine_partials(material_3_of_5.public, partials)


def test_t_minus_one_shares_interpolated_as_if_enough_do_not_decrypt(material_3_of_5: ThresholdKeyMaterial) -> None:
    # Prepare: combine two partials with the Lagrange coefficients of a 2-point
    # interpolation, i.e. pretend t = 2; the share polynomial has degree 2, so this
    # interpolates a wrong exponent and yields no plaintext.
    public = material_3_of_5.public
    key = public.key
    ciphertexts = _encrypt(material_3_of_5, PLAINTEXTS)
    shares = {share.index: share for share in material_3_of_5.shares[:2]}
    partials = {i: partial_decrypt(share, ciphertexts) for i, share in shares.items()}
    exponents = lagrange_exponents(sorted(partials), public.delta)
    inverse = gmpy2.invert(4 * public.delta**2, key.n)
    # Execute
    recovered = []
    for j in range(len(ciphertexts)):
        combined = 1
        for i, exponent in exponents.items():
            combined = combined * gmpy2.powmod(partials[i][j], exponent, key.nsquare) % key.nsquare
        recovered.append((combined - 1) // key.n * inverse % key.n if combined % key.n == 1 else None)
    # Assert: no word decrypts to its plaintext (the encryption of 0 included)
    assert all(value != expected for value, expected in zip(recovered, [*PLAINTEXTS, key.n - 1], strict=True))


def test_wrong_partial_is_detected(material_3_of_5: ThresholdKeyMaterial) -> None:
    # Prepare: party 2 returns random units instead of its partial decryption
    key = material_3_of_5.public.key
    ciphertexts = _encrypt(material_3_of_5, PLAINTEXTS)
    partials = {share.index: partial_decrypt(share, ciphertexts) for share in material_3_of_5.shares[:3]}
    partials[2] = [gmpy2.powmod(c, 3, key.nsquare) for c in ciphertexts]
    # Execute / Assert
    with pytest.raises(AuthenticationError, match="at least one partial decryption is wrong"):
        combine_partials(material_3_of_5.public, partials)


def test_unknown_party_is_refused(material_3_of_5: ThresholdKeyMaterial) -> None:
    ciphertexts = _encrypt(material_3_of_5, [1])
    partials = {share.index: partial_decrypt(share, ciphertexts) for share in material_3_of_5.shares[:3]}
    partials[9] = partials[1]
    with pytest.raises(ConfigurationError, match="party 9"):
        combine_partials(material_3_of_5.public, partials)


def test_lagrange_exponents_are_integers_reconstructing_delta_times_constant() -> None:
    # Prepare: f(x) = 5 + 3x + 2x^2 at 3 of 5 points; sum mu_i f(i) = Delta f(0)
    delta = math.factorial(5)
    parties = [1, 3, 5]
    exponents = lagrange_exponents(parties, delta)
    # Execute
    value = sum(exponents[i] // 2 * (5 + 3 * i + 2 * i * i) for i in parties)
    # Assert
    assert value == delta * 5


@pytest.mark.parametrize(
    ("parties", "delta"),
    [([1, 3], 1), ([2, 2], 2), ([0, 1], 2), ([-1, 1], 2), ([], 2)],
    ids=["delta-not-clearing", "repeated", "zero", "negative", "empty"],
)
def test_lagrange_exponents_refuse_parties_that_are_not_a_valid_set(parties: list[int], delta: int) -> None:
    # A non-integral coefficient (Delta not a multiple of the denominators) or a repeated, zero or
    # negative index would give exponents that decrypt nothing: refused, not asserted or returned
    with pytest.raises(ConfigurationError):
        lagrange_exponents(parties, delta)


def test_single_key_answer_equals_the_one_of_one_share_exponent(single_256: SingleKeyMaterial) -> None:
    # Prepare
    private = single_256.private
    key = single_256.public.key
    ciphertexts = _encrypt(single_256, PLAINTEXTS)
    # Execute
    fast = single_key_partial_decrypt(private, ciphertexts)
    # Assert: c^(2d) computed the slow way, and the combination decrypts
    assert fast == [gmpy2.powmod(c, 2 * private.exponent_d, key.nsquare) for c in ciphertexts]
    assert combine_partials(single_256.public, {1: fast}) == [*PLAINTEXTS, key.n - 1]


@pytest.mark.parametrize("obfuscation", list(Obfuscation))
def test_phe_decrypts_our_ciphertexts(single_256: SingleKeyMaterial, obfuscation: Obfuscation) -> None:
    # Prepare
    encryptor = Encryptor(single_256.public.key, obfuscation=obfuscation, random_bytes=InsecureDeterministicRandom(4))
    # Execute
    ciphertexts = encryptor.encrypt(PLAINTEXTS)
    # Assert
    assert [single_256.private.phe.raw_decrypt(int(c)) for c in ciphertexts] == PLAINTEXTS


def test_we_decrypt_phe_ciphertexts(single_256: SingleKeyMaterial) -> None:
    # Prepare: phe's own encryption (random r from phe), then our key holder and combiner
    phe_key = single_256.public.key.phe
    ciphertexts = [phe_key.raw_encrypt(m) for m in PLAINTEXTS]
    # Execute
    answer = single_key_partial_decrypt(single_256.private, ciphertexts)
    # Assert
    assert combine_partials(single_256.public, {1: answer}) == PLAINTEXTS


def test_constant_time_exponentiation_gives_the_same_partials(
    material_3_of_5: ThresholdKeyMaterial, single_256: SingleKeyMaterial
) -> None:
    # Prepare
    ciphertexts = _encrypt(material_3_of_5, PLAINTEXTS)
    single_ciphertexts = _encrypt(single_256, PLAINTEXTS)
    share = material_3_of_5.shares[0]
    # Execute / Assert: powmod_sec (the default) and the sliding window agree; c^(2d) and CRT agree
    assert partial_decrypt(share, ciphertexts) == partial_decrypt(share, ciphertexts, constant_time=False)
    assert single_key_partial_decrypt(single_256.private, single_ciphertexts) == (
        single_key_partial_decrypt(single_256.private, single_ciphertexts, constant_time=False)
    )
