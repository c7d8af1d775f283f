"""AES-256-GCM authenticated encryption of share bundles.

A sealed box is ``nonce (12 bytes) || ciphertext || tag (16 bytes)``. The
associated data binds the box to its session, sender, recipient and round (see
:func:`share_associated_data`) so a box cannot be replayed into another context.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from secagg._validate import require_bytes, require_int
from secagg.errors import AuthenticationError, ConfigurationError
from secagg.primitives.randomness import RandomBytes, system_random

__all__ = ["KEY_SIZE", "NONCE_SIZE", "OVERHEAD", "TAG_SIZE", "open_sealed", "seal", "share_associated_data"]

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
OVERHEAD = NONCE_SIZE + TAG_SIZE
SHARE_AD_LABEL = b"secagg/v1/share-bundle"


def share_associated_data(session_id: bytes, sender: int, recipient: int, round_number: int) -> bytes:
    """``b"secagg/v1/share-bundle" || session_id || u32 sender || u32 recipient || u8 round``."""
    session_id = require_bytes("session id", session_id)
    for name, value in (("sender", sender), ("recipient", recipient), ("round", round_number)):
        require_int(name, value)
    if not (0 <= sender < 1 << 32 and 0 <= recipient < 1 << 32 and 0 <= round_number < 1 << 8):
        raise ConfigurationError("associated data needs u32 sender and recipient ids and a u8 round")
    return (
        SHARE_AD_LABEL
        + session_id
        + sender.to_bytes(4, "big")
        + recipient.to_bytes(4, "big")
        + round_number.to_bytes(1, "big")
    )


def seal(
    key: bytes, plaintext: bytes, associated_data: bytes, random_bytes: RandomBytes = system_random
) -> bytes:
    """Encrypt and authenticate ``plaintext`` under ``key`` with a fresh random nonce."""
    _check_bytes(key, plaintext, associated_data)
    if len(key) != KEY_SIZE:
        raise ConfigurationError(f"AES-256-GCM key must be {KEY_SIZE} bytes")
    nonce = random_bytes(NONCE_SIZE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated_data)


def open_sealed(key: bytes, sealed: bytes, associated_data: bytes) -> bytes:
    """Decrypt a box from :func:`seal`; AuthenticationError if it was altered,
    truncated, or made for other associated data or another key."""
    _check_bytes(key, sealed, associated_data)
    if len(key) != KEY_SIZE:
        raise ConfigurationError(f"AES-256-GCM key must be {KEY_SIZE} bytes")
    if len(sealed) < OVERHEAD:
        raise AuthenticationError(f"sealed box of {len(sealed)} bytes is shorter than nonce + tag")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], associated_data)
    except InvalidTag as exc:
        raise AuthenticationError("sealed box failed authentication") from exc


def _check_bytes(key: object, data: object, associated_data: object) -> None:
    for name, value in (("AES-256-GCM key", key), ("data", data), ("associated data", associated_data)):
        require_bytes(name, value)
