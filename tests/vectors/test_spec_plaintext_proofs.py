"""An independent verifier of paillier_session.json, written from docs/spec.md alone.

It imports nothing from secagg: the session id, upload payloads, signatures,
the proof of plaintext knowledge (spec 13.9, its weights from the PRG of
section 5 and its challenge) and the aggregate digest (13.4) are recomputed
here with plain integers, hashlib, hmac and the standard AES and Ed25519 of the
`cryptography` package (spec section 1 names both as standard algorithms). If
the spec and the vectors drift apart, or the vector file's proof bytes change,
these tests fail.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

VECTOR_FILE = Path(__file__).resolve().parents[2] / "secagg" / "vectors" / "data" / "paillier_session.json"
PROOF_FLAGS = {"CopiedProof", "CancellingUpload", "ProofOutOfRange"}


class RefusedError(Exception):
    """A step of the spec refuses; `category` names the spec's error category."""

    def __init__(self, category: str, reason: str) -> None:
        super().__init__(f"{category}: {reason}")
        self.category, self.reason = category, reason


def u16(x: int) -> bytes:
    return x.to_bytes(2, "big")


def u32(x: int) -> bytes:
    return x.to_bytes(4, "big")


def u64(x: int) -> bytes:
    return x.to_bytes(8, "big")


def int_bytes(z: int) -> bytes:
    """Spec 13.7's Int(z): u16(len) || minimal big-endian bytes (zero: empty)."""
    raw = z.to_bytes((z.bit_length() + 7) // 8, "big")
    return u16(len(raw)) + raw


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 (spec section 6)."""
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def prg_keystream(seed: bytes, label: bytes, size: int) -> bytes:
    """Spec section 5: AES-128-CTR under HKDF(seed, "", "secagg/v1/prg:" || label, 16)."""
    key = hkdf_sha256(seed, b"", b"secagg/v1/prg:" + label, 16)
    encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    return encryptor.update(bytes(size)) + encryptor.finalize()


class Reader:
    """The wire encodings of spec section 11, strict."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise RefusedError("DecodeError", "truncated")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def big(self) -> int:
        raw = self.take(self.uint(2))
        if raw[:1] == b"\x00":
            raise RefusedError("DecodeError", "leading zero")
        return int.from_bytes(raw, "big")

    def envelope(self, tag: int) -> None:
        if self.take(3) != b"SA\x01" or self.uint(2) != tag:
            raise RefusedError("DecodeError", "envelope")

    def end(self) -> None:
        if self.pos != len(self.data):
            raise RefusedError("DecodeError", "trailing bytes")


@dataclass(frozen=True)
class Upload:
    encoding: bytes
    session_id: bytes
    client: int
    length: int
    ciphertexts: bytes
    signature: bytes


def decode_upload(encoding: bytes) -> Upload:
    """EncryptedVector, tag 0x0410 (spec 13.9)."""
    reader = Reader(encoding)
    reader.envelope(0x0410)
    session_id, client, length = reader.take(32), reader.uint(4), reader.uint(4)
    ciphertexts = reader.take(reader.uint(4))
    signature = reader.take(64)
    reader.end()
    return Upload(encoding, session_id, client, length, ciphertexts, signature)


@dataclass(frozen=True)
class Session:
    n: int
    session_id: bytes
    roster: tuple[int, ...]
    identity_keys: dict[int, bytes]
    length: int
    data_words: int
    min_contributors: int

    @property
    def word_bytes(self) -> int:
        """Ciphertext (and proof) words: 2 ceil(|n|/8) bytes, big-endian."""
        return 2 * ((self.n.bit_length() + 7) // 8)


def public_modulus(public_key: bytes) -> int:
    """The n of a ThresholdPublicKey (tag 0x0402; its PublicKey record first)."""
    reader = Reader(public_key)
    reader.envelope(0x0402)
    return reader.big()


def session_of(group: dict[str, Any]) -> Session:
    public_key = bytes.fromhex(group["publicKey"])
    n = public_modulus(public_key)
    b, clients = group["valueBits"], group["layoutClients"]
    bound = group.get("valueBound")
    offset, value_max = (2 ** (b - 1), 2 ** (b - 1) - 1) if bound is None else (bound, bound)
    slot_bits = (clients * (offset + value_max)).bit_length() + 1  # 13.2's default width
    slots = (n.bit_length() - 1) // slot_bits
    length = group["vectorLength"]
    identity_keys = {
        client: Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed))
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
        for client, seed in zip(group["roster"], group["identitySeeds"], strict=True)
    }
    roster_bytes = b"".join(u32(client) + identity_keys[client] for client in group["roster"])
    session_id = sha256(
        b"secagg/v1/paillier-session"
        + sha256(public_key)
        + bytes([b])
        + u64(offset)
        + u64(value_max)
        + u32(clients)
        + bytes([slot_bits])
        + u32(length)
        + u32(group["minContributors"])
        + bytes.fromhex(group["context"])
        + bytes.fromhex(group["descriptor"])
        + u32(len(group["roster"]))
        + roster_bytes
    )
    return Session(
        n=n,
        session_id=session_id,
        roster=tuple(group["roster"]),
        identity_keys=identity_keys,
        length=length,
        data_words=-(-length // slots),
        min_contributors=group["minContributors"],
    )


def upload_payload(session: Session, upload: Upload) -> bytes:
    return (
        b"secagg/v1/paillier-upload"
        + session.session_id
        + u32(upload.client)
        + u32(upload.length)
        + sha256(upload.ciphertexts)
    )


def in_units(n: int, x: int) -> bool:
    """x in Z*_(n^2): 0 < x < n^2 and gcd(x, n) = 1."""
    square = n * n
    return 0 < x < square and _gcd(x, n) == 1


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def proof_holds(session: Session, client: int, length: int, ciphertexts: bytes) -> bool:
    """The proof of plaintext knowledge of spec 13.9, verified from the spec's text."""
    n, width = session.n, session.word_bytes
    square = n * n
    cut = session.data_words * width
    words_bytes, proof_bytes = ciphertexts[:cut], ciphertexts[cut:]
    words = [int.from_bytes(words_bytes[i : i + width], "big") for i in range(0, cut, width)]
    a, z1, z2 = (int.from_bytes(proof_bytes[i : i + width], "big") for i in range(0, 3 * width, width))
    seed = sha256(
        b"secagg/v1/paillier-plaintext-weights"
        + session.session_id
        + u32(client)
        + u32(length)
        + sha256(words_bytes)
    )
    stream = prg_keystream(seed, b"paillier-batch-weights", 16 * len(words))
    weights = [int.from_bytes(stream[16 * j : 16 * j + 16], "big") for j in range(len(words))]
    batched = 1
    for word, weight in zip(words, weights, strict=True):
        batched = batched * pow(word, weight, square) % square
    challenge = int.from_bytes(
        sha256(
            b"secagg/v1/paillier-plaintext-knowledge" + seed + int_bytes(n) + int_bytes(batched) + int_bytes(a)
        )[:16],
        "big",
    )
    if not (in_units(n, a) and 0 <= z1 < n and 0 < z2 < n):
        return False
    left = pow(n + 1, z1, square) * pow(z2, n, square) % square
    right = a * pow(batched, challenge, square) % square
    return left == right


def check_upload(session: Session, upload: Upload) -> None:
    """The upload checks of spec 13.9, in the spec's order."""
    if upload.session_id != session.session_id:
        raise RefusedError("ProtocolError", "session")
    if upload.client not in session.roster:
        raise RefusedError("ProtocolError", "roster")
    if upload.length != session.length:
        raise RefusedError("ProtocolError", "length")
    if len(upload.ciphertexts) != (session.data_words + 3) * session.word_bytes:
        raise RefusedError("DecodeError", "byte count")
    try:
        Ed25519PublicKey.from_public_bytes(session.identity_keys[upload.client]).verify(
            upload.signature, upload_payload(session, upload)
        )
    except InvalidSignature:
        raise RefusedError("AuthenticationError", "signature") from None
    width = session.word_bytes
    for i in range(session.data_words):
        if not in_units(session.n, int.from_bytes(upload.ciphertexts[i * width : (i + 1) * width], "big")):
            raise RefusedError("DecodeError", "word outside Z*_(n^2)")
    if not proof_holds(session, upload.client, upload.length, upload.ciphertexts):
        raise RefusedError("AuthenticationError", "proof of plaintext knowledge")


def aggregate_digest(session: Session, uploads: list[Upload]) -> bytes:
    """Spec 13.4: uploads in increasing client id (stable), each by its envelope's SHA-256."""
    ordered = sorted(uploads, key=lambda upload: upload.client)
    body = b"".join(u32(upload.client) + sha256(upload.encoding) for upload in ordered)
    return sha256(b"secagg/v1/paillier-aggregate" + session.session_id + u32(len(ordered)) + body)


def server_outcome(session: Session, uploads: list[Upload]) -> list[RefusedError]:
    """The refusals of the uploads the server drops (one faulty upload costs only itself)."""
    refused: list[RefusedError] = []
    accepted = set()
    for upload in uploads:
        try:
            check_upload(session, upload)
            if upload.client in accepted:
                raise RefusedError("ReplayError", "second upload")
            accepted.add(upload.client)
        except RefusedError as refusal:
            refused.append(refusal)
    return refused


def party_outcome(session: Session, uploads: list[Upload], own: bytes) -> bytes:
    """A decrypting party's checks of a request, in the order of spec 13.9; the digest it answers."""
    clients = [upload.client for upload in uploads]
    if len(set(clients)) != len(clients):
        raise RefusedError("ReplayError", "repeated client")
    if len(uploads) < session.min_contributors:
        raise RefusedError("ProtocolError", "too few uploads")
    if sha256(own) not in {sha256(upload.encoding) for upload in uploads}:
        raise RefusedError("ProtocolError", "own upload missing")
    for upload in uploads:
        check_upload(session, upload)
    return aggregate_digest(session, uploads)


def judge(group: dict[str, Any], test: dict[str, Any]) -> tuple[str, str | None, str | None]:
    """(result, category, reason) as the spec decides the case: ("valid", None, None), or
    ("invalid", category, the refused step), or ("mismatch", what differs, None)."""
    session = session_of(group)
    if "sessionId" in test and bytes.fromhex(test["sessionId"]) != session.session_id:
        return ("mismatch", "sessionId", None)
    uploads = [decode_upload(bytes.fromhex(hex_upload)) for hex_upload in test["uploads"]]
    for upload, payload in zip(uploads, test.get("payloads", []), strict=False):
        if upload_payload(session, upload) != bytes.fromhex(payload):
            return ("mismatch", "payload", None)
    if test["step"] == "server":
        refused = server_outcome(session, uploads)
        if not refused:
            return ("valid", None, None)
        if len(refused) > 1:
            return ("mismatch", ", ".join(str(refusal) for refusal in refused), None)
        return ("invalid", refused[0].category, refused[0].reason)
    try:
        digest = party_outcome(session, uploads, bytes.fromhex(test["ownUpload"]))
    except RefusedError as refusal:
        return ("invalid", refusal.category, refusal.reason)
    if digest != bytes.fromhex(test["aggregateDigest"]):
        return ("mismatch", "aggregateDigest", None)
    return ("valid", None, None)


def outcome(group: dict[str, Any], test: dict[str, Any]) -> tuple[str, str | None]:
    """("valid", None) or ("invalid", category), as the spec decides the case."""
    result, category, _ = judge(group, test)
    return (result, category)


def _document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(VECTOR_FILE.read_text(encoding="utf-8"))
    return document


def _cases() -> list[Any]:
    return [
        pytest.param(group, test, id=f"tc{test['tcId']}")
        for group in _document()["testGroups"]
        for test in group["tests"]
    ]


@pytest.mark.parametrize(("group", "test"), _cases())
def test_spec_alone_reproduces_each_case(group: dict[str, Any], test: dict[str, Any]) -> None:
    # Execute
    result, category, reason = judge(group, test)

    # Assert: the case's outcome, and a proof case is refused by its proof
    # (not by an earlier check such as its signature)
    assert (result, category) == (test["result"], test.get("error"))
    if PROOF_FLAGS & set(test["flags"]):
        assert reason == "proof of plaintext knowledge"
    elif result == "invalid":
        assert reason != "proof of plaintext knowledge"


def test_every_upload_proof_is_judged_as_its_case_says() -> None:
    # Prepare: a proof refusal is exactly the case flags name one; every other
    # upload of this session from a roster client carries a proof that verifies
    # (client 9's upload of case 5 is client 1's, refused before its proof)
    document = _document()
    verdicts = []

    # Execute
    for group in document["testGroups"]:
        session = session_of(group)
        for test in group["tests"]:
            for hex_upload in test["uploads"]:
                upload = decode_upload(bytes.fromhex(hex_upload))
                if (
                    upload.session_id == session.session_id
                    and upload.client in session.roster
                    and len(upload.ciphertexts) == (session.data_words + 3) * session.word_bytes
                ):
                    holds = proof_holds(session, upload.client, upload.length, upload.ciphertexts)
                    verdicts.append((test["tcId"], holds, bool(PROOF_FLAGS & set(test["flags"]))))

    # Assert: 16 cases; 4 refused by their proofs; each upload judged
    assert document["numberOfTests"] == 16
    assert len(verdicts) == 30
    assert sorted({tc for tc, holds, _ in verdicts if not holds}) == [12, 13, 14, 15]
    assert all(holds or flagged for _, holds, flagged in verdicts)


def _resign(group: dict[str, Any], upload: Upload, ciphertexts: bytes) -> str:
    """The upload with other ciphertext bytes, signed again by its client's seed."""
    session = session_of(group)
    changed = Upload(upload.encoding, upload.session_id, upload.client, upload.length, ciphertexts, b"")
    seed = group["identitySeeds"][list(group["roster"]).index(upload.client)]
    signature = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed)).sign(upload_payload(session, changed))
    body = upload.session_id + u32(upload.client) + u32(upload.length) + u32(len(ciphertexts)) + ciphertexts
    return (b"SA\x01" + u16(0x0410) + body + signature).hex()


@pytest.mark.parametrize("proof_byte", [0, 31, 32, 63, 64, 95])
def test_a_perturbed_proof_byte_makes_the_verifier_disagree(proof_byte: int) -> None:
    # Prepare: case 1 with one byte of client 2's proof words (a, z1, z2) flipped,
    # the upload re-signed so that only the proof can object
    document = _document()
    group = document["testGroups"][0]
    test = dict(group["tests"][0])
    session = session_of(group)
    upload = decode_upload(bytes.fromhex(test["uploads"][1]))
    position = session.data_words * session.word_bytes + proof_byte
    flipped = bytearray(upload.ciphertexts)
    flipped[position] ^= 0x01
    test["uploads"] = [test["uploads"][0], _resign(group, upload, bytes(flipped)), test["uploads"][2]]
    del test["payloads"]  # client 2's payload now covers the flipped bytes

    # Execute
    verdict = outcome(group, test)

    # Assert
    assert test["result"] == "valid"
    assert verdict == ("invalid", "AuthenticationError")
    assert verdict != (test["result"], test.get("error"))
