"""HKDF-SHA256 (RFC 5869) with the library's versioned, labelled info strings.

Every key the protocols derive is ``HKDF-SHA256(ikm, salt=session_id, info)``
where ``info`` is built by :func:`info_string`: the ASCII prefix ``secagg/v1/``,
a purpose label, and the two party ids as u32 big-endian in increasing order, so
both ends of a pair derive the same key and no two purposes ever share one.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from secagg._validate import require_bytes, require_int
from secagg.errors import ConfigurationError

__all__ = ["LABEL_PREFIX", "MAX_OUTPUT", "derive_pair_key", "hkdf_sha256", "info_string"]

LABEL_PREFIX = b"secagg/v1/"
MAX_OUTPUT = 255 * 32


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF with SHA-256: extract with ``salt``, expand with ``info``."""
    require_bytes("HKDF ikm", ikm)
    require_bytes("HKDF salt", salt)
    require_bytes("HKDF info", info)
    length = require_int("HKDF output length", length)
    if not 0 < length <= MAX_OUTPUT:
        raise ConfigurationError(f"HKDF-SHA256 output length must be 1..{MAX_OUTPUT}, got {length}")
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def info_string(purpose: bytes, party_a: int, party_b: int) -> bytes:
    """``b"secagg/v1/" || purpose || b"/" || u32(min id) || u32(max id)``."""
    purpose = require_bytes("KDF purpose", purpose)
    party_a = require_int("party id", party_a, 0, (1 << 32) - 1)
    party_b = require_int("party id", party_b, 0, (1 << 32) - 1)
    if not purpose or b"/" in purpose or b":" in purpose:
        # ':' is reserved for the PRG's "secagg/v1/prg:<label>" info strings.
        raise ConfigurationError("a KDF purpose label is a non-empty string without '/' or ':'")
    low, high = sorted((party_a, party_b))
    if low < 0 or high >= 1 << 32:
        raise ConfigurationError("party ids must fit in u32")
    return LABEL_PREFIX + purpose + b"/" + low.to_bytes(4, "big") + high.to_bytes(4, "big")


def derive_pair_key(
    shared_secret: bytes, session_id: bytes, purpose: bytes, party_a: int, party_b: int, length: int = 32
) -> bytes:
    """The ``purpose`` key of the pair {party_a, party_b} in session ``session_id``."""
    return hkdf_sha256(shared_secret, session_id, info_string(purpose, party_a, party_b), length)
