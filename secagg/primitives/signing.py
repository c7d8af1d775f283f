"""Ed25519 long-term identity keys (active-security mode).

Signed payloads are always prefixed by their caller with a versioned label, so a
signature made for one protocol step cannot be presented as another.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from secagg._validate import require_bytes
from secagg.errors import AuthenticationError, DecodeError
from secagg.primitives.randomness import RandomBytes, system_random

__all__ = ["PUBLIC_KEY_SIZE", "SIGNATURE_SIZE", "SigningKey", "verify"]

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
SEED_SIZE = 32


@dataclass(frozen=True, repr=False)
class SigningKey:
    """An Ed25519 private key (its 32-byte seed) and its public key."""

    seed: bytes
    public: bytes

    def __post_init__(self) -> None:
        require_bytes("Ed25519 seed", self.seed)
        require_bytes("Ed25519 public key", self.public)
        if len(self.seed) != SEED_SIZE or len(self.public) != PUBLIC_KEY_SIZE:
            raise DecodeError(f"Ed25519 seed and public key must be {SEED_SIZE} and {PUBLIC_KEY_SIZE} bytes")
        if _public_of(self.seed) != self.public:
            raise DecodeError("Ed25519 public key does not belong to the seed")

    @classmethod
    def generate(cls, random_bytes: RandomBytes = system_random) -> SigningKey:
        """A fresh identity key from ``random_bytes(32)``."""
        seed = random_bytes(SEED_SIZE)
        return cls(seed=seed, public=_public_of(seed))

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        require_bytes("signed message", message)
        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(message)

    def __repr__(self) -> str:
        return f"SigningKey(public={self.public.hex()}, seed=<redacted>)"


def _public_of(seed: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()


def verify(public_key: bytes, signature: bytes, message: bytes) -> None:
    """Return if ``signature`` is valid for ``message``; raise AuthenticationError if not."""
    for name, value in (("Ed25519 public key", public_key), ("signature", signature), ("message", message)):
        require_bytes(name, value)
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise DecodeError(f"Ed25519 public key must be {PUBLIC_KEY_SIZE} bytes")
    if len(signature) != SIGNATURE_SIZE:
        raise AuthenticationError(f"Ed25519 signature must be {SIGNATURE_SIZE} bytes")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError) as exc:
        raise AuthenticationError("Ed25519 signature verification failed") from exc
