"""The rings Z_(2^32) and Z_(2^64) in which masked vectors are summed, and narrow rings Z_(2^b).

numpy's unsigned integer arithmetic wraps modulo 2^bits, so ring addition and
subtraction of whole vectors are single vectorised numpy operations with no
reduction step. Elements are serialised as little-endian unsigned words.

:class:`NarrowRing` is Z_(2^b) for any b in 8..64, for compression: its
elements live in the smallest word ring that holds them (its *container*,
Z_(2^32) for b <= 32, else Z_(2^64)) and travel bit-packed to b bits each
(:mod:`secagg.bitpack`). Because 2^b divides the container's modulus, reducing
mod 2^b commutes with every container addition, subtraction and product: a
sum computed in the container and reduced once at the end equals the sum in
Z_(2^b). So masks, sums and unmasking keep running on the container's
wrap-for-free words, and only :meth:`NarrowRing.reduce` (before packing, and
on the final aggregate) is new. PRG words reduced mod 2^b stay uniform: the low
b bits of a uniform 32- or 64-bit word are uniform.

``Ring`` itself still accepts only 32 and 64: it is the type that encoding,
masking configuration and the wire format check, and each of those assumes a
value of the ring is a whole word. They move to narrow rings one at a time
(docs/compression.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg import bitpack
from secagg._validate import check_fields, require_int
from secagg.errors import ConfigurationError, DecodeError

__all__ = [
    "MAX_LENGTH",
    "NARROW_MAX_BITS",
    "NARROW_MIN_BITS",
    "RING32",
    "RING64",
    "NarrowRing",
    "Ring",
    "RingVector",
    "ring_from_bits",
]

MAX_LENGTH = (1 << 32) - 1
"""Longest ring vector the library allocates (the wire format's u32 length)."""

RingVector = npt.NDArray[Any]
"""A one-dimensional numpy array of ring elements (dtype ``<u4`` or ``<u8``)."""


@dataclass(frozen=True)
class Ring:
    """The ring Z_(2^bits), ``bits`` in {32, 64}."""

    bits: int

    def __post_init__(self) -> None:
        check_fields(self, ints=("bits",))
        if self.bits not in (32, 64):
            raise ConfigurationError(f"ring must be Z_(2^32) or Z_(2^64), got 2^{self.bits}")

    @property
    def modulus(self) -> int:
        """2^bits."""
        return 1 << self.bits

    @property
    def dtype(self) -> np.dtype[Any]:
        """The little-endian unsigned numpy dtype holding one element."""
        return np.dtype("<u4") if self.bits == 32 else np.dtype("<u8")

    @property
    def element_size(self) -> int:
        """Bytes per element on the wire and in the PRG keystream."""
        return self.bits // 8

    def zeros(self, length: int) -> RingVector:
        """A zero vector of ``length`` elements (``0 <= length <= MAX_LENGTH``)."""
        length = require_int("ring vector length", length, 0, MAX_LENGTH)
        return np.zeros(length, dtype=self.dtype)

    def check(self, vector: npt.NDArray[Any], length: int | None = None) -> RingVector:
        """Return ``vector`` if it is a 1-D array of this ring's dtype (and ``length``).

        Raises ConfigurationError otherwise: callers pass ring vectors they built,
        so a mismatch is a programming or configuration error, not wire input.
        """
        if not isinstance(vector, np.ndarray) or vector.ndim != 1:
            raise ConfigurationError("ring vector must be a one-dimensional numpy array")
        if vector.dtype != self.dtype:  # also refuses big-endian words
            raise ConfigurationError(
                f"ring vector has dtype {vector.dtype}, expected {self.dtype} for Z_(2^{self.bits})"
            )
        if length is not None and vector.shape[0] != length:
            raise ConfigurationError(f"ring vector has length {vector.shape[0]}, expected {length}")
        return vector

    def sum(self, vectors: Iterable[RingVector], length: int) -> RingVector:
        """The ring sum of ``vectors`` (the zero vector if there are none)."""
        total = self.zeros(length)
        for vector in vectors:
            np.add(total, self.check(vector, length), out=total)
        return total


RING32 = Ring(32)
RING64 = Ring(64)


def ring_from_bits(bits: int) -> Ring:
    """The ring Z_(2^bits); raises ConfigurationError unless bits is 32 or 64."""
    return Ring(bits)


NARROW_MIN_BITS = 8
NARROW_MAX_BITS = 64


@dataclass(frozen=True)
class NarrowRing:
    """The ring Z_(2^bits) for ``bits`` in 8..64, held in 32- or 64-bit words, bit-packed on the wire.

    Invariant: a vector *of this ring* is a 1-D array of the container's dtype
    whose every value is < 2^bits (:meth:`check`). Container arithmetic may
    leave values >= 2^bits; :meth:`reduce` brings them back, and doing so once
    after any number of additions gives the same result as reducing each time.
    """

    bits: int

    def __post_init__(self) -> None:
        check_fields(self, ints=("bits",))
        if not NARROW_MIN_BITS <= self.bits <= NARROW_MAX_BITS:
            raise ConfigurationError(
                f"narrow ring must be Z_(2^b) for b in {NARROW_MIN_BITS}..{NARROW_MAX_BITS}, got 2^{self.bits}"
            )

    @property
    def container(self) -> Ring:
        """The word ring whose elements hold this ring's: Z_(2^32) for bits <= 32, else Z_(2^64)."""
        return RING32 if self.bits <= 32 else RING64

    @property
    def modulus(self) -> int:
        """2^bits."""
        return 1 << self.bits

    @property
    def mask(self) -> int:
        """2^bits - 1: ``value & mask`` is ``value mod 2^bits``."""
        return self.modulus - 1

    @property
    def dtype(self) -> np.dtype[Any]:
        """The container's little-endian unsigned dtype."""
        return self.container.dtype

    def packed_size(self, length: int) -> int:
        """Bytes of ``length`` elements on the wire: ceil(length * bits / 8)."""
        return bitpack.packed_size(length, self.bits)

    def zeros(self, length: int) -> RingVector:
        """A zero vector of ``length`` elements."""
        return self.container.zeros(length)

    def reduce(self, vector: RingVector) -> RingVector:
        """Reduce a container vector mod 2^bits in place (a no-op for bits 32 and 64); returns it."""
        self.container.check(vector)
        if self.bits < self.container.bits:
            np.bitwise_and(vector, self.container.dtype.type(self.mask), out=vector)
        return vector

    def check(self, vector: npt.NDArray[Any], length: int | None = None) -> RingVector:
        """``vector`` if it is a container vector (of ``length``) with every value < 2^bits.

        ConfigurationError otherwise (as :meth:`Ring.check`: the caller built it).
        """
        self.container.check(vector, length)
        if self.bits < self.container.bits and vector.size and int(vector.max()) > self.mask:
            raise ConfigurationError(f"ring vector holds {int(vector.max())}, not an element of Z_(2^{self.bits})")
        return vector

    def sum(self, vectors: Iterable[RingVector], length: int) -> RingVector:
        """The ring sum of ``vectors``: added in the container, reduced once."""
        return self.reduce(self.container.sum(vectors, length))

    def pack(self, vector: RingVector) -> bytes:
        """The wire form of a vector of this ring: :func:`secagg.bitpack.pack` at ``bits`` bits."""
        return bitpack.pack(self.check(vector), self.bits)

    def unpack(self, data: bytes, length: int) -> RingVector:
        """A vector of ``length`` elements from its wire form; DecodeError on a wrong
        length or nonzero padding (every byte string has at most one reading)."""
        vector = bitpack.unpack(data, length, self.bits)
        if vector.dtype != self.dtype:  # bitpack's container rule is this ring's
            raise DecodeError(f"unpacked {vector.dtype}, expected {self.dtype}")
        return vector
