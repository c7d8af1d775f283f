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

Both directions are vectorised, with Python loops over at most 8 lanes, never
over values. Eight values of b bits are exactly b bytes, so value 8g + i
starts at byte ``b * g + floor(i * b / 8)`` and bit ``(i * b) mod 8`` of it.
Widths of 8, 16, 32 and 64 bits are plain little-endian words; for the other
whole-byte widths packing takes the low bytes of each word and unpacking reads a
64-bit word at every b/8-th byte and masks it. Other widths from 8
up work on *lanes* (value i of every group of 8): a numpy view reads or
writes a little-endian 64-bit word at that byte of every group (an unaligned
strided view, stride b bytes), so unpacking a lane is one gather, one shift and
one mask, and packing ORs the shifted lane into the zeroed output; when
``k * b + 7 <= 64`` the k lanes i..i+k-1 (k = 4 or 2) share one word, so a
group costs 8 / k such passes. Widths under 8 (not narrow rings) go through
single bits.
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


def _lanes_per_word(bits: int) -> int:
    """k in {4, 2, 1}: k consecutive values of ``bits`` bits, starting at any bit of a byte, fit in a 64-bit word."""
    return next(k for k in (4, 2, 1) if k * bits + 7 <= 64 or k == 1)


def _words(buffer: npt.NDArray[np.uint8], offset: int, count: int, stride: int) -> npt.NDArray[np.uint64]:
    """The little-endian 64-bit words at bytes offset, offset + stride, ... of ``buffer`` (a view, maybe unaligned)."""
    words: npt.NDArray[np.uint64] = np.ndarray((count,), dtype="<u8", buffer=buffer, offset=offset, strides=(stride,))
    return words


def _pack_lanes(values: npt.NDArray[Any], bits: int, size: int) -> bytes:
    """The packing for 8 <= bits <= 64: lanes ORed into 64-bit words of a zeroed buffer (module docstring)."""
    length = values.shape[0]
    count = -(-length // 8)
    buffer = np.zeros(count * bits + 16, dtype=np.uint8)  # room for a word read at the last group's last lane
    word, part = np.empty(count, dtype=np.uint64), np.empty(count, dtype=np.uint64)
    step = _lanes_per_word(bits)
    for first in range(0, 8, step):
        offset, shift = divmod(first * bits, 8)
        lanes = -(-(length - first) // 8)  # groups holding value ``first`` (the last group may be short)
        if lanes <= 0:
            break
        for i in range(first, first + step):
            lane = values[i::8]
            target = word[: lane.shape[0]]
            if i == first:
                target[...] = lane
                target <<= np.uint64(shift)
            else:
                part[: lane.shape[0]] = lane
                part[: lane.shape[0]] <<= np.uint64(shift + (i - first) * bits)
                target |= part[: lane.shape[0]]
        view = _words(buffer, offset, lanes, bits)
        view |= word[:lanes]
        if shift + bits > 64:  # one value of 58..63 bits starting late in its byte: its top bits in the next word
            high = values[first::8].astype(np.uint64) >> np.uint64(64 - shift)
            view = _words(buffer, offset + 8, lanes, bits)
            view |= high
    packed: bytes = buffer[:size].tobytes()
    return packed


def _unpack_lanes(raw: npt.NDArray[np.uint8], length: int, bits: int, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """The values of a packing for 8 <= bits <= 64.

    ``raw`` holds the packed bytes, zero-extended to whole groups and 16 more
    bytes, so every word a lane reads lies inside it.
    """
    count = -(-length // 8)
    out = np.empty((8, count), dtype=dtype)
    word, lane, high = (np.empty(count, dtype=np.uint64) for _ in range(3))
    mask = np.uint64((1 << bits) - 1) if bits < 64 else None
    step = _lanes_per_word(bits)
    for first in range(0, 8, step):
        offset, shift = divmod(first * bits, 8)
        word[...] = _words(raw, offset, count, bits)
        for i in range(first, first + step):
            np.right_shift(word, np.uint64(shift + (i - first) * bits), out=lane)
            if shift + bits > 64:
                np.left_shift(_words(raw, offset + 8, count, bits), np.uint64(64 - shift), out=high)
                lane |= high
            if mask is not None:
                lane &= mask
            out[i] = lane
    unpacked: npt.NDArray[Any] = out.T.reshape(-1)[:length]
    return unpacked


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
    if bits in (8, 16, 32, 64):  # whole words: the values' little-endian words of b bits
        return values.astype(f"<u{bits // 8}", copy=False).tobytes()
    if bits % 8 == 0:  # whole bytes (24, 40, 48, 56): the low bytes of each little-endian word
        words = values.astype(_container(bits), copy=False)  # at least b / 8 bytes a word, whatever the input
        return words.view(np.uint8).reshape(length, words.itemsize)[:, : bits // 8].tobytes()
    if bits < 8:  # single bits, least significant first
        planes = (values[:, None] >> np.arange(bits, dtype=values.dtype)) & values.dtype.type(1)
        return np.packbits(planes.astype(np.uint8).ravel(), bitorder="little").tobytes()
    return _pack_lanes(values, bits, size)


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
    if length == 0:
        return np.zeros(0, dtype=dtype)
    if bits in (8, 16, 32, 64):
        whole: npt.NDArray[Any] = np.frombuffer(data, dtype=f"<u{bits // 8}").astype(dtype)
        return whole
    if bits < 8:
        planes = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=length * bits, bitorder="little")
        weights = (1 << np.arange(bits, dtype=np.uint32)).astype(dtype)
        small: npt.NDArray[Any] = planes.reshape(length, bits).astype(dtype) @ weights
        return small
    raw = np.zeros(-(-length // 8) * bits + 16, dtype=np.uint8)
    raw[:size] = np.frombuffer(data, dtype=np.uint8)
    if bits % 8 == 0:  # whole bytes (24, 40, 48, 56): value i is the low b bits of the word at byte i * b / 8
        words = np.empty(length, dtype=np.uint64)
        words[...] = _words(raw, 0, length, bits // 8)
        words &= np.uint64((1 << bits) - 1)
        bytewise: npt.NDArray[Any] = words.astype(dtype, copy=False)
        return bytewise
    return _unpack_lanes(raw, length, bits, dtype)
