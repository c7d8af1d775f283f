"""Proofs of plaintext knowledge: an upload shows its sender knows what it encrypted.

Without them Paillier ciphertexts are malleable: a hospital shown the others' uploads (a lying
server forwards them) could upload, signed as its own, ``Enc(k) * (C_2 * ... * C_j)^-1``, so that
the sum every share holder agrees to decrypt is one hospital's update
(tests/paillier/test_paillier_malleable_uploads.py). With the proof it must know the plaintexts
and randomness of what it uploads, which for such a vector means knowing the others' updates.

Batched over the vector (as :mod:`secagg.paillier.proofs` batches decryption proofs): 128-bit
weights w_j are expanded (:func:`~secagg.paillier.proofs.batch_weights`) from

    seed = SHA-256("secagg/v1/paillier-plaintext-weights" || session id || u32 client ||
                   u32 length || SHA-256(ciphertext words))

and the sender proves knowledge of (M, R) with ``C = prod c_j^(w_j) = g^M R^n mod n^2``
(g = n + 1, M = sum w_j m_j mod n, R = prod r_j^(w_j) mod n), a Sigma protocol made
non-interactive with SHA-256 (Fiat-Shamir)::

    prover: x uniform in Z_n, s uniform in Z*_n, a = g^x s^n mod n^2
            e = first 16 bytes of SHA-256("secagg/v1/paillier-plaintext-knowledge" || seed ||
                n || C || a)     (integers u16-length-prefixed big-endian)
            z1 = x + e M mod n, z2 = s R^e mod n
    verifier: a, z1, z2 in range; g^z1 z2^n = a C^e (mod n^2)

(g has order n mod n^2, so reducing z1 mod n changes nothing.) Two answers to one a for
challenges e != e' give an opening of C (e - e' < 2^128 is prime to n), and an opening of C for
the weights of enough seeds gives every m_j: the weights are fixed by the ciphertexts, the
session and the client, so a proof is neither reusable by another client nor in another session.
z1 and z2 are uniform whatever M and R are: the proof reveals nothing about the update.

On the wire the proof is three words of the ciphertext width appended to the upload's
ciphertext words (a, z1, z2), covered by its signature.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import gmpy2

from secagg.paillier._compute import IN_PROCESS, RANDOMNESS_MARGIN_BYTES, Workers
from secagg.paillier.encryption import EncryptionWitness
from secagg.paillier.keys import ThresholdPublicKey
from secagg.paillier.proofs import CHALLENGE_BYTES, batch, batch_weights
from secagg.primitives.randomness import RandomBytes, system_random

__all__ = ["PROOF_WORDS", "knowledge_seed", "prove_knowledge", "verify_knowledge"]

PROOF_WORDS = 3
"""Words of ciphertext width the proof adds to an upload: a, z1, z2."""

WEIGHTS_LABEL = b"secagg/v1/paillier-plaintext-weights"
CHALLENGE_LABEL = b"secagg/v1/paillier-plaintext-knowledge"


def knowledge_seed(session_id: bytes, client: int, length: int, ciphertext_data: bytes) -> bytes:
    """The 32-byte seed of the weights of ``client``'s proof over ``ciphertext_data`` (its words)."""
    return hashlib.sha256(
        WEIGHTS_LABEL + session_id + client.to_bytes(4, "big") + length.to_bytes(4, "big")
        + hashlib.sha256(ciphertext_data).digest()
    ).digest()


def _encode_int(value: Any) -> bytes:
    raw = int(value).to_bytes((int(value).bit_length() + 7) // 8, "big")
    return len(raw).to_bytes(2, "big") + raw


def _challenge(seed: bytes, n: int, batched: Any, commitment: Any) -> int:
    digest = hashlib.sha256(CHALLENGE_LABEL + seed)
    for value in (n, batched, commitment):
        digest.update(_encode_int(value))
    return int.from_bytes(digest.digest()[:CHALLENGE_BYTES], "big")


def _uniform(random_bytes: RandomBytes, bound: int, size: int) -> int:
    """Uniform in [0, bound) up to 2^-128 (``size`` bytes of ``bound`` plus a margin, reduced)."""
    return int.from_bytes(random_bytes(size + RANDOMNESS_MARGIN_BYTES), "big") % bound


def prove_knowledge(
    public: ThresholdPublicKey,
    seed: bytes,
    ciphertexts: Sequence[Any],
    witness: EncryptionWitness,
    random_bytes: RandomBytes = system_random,
    workers: Workers = IN_PROCESS,
) -> bytes:
    """The three proof words (a, z1, z2) for ``ciphertexts``, encrypted with ``witness``, under ``seed``
    (:func:`knowledge_seed`)."""
    key = public.key
    n, nsquare, width = key.n, key.nsquare, key.ciphertext_bytes
    weights = batch_weights(seed, len(ciphertexts))
    message, root = witness.opening(weights, lambda roots: batch(public, roots, seed, workers))
    batched = batch(public, ciphertexts, seed, workers)
    x = _uniform(random_bytes, n, key.plaintext_bytes)
    s = 0
    while s == 0 or math.gcd(s, n) != 1:
        s = _uniform(random_bytes, n, key.plaintext_bytes)
    commitment = (1 + x * n) * int(gmpy2.powmod(s, n, nsquare)) % nsquare
    e = _challenge(seed, n, batched, commitment)
    z1 = (x + e * message) % n
    z2 = s * int(gmpy2.powmod(root, e, n)) % n
    return b"".join(value.to_bytes(width, "big") for value in (commitment, z1, z2))


def verify_knowledge(
    public: ThresholdPublicKey, seed: bytes, ciphertexts: Sequence[Any], proof: bytes, workers: Workers = IN_PROCESS
) -> bool:
    """True iff ``proof`` (three words) shows knowledge of an opening of the weighted product of
    ``ciphertexts`` (already checked to lie in Z*_(n^2)) under ``seed``."""
    key = public.key
    n, nsquare, width = key.n, key.nsquare, key.ciphertext_bytes
    if len(proof) != PROOF_WORDS * width:
        return False
    commitment, z1, z2 = (int.from_bytes(proof[i : i + width], "big") for i in range(0, len(proof), width))
    if not (0 < commitment < nsquare and math.gcd(commitment, n) == 1 and 0 <= z1 < n and 0 < z2 < n):
        return False
    batched = batch(public, ciphertexts, seed, workers)
    e = _challenge(seed, n, batched, commitment)
    left = (1 + z1 * n) * int(gmpy2.powmod(z2, n, nsquare)) % nsquare
    right = commitment * int(gmpy2.powmod(batched, e, nsquare)) % nsquare
    return left == right
