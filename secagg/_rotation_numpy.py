"""The numpy backend of :mod:`secagg.rotation` (docs/spec.md, section 18), with the sign stream
and the normalisation both backends use.

The compiled backend (:mod:`secagg._rotation_numba`) takes the sign bytes (:func:`sign_bytes`)
and the scale (:func:`normalisation`) from here; the butterflies here (:func:`hadamard_into`)
are the numpy backend: each stage is two numpy calls (a + b and a - b) in self-sorting
(Stockham) form (:func:`_stage`), on pieces of :data:`CACHE_BLOCK` doubles while they sit in
the L2 cache, and :func:`flip_signs` applies the signs by XORing the sign bit. Moved here
from :mod:`secagg.rotation`, which still exports every public name of this module.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import numpy.typing as npt

from secagg._validate import require_bytes
from secagg.primitives import prg
from secagg.ring import RING32

SEED_SIZE = prg.SEED_SIZE
SIGN_LABEL = b"secagg/v1/rotation"
"""The PRG label of the sign expansion (domain separation from every mask)."""
CACHE_BLOCK = 1 << 16
"""Doubles per cache-resident run (512 KiB; with its two scratch buffers 1.5 MiB, within a 2 MiB L2)."""
INV_SQRT2 = float.fromhex("0x1.6a09e667f3bcdp-1")
"""The double nearest to 1/sqrt(2) (C's M_SQRT1_2)."""

FloatVector = npt.NDArray[np.float64]
_LITTLE_ENDIAN = sys.byteorder == "little"


def normalisation(block: int) -> float:
    """The double nearest to 1/sqrt(block) for a power of two ``block = 2^k``:
    2^-(k//2), times the double nearest to 1/sqrt(2) when k is odd (scaling by a
    power of two is exact, so this is the correctly rounded value)."""
    k = block.bit_length() - 1
    return math.ldexp(INV_SQRT2 if k % 2 else 1.0, -(k // 2))


def sign_bytes(seed: bytes, length: int) -> npt.NDArray[np.uint8]:
    """The sign stream of the seed as bytes (at least ceil(length / 8)): bit i is bit ``i mod 8`` of byte ``i // 8``."""
    seed = require_bytes("rotation seed", seed, SEED_SIZE)
    words = prg.expand(seed, SIGN_LABEL, (length + 31) // 32, RING32)
    stream: npt.NDArray[np.uint8] = words.view(np.uint8)
    return stream


def sign_bits(seed: bytes, length: int) -> npt.NDArray[np.bool_]:
    """The ``length`` sign bits of the seed (True: the coordinate is negated)."""
    stream = sign_bytes(seed, length)
    bits: npt.NDArray[np.bool_] = np.unpackbits(stream, count=length, bitorder="little").view(np.bool_)
    return bits


def signs(seed: bytes, length: int) -> FloatVector:
    """The ``length`` signs (+1.0 or -1.0) of the seed: bit i of the sign stream set means -1."""
    out: FloatVector = 1.0 - 2.0 * sign_bits(seed, length).astype(np.float64)
    return out


def _stage(src: FloatVector, dst: FloatVector, axis: int) -> None:
    """One butterfly stage in self-sorting (Stockham) form, from ``src`` to ``dst`` along ``axis`` (0 or 1).

    Along the axis, of length n: dst[i] = src[2i] + src[2i + 1] and
    dst[n/2 + i] = src[2i] - src[2i + 1]. The pairs are those of the spec's
    stage on the lowest bit of the index; the output moves that bit to the top,
    so the next call pairs what was the next bit, and log2(n) calls leave the
    stages h = 1, 2, ..., n/2 done in the spec's order, in natural order.
    """
    half = src.shape[axis] // 2
    if axis == 0:
        a, b, low, high = src[0::2], src[1::2], dst[:half], dst[half:]
    else:
        a, b, low, high = src[:, 0::2], src[:, 1::2], dst[:, :half], dst[:, half:]
    np.add(a, b, out=low)
    np.subtract(a, b, out=high)


def _stages(source: FloatVector, target: FloatVector, axis: int, scratch: tuple[FloatVector, FloatVector]) -> None:
    """All log2(n) stages along ``axis`` of the 2-D ``source``, written to ``target`` (which may be ``source``).

    The first stage reads ``source``, the last writes ``target`` and the others
    alternate between two scratch buffers of the same shape, so no pass only
    copies (except for a single stage in place, which goes through a scratch).
    """
    count = source.shape[axis].bit_length() - 1
    if count == 1 and source is target:
        _stage(source, scratch[0], axis)
        target[...] = scratch[0]
        return
    for index in range(count):
        step_target = target if index == count - 1 else scratch[index % 2]
        _stage(source, step_target, axis)
        source = step_target


def flip_signs(values: FloatVector, seed: bytes) -> None:
    """Negate ``values[i]`` (contiguous, in place) where sign bit i of the seed is set: step 2 of the spec.

    Negating a double is flipping its sign bit, exactly what multiplying it by
    -1.0 does, so the bit of the sign stream is XORed into the top bit of the
    most significant byte of each little-endian double (one pass over bytes).
    """
    flips = sign_bits(seed, values.shape[0]).view(np.uint8) << np.uint8(7)
    top = values.view(np.uint8)[7 if _LITTLE_ENDIAN else 0 :: 8]
    np.bitwise_xor(top, flips, out=top)


def hadamard_in_place(blocks: FloatVector) -> None:
    """Apply the unnormalised Sylvester Hadamard matrix to each row of ``blocks`` (shape (n, B)), in place."""
    hadamard_into(blocks, blocks, 1.0)


def hadamard_into(source: FloatVector, target: FloatVector, scale: float) -> None:
    """``target`` = ``scale`` times the Hadamard transform of each row of ``source`` (both of shape (n, B)).

    Every stage computes the a + b and a - b of the spec's pairs (docs/spec.md,
    section 18) in the spec's order, and the scaling is one product per
    coordinate after the last stage, so the result is bit-identical to the direct
    butterflies; only the layout in between differs (:func:`_stage`). The work
    runs on pieces of at most :data:`CACHE_BLOCK` doubles while they sit in the L2
    cache: groups of whole rows when B <= CACHE_BLOCK; otherwise first the stages
    of the low bits, run by aligned run of CACHE_BLOCK (they pair coordinates
    within one run), then the stages of the high bits and the scaling, column
    strip by column strip of the (B / CACHE_BLOCK, CACHE_BLOCK) matrix of each
    row (they pair coordinates in one column). Python loops over stages and
    pieces, never over coordinates. ``source`` is only read (unless it is ``target``).
    """
    rows, width = source.shape
    if width <= CACHE_BLOCK:
        group = min(rows, CACHE_BLOCK // width)
        buffers = (np.empty((group, width)), np.empty((group, width)))
        for start in range(0, rows, group):
            piece = target[start : start + group]
            origin = piece if source is target else source[start : start + group]
            _stages(origin, piece, 1, (buffers[0][: len(piece)], buffers[1][: len(piece)]))
            if width == 1 and origin is not piece:
                piece[...] = origin
            if scale != 1.0:
                piece *= scale
        return
    runs, target_runs = source.reshape(-1, CACHE_BLOCK), target.reshape(-1, CACHE_BLOCK)
    buffers = (np.empty((1, CACHE_BLOCK)), np.empty((1, CACHE_BLOCK)))
    for start in range(runs.shape[0]):
        run = target_runs[start : start + 1]
        _stages(run if source is target else runs[start : start + 1], run, 1, buffers)
    height = width // CACHE_BLOCK
    strip = max(1, CACHE_BLOCK // height)
    buffers = (np.empty((height, strip)), np.empty((height, strip)))
    matrix = target.reshape(rows, height, CACHE_BLOCK)
    for row in range(rows):
        for start in range(0, CACHE_BLOCK, strip):
            piece = matrix[row, :, start : start + strip]
            _stages(piece, piece, 0, buffers)
            if scale != 1.0:
                piece *= scale
