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

Cost: log2(B) butterfly stages over D doubles, run by one of two backends that
give the same bits (:func:`backend`; ``SECAGG_ROTATION_BACKEND=auto|numba|numpy``):

- numba (the ``fast`` extra, :mod:`secagg._rotation_numba`, whose docstring gives
  the schedule; picked where numba imports): one compiled kernel pads, signs and
  runs every stage, checking the input's finiteness on the way. Compiled on a
  process's first rotation (a few seconds; cached on disk where it can be). At
  d = 10^6 a forward rotation takes about 4-5 ms, about one client's masking of
  the same vector with 4 pairwise masks (5 hospitals, complete graph) and a
  fifth of SecAgg+ masking at n = 100 (docs/benchmarks.md).
- numpy (the fallback): each stage is two numpy calls (a + b and a - b) in
  self-sorting (Stockham) form, on pieces of 2^16 doubles while they sit in
  the L2 cache; signs are applied by XORing the sign bit
  (:mod:`secagg._rotation_numpy`, with the sign stream and the normalisation
  both backends use). About 18 ms at d = 10^6, 4x the numba kernel.

Overflow: a finite input whose butterflies leave binary64 is refused (one sum
over the output after either backend), never returned as infinities.

Block size: B trades padding for mixing. One block (the default) mixes all
coordinates but pads up to 2x (d = 10^6 pads to 2^20 = 1,048,576, 4.9%; d =
2^20 + 1 would pad to 2^21). Blocks of 2^k pad by less than 2^k coordinates and
spread energy only within each block, which is enough when each block holds many
coordinates (the bound on a rotated coordinate depends on the block's norm).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg import _rotation_numpy
from secagg._install import install_hint
from secagg._rotation_numpy import (
    SEED_SIZE,
    SIGN_LABEL,
    FloatVector,
    flip_signs,
    hadamard_into,
    normalisation,
    sign_bytes,
)
from secagg._validate import check_fields, require_bytes
from secagg.errors import ConfigurationError, ConfigurationTypeError

__all__ = [
    "BACKENDS",
    "BACKEND_VARIABLE",
    "MAX_BLOCK",
    "MAX_DIMENSION",
    "PARAMETER_PREFIX",
    "SEED_SIZE",
    "SIGN_LABEL",
    "Rotation",
    "backend",
    "largest_block",
]

PARAMETER_PREFIX = "secagg.rotation."
"""Prefix of the rotation's entries in the session descriptor's bound parameters."""
TRANSFORM = "walsh-hadamard/v1"
MAX_DIMENSION = (1 << 32) - 1
MAX_BLOCK = 1 << 32

BACKEND_VARIABLE = "SECAGG_ROTATION_BACKEND"
"""The environment variable that picks the backend: ``auto`` (the default), ``numba`` or ``numpy``."""
BACKENDS = ("numba", "numpy")

_compiled: list[ModuleType | None] = []
"""The compiled backend's module once :func:`_numba_module` has tried to import it (None: numba is missing)."""


def _numba_module() -> ModuleType | None:
    """:mod:`secagg._rotation_numba`, imported on the first call (None where numba does not import)."""
    if not _compiled:
        try:
            from secagg import _rotation_numba  # noqa: PLC0415 - numba is optional and slow to import
        except ImportError:
            _compiled.append(None)
        else:
            _compiled.append(_rotation_numba)
    return _compiled[0]


def backend() -> str:
    """The backend the rotation runs on now: ``"numba"`` or ``"numpy"``; both give the same bits.

    ``SECAGG_ROTATION_BACKEND`` (read at every rotation) picks it: ``auto`` or
    unset, numba where it imports (the ``fast`` extra), else numpy; ``numba``
    requires numba (ConfigurationError without it); ``numpy`` never imports numba.
    The numba kernels compile on the first rotation of a process (a few seconds
    once, then cached on disk where numba finds a writable cache directory).
    """
    choice = os.environ.get(BACKEND_VARIABLE, "").strip().lower() or "auto"
    if choice not in ("auto", *BACKENDS):
        raise ConfigurationError(f"{BACKEND_VARIABLE} must be auto, numba or numpy, got {choice!r}")
    if choice == "numpy":
        return "numpy"
    if _numba_module() is None:
        if choice == "numba":
            raise ConfigurationError(f"{BACKEND_VARIABLE}=numba but numba does not import: {install_hint('fast')}")
        return "numpy"
    return "numba"


def _kernel() -> ModuleType | None:
    """The compiled backend's module if :func:`backend` picks numba, else None."""
    return _numba_module() if backend() == "numba" else None


def _next_power_of_two(value: int) -> int:
    return 1 << max(0, (value - 1).bit_length())


def largest_block(dimension: int) -> int:
    """The largest block of use for ``dimension`` values: one block, the next power of two >= ``dimension``.

    :class:`Rotation` takes any power of two up to :data:`MAX_BLOCK`, but a larger block than
    this adds only padding (up to 2^32 zeros rotated, encoded and masked for a small model); the
    Flower node (from the server's setup) and :class:`fl_core.rotated.RotatedAggregator` (from its
    caller) refuse a block above it."""
    return _next_power_of_two(dimension)


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
        kernel = _kernel()
        vector = self._as_vector(x, self.dimension, "input", check=kernel is None)
        out = np.empty(self.padded_dimension, dtype=np.float64)
        block = self.block_size
        if kernel is not None:  # padding, signs, butterflies and scale in one compiled pass
            stream = sign_bytes(self.seed, self.padded_dimension)
            if not kernel.rotate(np.ascontiguousarray(vector), out, block, normalisation(block), stream, True, False):
                self._check_finite(vector, "input")  # the kernel saw an infinity or a NaN, or an overflow
        else:
            out[: self.dimension] = vector
            out[self.dimension :] = 0.0
            flip_signs(out, self.seed)
            blocks = out.reshape(-1, block)  # one object: hadamard_into works in place when source is target
            with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused below
                hadamard_into(blocks, blocks, normalisation(block))
        self._check_overflow(out, "input")
        return out

    def inverse(self, y: npt.ArrayLike) -> FloatVector:
        """The original-length vector whose rotation is ``y`` (length :attr:`padded_dimension`).

        Linear: applied to a sum of rotations it gives the sum of the originals,
        which is how the server decodes an aggregate.
        """
        kernel = _kernel()
        vector = self._as_vector(y, self.padded_dimension, "rotated vector", check=kernel is None)
        out = np.empty(self.padded_dimension, dtype=np.float64)
        block = self.block_size
        if kernel is not None:  # butterflies, then scale and signs in one compiled pass
            stream = sign_bytes(self.seed, self.padded_dimension)
            if not kernel.rotate(np.ascontiguousarray(vector), out, block, normalisation(block), stream, False, True):
                self._check_finite(vector, "rotated vector")
        else:
            with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused below
                hadamard_into(vector.reshape(-1, block), out.reshape(-1, block), normalisation(block))
            flip_signs(out, self.seed)
        self._check_overflow(out, "rotated vector")
        result: FloatVector = out[: self.dimension]  # a view: the padding (under B doubles) is not copied away
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

    @staticmethod
    def _as_vector(values: npt.ArrayLike, length: int, what: str, check: bool = True) -> FloatVector:
        """``values`` as a 1-D float64 vector of ``length``; finite unless ``check`` is False.

        The numba kernel checks finiteness in its first pass (a flag), so the
        rotations skip the separate pass here and call :meth:`_check_finite`
        when the flag is down.
        """
        try:
            vector = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ConfigurationTypeError(f"rotation {what} must be numeric: {exc}") from exc
        if vector.ndim != 1 or vector.shape[0] != length:
            raise ConfigurationError(
                f"rotation {what} must be a 1-D vector of {length} values, got shape {vector.shape}"
            )
        if check:
            Rotation._check_finite(vector, what)
        result: FloatVector = vector
        return result

    @staticmethod
    def _check_overflow(out: FloatVector, what: str) -> None:
        """ConfigurationError if a finite input's butterflies left binary64: one sum, then the exact check."""
        with np.errstate(over="ignore", invalid="ignore"):
            total = float(np.add.reduce(out))
        if not math.isfinite(total) and not np.all(np.isfinite(out)):
            raise ConfigurationError(
                f"rotation {what} overflows binary64 in the butterflies (a block's sum of magnitudes "
                "beyond about 1.8e308): refused rather than rotated to infinities"
            )

    @staticmethod
    def _check_finite(vector: FloatVector, what: str) -> None:
        if not np.all(np.isfinite(vector)):
            raise ConfigurationError(f"rotation {what} holds NaN or infinite values")


_MOVED = ("CACHE_BLOCK", "INV_SQRT2", "hadamard_in_place", "sign_bits", "signs")


def __getattr__(name: str) -> Any:
    """The sign stream, the normalisation and the numpy butterflies moved to :mod:`secagg._rotation_numpy`;
    the names this module does not use itself are still importable from here."""
    if name in _MOVED:
        return getattr(_rotation_numpy, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
