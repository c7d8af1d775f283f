"""Packed Paillier aggregation with threshold decryption.

Hospitals pack their quantized vectors many values to a plaintext
(:class:`SlotLayout`), encrypt under one Paillier public key, and upload; the
server multiplies ciphertexts (adds the plaintexts); any t hospitals holding key
shares return partial decryptions of that one aggregate, which the server
combines, after checking each answer's batched zero-knowledge proof
(:mod:`secagg.paillier.proofs`). No single party, the server included, can
decrypt one hospital's update. A single-key mode (one separate key holder)
uses the same API.

Start with :func:`run_session` (the narrated in-memory driver) and
:class:`PaillierConfig`; the roles are :class:`Client`, :class:`Server` and
:class:`DecryptingParty` (its one answer per session kept across restarts by an
:class:`AnswerJournal`); keys come from the ceremony
(:func:`deal_threshold_key`, :func:`deal_single_key`) and are stored with
:func:`protect`. ``secagg.paillier._compute`` holds the raw big-integer kernels
(no checks there). Design, threat model and figures: docs/paillier.md.
"""

from __future__ import annotations

from secagg.paillier._compute import Workers
from secagg.paillier.answer_journal import IN_MEMORY_ONLY, AnswerJournal, InMemoryOnly
from secagg.paillier.ceremony import (
    SingleKeyMaterial,
    ThresholdKeyMaterial,
    deal_single_key,
    deal_threshold_key,
    deal_threshold_key_from_primes,
    generate_safe_primes,
    single_key_from_primes,
)
from secagg.paillier.encryption import Encryptor, Obfuscation, add_ciphertext_vectors
from secagg.paillier.keys import (
    DEFAULT_CONSTANT_TIME,
    DEFAULT_KEY_BITS,
    MIN_KEY_BITS,
    KeyShare,
    PrivateKey,
    PublicKey,
    ThresholdPublicKey,
    insecure_key_sizes_for_testing,
)
from secagg.paillier.messages import DecryptionRequest, EncryptedVector, PartialDecryption
from secagg.paillier.packing import SlotLayout, pack, unpack
from secagg.paillier.protocol import NO_OWN_UPLOAD, Client, DecryptingParty, NoOwnUpload, Server, SessionParameters
from secagg.paillier.session import Mode, PaillierConfig, PaillierResult, Stage, run_session
from secagg.paillier.storage import protect, read_protected_file, unprotect, write_protected_file

__all__ = [
    "DEFAULT_CONSTANT_TIME",
    "DEFAULT_KEY_BITS",
    "IN_MEMORY_ONLY",
    "MIN_KEY_BITS",
    "NO_OWN_UPLOAD",
    "AnswerJournal",
    "Client",
    "DecryptingParty",
    "DecryptionRequest",
    "EncryptedVector",
    "Encryptor",
    "InMemoryOnly",
    "KeyShare",
    "Mode",
    "NoOwnUpload",
    "Obfuscation",
    "PaillierConfig",
    "PaillierResult",
    "PartialDecryption",
    "PrivateKey",
    "PublicKey",
    "Server",
    "SessionParameters",
    "SingleKeyMaterial",
    "SlotLayout",
    "Stage",
    "ThresholdKeyMaterial",
    "ThresholdPublicKey",
    "Workers",
    "add_ciphertext_vectors",
    "deal_single_key",
    "deal_threshold_key",
    "deal_threshold_key_from_primes",
    "generate_safe_primes",
    "insecure_key_sizes_for_testing",
    "pack",
    "protect",
    "read_protected_file",
    "run_session",
    "single_key_from_primes",
    "unpack",
    "unprotect",
    "write_protected_file",
]
