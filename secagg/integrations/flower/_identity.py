"""A node's identity announcement (active mode, ``identify`` stage) and the payload it signs.

Re-exported by :mod:`secagg.integrations.flower.protocol`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from secagg import wire
from secagg._validate import require_bytes, require_int
from secagg.errors import AuthenticationError, DecodeError, ProtocolError
from secagg.integrations.flower._round_binding import MAX_KEY_BYTES
from secagg.primitives.signing import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, SigningKey, public_key_problem, verify
from secagg.wire import U64, FixedBytes, wire_field

__all__ = ["IDENTITY_LABEL", "IdentityAnnouncement", "identity_payload"]

IDENTITY_LABEL = b"secagg/v1/flower-identity"


def identity_payload(run_id: int, node_id: int, public_key: bytes) -> bytes:
    """``"secagg/v1/flower-identity" || u64 run id || u64 node id || public key``: what a node signs
    to show the server that it holds the identity key it announces."""
    require_int("run id", run_id, 0, (1 << 64) - 1)
    require_int("node id", node_id, 0, (1 << 64) - 1)
    require_bytes("public key", public_key, max_size=MAX_KEY_BYTES)
    return IDENTITY_LABEL + run_id.to_bytes(8, "big") + node_id.to_bytes(8, "big") + public_key


@dataclass(frozen=True)
class IdentityAnnouncement(wire.Message):
    """Node -> server, ``identify`` stage (active mode): the node's Ed25519 identity public key.

    The signature over :func:`identity_payload` proves possession for this run
    and this node id, so one node cannot announce another's key. The nodes,
    not the server, decide which keys they trust (see :class:`RoundSetup`).
    """

    TAG: ClassVar[int] = 0x0703
    node_id: int = wire_field(U64)
    public_key: bytes = wire_field(FixedBytes(PUBLIC_KEY_SIZE))
    signature: bytes = wire_field(FixedBytes(SIGNATURE_SIZE))

    @classmethod
    def create(cls, identity: SigningKey, run_id: int, node_id: int) -> IdentityAnnouncement:
        """The signed announcement of ``identity``'s public key by ``node_id`` in ``run_id``."""
        payload = identity_payload(run_id, node_id, identity.public)
        return cls(node_id=node_id, public_key=identity.public, signature=identity.sign(payload))

    def verify(self, run_id: int, node_id: int) -> None:
        """AuthenticationError unless this is ``node_id``'s valid announcement in ``run_id`` of a key
        :func:`~secagg.primitives.signing.public_key_problem` accepts."""
        if self.node_id != node_id:
            raise ProtocolError(f"node {node_id} announced an identity for node {self.node_id}")
        if (problem := public_key_problem(self.public_key)) is not None:
            # Its signature proves nothing (anyone signs for a small-order key); every node refuses a
            # round listing it, so the server keeps it for no round: it costs only this node.
            raise AuthenticationError(f"node {node_id}: the identity key it announced {problem}")
        try:
            verify(self.public_key, self.signature, identity_payload(run_id, node_id, self.public_key))
        except (AuthenticationError, DecodeError) as exc:
            raise AuthenticationError(f"node {node_id}: its identity announcement carries no valid signature") from exc
