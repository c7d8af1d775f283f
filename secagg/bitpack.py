"""Bit packing: d unsigned integers of b bits each in exactly ceil(d * b / 8) bytes.

Why: a masked vector over Z_(2^b) is uniform in b bits per coordinate, so any
byte spent beyond b bits is wasted on the wire (a 12-bit ring in 32-bit words
costs 2.7 times what it must). The packing is the wire form of narrow rings.

Bit order (docs/spec.md, "Bit packing"), LSB-first little-endian:

    bit j of value i (j = 0 is its least significant bit) is stream bit i * b + j;
    stream bit k is bit (k mod 8) of byte floor(k / 8) (bit 0 = least significant).

This is what concatenating the values as little-endian integers would give if
each took exactly b bits: for b = 8, 16, 32, 64 the output equals the values'
little-endian bytes. The last byte's unused high bits (``8 * len - d * b`` of
them, 0..7) are zero, and :func:`unpack` refuses a nonzero one, so every vector
has exactly one encoding (canonical, like the rest of the wire format).

Both directions are vectorised: the values are split into their b bits with one
numpy shift-and-mask over a (d, b) array and ``np.packbits(bitorder="little")``
(and back). That costs d * b bytes of scratch, so long vectors go through in
chunks of :data:`CHUNK_VALUES` (a multiple of 8 values is a whole number of
bytes for every b, so chunks concatenate exactly).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from secagg._validate import require_bytes, require_int
from secagg.errors import ConfigurationError, ConfigurationTypeError, DecodeError, EncodeError

__all__ = ["CHUNK_VALUES", "MAX_BITS", "MIN_BITS", "pack", "packed_size", "unpack"]

MIN_BITS = 1
MAX_BITS = 64
CHUNK_VALUES = 1 << 16
"""Values per chunk: 2^16 values x 64 bits is 4 MiB of bit scratch at most."""
MAX_LENGTH = (1 << 32) - 1
"""Most values one call packs or unpacks (the wire format's u32 length)."""


def packed_size(length: int, bits: int) -> int:
    """ceil(length * bits / 8): the exact number of bytes of ``length`` packed ``bits``-bit values."""
    length = require_int("packed vector length", length, 0, MAX_LENGTH)
    bits = require_int("bits per value", bits, MIN_BITS, MAX_BITS)
    return (length * bits + 7) // 8


def _container(bits: int) -> np.dtype[Any]:
    return np.dtype("<u4") if bits <= 32 else np.dtype("<u8")


def _shifts(bits: int) -> npt.NDArray[np.uint64]:
    return np.arange(bits, dtype=np.uint64)


def pack(values: npt.NDArray[Any], bits: int) -> bytes:
    """The ``bits``-bit packing of ``values`` (a 1-D uint32 or uint64 array, every value < 2^bits).

    EncodeError if a value needs more than ``bits`` bits: truncating it silently
    would change the sum. ConfigurationError for a wrong array or ``bits``.
    """
    bits = require_int("bits per value", bits, MIN_BITS, MAX_BITS)
    if not isinstance(values, np.ndarray) or values.ndim != 1:
        raise ConfigurationTypeError("bit packing needs a one-dimensional numpy array")
    if values.dtype.kind != "u" or values.dtype.itemsize not in (4, 8):
        raise ConfigurationTypeError(f"bit packing needs uint32 or uint64 values, got {values.dtype}")
    if values.shape[0] > MAX_LENGTH:
        raise ConfigurationError(f"bit packing takes at most {MAX_LENGTH} values, got {values.shape[0]}")
    if bits < 8 * values.dtype.itemsize and values.size and int(values.max()) >> bits:
        raise EncodeError(f"value {int(values.max())} does not fit in {bits} bits")
    if bits % 8 == 0:  # whole bytes: the packing is the low bytes of each little-endian word
        words = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
        raw = words.view(np.uint8).reshape(-1, words.dtype.itemsize)
        return raw[:, : bits // 8].tobytes()
    shifts = _shifts(bits)
    parts = []
    for start in range(0, values.shape[0], CHUNK_VALUES):
        chunk = values[start : start + CHUNK_VALUES].astype(np.uint64)
        bit_matrix = ((chunk[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)
        parts.append(np.packbits(bit_matrix.ravel(), bitorder="little").tobytes())
    return b"".join(parts)


def unpack(data: bytes, length: int, bits: int) -> npt.NDArray[Any]:
    """The ``length`` values of ``bits`` bits packed in ``data``, as uint32 (bits <= 32) or uint64.

    DecodeError unless ``data`` is exactly :func:`packed_size` bytes with zero
    padding bits: untrusted wire input has exactly one accepted form. Values are
    < 2^bits by construction, so no value check is needed after unpacking.
    """
    data = require_bytes("packed vector", data)
    size = packed_size(length, bits)
    if len(data) != size:
        raise DecodeError(f"packed vector of {length} {bits}-bit values must be {size} bytes, got {len(data)}")
    spare = 8 * size - length * bits
    if spare and data[-1] >> (8 - spare):
        raise DecodeError(f"packed vector has nonzero padding in the top {spare} bits of its last byte")
    dtype = _container(bits)
    raw = np.frombuffer(data, dtype=np.uint8)
    if bits % 8 == 0:
        width = bits // 8
        words = np.zeros((length, dtype.itemsize), dtype=np.uint8)
        words[:, :width] = raw.reshape(length, width)
        out: npt.NDArray[Any] = words.view(dtype).ravel()
        return out
    out = np.empty(length, dtype=dtype)
    weights = np.uint64(1) << _shifts(bits)
    for start in range(0, length, CHUNK_VALUES):
        count = min(CHUNK_VALUES, length - start)
        first = start * bits // 8  # start is a multiple of 8: a whole byte offset
        chunk_bytes = raw[first : first + (count * bits + 7) // 8]
        bit_matrix = np.unpackbits(chunk_bytes, count=count * bits, bitorder="little").reshape(count, bits)
        # A dot product of bits with powers of two would overflow float64 above
        # 2^53; multiply-and-sum in uint64 is exact (each term is 0 or 2^j).
        out[start : start + count] = (bit_matrix.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
    return out
