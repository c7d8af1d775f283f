"""The state a masking client keeps between messages (spec 12.11): its phase, the
shares it holds for its neighbours and, on the complete graph, its own self-mask seed
share. Secret: it holds private keys and must never leave the client.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from secagg import wire
from secagg.errors import DecodeError
from secagg.masking.config import ConfigRecord, MaskingConfig
from secagg.masking.messages import SESSION_ID_SIZE, RosterEntry
from secagg.primitives import prg, shamir
from secagg.primitives.key_agreement import KEY_SIZE
from secagg.wire import U8, U32, FixedBytes, ListOf, Struct, VarBytes, wire_field

__all__ = ["ClientPhase", "ClientState", "HeldShares", "is_field_element"]


class ClientPhase(enum.IntEnum):
    """Which server message the client expects next."""

    AWAIT_ROSTER = 1
    AWAIT_SHARES = 2
    AWAIT_SURVIVORS = 3
    AWAIT_UNMASK = 4
    DONE = 5


@dataclass(frozen=True, repr=False)
class HeldShares(wire.WireStruct):
    """The two shares a client holds for one neighbour (decrypted in round 2)."""

    owner: int = wire_field(U32)
    mask_key_share: bytes = wire_field(FixedBytes(shamir.VALUE_SIZE))
    self_mask_share: bytes = wire_field(FixedBytes(shamir.VALUE_SIZE))

    def __post_init__(self) -> None:
        if not (is_field_element(self.mask_key_share) and is_field_element(self.self_mask_share)):
            raise DecodeError(f"held shares of client {self.owner}: a share value >= p is not a field element")


@dataclass(frozen=True, repr=False)
class ClientState(wire.Message):
    """Everything a client remembers between rounds. Secret: never send it."""

    TAG: ClassVar[int] = 0x0180
    config: ConfigRecord = wire_field(Struct(ConfigRecord))
    client: int = wire_field(U32)
    context: bytes = wire_field(FixedBytes(32))
    phase: int = wire_field(U8)
    encryption_private: bytes = wire_field(FixedBytes(KEY_SIZE))
    mask_private: bytes = wire_field(FixedBytes(KEY_SIZE))
    encryption_public: bytes = wire_field(FixedBytes(KEY_SIZE))
    mask_public: bytes = wire_field(FixedBytes(KEY_SIZE))
    session: bytes = wire_field(VarBytes(SESSION_ID_SIZE))
    self_mask_seed: bytes = wire_field(VarBytes(prg.SEED_SIZE))
    # Complete graph: this client's own share of its self-mask seed (index = its id),
    # revealed only in its own unmask response as a survivor (spec 12.8); else empty.
    own_seed_share: bytes = wire_field(VarBytes(shamir.VALUE_SIZE))
    neighbours: tuple[RosterEntry, ...] = wire_field(ListOf(Struct(RosterEntry)))
    held: tuple[HeldShares, ...] = wire_field(ListOf(Struct(HeldShares)))
    survivors: tuple[int, ...] = wire_field(ListOf(U32))
    # Peers whose share box this client refused in round 2 (spec 12.8): it holds and
    # reveals nothing for them, but still masked with them.
    refused: tuple[int, ...] = wire_field(ListOf(U32))

    def __post_init__(self) -> None:
        if self.phase not in ClientPhase.__members__.values():
            raise DecodeError(f"unknown client phase {self.phase}")
        if len(self.session) not in (0, SESSION_ID_SIZE) or len(self.self_mask_seed) not in (0, prg.SEED_SIZE):
            raise DecodeError("client state holds a session id or self-mask seed of the wrong size")
        if self.own_seed_share and not is_field_element(self.own_seed_share):
            raise DecodeError("client state: its own seed share is not a field element")
        if any(a >= b for a, b in zip(self.refused, self.refused[1:], strict=False)):
            raise DecodeError("client state: refused peers must be strictly increasing client ids")
        if set(self.refused) & {held.owner for held in self.held}:
            raise DecodeError("client state holds shares of a peer whose box it refused")

    @property
    def masking_config(self) -> MaskingConfig:
        """The session's configuration."""
        return MaskingConfig.from_record(self.config)

    def to_bytes(self) -> bytes:
        """The state in the wire format (contains private keys: store it locally only)."""
        return wire.encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> ClientState:
        """Parse :meth:`to_bytes` output; DecodeError if malformed."""
        return wire.decode(data, cls)

    def __repr__(self) -> str:
        return f"ClientState(client={self.client}, phase={ClientPhase(self.phase).name})"


def is_field_element(value: bytes) -> bool:
    return len(value) == shamir.VALUE_SIZE and int.from_bytes(value, "big") < shamir.PRIME
