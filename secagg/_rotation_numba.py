"""The compiled (numba) backend of :mod:`secagg.rotation`: the Walsh-Hadamard butterflies in one kernel.

Imported only by :func:`secagg.rotation.backend` when it picks numba, so importing
secagg neither imports numba nor compiles anything; the kernels compile on first
use and are cached on disk (``cache=True``) when numba finds a writable cache
directory (the package's ``__pycache__``, else ``NUMBA_CACHE_DIR`` or the
user's cache directory), else compiled afresh in every process.

This module is the backend's interface: the typed entry point :func:`rotate`
and the sign table :data:`SIGN_FACTORS`; the compiled kernels named below are
in :mod:`secagg._rotation_numba_kernels`, all in that one file so that numba's
cache, which watches only the defining file, never serves a stale kernel.

Bit-exactness: every coordinate goes through the same binary64 operations as in
docs/spec.md, section 18, and as :func:`secagg._rotation_numpy.hadamard_into`: stage h
replaces each pair (j, j + h), ``j mod 2h < h``, by (a + b, a - b), for h = 1, 2,
..., B/2 in that order, then one product by the scale. No fastmath, so no
reassociation and no contraction into fused multiply-adds (no product here is
ever added to anyway). Only the memory schedule differs:

- the stages h = 1, 2, 4 run in registers, 8 coordinates at a time
  (:func:`~secagg._rotation_numba_kernels._first`), which also loads the input, pads with zeros and negates the
  coordinates whose sign bit is set (a product by -1.0, exact: it flips the
  sign bit, as :func:`secagg._rotation_numpy.flip_signs` does), and checks the
  input's finiteness (a NaN or an infinity makes the sum of its 8 infinite or
  NaN; only then does the caller look at the input itself);
- the next stages run two at a time (h and 2h, radix 4) over 4 runs of h
  coordinates passed as separate slices, a loop numba vectorises: first on
  each run of :data:`INNER` coordinates right after it is loaded (L1), then on
  pieces of :data:`CACHE` coordinates while they sit in the L2 cache;
- the stages with h >= :data:`CACHE` (blocks longer than a piece) run on column
  strips of up to :data:`STRIP` coordinates across the pieces of a block, in place;
- the scale (and, for the inverse, the signs: ``-(s * v)`` is ``(-s) * v`` bit
  for bit, rounding to nearest being symmetric, and a product by -1.0 is a
  negation) is applied to each result of the last radix-4 pass as it is
  written, or, where the last pass is not one, to each piece or strip right
  after its last stage, while it is in cache.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from secagg._rotation_numba_kernels import CACHE, INNER, STRIP, transform

# The kernels and their block sizes live in _rotation_numba_kernels; re-exported for existing imports.
__all__ = ["CACHE", "INNER", "SIGN_FACTORS", "STRIP", "rotate", "transform"]

_BYTE_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little")
SIGN_FACTORS = 1.0 - 2.0 * _BYTE_BITS.astype(np.float64)
"""SIGN_FACTORS[byte][k]: -1.0 if bit k of ``byte`` is set, else 1.0 (multiplying by either is exact)."""


def rotate(
    source: npt.NDArray[np.float64],
    target: npt.NDArray[np.float64],
    block: int,
    scale: float,
    bits: npt.NDArray[np.uint8],
    sign_first: bool,
    sign_last: bool,
) -> bool:
    """Typed entry point of :func:`transform` (contiguous float64 vectors, the sign stream as bytes).

    Returns False if ``source`` may hold an infinity or a NaN (True: it holds none).
    """
    return bool(transform(source, target, source.shape[0], block, scale, bits, SIGN_FACTORS, sign_first, sign_last))
