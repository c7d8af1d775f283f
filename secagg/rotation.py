"""Randomized Walsh-Hadamard rotation, applied before quantization and undone after the sum.

Why: an update whose energy sits in a few coordinates needs many quantization
bits, since the clip must cover the largest coordinate while the step must
resolve the small ones. A random rotation spreads every vector's energy evenly
over all coordinates (each rotated coordinate is close to Gaussian with variance
||x||^2 / D), so the clip can be set from the norm and a few bits per coordinate
suffice. The rotation is orthogonal and linear, so the server inverts it once,
on the aggregate: ``inverse(sum_i forward(x_i)) = sum_i x_i`` (up to rounding).

Construction (docs/spec.md, section 18), for a public 32-byte per-round seed:

1. pad x (length d) with zeros to ``D = blocks * B`` coordinates, B the block
   size (a power of two; by default the next power of two >= d, one block);
2. multiply coordinate i by a sign s_i = +1 or -1: s_i = -1 exactly when bit
   ``i mod 8`` of byte ``floor(i / 8)`` of the PRG expansion of the seed under the
   label :data:`SIGN_LABEL` is set (bit 0 = least significant);
3. in each block, apply the butterflies of the Sylvester-ordered Hadamard matrix
   for h = 1, 2, 4, ..., B/2: every pair (j, j + h) with ``j mod 2h < h`` becomes
   (a + b, a - b); then multiply by the double nearest to 1/sqrt(B).

The inverse applies step 3 again (the normalised Hadamard matrix is its own
inverse), then the signs, and drops the padding. Every float operation is a
single IEEE-754 binary64 operation in a fixed order, so outputs are bit-exact
across implementations that follow the order; the inverse recovers x up to a
relative error of about ``log2(B) * 2^-53`` (tests use 1e-12).

Cost: log2(B) butterfly stages over D doubles, vectorised (a stage reshapes the
vector to (-1, 2, h) and writes sums and differences), two stages per pass,
the low-bit stages of long blocks run on cache-resident runs and a transposed
copy; the Python loops are over stages and runs, never over coordinates.

Block size: B trades padding for mixing. One block (the default) mixes all
coordinates but pads up to 2x (d = 10^6 pads to 2^20 = 1,048,576, 4.9%; d =
2^20 + 1 would pad to 2^21). Blocks of 2^k pad by less than 2^k coordinates and
spread energy only within each block, which is enough when each block holds many
coordinates (the bound on a rotated coordinate depends on the block's norm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from secagg._validate import check_fields, require_bytes
from secagg.errors import ConfigurationError, ConfigurationTypeError
from secagg.primitives import prg
from secagg.ring import RING32

__all__ = ["MAX_BLOCK", "MAX_DIMENSION", "PARAMETER_PREFIX", "SEED_SIZE", "SIGN_LABEL", "Rotation"]

SEED_SIZE = prg.SEED_SIZE
SIGN_LABEL = b"secagg/v1/rotation"
"""The PRG label of the sign expansion (domain separation from every mask)."""
PARAMETER_PREFIX = "secagg.rotation."
"""Prefix of the rotation's entries in the session descriptor's bound parameters."""
TRANSFORM = "walsh-hadamard/v1"
MAX_DIMENSION = (1 << 32) - 1
MAX_BLOCK = 1 << 32
CACHE_BLOCK = 1 << 16
"""Doubles per cache-resident run (512 KiB: with its transposed copy and scratch, within a 2 MiB L2)."""
TRANSPOSE_MIN_BITS = 6
"""Blocks of 2^12 or more coordinates use the transposed layout for their low-bit stages."""
INV_SQRT2 = float.fromhex("0x1.6a09e667f3bcdp-1")
"""The double nearest to 1/sqrt(2) (C's M_SQRT1_2)."""

FloatVector = npt.NDArray[np.float64]


def _next_power_of_two(value: int) -> int:
    return 1 << max(0, (value - 1).bit_length())


def normalisation(block: int) -> float:
    """The double nearest to 1/sqrt(block) for a power of two ``block = 2^k``:
    2^-(k//2), times the double nearest to 1/sqrt(2) when k is odd (scaling by a
    power of two is exact, so this is the correctly rounded value)."""
    k = block.bit_length() - 1
    return math.ldexp(INV_SQRT2 if k % 2 else 1.0, -(k // 2))


def sign_bits(seed: bytes, length: int) -> npt.NDArray[np.bool_]:
    """The ``length`` sign bits of the seed (True: the coordinate is negated)."""
    seed = require_bytes("rotation seed", seed, SEED_SIZE)
    words = prg.expand(seed, SIGN_LABEL, (length + 31) // 32, RING32)
    bits: npt.NDArray[np.bool_] = np.unpackbits(words.view(np.uint8), count=length, bitorder="little").view(np.bool_)
    return bits


def signs(seed: bytes, length: int) -> FloatVector:
    """The ``length`` signs (+1.0 or -1.0) of the seed: bit i of the sign stream set means -1."""
    out: FloatVector = 1.0 - 2.0 * sign_bits(seed, length).astype(np.float64)
    return out


def _butterflies(blocks: FloatVector, first_h: int, stages: int) -> None:
    """Stages h = first_h, 2 first_h, ... (``stages`` of them) on each row of ``blocks``.

    Stage h views each row as (B / 2h, 2, h) and turns each pair of h-runs (a, b)
    into (a + b, a - b). Two stages at a time (radix 4: runs a, b, c, d become
    a+b, a-b, c+d, c-d, then stage 2h pairs the first with the third and the
    second with the fourth) halve the passes over memory; the operations, their
    operands and their order are those of the two radix-2 stages, so the
    doubles are the same. A scratch of D/4 doubles is reused by every stage.
    """
    rows, width = blocks.shape
    runs = rows * width
    scratch = np.empty(runs // 4 if stages > 1 else 0, dtype=np.float64)
    h = first_h
    for _ in range(stages // 2):
        view = blocks.reshape(runs // (4 * h), 4, h)
        a, b, c, d = view[:, 0, :], view[:, 1, :], view[:, 2, :], view[:, 3, :]
        t = scratch.reshape(a.shape)
        np.add(a, b, out=t)  # t = a + b (stage h)
        np.subtract(a, b, out=b)  # b = a - b
        np.add(c, d, out=a)  # a = c + d
        np.subtract(c, d, out=d)  # d = c - d
        np.subtract(t, a, out=c)  # stage 2h: c' = (a + b) - (c + d)
        np.add(t, a, out=a)  # a' = (a + b) + (c + d)
        np.subtract(b, d, out=t)  # d' = (a - b) - (c - d)
        np.add(b, d, out=b)  # b' = (a - b) + (c - d)
        d[...] = t
        h *= 4
    if stages % 2:
        view = blocks.reshape(runs // (2 * h), 2, h)
        first, second = view[:, 0, :], view[:, 1, :]
        difference = first - second
        first += second
        second[...] = difference


def _hadamard_rows(blocks: FloatVector) -> None:
    """All stages on each row of ``blocks``, low-bit stages on a transposed copy when rows are long.

    A stage on a low bit pairs neighbours (h = 1, 2, ...): numpy then works on
    tiny strided runs, several times slower per element than on long ones. So
    for rows of 2^12 or more the index i = r * m1 + c is split in its low bits c
    and high bits r: the low-bit stages run on the transposed (c, r) layout,
    where they pair runs of m2 = B / m1 contiguous doubles, and the high-bit
    stages on the original layout, where they pair runs of m1 or more.
    """
    rows, width = blocks.shape
    k = width.bit_length() - 1
    if k < 2 * TRANSPOSE_MIN_BITS:
        _butterflies(blocks, 1, k)
        return
    low = k // 2
    m1, m2 = 1 << low, 1 << (k - low)
    swapped = np.ascontiguousarray(blocks.reshape(rows, m2, m1).transpose(0, 2, 1)).reshape(rows, width)
    _butterflies(swapped, m2, low)  # bit j < low of i is bit j + (k - low) of the swapped index
    blocks[...] = swapped.reshape(rows, m1, m2).transpose(0, 2, 1).reshape(rows, width)
    _butterflies(blocks, m1, k - low)


def hadamard_in_place(blocks: FloatVector) -> None:
    """Apply the unnormalised Sylvester Hadamard matrix to each row of ``blocks`` (shape (n, B)).

    Stage j pairs the coordinates whose indices differ in bit j, for j = 0, 1, ...
    For blocks longer than :data:`CACHE_BLOCK` the stages of the low bits, which
    pair coordinates within one aligned run of CACHE_BLOCK, run run by run while
    it sits in the L2 cache; the remaining stages then run over the whole
    vector. Every stage still computes the same a + b and a - b of the same
    pairs in the same order, so the result is bit-identical to the direct
    butterflies of docs/spec.md, section 18, only faster (2-3x at d = 10^6).
    """
    width = blocks.shape[1]
    if width <= CACHE_BLOCK:
        _hadamard_rows(blocks)
        return
    runs = blocks.reshape(-1, CACHE_BLOCK)
    for start in range(runs.shape[0]):
        _hadamard_rows(runs[start : start + 1])
    _butterflies(blocks, CACHE_BLOCK, width.bit_length() - CACHE_BLOCK.bit_length())


@dataclass(frozen=True)
class Rotation:
    """The rotation of ``dimension``-long vectors for one round's public ``seed``.

    Attributes:
        seed: 32 public bytes, fresh per round and bound in the session descriptor.
        dimension: d, the length of the vectors rotated (1..2^32 - 1).
        block: the block size B, a power of two; None (the default) means one
            block, the next power of two >= d. Normalised to the resolved size,
            so two rotations compare equal exactly when they rotate alike.
    """

    seed: bytes
    dimension: int
    block: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "seed", require_bytes("rotation seed", self.seed, SEED_SIZE))
        check_fields(self, ints=("dimension",), optional_ints=("block",))
        if not 1 <= self.dimension <= MAX_DIMENSION:
            raise ConfigurationError(f"rotation dimension must be in 1..{MAX_DIMENSION}, got {self.dimension}")
        block = _next_power_of_two(self.dimension) if self.block is None else self.block
        if not 1 <= block <= MAX_BLOCK or block & (block - 1):
            raise ConfigurationError(f"rotation block must be a power of two in 1..2^32, got {block}")
        object.__setattr__(self, "block", block)

    @property
    def block_size(self) -> int:
        """B, the resolved block size."""
        assert self.block is not None  # resolved in __post_init__
        return self.block

    @property
    def padded_dimension(self) -> int:
        """D = ceil(d / B) * B: the length of a rotated vector (what is quantized and sent)."""
        return -(-self.dimension // self.block_size) * self.block_size

    def forward(self, x: npt.ArrayLike) -> FloatVector:
        """The rotated vector (length :attr:`padded_dimension`) of ``x`` (length d)."""
        vector = self._as_vector(x, self.dimension, "input")
        out = np.zeros(self.padded_dimension, dtype=np.float64)
        out[: self.dimension] = vector
        # Negating where the sign is -1 is multiplying by it, exactly, in one pass.
        np.negative(out, out=out, where=sign_bits(self.seed, self.padded_dimension))
        return self._transform(out)

    def inverse(self, y: npt.ArrayLike) -> FloatVector:
        """The original-length vector whose rotation is ``y`` (length :attr:`padded_dimension`).

        Linear: applied to a sum of rotations it gives the sum of the originals,
        which is how the server decodes an aggregate.
        """
        out = self._transform(self._as_vector(y, self.padded_dimension, "rotated vector").copy())
        np.negative(out, out=out, where=sign_bits(self.seed, self.padded_dimension))
        result: FloatVector = out[: self.dimension].copy()
        return result

    def descriptor_parameters(self) -> dict[str, int | bytes | str]:
        """The entries that bind this rotation in the session descriptor's parameters.

        Everything a client needs to rotate exactly as the others do: a server
        that gave two hospitals different seeds would otherwise sum vectors in
        different bases. Keys are prefixed :data:`PARAMETER_PREFIX`.
        """
        return {
            PARAMETER_PREFIX + "transform": TRANSFORM,
            PARAMETER_PREFIX + "seed": self.seed,
            PARAMETER_PREFIX + "dimension": self.dimension,
            PARAMETER_PREFIX + "block": self.block_size,
        }

    def _transform(self, padded: FloatVector) -> FloatVector:
        hadamard_in_place(padded.reshape(-1, self.block_size))
        padded *= normalisation(self.block_size)
        return padded

    @staticmethod
    def _as_vector(values: npt.ArrayLike, length: int, what: str) -> FloatVector:
        try:
            vector = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ConfigurationTypeError(f"rotation {what} must be numeric: {exc}") from exc
        if vector.ndim != 1 or vector.shape[0] != length:
            raise ConfigurationError(
                f"rotation {what} must be a 1-D vector of {length} values, got shape {vector.shape}"
            )
        if not np.all(np.isfinite(vector)):
            raise ConfigurationError(f"rotation {what} holds NaN or infinite values")
        result: FloatVector = vector
        return result
