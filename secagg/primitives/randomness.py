"""Where secret randomness comes from.

Every public entry point draws from :func:`system_random` (``os.urandom``) unless
a caller injects another :data:`RandomBytes`. :class:`InsecureDeterministicRandom`
exists only so that tests and test vectors are reproducible; its name says what
it is, and no default anywhere in the library uses it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

from secagg._validate import require_int
from secagg.errors import ConfigurationError

__all__ = ["MAX_DRAW", "InsecureDeterministicRandom", "RandomBytes", "system_random"]

RandomBytes = Callable[[int], bytes]
"""A source of random bytes: called with a size, returns that many bytes."""


MAX_DRAW = 1 << 24
"""Most bytes one call of a randomness source returns (16 MiB; the library draws seeds)."""


def system_random(size: int) -> bytes:
    """``size`` bytes (``0 <= size <= MAX_DRAW``) from the operating system's CSPRNG (``os.urandom``)."""
    size = require_int("random byte count", size, 0, MAX_DRAW)
    return os.urandom(size)


class InsecureDeterministicRandom:
    """A reproducible byte stream for tests and test vectors. **Not secret.**

    Output block i is SHA-256(``b"secagg/v1/test-random" || seed || i`` as u64
    big-endian); calls consume the stream in order, so the same seed and the same
    sequence of calls give the same bytes.
    """

    def __init__(self, seed: bytes | int) -> None:
        if not isinstance(seed, bytes):
            seed = require_int("seed", seed, 0, (1 << 64) - 1)
        if isinstance(seed, int) and not 0 <= seed < 1 << 64:
            raise ConfigurationError("an integer seed must be in 0..2^64-1")
        self._seed = seed if isinstance(seed, bytes) else seed.to_bytes(8, "big")
        self._counter = 0
        self._buffer = b""

    def __call__(self, size: int) -> bytes:
        size = require_int("random byte count", size, 0, MAX_DRAW)
        if size < 0:
            raise ConfigurationError("cannot draw a negative number of bytes")
        if len(self._buffer) < size:
            # The missing blocks joined once: appending block by block copies the buffer each time.
            count = -(-(size - len(self._buffer)) // 32)
            prefix = b"secagg/v1/test-random" + self._seed
            blocks = (hashlib.sha256(prefix + (self._counter + i).to_bytes(8, "big")).digest() for i in range(count))
            self._buffer += b"".join(blocks)
            self._counter += count
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out
