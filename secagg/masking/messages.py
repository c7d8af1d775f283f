"""Wire messages of the pairwise-masking protocol (tags 0x0101-0x01FF).

Client -> server messages carry their ``sender``; server -> client messages carry
their ``recipient``; every message after the key roster carries the 32-byte
``session_id``, so a message is never accepted in another session, by another
party, or in another round (each round has its own message type). Field order
and sizes are normative: docs/spec.md describes the same layouts.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass
from typing import ClassVar

from secagg import bitpack, wire
from secagg.errors import DecodeError
from secagg.primitives import aead, shamir
from secagg.primitives.key_agreement import KEY_SIZE
from secagg.primitives.signing import SIGNATURE_SIZE
from secagg.ring import NARROW_MAX_BITS, NARROW_MIN_BITS, PackedVector
from secagg.wire import U32, FixedBytes, ListOf, Struct, VarBytes, wire_field
from secagg.wire_packed import PackedRingArray

__all__ = [
    "COMMITMENT_SIZE",
    "SEALED_BUNDLE_SIZE",
    "SESSION_ID_SIZE",
    "AdvertiseKeys",
    "ConsistencySignature",
    "EncryptedShares",
    "KeyRoster",
    "MaskedInput",
    "MaskedInputHeader",
    "RosterEntry",
    "Round",
    "SealedBox",
    "ShareBundle",
    "ShareDelivery",
    "ShareEntry",
    "SignedBy",
    "SurvivorList",
    "UnmaskRequest",
    "UnmaskResponse",
    "masked_input_header",
]

SESSION_ID_SIZE = 32
COMMITMENT_SIZE = 32
SHARE_SIZE = shamir.VALUE_SIZE
MAX_CLIENTS = 1 << 20
_SIGNATURE = VarBytes(SIGNATURE_SIZE)


class Round(enum.IntEnum):
    """The protocol rounds, in order; the value is the round number on the wire."""

    ADVERTISE_KEYS = 0
    SHARE_KEYS = 1
    MASKED_INPUT = 2
    CONSISTENCY_CHECK = 3
    UNMASKING = 4


def _check_signature_field(signature: bytes) -> None:
    if len(signature) not in (0, SIGNATURE_SIZE):
        raise DecodeError(f"signature must be empty or {SIGNATURE_SIZE} bytes, got {len(signature)}")


def _check_sorted_unique(ids: tuple[int, ...], what: str) -> None:
    if any(a >= b for a, b in itertools.pairwise(ids)):
        raise DecodeError(f"{what} must be strictly increasing client ids")


# --- Round 0: AdvertiseKeys -------------------------------------------------------


@dataclass(frozen=True)
class AdvertiseKeys(wire.Message):
    """Client -> server: fresh X25519 public keys for share encryption and masks.

    ``signature`` is empty in semi-honest mode and the Ed25519 signature of
    :func:`secagg.masking.session.advertise_payload` in active mode.
    """

    TAG: ClassVar[int] = 0x0101
    sender: int = wire_field(U32)
    encryption_key: bytes = wire_field(FixedBytes(KEY_SIZE))
    mask_key: bytes = wire_field(FixedBytes(KEY_SIZE))
    signature: bytes = wire_field(_SIGNATURE)

    def __post_init__(self) -> None:
        _check_signature_field(self.signature)


@dataclass(frozen=True)
class RosterEntry(wire.WireStruct):
    """One client's advertised keys as relayed by the server."""

    client: int = wire_field(U32)
    encryption_key: bytes = wire_field(FixedBytes(KEY_SIZE))
    mask_key: bytes = wire_field(FixedBytes(KEY_SIZE))
    signature: bytes = wire_field(_SIGNATURE)

    def __post_init__(self) -> None:
        _check_signature_field(self.signature)


@dataclass(frozen=True)
class KeyRoster(wire.Message):
    """Server -> client: the advertised keys of the recipient's graph neighbours,
    sorted by client id (a neighbour that did not advertise is absent).

    O(k) bytes on a Harary graph: a client never sees the whole roster. A
    server that omits a neighbour's entry only makes it look dropped, which it
    could do anyway; in active mode each entry carries its owner's signature.
    """

    TAG: ClassVar[int] = 0x0102
    recipient: int = wire_field(U32)
    entries: tuple[RosterEntry, ...] = wire_field(ListOf(Struct(RosterEntry), MAX_CLIENTS))

    def __post_init__(self) -> None:
        _check_sorted_unique(tuple(entry.client for entry in self.entries), "roster entries")


# --- Round 1: ShareKeys ------------------------------------------------------------


@dataclass(frozen=True)
class ShareBundle(wire.Message):
    """The plaintext inside a sealed box: sender's shares for one recipient."""

    TAG: ClassVar[int] = 0x0110
    sender: int = wire_field(U32)
    recipient: int = wire_field(U32)
    mask_key_share: bytes = wire_field(FixedBytes(SHARE_SIZE))
    self_mask_share: bytes = wire_field(FixedBytes(SHARE_SIZE))


SEALED_BUNDLE_SIZE = wire.HEADER_SIZE + 2 * 4 + 2 * SHARE_SIZE + aead.OVERHEAD
"""Bytes of every honest sealed box: one wire-encoded :class:`ShareBundle` (fixed size) and the
AEAD's nonce and tag. The server refuses an EncryptedShares holding a larger box (spec 12.8,
round 2), so no box it relays can make a recipient's ShareDelivery exceed what an honest one
weighs; a smaller one is relayed, and its recipient refuses it as any box that does not open."""


@dataclass(frozen=True)
class SealedBox(wire.WireStruct):
    """An AES-256-GCM box and the other party of the pair (recipient when sent,
    sender when delivered)."""

    peer: int = wire_field(U32)
    sealed: bytes = wire_field(VarBytes(1024))


@dataclass(frozen=True)
class EncryptedShares(wire.Message):
    """Client -> server: one sealed :class:`ShareBundle` per neighbour, and a
    commitment to the self-mask seed (SHA-256, see
    :func:`secagg.masking.session.self_mask_commitment`) against which the server
    checks the seed it reconstructs, so a lying share holder cannot skew the sum."""

    TAG: ClassVar[int] = 0x0103
    sender: int = wire_field(U32)
    session_id: bytes = wire_field(FixedBytes(SESSION_ID_SIZE))
    self_mask_commitment: bytes = wire_field(FixedBytes(COMMITMENT_SIZE))
    boxes: tuple[SealedBox, ...] = wire_field(ListOf(Struct(SealedBox), MAX_CLIENTS))

    def __post_init__(self) -> None:
        _check_sorted_unique(tuple(box.peer for box in self.boxes), "share boxes")


@dataclass(frozen=True)
class ShareDelivery(wire.Message):
    """Server -> client: the boxes addressed to the recipient (``peer`` = sender).

    The set of senders is the recipient's view of its neighbours that completed
    ShareKeys; it masks its input with exactly those neighbours.
    """

    TAG: ClassVar[int] = 0x0104
    recipient: int = wire_field(U32)
    session_id: bytes = wire_field(FixedBytes(SESSION_ID_SIZE))
    boxes: tuple[SealedBox, ...] = wire_field(ListOf(Struct(SealedBox), MAX_CLIENTS))

    def __post_init__(self) -> None:
        _check_sorted_unique(tuple(box.peer for box in self.boxes), "delivered boxes")


# --- Round 2: MaskedInputCollection ------------------------------------------------


@dataclass(frozen=True)
class MaskedInput(wire.Message):
    """Client -> server: the input plus self-mask plus signed pairwise masks, reduced mod
    2^b and bit-packed at b bits (for b = 32, 64: the little-endian words)."""

    TAG: ClassVar[int] = 0x0105
    sender: int = wire_field(U32)
    session_id: bytes = wire_field(FixedBytes(SESSION_ID_SIZE))
    vector: PackedVector = wire_field(PackedRingArray())


@dataclass(frozen=True)
class MaskedInputHeader:
    """A well-formed MaskedInput's fields but its vector's values (what :func:`masked_input_header` reads)."""

    sender: int
    session_id: bytes
    bits: int
    length: int


def masked_input_header(data: bytes | bytearray | memoryview) -> MaskedInputHeader | None:
    """The sender, session id, ring width and value count of the MaskedInput ``data``, read without
    unpacking its vector: None unless ``data`` is bytes-like (bytes, bytearray, memoryview: what
    :func:`secagg.wire.decode` takes) passing every check its decoding makes (envelope, width in
    8..64, count limit, exactly the packed size, zero padding bits; none other can fail), so a
    receiver refuses a vector of the wrong shape before it allocates anything of its size."""
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)  # as the decoder copies it: the size sent, not the size declared
    prefix = wire.MAGIC + bytes((wire.VERSION,)) + MaskedInput.TAG.to_bytes(2, "big")
    at = len(prefix) + 4 + SESSION_ID_SIZE  # the vector's u8 width, then its u32 count, then the body
    if not isinstance(data, bytes) or len(data) < at + 5 or data[: len(prefix)] != prefix:
        return None
    bits, length = data[at], int.from_bytes(data[at + 1 : at + 5], "big")
    codec = MaskedInput.wire_fields()[-1][1]
    assert isinstance(codec, PackedRingArray)
    if not NARROW_MIN_BITS <= bits <= NARROW_MAX_BITS or length > codec.max_length:
        return None
    size = bitpack.packed_size(length, bits)
    spare = 8 * size - length * bits
    if len(data) != at + 5 + size or (spare and data[-1] >> (8 - spare)):
        return None
    sender = int.from_bytes(data[len(prefix) : len(prefix) + 4], "big")
    return MaskedInputHeader(sender, data[len(prefix) + 4 : at], bits, length)


# --- Round 3: ConsistencyCheck (active mode) ---------------------------------------


@dataclass(frozen=True)
class SurvivorList(wire.Message):
    """Server -> client: the clients whose masked input the server will use."""

    TAG: ClassVar[int] = 0x0106
    recipient: int = wire_field(U32)
    session_id: bytes = wire_field(FixedBytes(SESSION_ID_SIZE))
    survivors: tuple[int, ...] = wire_field(ListOf(U32, MAX_CLIENTS))

    def __post_init__(self) -> None:
        _check_sorted_unique(self.survivors, "survivors")


@dataclass(frozen=True)
class ConsistencySignature(wire.Message):
    """Client -> server: Ed25519 signature of the survivor list (active mode)."""

    TAG: ClassVar[int] = 0x0107
    sender: int = wire_field(U32)
    session_id: bytes = wire_field(FixedBytes(SESSION_ID_SIZE))
    signature: bytes = wire_field(FixedBytes(SIGNATURE_SIZE))


# --- Round 4: Unmasking ------------------------------------------------------------


@dataclass(frozen=True)
class SignedBy(wire.WireStruct):
    """A client's consistency signature relayed by the server."""

    client: int = wire_field(U32)
    signature: bytes = wire_field(FixedBytes(SIGNATURE_SIZE))


@dataclass(frozen=True)
class UnmaskRequest(wire.Message):
    """Server -> client: the survivors, and in active mode the signatures of at
    least t clients over that same set.

    Active mode: the whole survivor set (what every signer signed). Semi-honest
    mode: the recipient and those of its neighbours whose masked input arrived,
    all the recipient needs to choose which share of each neighbour to reveal.
    """

    TAG: ClassVar[int] = 0x0108
    recipient: int = wire_field(U32)
    session_id: bytes = wire_field(FixedBytes(SESSION_ID_SIZE))
    survivors: tuple[int, ...] = wire_field(ListOf(U32, MAX_CLIENTS))
    signatures: tuple[SignedBy, ...] = wire_field(ListOf(Struct(SignedBy), MAX_CLIENTS))

    def __post_init__(self) -> None:
        _check_sorted_unique(self.survivors, "survivors")
        _check_sorted_unique(tuple(s.client for s in self.signatures), "signers")


@dataclass(frozen=True)
class ShareEntry(wire.WireStruct):
    """A revealed share of ``owner``'s secret (index = the revealing client)."""

    owner: int = wire_field(U32)
    share: bytes = wire_field(FixedBytes(SHARE_SIZE))


@dataclass(frozen=True)
class UnmaskResponse(wire.Message):
    """Client -> server: self-mask shares of survivors, mask-key shares of
    neighbours that dropped after ShareKeys. No owner appears in both lists."""

    TAG: ClassVar[int] = 0x0109
    sender: int = wire_field(U32)
    session_id: bytes = wire_field(FixedBytes(SESSION_ID_SIZE))
    self_mask_shares: tuple[ShareEntry, ...] = wire_field(ListOf(Struct(ShareEntry), MAX_CLIENTS))
    mask_key_shares: tuple[ShareEntry, ...] = wire_field(ListOf(Struct(ShareEntry), MAX_CLIENTS))

    def __post_init__(self) -> None:
        self_owners = tuple(entry.owner for entry in self.self_mask_shares)
        key_owners = tuple(entry.owner for entry in self.mask_key_shares)
        _check_sorted_unique(self_owners, "self-mask share owners")
        _check_sorted_unique(key_owners, "mask-key share owners")
        if set(self_owners) & set(key_owners):
            raise DecodeError("an unmask response reveals both shares of one client")
