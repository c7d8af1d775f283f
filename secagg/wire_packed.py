"""The wire codec of a bit-packed ring vector (spec sections 12 and 17).

``u8 b || u32 d || ceil(d * b / 8) bytes``: the ring width b in 8..64, the
element count d, then the d values packed b bits each, least significant bit
first (:mod:`secagg.bitpack`), the last byte's unused high bits zero. At b = 32
and b = 64 the packed values are the little-endian words, so the bytes are
exactly those of :class:`secagg.wire.RingArray`: a message that switches codec
keeps its encoding for the word rings.

The value is a :class:`secagg.ring.PackedVector` (width and values), so that a
message has exactly one encoding and a receiver sees which ring the sender
used. Decoding refuses a width outside 8..64, a count beyond the limit, a body
of the wrong length or nonzero padding, and raises only DecodeError.
"""

from __future__ import annotations

import numpy as np

from secagg import bitpack
from secagg.errors import ConfigurationError, DecodeError, EncodeError
from secagg.ring import NARROW_MAX_BITS, NARROW_MIN_BITS, PackedVector
from secagg.wire import U8, U32, Codec, Parts, Reader

__all__ = ["PackedRingArray"]


class PackedRingArray(Codec[PackedVector]):
    """A vector of Z_(2^b), b in 8..64: u8 b, u32 count, the values packed b bits each."""

    def __init__(self, max_length: int = 1 << 30) -> None:
        self.max_length = max_length
        self.description = "u8 ring bits (8..64) + u32 count + values packed LSB first, ceil(count * bits / 8) bytes"

    def encode(self, value: PackedVector, out: Parts) -> None:
        if not isinstance(value, PackedVector):
            raise EncodeError(f"packed ring array field needs a PackedVector, got {type(value).__name__}")
        if value.values.shape[0] > self.max_length:
            raise EncodeError(f"packed ring array of {value.values.shape[0]} elements exceeds {self.max_length}")
        U8.encode(value.bits, out)
        U32.encode(value.values.shape[0], out)
        if value.bits in (32, 64):  # the words themselves, without a copy
            out.append(np.ascontiguousarray(value.values).data.cast("B"))
        else:
            out.append(bitpack.pack(value.values, value.bits))

    def decode(self, reader: Reader) -> PackedVector:
        bits = U8.decode(reader)
        if not NARROW_MIN_BITS <= bits <= NARROW_MAX_BITS:
            raise DecodeError(
                f"packed ring array has ring size 2^{bits}; expected 2^b for b in {NARROW_MIN_BITS}..{NARROW_MAX_BITS}"
            )
        length = U32.decode(reader)
        if length > self.max_length:
            raise DecodeError(f"packed ring array of {length} elements exceeds the limit {self.max_length}")
        size = bitpack.packed_size(length, bits)
        if size > reader.remaining:
            raise DecodeError(f"packed ring array needs {size} bytes, {reader.remaining} left")
        body = reader.take_view(size)
        if bits in (32, 64):  # a read-only view of the message bytes: no copy of a large vector
            values = np.frombuffer(body, dtype=np.dtype("<u4") if bits == 32 else np.dtype("<u8"))
        else:
            values = bitpack.unpack(bytes(body), length, bits)
        try:
            return PackedVector(bits, values)
        except ConfigurationError as exc:  # unreachable after unpack's checks; kept as a DecodeError
            raise DecodeError(f"packed ring array: {exc}") from exc
