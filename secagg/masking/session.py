"""What client and server compute identically: session id, graph, masks, payloads.

Everything here is a pure function of public values (and, for mask seeds, one
private key), so both ends derive the same bytes; docs/spec.md gives each layout.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from functools import lru_cache

from secagg.errors import ConfigurationError
from secagg.masking.config import COMPLETE, MaskingConfig
from secagg.masking.messages import SESSION_ID_SIZE, RosterEntry
from secagg.primitives.kdf import derive_pair_key
from secagg.primitives.key_agreement import exchange_many

__all__ = [
    "CONTEXT_SIZE",
    "PAIR_MASK_LABEL",
    "SELF_MASK_LABEL",
    "ZERO_CONTEXT",
    "advertise_payload",
    "consistency_payload",
    "graph_neighbours",
    "pair_mask_seeds",
    "pair_mask_subtracts",
    "self_mask_commitment",
    "session_id",
    "share_encryption_keys",
]

CONTEXT_SIZE = 32
ZERO_CONTEXT = bytes(CONTEXT_SIZE)
SELF_MASK_LABEL = b"self-mask"
PAIR_MASK_LABEL = b"pairwise-mask"
MASK_KDF_PURPOSE = b"pairwise-mask-seed"
SHARE_KDF_PURPOSE = b"share-encryption"


def _u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def check_context(context: bytes) -> bytes:
    """Return ``context`` if it is 32 bytes (e.g. a hash of the model and round)."""
    if len(context) != CONTEXT_SIZE:
        raise ConfigurationError(f"round context must be {CONTEXT_SIZE} bytes, got {len(context)}")
    return context


def session_id(config: MaskingConfig, context: bytes, roster: Sequence[RosterEntry]) -> bytes:
    """SHA-256(``"secagg/v1/session"`` || config digest || context || roster entries).

    Each entry is u32 client || encryption key || mask key (signatures excluded:
    they are over these same values). A new roster of fresh keys gives a new id.
    """
    digest = hashlib.sha256(b"secagg/v1/session" + config.digest() + check_context(context))
    for entry in roster:
        digest.update(_u32(entry.client) + entry.encryption_key + entry.mask_key)
    return digest.digest()


def advertise_payload(
    config_digest: bytes, context: bytes, client: int, encryption_key: bytes, mask_key: bytes
) -> bytes:
    """What a client signs in AdvertiseKeys (active mode)."""
    return b"secagg/v1/advertise" + config_digest + context + _u32(client) + encryption_key + mask_key


def consistency_payload(session: bytes, survivors: Iterable[int]) -> bytes:
    """What a client signs in ConsistencyCheck: the session and the survivor list."""
    ids = list(survivors)
    return b"secagg/v1/consistency" + session + _u32(len(ids)) + b"".join(_u32(i) for i in ids)


@lru_cache(maxsize=64)
def _harary_positions(num_clients: int, session: bytes) -> tuple[int, ...]:
    """Client ids ordered by SHA-256(``"secagg/v1/graph"`` || session || u32 id)."""
    keyed = sorted(
        (hashlib.sha256(b"secagg/v1/graph" + session + _u32(client)).digest(), client)
        for client in range(1, num_clients + 1)
    )
    return tuple(client for _, client in keyed)


def graph_neighbours(config: MaskingConfig, session: bytes, client: int) -> tuple[int, ...]:
    """The sorted neighbours of ``client`` on the session's communication graph.

    Complete graph: every other id. Harary graph H(k, n) on a permutation of the
    ids: the clients at positions p +- 1, ..., p +- k/2 (mod n) of the order above.
    """
    if len(session) != SESSION_ID_SIZE:
        raise ConfigurationError("session id must be 32 bytes")
    n = config.num_clients
    if config.graph == COMPLETE:
        return tuple(i for i in range(1, n + 1) if i != client)
    order = _harary_positions(n, session)
    position = order.index(client)
    half = config.degree // 2
    return tuple(sorted(order[(position + j) % n] for j in range(-half, half + 1) if j != 0))


def pair_mask_seeds(
    private_mask_key: bytes, peers: Sequence[tuple[int, bytes]], session: bytes, client: int
) -> list[bytes]:
    """The 32-byte seeds of the pairwise masks between ``client`` and each
    ``(peer id, peer mask public key)``: HKDF of the X25519 secret."""
    shared = exchange_many(private_mask_key, [key for _, key in peers])
    return [derive_pair_key(s, session, MASK_KDF_PURPOSE, client, p) for s, (p, _) in zip(shared, peers, strict=True)]


def self_mask_commitment(seed: bytes) -> bytes:
    """SHA-256(``"secagg/v1/self-mask-commitment"`` || seed). The seed is 32
    uniform bytes, so the hash reveals nothing about it."""
    return hashlib.sha256(b"secagg/v1/self-mask-commitment" + seed).digest()


def pair_mask_subtracts(client: int, peer: int) -> bool:
    """Sign convention: the smaller id adds the pair's mask, the larger subtracts it."""
    return client > peer


def share_encryption_keys(
    private_key: bytes, peers: Sequence[tuple[int, bytes]], session: bytes, client: int
) -> list[bytes]:
    """The AES-256-GCM keys for share bundles between ``client`` and each
    ``(peer id, peer encryption public key)``."""
    shared = exchange_many(private_key, [key for _, key in peers])
    return [derive_pair_key(s, session, SHARE_KDF_PURPOSE, client, p) for s, (p, _) in zip(shared, peers, strict=True)]
