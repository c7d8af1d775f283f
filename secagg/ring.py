"""The rings Z_(2^32) and Z_(2^64) in which masked vectors are summed.

numpy's unsigned integer arithmetic wraps modulo 2^bits, so ring addition and
subtraction of whole vectors are single vectorised numpy operations with no
reduction step. Elements are serialised as little-endian unsigned words.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg._validate import check_fields, require_int
from secagg.errors import ConfigurationError

__all__ = ["MAX_LENGTH", "RING32", "RING64", "Ring", "RingVector", "ring_from_bits"]

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
