"""Vectors for packed threshold Paillier (spec section 13): slot layout and packing,
encryption with recorded randomness, ciphertext range checks, threshold dealing,
partial decryption, proofs of correct decryption, combination, and the wire
encodings of keys and session messages.

Every key here is a small **insecure** test key (128-bit modulus, 64-bit safe
primes) built inside :func:`~secagg.paillier.keys.insecure_key_sizes_for_testing`;
the verifier enters the same context. The arithmetic is the same at any size.
"""

from __future__ import annotations

from collections.abc import Sequence

import gmpy2

from secagg import wire
from secagg.paillier.ceremony import (
    deal_threshold_key_from_primes,
    single_key_from_primes,
)
from secagg.paillier.encryption import Encryptor, Obfuscation, add_ciphertext_vectors
from secagg.paillier.keys import KeyShare, PublicKey, ThresholdPublicKey, insecure_key_sizes_for_testing
from secagg.paillier.messages import DecryptionRequest, EncryptedVector, PartialDecryption, aggregate_digest
from secagg.paillier.proofs import DecryptionProof
from secagg.paillier.storage import ProtectedSecret
from secagg.vectors._check import equal, expect_error, is_valid
from secagg.vectors._format import Json, VectorError, from_hex, test_case, vector_file
from secagg.vectors._paillier_common import _big, _primes, _unbig, _unwords, _words
from secagg.vectors._paillier_packing import generate_packing
from secagg.vectors._paillier_threshold import generate_threshold
from secagg.vectors._random import RecordingRandom, ReplayedRandom
from secagg.vectors._suite import Suite, deterministic, register
from secagg.vectors._wire import WIRE_NOTES, envelope, wire_group

__all__ = ["SUITES", "_big", "_primes"]


# --- paillier_encryption.json ------------------------------------------------------------

ENCRYPTION_NOTES = {
    "Textbook": "Obfuscator r^n mod n^2, r = (drawn integer mod (n - 1)) + 1.",
    "Djn": "Obfuscator h^alpha mod n^2 with a short exponent alpha (Damgard-Jurik-Nielsen).",
    "TwoChunks": "More than 32 ciphertexts: the second chunk uses the PRG label of chunk 1.",
    "PlaintextOutOfRange": "A plaintext outside [0, n): refused (step: encrypt, EncodeError).",
    "CiphertextOutOfRange": "A ciphertext word of 0, >= n^2, sharing a factor with n, or a blob that is not a "
    "whole number of words: refused on receipt (step: parse ciphertexts, DecodeError).",
    "Aggregation": "The component-wise product mod n^2 of ciphertext vectors encrypts the sum.",
}


def _djn_base(n: int, draws: Sequence[bytes]) -> int:
    """h = (n - x^2 mod n)^n mod n^2 for x, the first draw (mod n) that is a unit mod n (spec 13.3)."""
    for draw in draws:
        x = int.from_bytes(draw, "big") % n
        if x != 0 and gmpy2.gcd(x, n) == 1:
            return int(gmpy2.powmod(n - x * x % n, n, n * n))
    raise VectorError("no recorded draw gives a DJN base")


def _encryption_group(label: str, mode: Obfuscation, count: int, flags: list[str]) -> Json:
    with insecure_key_sizes_for_testing():
        p, q = _primes("paillier/key")
        key = PublicKey(p * q)
        source = RecordingRandom(deterministic(label))
        encryptor = Encryptor(key, obfuscation=mode, random_bytes=source)
        base_draws = source.take()
        plaintexts = [int.from_bytes(deterministic(f"{label}/m")(key.plaintext_bytes + 8), "big") % key.n
                      for _ in range(count)]
        ciphertexts = encryptor.encrypt(plaintexts)
        (seed,) = source.take()
    width = key.ciphertext_bytes
    obfuscators = [c * pow(1 + m * key.n, -1, key.nsquare) % key.nsquare for m, c in zip(plaintexts, ciphertexts,
                                                                                            strict=True)]
    tests = [test_case(f"{count} plaintexts", flags, "valid", baseDraws=[d.hex() for d in base_draws],
                       seed=seed.hex(), plaintexts=_words(plaintexts, key.plaintext_bytes),
                       obfuscators=_words(obfuscators, width), ciphertexts=_words(ciphertexts, width))]
    tests.append(test_case("plaintext n", ["PlaintextOutOfRange"], "invalid", baseDraws=[d.hex() for d in base_draws],
                           seed=seed.hex(), plaintexts=_words([1, key.n], key.plaintext_bytes + 1),
                           error="EncodeError"))
    djn = {"djnBase": _big(_djn_base(key.n, base_draws))} if mode is Obfuscation.DJN else {}
    return {"type": "PaillierEncryptionTest", "n": _big(key.n), "obfuscation": mode.value, **djn, "tests": tests}


def _ciphertext_checks() -> list[Json]:
    with insecure_key_sizes_for_testing():
        p, q = _primes("paillier/key")
        key = PublicKey(p * q)
    width = key.ciphertext_bytes
    good = [2, key.nsquare - 1, 1]
    tests = [test_case("1, 2 and n^2 - 1", [], "valid", blob="".join(_words(good, width)), values=_words(good, width))]
    for comment, values in (("0", [0]), ("n^2", [key.nsquare]), ("p * 3", [p * 3]), ("q, after a valid word", [5, q])):
        tests.append(test_case(f"ciphertext {comment}", ["CiphertextOutOfRange"], "invalid",
                               blob="".join(_words(values, width)), error="DecodeError"))
    tests.append(test_case("a blob one byte short of two words", ["CiphertextOutOfRange"], "invalid",
                           blob="".join(_words([2, 3], width))[:-2], error="DecodeError"))
    vectors = [[int.from_bytes(deterministic(f"paillier/add/{i}/{j}")(width), "big") % key.nsquare for j in range(3)]
               for i in range(3)]
    product = add_ciphertext_vectors(key, vectors)
    aggregation = [
        test_case("three vectors of 3 ciphertexts", ["Aggregation"], "valid",
                  vectors=[_words(v, width) for v in vectors], product=_words(product, width)),
        test_case("vectors of 3 and 2 ciphertexts", [], "invalid",
                  vectors=[_words(vectors[0], width), _words(vectors[1][:2], width)], error="ConfigurationError"),
    ]
    return [{"type": "PaillierCiphertextTest", "n": _big(key.n), "tests": tests},
            {"type": "PaillierAdditionTest", "n": _big(key.n), "tests": aggregation}]


def generate_encryption() -> Json:
    """paillier_encryption.json: encryption with recorded randomness; ciphertext checks; aggregation."""
    return vector_file(
        algorithm="secagg-paillier-encryption",
        schema="paillier_encryption_test_schema.json",
        header=[
            "Paillier encryption c = (1 + m n) * rho mod n^2 with g = n + 1 (docs/spec.md, section 13.3).",
            "The obfuscators rho are expanded from the recorded 32-byte 'seed' (AES-128-CTR, label",
            "'paillier-obfuscator/' || u64be(chunk)); DJN also records the draws of its base x ('baseDraws').",
            "Integers are hex big-endian, fixed width (plaintexts ceil(|n|/8) bytes, ciphertexts twice that).",
            "INSECURE 128-bit test keys.",
        ],
        notes=ENCRYPTION_NOTES,
        groups=[
            _encryption_group("paillier/encrypt/textbook", Obfuscation.TEXTBOOK, 5, ["Textbook"]),
            _encryption_group("paillier/encrypt/textbook-long", Obfuscation.TEXTBOOK, 34, ["Textbook", "TwoChunks"]),
            _encryption_group("paillier/encrypt/djn", Obfuscation.DJN, 5, ["Djn"]),
            *_ciphertext_checks(),
        ],
    )


@register("PaillierEncryptionTest")
def check_encryption(group: Json, test: Json) -> None:
    """Encrypt with the recorded draws; compare obfuscators and ciphertexts."""
    mode = Obfuscation(group["obfuscation"])
    with insecure_key_sizes_for_testing():
        key = PublicKey(_unbig(group["n"]))
        source = ReplayedRandom([from_hex(d) for d in test["baseDraws"]], "encryptor")
        encryptor = Encryptor(key, obfuscation=mode, random_bytes=source)
        if mode is Obfuscation.DJN:
            equal("djnBase", _big(_djn_base(key.n, [from_hex(d) for d in test["baseDraws"]])), group["djnBase"])
        source.extend([from_hex(test["seed"])])
        plaintexts = _unwords(test["plaintexts"])
        if not is_valid(test):
            expect_error(test, lambda: encryptor.encrypt(plaintexts), "encrypt")
            return
        ciphertexts = encryptor.encrypt(plaintexts)
        source.finish()
    width = key.ciphertext_bytes
    equal("ciphertexts", _words(ciphertexts, width), test["ciphertexts"])
    expected = [(1 + m * key.n) * rho % key.nsquare for m, rho in zip(plaintexts, _unwords(test["obfuscators"]),
                                                                       strict=True)]
    equal("(1 + m n) * obfuscator", _words(expected, width), test["ciphertexts"])


@register("PaillierAdditionTest")
def check_addition(group: Json, test: Json) -> None:
    """Multiply ciphertext vectors component-wise mod n^2."""
    with insecure_key_sizes_for_testing():
        key = PublicKey(_unbig(group["n"]))
    vectors = [_unwords(v) for v in test["vectors"]]
    if not is_valid(test):
        expect_error(test, lambda: add_ciphertext_vectors(key, vectors), "add ciphertext vectors")
        return
    equal("product", _words(add_ciphertext_vectors(key, vectors), key.ciphertext_bytes), test["product"])


@register("PaillierCiphertextTest")
def check_ciphertexts(group: Json, test: Json) -> None:
    """Parse and range-check a ciphertext blob."""
    with insecure_key_sizes_for_testing():
        key = PublicKey(_unbig(group["n"]))
    width = key.ciphertext_bytes
    blob = from_hex(test["blob"])
    if not is_valid(test):
        expect_error(test, lambda: key.parse_ciphertexts(blob, "vector"), "parse ciphertexts")
        return
    equal("values", _words(key.parse_ciphertexts(blob, "vector"), width), test["values"])


# --- wire_paillier.json -------------------------------------------------------------------

PAILLIER_WIRE_NOTES = {
    **WIRE_NOTES,
    "TestKeySize": "Decoded with the insecure test key sizes allowed (group field testKeySizes).",
    "KeyPolicy": "A modulus below 2048 bits decoded without the test switch: refused (DecodeError).",
    "NonCanonical": "A big integer with a leading zero byte (DecodeError).",
    "BadKey": "Key material violating its invariants (even or square modulus, bad threshold, share that "
    "does not match its verification key): refused at decoding (DecodeError).",
}


def _paillier_wire_groups() -> list[Json]:
    with insecure_key_sizes_for_testing():
        p, q = _primes("paillier/key")
        material = deal_threshold_key_from_primes(p, q, num_parties=3, threshold=2,
                                                  random_bytes=deterministic("paillier/wire/deal"),
                                                  insecure_for_testing=True)
        single = single_key_from_primes(p, q, random_bytes=deterministic("paillier/wire/single"),
                                        insecure_for_testing=True)
    public, share = material.public, material.shares[0]
    key = public.key
    n_bytes = key.n.to_bytes(key.plaintext_bytes, "big")
    source = deterministic("paillier/wire")
    session = source(32)
    upload = EncryptedVector(session, 7, 10, source(2 * key.ciphertext_bytes), source(64))
    upload2 = EncryptedVector(session, 9, 10, source(2 * key.ciphertext_bytes), source(64))
    request = DecryptionRequest(session, 2, (upload, upload2))
    proof = DecryptionProof(source(16), int.from_bytes(source(40), "big"))
    partial = PartialDecryption(session, 2, aggregate_digest(session, [upload, upload2]),
                                source(2 * key.ciphertext_bytes), proof)
    protected = ProtectedSecret(17, 8, 1, source(16), source(100))
    even = key.n + 1
    groups = [
        wire_group(key, [("128-bit test key", ["TestKeySize"], key)], [
            ("leading zero byte in n", ["NonCanonical"],
             envelope(PublicKey.TAG, (len(n_bytes) + 1).to_bytes(2, "big") + b"\x00" + n_bytes)),
            ("even modulus", ["BadKey"], envelope(PublicKey.TAG, len(n_bytes).to_bytes(2, "big")
                                                  + even.to_bytes(len(n_bytes), "big"))),
        ]),
        wire_group(public, [("2-of-3 parameters", ["TestKeySize"], public),
                            ("single-key parameters", ["TestKeySize"], single.public)], [
            ("threshold 4 of 3 parties", ["BadKey"], _with_threshold(public, 4)),
        ]),
        wire_group(share, [("party 1's share", ["TestKeySize"], share)], [
            ("secret + 1 (does not match v_1)", ["BadKey"], _forged_share_bytes(share)),
        ]),
        wire_group(single.private, [("single-key private key", ["TestKeySize"], single.private)], []),
        wire_group(protected, [("a protected secret (scrypt 2^17, r 8, p 1)", [], protected)], [
            ("scrypt log2(N) 23", ["BadKey"], wire.encode(protected)[:5] + b"\x17" + wire.encode(protected)[6:]),
        ]),
        wire_group(upload, [("client 7, 10 values in 2 ciphertexts", [], upload)], []),
        wire_group(request, [("two uploads for party 2", [], request)], []),
        wire_group(partial, [("party 2's answer", [], partial)], [
            ("a 15-byte challenge", ["Truncated"], wire.encode(partial)[:-(2 + 40 + 1)]),
        ]),
    ]
    for group in groups:
        group["testKeySizes"] = group["message"] in ("PublicKey", "ThresholdPublicKey", "KeyShare", "PrivateKey")
    groups[0]["tests"].append(test_case("the 128-bit key without the test switch", ["KeyPolicy"], "invalid",
                                        encoded=wire.encode(key).hex(), error="DecodeError"))
    policy = {"type": "WireMessageTest", "message": "PublicKey", "tag": PublicKey.TAG, "testKeySizes": False,
              "tests": [groups[0]["tests"].pop()]}
    return [*groups, policy]


def _with_threshold(public: ThresholdPublicKey, threshold: int) -> bytes:
    """The encoding of ``public`` with its u16 threshold replaced (after the envelope and the modulus)."""
    body = wire.encode(public)
    at = 5 + 2 + public.key.plaintext_bytes
    return body[:at] + threshold.to_bytes(2, "big") + body[at + 2 :]


def _forged_share_bytes(share: KeyShare) -> bytes:
    body = wire.encode(share)
    secret = share.secret.to_bytes((share.secret.bit_length() + 7) // 8, "big")
    forged = (share.secret + 1).to_bytes(len(secret), "big")
    assert body.endswith(secret)
    return body[: -len(secret)] + forged


def generate_wire_paillier() -> Json:
    """wire_paillier.json: Paillier keys, protected secrets and session messages."""
    return vector_file(
        algorithm="secagg-wire-paillier",
        schema="wire_test_schema.json",
        header=[
            "Wire encodings (docs/spec.md, section 11) of the Paillier keys and messages (section 13.1, 13.9).",
            "Big integers are u16 length + minimal big-endian bytes; in 'fields' they are hex of the minimal",
            "big-endian bytes. Groups with testKeySizes decode inside the insecure test-key switch.",
        ],
        notes=PAILLIER_WIRE_NOTES,
        groups=_paillier_wire_groups(),
    )


SUITES = [
    Suite("paillier_packing.json", "paillier_packing_test_schema.json", generate_packing),
    Suite("paillier_encryption.json", "paillier_encryption_test_schema.json", generate_encryption),
    Suite("paillier_threshold.json", "paillier_threshold_test_schema.json", generate_threshold),
    Suite("wire_paillier.json", "wire_test_schema.json", generate_wire_paillier),
]
