"""Ed25519 long-term identity keys (active-security mode).

Signed payloads are always prefixed by their caller with a versioned label, so a
signature made for one protocol step cannot be presented as another.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from secagg._validate import require_bytes
from secagg.errors import AuthenticationError, ConfigurationError, DecodeError
from secagg.primitives.randomness import RandomBytes, system_random

__all__ = [
    "PUBLIC_KEY_SIZE",
    "SIGNATURE_SIZE",
    "SigningKey",
    "check_trusted_key",
    "placeholder_public_keys",
    "public_key_problem",
    "verify",
]

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
SEED_SIZE = 32

_FIELD_PRIME = (1 << 255) - 19
_Y_MASK = (1 << 255) - 1
_ORDER_8_Y = 0x7A03AC9277FDC74EC6CC392CFA53202A0F67100D760B3CBA4FD84D3D706A17C7
_SMALL_ORDER_Y = frozenset({0, 1, _FIELD_PRIME - 1, _ORDER_8_Y, _FIELD_PRIME - _ORDER_8_Y})
"""The y coordinates of the eight points of order dividing 8 (identity, order 2, 4 and 8), each
under either sign bit (x = 0 with the sign bit set is the non-canonical form of y = 1 and p - 1)."""


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


def public_key_problem(public_key: bytes) -> str | None:
    """Why the 32 bytes ``public_key`` are no identity key to accept, or None.

    ``cryptography`` takes any 32 bytes, and the library compares keys by their bytes (a roster's
    no-key-twice check, the trusted list). Two encodings of one point exist only for a y coordinate
    of 2^255 - 19 or more (non-canonical: y - p is the same point) and for x = 0 with the sign bit
    set (y = 1 or p - 1, small order); a point of small order is a key everyone can sign for (R =
    the identity, S = 0 verifies whenever the hash is a multiple of its order). Refusing both leaves
    keys whose bytes are their point and that only their holder signs for."""
    y = int.from_bytes(public_key, "little") & _Y_MASK
    if y >= _FIELD_PRIME:
        return "is not canonically encoded (its y coordinate is 2^255 - 19 or more: another encoding of a point)"
    if y in _SMALL_ORDER_Y:
        return "is a point of small order, a key every party can sign for"
    return None


NEVER_TRUSTED = (
    "never trusted: a small-order key is one anyone can sign for, and a second encoding of a point "
    "would pass the no-key-twice check as another key"
)


def check_trusted_key(key: bytes, where: str) -> bytes:
    """``key`` if :func:`public_key_problem` finds nothing wrong with it,
    else ConfigurationError naming ``where``, the key and why: the one check of a key entering
    the federation's trusted list (``secagg keys trust``/``check``, the trusted-keys file's
    writer and reader in :mod:`secagg.integrations.flower.keys`, ``SecAggOptions.trusted_keys``)."""
    problem = public_key_problem(key)
    if problem is not None:
        raise ConfigurationError(f"{where}: the public key {key.hex()} {problem}; {NEVER_TRUSTED}")
    return key


def placeholder_public_keys(count: int) -> tuple[bytes, ...]:
    """``count`` distinct stand-in public keys that :func:`public_key_problem` accepts (y = 2, 3, ...),
    to compute an active-mode configuration's parameters before any real key exists; never a key
    to enrol (nobody holds its private key, so nothing can be signed for it)."""
    return tuple((index + 2).to_bytes(PUBLIC_KEY_SIZE, "little") for index in range(count))


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
