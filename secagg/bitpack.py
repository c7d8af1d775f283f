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

Both directions are vectorised with word-level shifts: 8 values of b bits are
exactly b bytes, so the vector is cut into groups of 8 values and each of the b
byte columns of the packing is assembled with a few shifts and ORs of whole
value columns (a loop over at most 64 byte positions, never over values).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from secagg._validate import require_bytes, require_int
from secagg.errors import ConfigurationError, ConfigurationTypeError, DecodeError, EncodeError

__all__ = ["MAX_BITS", "MIN_BITS", "pack", "packed_size", "unpack"]

MIN_BITS = 1
MAX_BITS = 64
MAX_LENGTH = (1 << 32) - 1
"""Most values one call packs or unpacks (the wire format's u32 length)."""


def packed_size(length: int, bits: int) -> int:
    """ceil(length * bits / 8): the exact number of bytes of ``length`` packed ``bits``-bit values."""
    length = require_int("packed vector length", length, 0, MAX_LENGTH)
    bits = require_int("bits per value", bits, MIN_BITS, MAX_BITS)
    return (length * bits + 7) // 8


def _container(bits: int) -> np.dtype[Any]:
    return np.dtype("<u4") if bits <= 32 else np.dtype("<u8")


def _contributions(bits: int) -> list[tuple[int, list[tuple[int, int]]]]:
    """For each of the ``bits`` bytes of a group of 8 values, the (value index, shift) of
    every value with bits in that byte: byte p holds stream bits 8p..8p+7, and value i
    starts at stream bit i * bits; shift = 8p - i * bits (negative: shift left)."""
    table = []
    for p in range(bits):
        first, last = 8 * p // bits, min(7, (8 * p + 7) // bits)
        table.append((p, [(i, 8 * p - i * bits) for i in range(first, last + 1)]))
    return table


def pack(values: npt.NDArray[Any], bits: int) -> bytes:
    """The ``bits``-bit packing of ``values`` (a 1-D uint32 or uint64 array, every value < 2^bits).

    EncodeError if a value needs more than ``bits`` bits: truncating it silently
    would change the sum. ConfigurationError for a wrong array or ``bits``.

    Eight values of b bits are exactly b bytes, so the values are taken in groups
    of 8 (the last group padded with zeros) and each of the b byte columns of the
    output is assembled from the one or few value columns that overlap it: about
    2b numpy operations on d / 8 elements, whatever d is.
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
    length = values.shape[0]
    size = (length * bits + 7) // 8
    if bits % 8 == 0:  # whole bytes: the packing is the low bytes of each little-endian word
        words = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
        raw = words.view(np.uint8).reshape(-1, words.dtype.itemsize)
        return raw[:, : bits // 8].tobytes()
    count = -(-length // 8)
    flat = np.zeros(count * 8, dtype=np.uint64)
    flat[:length] = values
    lanes = flat.reshape(count, 8).T.copy()  # lanes[i] = value i of every group, contiguous
    out = np.empty((bits, count), dtype=np.uint8)
    column = np.empty(count, dtype=np.uint64)
    moved = np.empty(count, dtype=np.uint64)
    for p, parts in _contributions(bits):
        column.fill(0)
        for i, shift in parts:
            if shift >= 0:
                np.right_shift(lanes[i], np.uint64(shift), out=moved)
            else:
                np.left_shift(lanes[i], np.uint64(-shift), out=moved)
            np.bitwise_or(column, moved, out=column)
        out[p] = column  # the cast to uint8 keeps the low byte
    packed: bytes = out.T.tobytes()
    return packed[:size]


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
        unpacked: npt.NDArray[Any] = words.view(dtype).ravel()
        return unpacked
    count = -(-length // 8)
    padded = np.zeros(count * bits, dtype=np.uint8)
    padded[:size] = raw
    columns = padded.reshape(count, bits).T.astype(np.uint64, order="C")  # columns[p]: byte p of each group
    lanes = np.zeros((8, count), dtype=np.uint64)
    moved = np.empty(count, dtype=np.uint64)
    for p, parts in _contributions(bits):
        for i, shift in parts:
            if shift >= 0:
                np.left_shift(columns[p], np.uint64(shift), out=moved)
            else:
                np.right_shift(columns[p], np.uint64(-shift), out=moved)
            np.bitwise_or(lanes[i], moved, out=lanes[i])
    lanes &= np.uint64((1 << bits) - 1)
    out: npt.NDArray[Any] = lanes.T.reshape(-1)[:length].astype(dtype)
    return out
