"""Shamir t-of-n secret sharing of 32-byte secrets over GF(p), p = 2^256 + 297.

p is the smallest prime above 2^256, so every 32-byte secret (read as a
big-endian integer) is a field element. A share is ``(index, value)`` with index
the recipient's id in ``1..MAX_INDEX`` and value = f(index), where f is a random
polynomial of degree t - 1 with f(0) = secret. Coefficients are drawn as 64
random bytes reduced mod p (bias below 2^-250).

Any t shares with distinct indices reconstruct the secret by Lagrange
interpolation at zero; t - 1 shares are independent of it. Extra shares beyond t
are checked for consistency, so a corrupted share is detected rather than
silently producing a wrong secret.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from secagg._validate import require_bytes, require_instance, require_int, require_sequence
from secagg.errors import AuthenticationError, ConfigurationError, DecodeError
from secagg.primitives.randomness import RandomBytes, system_random

__all__ = ["MAX_INDEX", "PRIME", "SECRET_SIZE", "VALUE_SIZE", "Share", "combine", "interpolate", "split"]

PRIME = (1 << 256) + 297
SECRET_SIZE = 32
VALUE_SIZE = 33
MAX_INDEX = (1 << 32) - 1
COEFFICIENT_BYTES = 64


@dataclass(frozen=True, repr=False)
class Share:
    """One share: the polynomial evaluated at ``index``."""

    index: int
    value: int

    def __post_init__(self) -> None:
        require_int("share index", self.index)
        require_int("share value", self.value)
        if not 1 <= self.index <= MAX_INDEX:
            raise DecodeError(f"share index {self.index} is outside 1..{MAX_INDEX}")
        if not 0 <= self.value < PRIME:
            raise DecodeError("share value is not a field element")

    def to_bytes(self) -> bytes:
        """``u32 index || 33-byte big-endian value``."""
        return self.index.to_bytes(4, "big") + self.value.to_bytes(VALUE_SIZE, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> Share:
        """Parse :meth:`to_bytes` output; DecodeError if malformed."""
        require_bytes("share", data)
        if len(data) != 4 + VALUE_SIZE:
            raise DecodeError(f"a share is {4 + VALUE_SIZE} bytes, got {len(data)}")
        return cls(int.from_bytes(data[:4], "big"), int.from_bytes(data[4:], "big"))

    def __repr__(self) -> str:
        return f"Share(index={self.index}, value=<redacted>)"


def _check_threshold(threshold: int, count: int) -> None:
    require_int("threshold", threshold)
    if not 1 <= threshold <= count:
        raise ConfigurationError(f"threshold {threshold} must be between 1 and the number of shares {count}")


def split(
    secret: bytes, threshold: int, indices: Sequence[int], random_bytes: RandomBytes = system_random
) -> tuple[Share, ...]:
    """Share ``secret`` so that any ``threshold`` of the returned shares recover it.

    ``indices`` are the distinct evaluation points (recipient ids), one share each.
    """
    require_bytes("Shamir secret", secret)
    indices = [require_int("share index", index) for index in require_sequence("share indices", indices)]
    if len(secret) != SECRET_SIZE:
        raise ConfigurationError(f"Shamir secret must be {SECRET_SIZE} bytes, got {len(secret)}")
    if len(set(indices)) != len(indices):
        raise ConfigurationError("share indices must be distinct")
    if any(not 1 <= index <= MAX_INDEX for index in indices):
        raise ConfigurationError(f"share indices must be in 1..{MAX_INDEX}")
    _check_threshold(threshold, len(indices))
    coefficients = [int.from_bytes(secret, "big")] + [
        int.from_bytes(random_bytes(COEFFICIENT_BYTES), "big") % PRIME for _ in range(threshold - 1)
    ]
    return tuple(Share(index, _evaluate(coefficients, index)) for index in indices)


def _evaluate(coefficients: Sequence[int], x: int) -> int:
    result = 0
    for coefficient in reversed(coefficients):
        result = (result * x + coefficient) % PRIME
    return result


@lru_cache(maxsize=256)
def _lagrange_at(indices: tuple[int, ...], x: int) -> tuple[int, ...]:
    """Lagrange basis coefficients of ``indices`` evaluated at ``x``."""
    weights = []
    for i in indices:
        numerator, denominator = 1, 1
        for j in indices:
            if j != i:
                numerator = numerator * (x - j) % PRIME
                denominator = denominator * (i - j) % PRIME
        weights.append(numerator * pow(denominator, -1, PRIME) % PRIME)
    return tuple(weights)


def interpolate(shares: Sequence[Share], x: int) -> int:
    """The value at ``x`` of the polynomial of degree len(shares) - 1 through ``shares``
    (distinct indices); used to tell which extra shares lie off a recovered polynomial."""
    weights = _lagrange_at(tuple(share.index for share in shares), x)
    return sum(w * share.value for w, share in zip(weights, shares, strict=True)) % PRIME


def combine(shares: Sequence[Share], threshold: int) -> bytes:
    """Recover the secret from at least ``threshold`` shares with distinct indices.

    Raises ConfigurationError with too few shares or duplicate indices, and
    AuthenticationError if the shares beyond the first ``threshold`` do not lie on
    the same polynomial or the result is not a 32-byte secret.
    """
    for share in require_sequence("shares", shares):
        require_instance("share", share, Share)
    indices = [share.index for share in shares]
    if len(set(indices)) != len(indices):
        raise ConfigurationError("duplicate share indices")
    _check_threshold(threshold, len(shares))
    ordered = sorted(shares, key=lambda share: share.index)
    basis, extra = ordered[:threshold], ordered[threshold:]
    for share in extra:
        if interpolate(basis, share.index) != share.value:
            raise AuthenticationError(f"share at index {share.index} is inconsistent with the others")
    secret = interpolate(basis, 0)
    if secret >= 1 << (8 * SECRET_SIZE):
        raise AuthenticationError("reconstructed value is not a 32-byte secret: shares are corrupt")
    return secret.to_bytes(SECRET_SIZE, "big")
