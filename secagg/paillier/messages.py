"""Wire messages of a packed-Paillier aggregation session (tags 0x0410-0x041F).

Keys are messages too (tags 0x0401-0x0405, :mod:`secagg.paillier.keys` and
:mod:`secagg.paillier.storage`). Every session message carries the 32-byte
``session_id`` (:meth:`secagg.paillier.protocol.SessionParameters.session_id`)
and its sender or recipient, so nothing is accepted in another session or from
another party. Ciphertexts travel as one byte string of fixed-width big-endian
words, ``2 * ceil(|n|/8)`` bytes each; their number and range (Z*_(n^2)) are
checked against the key by the receiver before use.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

from secagg import wire
from secagg._validate import require_sequence
from secagg.errors import ConfigurationError
from secagg.paillier.packing import MAX_CLIENTS
from secagg.paillier.proofs import DecryptionProof
from secagg.primitives.signing import SIGNATURE_SIZE
from secagg.wire import U16, U32, FixedBytes, ListOf, Struct, VarBytes, wire_field

__all__ = [
    "DIGEST_SIZE",
    "SESSION_ID_SIZE",
    "DecryptionRequest",
    "EncryptedVector",
    "PartialDecryption",
    "aggregate_digest",
    "upload_payload",
]

SESSION_ID_SIZE = 32
DIGEST_SIZE = 32
MAX_CIPHERTEXT_DATA = 1 << 30
AGGREGATE_LABEL = b"secagg/v1/paillier-aggregate"
UPLOAD_LABEL = b"secagg/v1/paillier-upload"


def upload_payload(session_id: bytes, client: int, length: int, ciphertexts: bytes) -> bytes:
    """What a hospital signs with its identity key when it uploads:
    ``"secagg/v1/paillier-upload" || session id || u32 client || u32 length || SHA-256(ciphertexts)``."""
    return (
        UPLOAD_LABEL + session_id + client.to_bytes(4, "big") + length.to_bytes(4, "big")
        + hashlib.sha256(ciphertexts).digest()
    )


def _check_ids(session_id: bytes, bits: int, **ids: int) -> None:
    """The session id is 32 bytes; every id is an int that fits its ``bits``-bit wire field."""
    if not isinstance(session_id, bytes) or len(session_id) != SESSION_ID_SIZE:
        raise ConfigurationError(f"session id must be {SESSION_ID_SIZE} bytes")
    for name, value in ids.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
            raise ConfigurationError(f"{name} must be an int in 0..2^{bits} - 1 (u{bits}), got {value!r}")


@dataclass(frozen=True)
class EncryptedVector(wire.Message):
    """Client -> server: one client's packed, encrypted vector of ``length`` values.

    ``ciphertexts`` holds ``num_plaintexts(length)`` words (checked by the receiver).
    ``signature`` is the client's Ed25519 identity signature of :func:`upload_payload`,
    so no one else (the server included) can contribute in its name.
    """

    TAG: ClassVar[int] = 0x0410

    session_id: bytes = wire_field(FixedBytes(SESSION_ID_SIZE))
    client: int = wire_field(U32)
    length: int = wire_field(U32)
    ciphertexts: bytes = wire_field(VarBytes(MAX_CIPHERTEXT_DATA))
    signature: bytes = wire_field(FixedBytes(SIGNATURE_SIZE))

    def __post_init__(self) -> None:
        _check_ids(self.session_id, 32, client=self.client, length=self.length)
        if not isinstance(self.ciphertexts, bytes):
            raise ConfigurationError("ciphertexts must be bytes")
        if not isinstance(self.signature, bytes) or len(self.signature) != SIGNATURE_SIZE:
            raise ConfigurationError(f"an upload's signature is {SIGNATURE_SIZE} bytes")

    @property
    def payload(self) -> bytes:
        """:func:`upload_payload` of this upload (what its signature covers)."""
        return upload_payload(self.session_id, self.client, self.length, self.ciphertexts)

    @cached_property
    def digest(self) -> bytes:
        """SHA-256 of the message's wire encoding (what decryptors bind to)."""
        return hashlib.sha256(wire.encode(self)).digest()


@dataclass(frozen=True)
class DecryptionRequest(wire.Message):
    """Server -> decrypting party ``recipient``: decrypt the sum of these uploads.

    The request carries the uploads themselves, not their sum: the party checks
    each one and multiplies them itself, so it can only ever be made to decrypt
    a sum of at least ``min_contributors`` genuine uploads of its session.
    """

    TAG: ClassVar[int] = 0x0411

    session_id: bytes = wire_field(FixedBytes(SESSION_ID_SIZE))
    recipient: int = wire_field(U16)
    uploads: tuple[EncryptedVector, ...] = wire_field(ListOf(Struct(EncryptedVector), MAX_CLIENTS))

    def __post_init__(self) -> None:
        _check_ids(self.session_id, 16, recipient=self.recipient)
        object.__setattr__(self, "uploads", tuple(require_sequence("uploads", self.uploads)))
        if not all(isinstance(upload, EncryptedVector) for upload in self.uploads):
            raise ConfigurationError("a decryption request carries EncryptedVector uploads")


@dataclass(frozen=True)
class PartialDecryption(wire.Message):
    """Decrypting party -> server: ``c^(2 * Delta * s_party) mod n^2`` for each aggregate word.

    ``aggregate_digest`` names the aggregate (:func:`aggregate_digest`), so the
    combiner never mixes partials of different sums; ``proof`` shows that every
    value used the party's share (:mod:`secagg.paillier.proofs`).
    """

    TAG: ClassVar[int] = 0x0412

    session_id: bytes = wire_field(FixedBytes(SESSION_ID_SIZE))
    party: int = wire_field(U16)
    aggregate_digest: bytes = wire_field(FixedBytes(DIGEST_SIZE))
    values: bytes = wire_field(VarBytes(MAX_CIPHERTEXT_DATA))
    proof: DecryptionProof = wire_field(Struct(DecryptionProof))

    def __post_init__(self) -> None:
        _check_ids(self.session_id, 16, party=self.party)
        if not isinstance(self.proof, DecryptionProof):
            raise ConfigurationError("a partial decryption carries a DecryptionProof")
        if not isinstance(self.aggregate_digest, bytes) or len(self.aggregate_digest) != DIGEST_SIZE:
            raise ConfigurationError(f"aggregate digest must be {DIGEST_SIZE} bytes")
        if not isinstance(self.values, bytes):
            raise ConfigurationError("partial decryption values must be bytes")


def aggregate_digest(session_id: bytes, uploads: Sequence[EncryptedVector]) -> bytes:
    """SHA-256(``"secagg/v1/paillier-aggregate"`` || session || u32 count || per upload
    in client order: u32 client || upload digest)."""
    digest = hashlib.sha256(AGGREGATE_LABEL + session_id + len(uploads).to_bytes(4, "big"))
    for upload in sorted(uploads, key=lambda u: u.client):
        digest.update(upload.client.to_bytes(4, "big") + upload.digest)
    return digest.digest()
