"""What client and server compute identically: session id, graph, masks, payloads.

Everything here is a pure function of public values (and, for mask seeds, one
private key), so both ends derive the same bytes; docs/spec.md gives each layout.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from functools import lru_cache

from secagg._validate import require_bytes
from secagg.errors import ConfigurationError
from secagg.masking.config import COMPLETE, MaskingConfig
from secagg.masking.messages import SESSION_ID_SIZE
from secagg.primitives.kdf import derive_pair_key
from secagg.primitives.key_agreement import exchange_many

__all__ = [
    "CONTEXT_SIZE",
    "GRAPH_ROUNDS",
    "PAIR_MASK_LABEL",
    "SELF_MASK_LABEL",
    "ZERO_CONTEXT",
    "HararyPermutation",
    "advertise_payload",
    "consistency_payload",
    "graph_neighbours",
    "harary_order",
    "neighbour_table",
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


MISSING_CONTEXT = (
    "a session needs its context by name: 32 bytes unique to this session (drawn by the server, e.g. "
    "secrets.token_bytes(32), or a hash of run, round, model and a fresh nonce) and sent to every client; a "
    "repeated context repeats the session id, so signed keys of one session verify in another (ZERO_CONTEXT "
    "only by name, for tests)"
)


def check_context(context: bytes | None) -> bytes:
    """Return ``context`` if it is 32 bytes (e.g. a hash of the model and round); ConfigurationError
    for None (:data:`MISSING_CONTEXT`: there is no default context)."""
    if context is None:
        raise ConfigurationError(MISSING_CONTEXT)
    require_bytes("round context", context)
    if len(context) != CONTEXT_SIZE:
        raise ConfigurationError(f"round context must be {CONTEXT_SIZE} bytes, got {len(context)}")
    return context


def session_id(config: MaskingConfig, context: bytes) -> bytes:
    """SHA-256(``"secagg/v1/session"`` || config digest || context).

    Known to every party before any key is exchanged, so a client derives its
    graph neighbours without seeing the other clients' keys. The context must
    be unique per session (the driver draws it at random by default): two
    sessions with one context would share a graph, though never a key, since
    every session's X25519 keys are fresh.
    """
    return hashlib.sha256(b"secagg/v1/session" + config.digest() + check_context(context)).digest()


def advertise_payload(
    config_digest: bytes, context: bytes, client: int, encryption_key: bytes, mask_key: bytes
) -> bytes:
    """What a client signs in AdvertiseKeys (active mode)."""
    return b"secagg/v1/advertise" + config_digest + context + _u32(client) + encryption_key + mask_key


def consistency_payload(session: bytes, survivors: Iterable[int]) -> bytes:
    """What a client signs in ConsistencyCheck: the session and the survivor list."""
    ids = list(survivors)
    return b"secagg/v1/consistency" + session + _u32(len(ids)) + b"".join(_u32(i) for i in ids)


GRAPH_ROUNDS = 8
"""Feistel rounds of the Harary permutation (as many as FF3-1 uses)."""


class HararyPermutation:
    """The session's pseudorandom permutation of the positions 0..n-1.

    A balanced Feistel network on 2h-bit values (h = ceil(bitlen(n - 1) / 2)),
    round function ``r``: the first 4 bytes of SHA-256(``"secagg/v1/graph"`` ||
    session id || u8 r || u32 x), big-endian, mod 2^h; values >= n are
    encrypted again (cycle walking) until they fall in 0..n-1. Client ``i``
    sits at position ``position(i - 1)``; either direction costs O(1) hashes, so
    a client finds its k neighbours in O(k) work, whatever n is.
    """

    def __init__(self, num_clients: int, session: bytes) -> None:
        if len(session) != SESSION_ID_SIZE:
            raise ConfigurationError("session id must be 32 bytes")
        self.size = num_clients
        self.half_bits = max(1, ((num_clients - 1).bit_length() + 1) // 2)
        self._half_mask = (1 << self.half_bits) - 1
        self._hash = hashlib.sha256(b"secagg/v1/graph" + session)

    def _round(self, index: int, value: int) -> int:
        digest = self._hash.copy()
        digest.update(bytes((index,)) + _u32(value))
        return int.from_bytes(digest.digest()[:4], "big") & self._half_mask

    def _encrypt(self, value: int) -> int:
        left, right = value >> self.half_bits, value & self._half_mask
        for index in range(GRAPH_ROUNDS):
            left, right = right, left ^ self._round(index, right)
        return (left << self.half_bits) | right

    def _decrypt(self, value: int) -> int:
        left, right = value >> self.half_bits, value & self._half_mask
        for index in reversed(range(GRAPH_ROUNDS)):
            left, right = right ^ self._round(index, left), left
        return (left << self.half_bits) | right

    def position(self, value: int) -> int:
        """The position of ``value`` (0..n-1) in the permuted order."""
        value = self._encrypt(value)
        while value >= self.size:
            value = self._encrypt(value)
        return value

    def at(self, position: int) -> int:
        """The value (0..n-1) at ``position``: the inverse of :meth:`position`."""
        value = self._decrypt(position)
        while value >= self.size:
            value = self._decrypt(value)
        return value


def graph_neighbours(config: MaskingConfig, session: bytes, client: int) -> tuple[int, ...]:
    """The sorted neighbours of ``client`` on the session's communication graph.

    Complete graph: every other id. Harary graph H(k, n) on the session's
    permutation: the clients at positions p +- 1, ..., p +- k/2 (mod n), where
    p is ``client``'s position (:class:`HararyPermutation`).
    """
    if len(session) != SESSION_ID_SIZE:
        raise ConfigurationError("session id must be 32 bytes")
    n = config.num_clients
    if config.graph == COMPLETE:
        return tuple(i for i in range(1, n + 1) if i != client)
    return _harary_neighbours(n, config.degree, bytes(session), client)  # a cache key: bytes-like as bytes


@lru_cache(maxsize=4096)
def _harary_neighbours(num_clients: int, degree: int, session: bytes, client: int) -> tuple[int, ...]:
    """:func:`graph_neighbours` on a Harary graph. Cached: in a round every client checks the
    neighbours of each share owner it endorses, so a simulation of n clients asks for the same n
    answers n times each (a pure function of public values)."""
    permutation = HararyPermutation(num_clients, session)
    position = permutation.position(client - 1)
    half = degree // 2
    offsets = [j for j in range(-half, half + 1) if j != 0]
    return tuple(sorted(permutation.at((position + j) % num_clients) + 1 for j in offsets))


@lru_cache(maxsize=8)
def harary_order(num_clients: int, session: bytes) -> tuple[int, ...]:
    """Every client id in position order (the server's view of the whole graph)."""
    permutation = HararyPermutation(num_clients, session)
    order = [0] * num_clients
    for value in range(num_clients):
        order[permutation.position(value)] = value + 1
    return tuple(order)


def neighbour_table(config: MaskingConfig, session: bytes) -> dict[int, tuple[int, ...]]:
    """:func:`graph_neighbours` of every client at once, in O(n k) (for the server)."""
    n = config.num_clients
    if config.graph == COMPLETE:
        return {client: graph_neighbours(config, session, client) for client in range(1, n + 1)}
    if len(session) != SESSION_ID_SIZE:
        raise ConfigurationError("session id must be 32 bytes")
    order = harary_order(n, session)
    half = config.degree // 2
    offsets = [j for j in range(-half, half + 1) if j != 0]
    return {order[p]: tuple(sorted(order[(p + j) % n] for j in offsets)) for p in range(n)}


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
