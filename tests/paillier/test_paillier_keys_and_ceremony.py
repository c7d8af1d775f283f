"""Key ceremony, key-size policy, encryption and the obfuscator pool."""

from __future__ import annotations

import math

import gmpy2
import pytest

from secagg.errors import ConfigurationError, EncodeError
from secagg.paillier import (
    DEFAULT_KEY_BITS,
    Encryptor,
    Obfuscation,
    PaillierConfig,
    PublicKey,
    SingleKeyMaterial,
    ThresholdKeyMaterial,
    add_ciphertext_vectors,
    deal_single_key,
    deal_threshold_key,
    deal_threshold_key_from_primes,
    generate_safe_primes,
)
from secagg.paillier.ceremony import is_safe_prime
from secagg.paillier.threshold import combine_partials, partial_decrypt
from secagg.primitives.randomness import InsecureDeterministicRandom

from .helpers import SAFE_PRIMES


@pytest.mark.parametrize("bits", [64, 96, 128])
def test_generated_safe_primes_have_the_promised_shape(bits: int) -> None:
    # Execute
    primes = generate_safe_primes(bits, 2, random_bytes=InsecureDeterministicRandom(bits))
    # Assert: distinct safe primes of exactly `bits` bits with the top two bits set
    assert len(set(primes)) == 2
    for p in primes:
        assert is_safe_prime(p)
        assert p.bit_length() == bits
        assert p >> (bits - 2) == 3


def test_safe_prime_search_depends_only_on_the_seed() -> None:
    first = generate_safe_primes(80, 2, random_bytes=InsecureDeterministicRandom(5))
    again = generate_safe_primes(80, 2, random_bytes=InsecureDeterministicRandom(5))
    other = generate_safe_primes(80, 2, random_bytes=InsecureDeterministicRandom(6))
    assert first == again
    assert first != other


def test_fixed_test_primes_are_safe_primes() -> None:
    for key_bits, (p, q) in SAFE_PRIMES.items():
        assert is_safe_prime(p) and is_safe_prime(q)
        assert (p * q).bit_length() == key_bits


def test_dealt_threshold_key_has_the_shoup_structure() -> None:
    # Prepare / Execute
    material = deal_threshold_key(
        192, num_parties=4, threshold=3, random_bytes=InsecureDeterministicRandom(1), insecure_for_testing=True
    )
    # Assert
    public = material.public
    assert public.key.key_bits == 192
    assert (public.threshold, public.num_parties, public.delta) == (3, 4, 24)
    assert [share.index for share in material.shares] == [1, 2, 3, 4]
    assert "secret" not in repr(material.shares[0]).replace("secret=<redacted>", "")
    assert {"primes", "deal"} <= set(material.seconds)


@pytest.mark.production_policy
@pytest.mark.parametrize("bits", [1024, 2046])
def test_keys_below_2048_bits_are_refused_in_production(bits: int) -> None:
    with pytest.raises(ConfigurationError, match="below the minimum of 2048"):
        deal_threshold_key(bits, num_parties=3, threshold=2)
    with pytest.raises(ConfigurationError, match="below the minimum"):
        PaillierConfig(num_clients=3, vector_length=10, key_bits=bits)
    with pytest.raises(ConfigurationError, match="below the minimum"):
        deal_single_key(bits)


@pytest.mark.production_policy
def test_small_test_primes_are_refused_in_production() -> None:
    p, q = SAFE_PRIMES[512]
    with pytest.raises(ConfigurationError, match="below the minimum"):
        deal_threshold_key_from_primes(p, q, num_parties=3, threshold=2)
    with pytest.raises(ConfigurationError):
        PublicKey(p * q)


@pytest.mark.production_policy
def test_default_key_size_is_3072() -> None:
    assert DEFAULT_KEY_BITS == 3072
    assert PaillierConfig(num_clients=3, vector_length=10).key_bits == 3072


def test_insecure_flag_allows_small_keys_only_down_to_128_bits() -> None:
    config = PaillierConfig(num_clients=3, vector_length=10, key_bits=256, allow_insecure_key_bits_for_testing=True)
    assert config.key_bits == 256
    with pytest.raises(ConfigurationError):
        PaillierConfig(num_clients=3, vector_length=10, key_bits=64, allow_insecure_key_bits_for_testing=True)


@pytest.mark.parametrize(
    ("p", "q"),
    [
        (SAFE_PRIMES[256][0], SAFE_PRIMES[256][0]),  # equal
        (SAFE_PRIMES[256][0], 2 * SAFE_PRIMES[256][1] + 3),  # not prime
        (SAFE_PRIMES[256][0], SAFE_PRIMES[512][0]),  # different sizes
        (SAFE_PRIMES[256][0], 255211775190703847597530955573826158773),  # prime, not safe
    ],
)
def test_unsuitable_primes_are_refused(p: int, q: int) -> None:
    with pytest.raises(ConfigurationError):
        deal_threshold_key_from_primes(p, q, num_parties=3, threshold=2)


@pytest.mark.parametrize(("parties", "threshold"), [(3, 0), (3, 4), (0, 0)])
def test_bad_thresholds_are_refused(parties: int, threshold: int) -> None:
    p, q = SAFE_PRIMES[256]
    with pytest.raises(ConfigurationError):
        deal_threshold_key_from_primes(p, q, num_parties=parties, threshold=threshold)


def test_single_key_generation() -> None:
    material = deal_single_key(256, random_bytes=InsecureDeterministicRandom(2), insecure_for_testing=True)
    private = material.private
    assert private.p * private.q == material.public.key.n
    assert material.public.single_key
    assert math.gcd(private.exponent_d, private.public.key.n) == 1
    assert "p=<redacted>" in repr(private)


@pytest.mark.parametrize("obfuscation", list(Obfuscation))
def test_encryption_is_randomised_and_pool_is_consumed(single_256: SingleKeyMaterial, obfuscation: Obfuscation) -> None:
    # Prepare
    encryptor = Encryptor(single_256.public.key, obfuscation=obfuscation, random_bytes=InsecureDeterministicRandom(9))
    encryptor.precompute(3)
    # Execute
    first = encryptor.encrypt([42, 42])
    remaining = encryptor.precomputed
    second = encryptor.encrypt([42, 42])
    # Assert: four distinct ciphertexts of one plaintext; the pool served the first two only
    assert remaining == 1
    assert encryptor.precomputed == 0
    assert len({int(c) for c in first + second}) == 4
    assert [single_256.private.phe.raw_decrypt(int(c)) for c in first + second] == [42] * 4


def test_known_answer_with_fixed_randomness(single_256: SingleKeyMaterial) -> None:
    # Prepare: textbook encryption under a fixed randomness stream is reproducible
    key = single_256.public.key
    one = Encryptor(key, random_bytes=InsecureDeterministicRandom(10)).encrypt([7])
    two = Encryptor(key, random_bytes=InsecureDeterministicRandom(10)).encrypt([7])
    # Assert: same bytes, and of the form (1 + 7n) r^n with r^n an n-th residue
    assert one == two
    residue = one[0] * gmpy2.invert(1 + 7 * key.n, key.nsquare) % key.nsquare
    private = single_256.private
    carmichael = math.lcm(private.p - 1, private.q - 1)
    assert gmpy2.powmod(residue, carmichael, key.nsquare) == 1


def test_plaintext_outside_zero_to_n_is_refused(single_256: SingleKeyMaterial) -> None:
    encryptor = Encryptor(single_256.public.key)
    with pytest.raises(EncodeError):
        encryptor.encrypt([single_256.public.key.n])
    with pytest.raises(EncodeError):
        encryptor.encrypt([-1])


def test_djn_and_textbook_ciphertexts_add_together(material_3_of_5: ThresholdKeyMaterial) -> None:
    # Prepare
    key = material_3_of_5.public.key
    a = Encryptor(key, obfuscation=Obfuscation.DJN).encrypt([5, 6])
    b = Encryptor(key, obfuscation=Obfuscation.TEXTBOOK).encrypt([10, 20])
    # Execute
    total = add_ciphertext_vectors(key, [a, b])
    partials = {s.index: partial_decrypt(s, total) for s in material_3_of_5.shares[:3]}
    # Assert
    assert combine_partials(material_3_of_5.public, partials) == [15, 26]


@pytest.mark.slow
@pytest.mark.production_policy
def test_real_2048_bit_ceremony() -> None:
    # Execute: a production-size key (about 1-5 s on one core)
    material = deal_threshold_key(2048, num_parties=3, threshold=2)
    # Assert
    assert material.public.key.key_bits == 2048
    encrypted = Encryptor(material.public.key, obfuscation=Obfuscation.DJN).encrypt([123456789])
    partials = {s.index: partial_decrypt(s, encrypted) for s in material.shares[1:]}
    assert combine_partials(material.public, partials) == [123456789]
