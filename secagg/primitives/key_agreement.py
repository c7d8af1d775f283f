"""X25519 key pairs and Diffie-Hellman (RFC 7748) through ``cryptography``.

Private keys are handled as their 32-byte RFC 7748 encoding because the masking
protocol Shamir-shares them for dropout recovery. A fresh key pair is generated
for every aggregation session; nothing here is long-term.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from secagg._validate import require_bytes, require_callable, require_sequence
from secagg.errors import DecodeError, ProtocolError
from secagg.primitives.randomness import RandomBytes, system_random

__all__ = ["KEY_SIZE", "KeyPair", "exchange", "exchange_many", "generate_keypair", "public_key_of"]

KEY_SIZE = 32


@dataclass(frozen=True, repr=False)
class KeyPair:
    """An X25519 key pair as raw 32-byte encodings."""

    private: bytes
    public: bytes

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public.hex()}, private=<redacted>)"


def public_key_of(private: bytes) -> bytes:
    """The public key for the 32-byte private scalar ``private``."""
    require_bytes("X25519 private key", private)
    if len(private) != KEY_SIZE:
        raise DecodeError(f"X25519 private key must be {KEY_SIZE} bytes, got {len(private)}")
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def generate_keypair(random_bytes: RandomBytes = system_random) -> KeyPair:
    """A fresh key pair whose private scalar is ``random_bytes(32)``."""
    require_callable("random_bytes", random_bytes)
    private = random_bytes(KEY_SIZE)
    return KeyPair(private=private, public=public_key_of(private))


def exchange(private: bytes, peer_public: bytes) -> bytes:
    """The 32-byte X25519 shared secret of ``private`` and ``peer_public``.

    Raises DecodeError for a wrongly sized key and ProtocolError for a peer key of
    small order (the all-zero shared secret), which an honest peer never sends.
    """
    return exchange_many(private, [peer_public])[0]


def exchange_many(private: bytes, peer_publics: Sequence[bytes]) -> list[bytes]:
    """:func:`exchange` with each of ``peer_publics``, parsing ``private`` once."""
    require_bytes("X25519 private key", private)
    for peer in require_sequence("peer public keys", peer_publics):
        require_bytes("X25519 peer public key", peer)
    if len(private) != KEY_SIZE or any(len(peer) != KEY_SIZE for peer in peer_publics):
        raise DecodeError(f"X25519 keys must be {KEY_SIZE} bytes")
    key = X25519PrivateKey.from_private_bytes(private)
    secrets = []
    for peer in peer_publics:
        try:
            secrets.append(key.exchange(X25519PublicKey.from_public_bytes(peer)))
        except ValueError as exc:
            raise ProtocolError("X25519 exchange gave the all-zero secret: peer key has small order") from exc
    return secrets
