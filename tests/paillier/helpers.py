"""Small fixed safe primes and the test keys built from them.

The primes were generated once by ``generate_safe_primes`` with
``InsecureDeterministicRandom(key_bits // 2)``; a slow test generates a real one.
Keys this small are accepted only inside ``insecure_key_sizes_for_testing()``.
"""

from __future__ import annotations

from typing import Any

import gmpy2
import pytest

from secagg.paillier import (
    SingleKeyMaterial,
    ThresholdKeyMaterial,
    ceremony,
    deal_threshold_key_from_primes,
    insecure_key_sizes_for_testing,
    single_key_from_primes,
)
from secagg.paillier.encryption import Encryptor
from secagg.paillier.messages import EncryptedVector, upload_payload
from secagg.paillier.parameters import SessionParameters
from secagg.paillier.plaintext_proofs import knowledge_seed, prove_knowledge
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.primitives.signing import SigningKey

SAFE_PRIMES = {
    # key bits: (p, q), both safe primes of key_bits / 2 bits with the top two bits set
    128: (17946960904984235819, 18043205253940220567),
    256: (257677444273259825498918592161036850467, 277324266308887785437020978572338714063),
    384: (
        5690711804230323710735228953170833333392257880316100437927,
        4741325326427857005742914926344250674580775759979377614279,
    ),
    512: (
        102225221323876250758309617405583866891445233470278152710277285848379461402879,
        106052374146949384858525669775271179511704941867230080615858920822526271578519,
    ),
}


_THRESHOLD_CACHE: dict[tuple[int, int, int], ThresholdKeyMaterial] = {}
_SINGLE_CACHE: dict[int, SingleKeyMaterial] = {}


def threshold_material(key_bits: int, num_parties: int, threshold: int) -> ThresholdKeyMaterial:
    """A t-of-l key over the fixed primes (cached: dealing is deterministic anyway)."""
    index = (key_bits, num_parties, threshold)
    if index not in _THRESHOLD_CACHE:
        p, q = SAFE_PRIMES[key_bits]
        with insecure_key_sizes_for_testing():
            _THRESHOLD_CACHE[index] = deal_threshold_key_from_primes(
                p, q, num_parties=num_parties, threshold=threshold, random_bytes=InsecureDeterministicRandom(7)
            )
    return _THRESHOLD_CACHE[index]


def unsafe_threshold_material(key_bits: int, num_parties: int, threshold: int) -> ThresholdKeyMaterial:
    """A t-of-l key with 2t <= l, which the public dealers refuse: built through the dealer's
    private, unchecked arithmetic, only for tests that show that sessions (or the dealer's
    last step) refuse such a key. Refuses to build a usable shape."""
    assert 2 * threshold <= num_parties, f"{threshold}-of-{num_parties} is dealt by the public dealer"
    p, q = SAFE_PRIMES[key_bits]
    with insecure_key_sizes_for_testing():
        return ceremony._deal(p, q, num_parties, threshold, InsecureDeterministicRandom(7), True)


def single_material(key_bits: int) -> SingleKeyMaterial:
    """A single-key-mode key over the fixed primes (cached)."""
    if key_bits not in _SINGLE_CACHE:
        p, q = SAFE_PRIMES[key_bits]
        with insecure_key_sizes_for_testing():
            _SINGLE_CACHE[key_bits] = single_key_from_primes(p, q, random_bytes=InsecureDeterministicRandom(8))
    return _SINGLE_CACHE[key_bits]


IDENTITIES = {k: SigningKey.generate(InsecureDeterministicRandom(1000 + k)) for k in range(1, 11)}
"""Deterministic Ed25519 identity keys of hospitals 1..10 (uploads are signed with them)."""


def identity_keys(roster: tuple[int, ...]) -> tuple[bytes, ...]:
    """The enrolled identity keys of ``roster``, in roster order."""
    return tuple(IDENTITIES[k].public for k in roster)


def signed_upload(session_id: bytes, client: int, length: int, ciphertexts: bytes) -> EncryptedVector:
    """An upload with these fields, validly signed by hospital ``client``'s identity key
    (tests that forge contents check the refusal that follows authentication)."""
    payload = upload_payload(session_id, client, length, ciphertexts)
    return EncryptedVector(session_id, client, length, ciphertexts, IDENTITIES[client].sign(payload))


def proven_data(params: SessionParameters, client: int, plaintexts: list[int]) -> bytes:
    """The ciphertext data of an upload of ``plaintexts`` (packed or not: the sender's own making) by
    ``client``, with its valid proof of plaintext knowledge: what a hospital that bypasses packing
    can send (tests of what the checks after the proof catch)."""
    ciphertexts, witness = Encryptor(params.public.key).encrypt_with_witness(plaintexts)
    width = params.public.key.ciphertext_bytes
    words = b"".join(int(c).to_bytes(width, "big") for c in ciphertexts)
    seed = knowledge_seed(params.session_id, client, params.vector_length, words)
    return words + prove_knowledge(params.public, seed, ciphertexts, witness)


class Exponentiations:
    """Every exponent gmpy2's ``powmod`` (sliding window) and ``powmod_sec`` (GMP's
    side-channel-silent exponentiation) are called with while installed (``monkeypatch``):
    which one a decrypting party raises its secret with."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sliding: list[int] = []
        self.silent: list[int] = []
        sliding, silent = gmpy2.powmod, gmpy2.powmod_sec

        def spy_sliding(base: Any, exponent: Any, modulus: Any) -> Any:
            self.sliding.append(int(exponent))
            return sliding(base, exponent, modulus)

        def spy_silent(base: Any, exponent: Any, modulus: Any) -> Any:
            self.silent.append(int(exponent))
            return silent(base, exponent, modulus)

        monkeypatch.setattr(gmpy2, "powmod", spy_sliding)
        monkeypatch.setattr(gmpy2, "powmod_sec", spy_silent)

    def assert_silent(self, *secrets: int) -> None:
        """Each secret exponent went through ``powmod_sec`` and none through ``powmod``."""
        for secret in secrets:
            assert secret in self.silent, "a secret exponent was never raised in constant time"
            assert secret not in self.sliding, "a secret exponent went through the sliding window"

    def assert_sliding(self, *secrets: int) -> None:
        """Each secret exponent went through ``powmod`` and none through ``powmod_sec`` (the opt-out)."""
        for secret in secrets:
            assert secret in self.sliding, "a secret exponent was never raised by the sliding window"
            assert secret not in self.silent, "a secret exponent was raised in constant time"

    def assert_sliding_only(self) -> None:
        """Nothing went through ``powmod_sec`` (the opt-out)."""
        assert self.silent == [], f"{len(self.silent)} constant-time exponentiations"
