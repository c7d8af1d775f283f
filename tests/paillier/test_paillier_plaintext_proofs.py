"""Proofs of plaintext knowledge (secagg/paillier/plaintext_proofs.py): an honest proof verifies with
either obfuscation and any mix of precomputed and fresh obfuscators; a proof altered in any word, or
presented for another client, session or vector, is refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.paillier import Encryptor, Obfuscation
from secagg.paillier.keys import ThresholdPublicKey
from secagg.paillier.plaintext_proofs import (
    PROOF_WORDS,
    _challenge,
    knowledge_seed,
    prove_knowledge,
    verify_knowledge,
)
from secagg.paillier.proofs import batch
from secagg.primitives.randomness import InsecureDeterministicRandom

from .helpers import threshold_material

SESSION = bytes(range(32))


def _public() -> ThresholdPublicKey:
    return threshold_material(256, 4, 3).public


def _proven(obfuscation: Obfuscation, precomputed: int, count: int = 5) -> tuple[list[int], bytes, bytes]:
    """(ciphertexts, their words, proof) of ``count`` plaintexts, ``precomputed`` obfuscators made ahead."""
    public = _public()
    encryptor = Encryptor(public.key, obfuscation=obfuscation, random_bytes=InsecureDeterministicRandom(3))
    encryptor.precompute(precomputed)
    ciphertexts, witness = encryptor.encrypt_with_witness([7 * i + 1 for i in range(count)])
    words = b"".join(int(c).to_bytes(public.key.ciphertext_bytes, "big") for c in ciphertexts)
    proof = prove_knowledge(public, knowledge_seed(SESSION, 2, count, words), ciphertexts, witness,
                            InsecureDeterministicRandom(4))
    return [int(c) for c in ciphertexts], words, proof


@pytest.mark.parametrize("obfuscation", list(Obfuscation))
@pytest.mark.parametrize("precomputed", [0, 3, 9], ids=["fresh", "some precomputed", "all precomputed"])
def test_an_honest_proof_verifies(obfuscation: Obfuscation, precomputed: int) -> None:
    # Prepare / Act
    ciphertexts, words, proof = _proven(obfuscation, precomputed)
    # Assert
    assert len(proof) == PROOF_WORDS * _public().key.ciphertext_bytes
    assert verify_knowledge(_public(), knowledge_seed(SESSION, 2, 5, words), ciphertexts, proof)


@pytest.mark.parametrize("word", ["a", "z1", "z2"])
@pytest.mark.parametrize("change", ["plus one", "zero", "n", "n^2 - 1"])
def test_an_altered_proof_word_is_refused(word: str, change: str) -> None:
    # Prepare
    public = _public()
    ciphertexts, words, proof = _proven(Obfuscation.TEXTBOOK, 0)
    width, n = public.key.ciphertext_bytes, public.key.n
    position = ("a", "z1", "z2").index(word)
    value = int.from_bytes(proof[position * width : (position + 1) * width], "big")
    new = {"plus one": value + 1, "zero": 0, "n": n, "n^2 - 1": n * n - 1}[change]
    altered = proof[: position * width] + new.to_bytes(width, "big") + proof[(position + 1) * width :]
    # Act / Assert
    assert not verify_knowledge(public, knowledge_seed(SESSION, 2, 5, words), ciphertexts, altered)


@pytest.mark.parametrize("other", ["another client", "another session", "another length", "another vector",
                                   "a proof one word short", "a proof one word long"])
def test_a_proof_is_refused_for_anything_else(other: str) -> None:
    # Prepare
    public = _public()
    ciphertexts, words, proof = _proven(Obfuscation.DJN, 0)
    seed = knowledge_seed(SESSION, 2, 5, words)
    width = public.key.ciphertext_bytes
    if other == "another client":
        seed = knowledge_seed(SESSION, 3, 5, words)
    elif other == "another session":
        seed = knowledge_seed(bytes(32), 2, 5, words)
    elif other == "another length":
        seed = knowledge_seed(SESSION, 2, 4, words)
    elif other == "another vector":  # one ciphertext re-randomized: the weights move, the opening does not
        ciphertexts = [ciphertexts[0] * pow(5, public.key.n, public.key.nsquare) % public.key.nsquare,
                       *ciphertexts[1:]]
        words = b"".join(c.to_bytes(width, "big") for c in ciphertexts)
        seed = knowledge_seed(SESSION, 2, 5, words)
    elif other == "a proof one word short":
        proof = proof[:-width]
    else:
        proof = proof + proof[:width]
    # Act / Assert
    assert not verify_knowledge(public, seed, ciphertexts, proof)


@settings(max_examples=60, deadline=None)
@given(proof=st.binary(max_size=4 * 64) | st.binary(min_size=3 * 64, max_size=3 * 64))
def test_arbitrary_proof_bytes_are_refused_without_an_exception(proof: bytes) -> None:
    # Prepare: an honest vector, and bytes in place of its proof: any length, or
    # exactly three 64-byte words
    public = _public()
    ciphertexts, words, _ = _proven(Obfuscation.TEXTBOOK, 0)
    # Act / Assert: refused (False), never an exception
    assert not verify_knowledge(public, knowledge_seed(SESSION, 2, 5, words), ciphertexts, proof)


@pytest.mark.parametrize("word", ["z1", "z2"])
def test_a_response_raised_by_n_is_refused_though_its_equation_holds(word: str) -> None:
    # Prepare: z1 + n (g has order n mod n^2) or z2 + n ((z2 + n)^n = z2^n mod n^2) satisfies
    # g^z1 z2^n = a C^e as the honest proof does; only the range checks 0 <= z1 < n, 0 < z2 < n
    # (spec 13.9) refuse it
    public = _public()
    ciphertexts, words, proof = _proven(Obfuscation.TEXTBOOK, 0)
    width, n, nsquare = public.key.ciphertext_bytes, public.key.n, public.key.nsquare
    position = ("a", "z1", "z2").index(word)
    value = int.from_bytes(proof[position * width : (position + 1) * width], "big") + n
    raised = proof[: position * width] + value.to_bytes(width, "big") + proof[(position + 1) * width :]
    commitment, z1, z2 = (int.from_bytes(raised[i : i + width], "big") for i in range(0, len(raised), width))
    seed = knowledge_seed(SESSION, 2, 5, words)
    batched = batch(public, ciphertexts, seed)
    e = _challenge(seed, n, batched, commitment)
    assert (1 + z1 * n) * pow(z2, n, nsquare) % nsquare == commitment * pow(int(batched), e, nsquare) % nsquare
    # Act / Assert
    assert not verify_knowledge(public, seed, ciphertexts, raised)
