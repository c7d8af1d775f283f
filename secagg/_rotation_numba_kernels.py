"""The compiled (numba) kernels of the rotation's numba backend (:mod:`secagg._rotation_numba`).

Every compiled function of the backend is here, in one file, on purpose: numba's
on-disk cache (``cache=True``) is invalidated only when the file that defines a
function changes, not when a function it calls or inlines from another file does
(numba's "cache invalidation" limitation). Split across files, an edited butterfly
could keep running as the stale copy compiled into :func:`transform`'s cache. The
block sizes (:data:`CACHE`, :data:`INNER`, :data:`STRIP`) are read by the kernels as
compile-time constants, so they live here too. The schedule and the bit-exactness
argument are in :mod:`secagg._rotation_numba`'s docstring; the typed entry point
and the sign table are there as well.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

__all__ = ["CACHE", "INNER", "STRIP", "transform"]

CACHE = 1 << 16
"""Coordinates per cache-resident piece (512 KiB of doubles)."""
INNER = 1 << 11
"""Coordinates per L1-resident run: the first stages (up to h = INNER / 2) run on one before the next."""
STRIP = 512
"""Widest column strip of the high stages: 16 rows of 512 doubles (64 KiB) at d = 10^6; narrower (down to 8)
when a block has more than CACHE / STRIP pieces, so that a strip stays within CACHE doubles."""


def _jit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit`` with ``cache=True``, or without a disk cache where numba finds no writable directory."""

    def decorate(function: Callable[..., Any]) -> Any:
        try:
            return numba.njit(cache=True, boundscheck=False, **options)(function)
        except RuntimeError:  # "cannot cache function ...: no locator available" (read-only install, no home)
            return numba.njit(cache=False, boundscheck=False, **options)(function)

    return decorate


@_jit(inline="always")
def _bfly4(a: Any, b: Any, c: Any, d: Any, h: int) -> None:  # pragma: no cover - compiled
    """Stages h and 2h on 4 runs of h coordinates (a, b, c, d at offsets 0, h, 2h, 3h)."""
    for k in range(h):
        p = a[k]
        q = b[k]
        r = c[k]
        s = d[k]
        s0 = p + q
        d0 = p - q
        s1 = r + s
        d1 = r - s
        a[k] = s0 + s1
        c[k] = s0 - s1
        b[k] = d0 + d1
        d[k] = d0 - d1


@_jit(inline="always")
def _bfly4_scaled(a: Any, b: Any, c: Any, d: Any, h: int, scale: float) -> None:  # pragma: no cover - compiled
    """:func:`_bfly4`, each result then multiplied by ``scale`` (the same two roundings as a separate pass)."""
    for k in range(h):
        p = a[k]
        q = b[k]
        r = c[k]
        s = d[k]
        s0 = p + q
        d0 = p - q
        s1 = r + s
        d1 = r - s
        a[k] = (s0 + s1) * scale
        c[k] = (s0 - s1) * scale
        b[k] = (d0 + d1) * scale
        d[k] = (d0 - d1) * scale


@_jit(inline="always")
def _bfly4_signed(
    a: Any, b: Any, c: Any, d: Any, h: int, scale: float, fa: Any, fb: Any, fc: Any, fd: Any
) -> None:  # pragma: no cover - compiled
    """:func:`_bfly4_scaled`, each product then multiplied by its coordinate's sign factor (+1.0 or -1.0: exact)."""
    for k in range(h):
        p = a[k]
        q = b[k]
        r = c[k]
        s = d[k]
        s0 = p + q
        d0 = p - q
        s1 = r + s
        d1 = r - s
        a[k] = (s0 + s1) * scale * fa[k]
        c[k] = (s0 - s1) * scale * fc[k]
        b[k] = (d0 + d1) * scale * fb[k]
        d[k] = (d0 - d1) * scale * fd[k]


@_jit(inline="always")
def _factors(out: Any, bits: Any, table: Any, offset: int, count: int) -> None:  # pragma: no cover - compiled
    """out[k] = the sign factor of coordinate offset + k, for k < count (offset and count multiples of 8)."""
    for j in range(count >> 3):
        t = table[bits[(offset >> 3) + j]]
        for k in range(8):
            out[8 * j + k] = t[k]


@_jit(inline="always")
def _bfly2(a: Any, b: Any, h: int) -> None:  # pragma: no cover - compiled
    """Stage h on 2 runs of h coordinates (a, b at offsets 0, h)."""
    for k in range(h):
        p = a[k]
        q = b[k]
        a[k] = p + q
        b[k] = p - q


@_jit()
def _first(
    src: Any, dst: Any, limit: int, bits: Any, table: Any, signed: bool, start: int, stop: int
) -> bool:  # pragma: no cover - compiled
    """Load dst[start:stop] from the input and run the stages h = 1, 2, 4 on it, 8 coordinates at a time.

    Coordinate i is src[i], 0.0 from ``limit`` on (the padding), times
    ``table[byte][i mod 8]`` (-1.0 where the sign bit is set, else 1.0: exact)
    if ``signed``. ``start`` and ``stop`` are multiples of 8. Returns False if
    some sum of 8 signed inputs is infinite or NaN: always so when an input is,
    and otherwise only on overflow (the caller then checks the input itself).
    """
    full = min(stop, max(start, limit - limit % 8))
    finite: bool = _octets(src, dst, bits, table, signed, start, full)
    if full < stop:
        finite &= _padded(src, dst, limit, bits, table, signed, full, stop)
    return finite


@_jit()
def _octets(
    src: Any, dst: Any, bits: Any, table: Any, signed: bool, start: int, stop: int
) -> bool:  # pragma: no cover - compiled
    """:func:`_first` where every coordinate is below the limit (no padding): branch-free but for the signs."""
    check = 0.0
    for i in range(start, stop, 8):
        a0 = src[i]
        a1 = src[i + 1]
        a2 = src[i + 2]
        a3 = src[i + 3]
        a4 = src[i + 4]
        a5 = src[i + 5]
        a6 = src[i + 6]
        a7 = src[i + 7]
        if signed:
            t = table[bits[i >> 3]]
            a0 *= t[0]
            a1 *= t[1]
            a2 *= t[2]
            a3 *= t[3]
            a4 *= t[4]
            a5 *= t[5]
            a6 *= t[6]
            a7 *= t[7]
        b0 = a0 + a1
        b1 = a0 - a1
        b2 = a2 + a3
        b3 = a2 - a3
        b4 = a4 + a5
        b5 = a4 - a5
        b6 = a6 + a7
        b7 = a6 - a7
        c0 = b0 + b2
        c2 = b0 - b2
        c1 = b1 + b3
        c3 = b1 - b3
        c4 = b4 + b6
        c6 = b4 - b6
        c5 = b5 + b7
        c7 = b5 - b7
        total = c0 + c4
        check += total * 0.0  # stays 0.0 unless a sum is infinite or NaN (then NaN for good)
        dst[i] = total
        dst[i + 4] = c0 - c4
        dst[i + 1] = c1 + c5
        dst[i + 5] = c1 - c5
        dst[i + 2] = c2 + c6
        dst[i + 6] = c2 - c6
        dst[i + 3] = c3 + c7
        dst[i + 7] = c3 - c7
    return check == 0.0


@_jit()
def _padded(
    src: Any, dst: Any, limit: int, bits: Any, table: Any, signed: bool, start: int, stop: int
) -> bool:  # pragma: no cover - compiled
    """:func:`_first` on the groups of 8 at and after the limit (the last input coordinates and the padding).

    The 8-point butterfly repeats :func:`_octets`' on purpose: one shared helper, even with
    ``inline="always"``, made the whole rotation about 2.2x slower at d = 10^6 (measured with
    ``python -m benchmarks.compression --clients 5 --graph complete``: 4.1 -> 10.1 ms forward).
    """
    finite = True
    for i in range(start, stop, 8):
        a0 = src[i] if i < limit else 0.0
        a1 = src[i + 1] if i + 1 < limit else 0.0
        a2 = src[i + 2] if i + 2 < limit else 0.0
        a3 = src[i + 3] if i + 3 < limit else 0.0
        a4 = src[i + 4] if i + 4 < limit else 0.0
        a5 = src[i + 5] if i + 5 < limit else 0.0
        a6 = src[i + 6] if i + 6 < limit else 0.0
        a7 = src[i + 7] if i + 7 < limit else 0.0
        if signed:
            t = table[bits[i >> 3]]
            a0 *= t[0]
            a1 *= t[1]
            a2 *= t[2]
            a3 *= t[3]
            a4 *= t[4]
            a5 *= t[5]
            a6 *= t[6]
            a7 *= t[7]
        b0 = a0 + a1
        b1 = a0 - a1
        b2 = a2 + a3
        b3 = a2 - a3
        b4 = a4 + a5
        b5 = a4 - a5
        b6 = a6 + a7
        b7 = a6 - a7
        c0 = b0 + b2
        c2 = b0 - b2
        c1 = b1 + b3
        c3 = b1 - b3
        c4 = b4 + b6
        c6 = b4 - b6
        c5 = b5 + b7
        c7 = b5 - b7
        total = c0 + c4
        if total - total != 0.0:
            finite = False
        dst[i] = total
        dst[i + 4] = c0 - c4
        dst[i + 1] = c1 + c5
        dst[i + 5] = c1 - c5
        dst[i + 2] = c2 + c6
        dst[i + 6] = c2 - c6
        dst[i + 3] = c3 + c7
        dst[i + 7] = c3 - c7
    return finite


@_jit()
def _load(
    src: Any, dst: Any, limit: int, bits: Any, table: Any, signed: bool, start: int, stop: int
) -> bool:  # pragma: no cover - compiled
    """dst[i] = src[i] (0.0 from ``limit`` on), times the sign factor of i if ``signed``, for i in start..stop.

    Returns False if some input is infinite or NaN.
    """
    finite = True
    for i in range(start, stop):
        v = src[i] if i < limit else 0.0
        if v - v != 0.0:
            finite = False
        if signed:
            v *= table[bits[i >> 3], i & 7]
        dst[i] = v
    return finite


@_jit()
def _stages(x: Any, start: int, stop: int, h: int, end: int) -> None:  # pragma: no cover - compiled
    """The stages h, 2h, ... < end on each aligned run of ``end`` coordinates of x[start:stop] (radix 4, then 2)."""
    while h < end:
        if 4 * h <= end:
            for base in range(start, stop, 4 * h):
                _bfly4(x[base : base + h], x[base + h : base + 2 * h], x[base + 2 * h : base + 3 * h],
                       x[base + 3 * h : base + 4 * h], h)  # fmt: skip
            h *= 4
        else:
            for base in range(start, stop, 2 * h):
                _bfly2(x[base : base + h], x[base + h : base + 2 * h], h)
            h *= 2


@_jit()
def _finish(
    x: Any, start: int, stop: int, scale: float, bits: Any, table: Any, signed: bool
) -> None:  # pragma: no cover - compiled
    """x[i] = scale * x[i], then times the sign factor of i if ``signed``, for i in start..stop."""
    if signed and (start | stop) & 7 == 0:  # whole bytes of the sign stream
        for i in range(start, stop, 8):
            t = table[bits[i >> 3]]
            for k in range(8):
                x[i + k] = x[i + k] * scale * t[k]
    elif signed:
        for i in range(start, stop):
            x[i] = x[i] * scale * table[bits[i >> 3], i & 7]
    elif scale != 1.0:
        for i in range(start, stop):
            x[i] = x[i] * scale


@_jit()
def _last4(
    x: Any, o: int, q: int, strip: int, scale: float, bits: Any, table: Any, signed: bool, factors: Any
) -> None:  # pragma: no cover - compiled
    """The last radix-4 butterflies on the rows at o, o + q, o + 2q, o + 3q (``strip`` wide), scaled, and signed
    if ``signed`` (``strip`` a multiple of 8; ``factors`` a buffer of 4 * strip doubles)."""
    if signed:
        for m in range(4):
            _factors(factors[m * strip : (m + 1) * strip], bits, table, o + m * q, strip)
        _bfly4_signed(x[o : o + strip], x[o + q : o + q + strip], x[o + 2 * q : o + 2 * q + strip],
                      x[o + 3 * q : o + 3 * q + strip], strip, scale, factors[:strip], factors[strip : 2 * strip],
                      factors[2 * strip : 3 * strip], factors[3 * strip :])  # fmt: skip
    else:
        _bfly4_scaled(x[o : o + strip], x[o + q : o + q + strip], x[o + 2 * q : o + 2 * q + strip],
                      x[o + 3 * q : o + 3 * q + strip], strip, scale)  # fmt: skip


@_jit()
def _columns(
    x: Any, blk: int, runs: int, piece: int, scale: float, bits: Any, table: Any, signed: bool
) -> None:  # pragma: no cover - compiled
    """The stages h >= ``piece`` of the block at ``blk`` (``runs`` pieces), column strip by strip, then the scale.

    Stage h = j * piece pairs coordinate (r, c) of the (runs, piece) matrix with
    (r + j, c): a butterfly between whole rows, done on strips of columns (at most STRIP) so
    the strip's ``runs`` rows stay in cache through all the high stages.
    """
    strip = max(8, min(STRIP, piece // runs))
    factors = np.empty(4 * strip)
    for col in range(0, piece, strip):
        scaled = False
        h = 1
        while h < runs:
            q = h * piece
            if 4 * h == runs and (not signed or strip % 8 == 0):  # the last two stages, scale (and signs) folded in
                for r in range(h):
                    _last4(x, blk + r * piece + col, q, strip, scale, bits, table, signed, factors)
                scaled = True
                h *= 4
            elif 4 * h <= runs:
                for base in range(0, runs, 4 * h):
                    for r in range(base, base + h):
                        o = blk + r * piece + col
                        _bfly4(x[o : o + strip], x[o + q : o + q + strip], x[o + 2 * q : o + 2 * q + strip],
                               x[o + 3 * q : o + 3 * q + strip], strip)  # fmt: skip
                h *= 4
            else:
                for base in range(0, runs, 2 * h):
                    for r in range(base, base + h):
                        o = blk + r * piece + col
                        _bfly2(x[o : o + strip], x[o + q : o + q + strip], strip)
                h *= 2
        if not scaled:
            for r in range(runs):
                o = blk + r * piece + col
                _finish(x, o, o + strip, scale, bits, table, signed)


@_jit()
def transform(
    src: Any, dst: Any, limit: int, block: int, scale: float, bits: Any, table: Any, sign_first: bool, sign_last: bool
) -> bool:  # pragma: no cover - compiled
    """dst = the scaled Hadamard transform, block by block of ``block`` coordinates, of the padded, signed src.

    ``src[:limit]`` followed by zeros up to ``len(dst)`` (a multiple of ``block``)
    is the input; ``bits`` the sign stream as bytes (bit i of the stream: bit
    ``i mod 8`` of byte ``i // 8``), applied before the stages when
    ``sign_first`` (the forward rotation) and after the scale when
    ``sign_last`` (the inverse). ``dst`` may not overlap ``src`` unless it is
    ``src`` with ``limit == len(dst)``. Returns False if the input may hold an
    infinity or a NaN (:func:`_first`); True guarantees it does not.
    """
    finite = True
    n = dst.shape[0]
    piece = min(CACHE, block)
    for blk in range(0, n, block):
        for s in range(blk, blk + block, piece):
            if piece >= 8:
                inner = min(piece, INNER)
                for t in range(s, s + piece, inner):
                    finite &= _first(src, dst, limit, bits, table, sign_first, t, t + inner)
                    _stages(dst, t, t + inner, 8, inner)
                _stages(dst, s, s + piece, inner, piece)
            else:
                finite &= _load(src, dst, limit, bits, table, sign_first, s, s + piece)
                _stages(dst, s, s + piece, 1, piece)
            if block == piece:
                _finish(dst, s, s + piece, scale, bits, table, sign_last)
        if block > piece:
            _columns(dst, blk, block // piece, piece, scale, bits, table, sign_last)
    return finite
