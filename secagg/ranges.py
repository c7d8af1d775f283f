"""Secure range discovery: a per-segment magnitude histogram, summed securely, picks each clip.

Before an aggregation whose clips nobody chose, each hospital counts, per float
segment, how many coordinates of its update fall in each power-of-two magnitude
bucket, and contributes the counts as exact integers to one extra secure sum (its
own round, with its own descriptor). Only the federation-wide histogram is
revealed; from it the server takes, per segment, the smallest power-of-two clip
that covers the target fraction of coordinates (all of them by default), and the
aggregation runs with that clip table, bound in its descriptor as any other.

Buckets of a segment (``e_min = min_exponent``, ``e_max = max_exponent``)::

    bucket 0                      |x| < 2^e_min (zero included)
    bucket i, 1 <= i <= e_max - e_min   2^(e_min + i - 1) <= |x| < 2^(e_min + i)
    bucket e_max - e_min + 1      |x| >= 2^e_max (clipped whatever the choice)

The bucket of ``x`` is read from its binary exponent (:func:`numpy.frexp`), so
the boundaries are exact. Clip rule: with ``N`` the segment's coordinates over
every contributor and ``need = N - floor((1 - coverage) * N)``, take the first
bucket ``i`` whose cumulative count reaches ``need``; the clip is
``2^(e_min + i)`` (bucket 0 gives ``2^e_min``, the last bucket ``2^e_max``).
Every coordinate of buckets 0..i is then strictly below the clip, so none of
them is clipped.

Counts can exceed what one quantized coordinate holds (``qmax = 2^(bits-1) -
1``), so each count travels as little-endian base-``2^(bits-1)`` digits
(``digits`` of them, enough for the segment's length), each digit an exact
integer coordinate; the sum of digits is recombined exactly after the sum.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from secagg._validate import require_finite, require_instance, require_int
from secagg.errors import ConfigurationError, OverflowDetectedError
from secagg.segments import Segment, SegmentTable

__all__ = [
    "DEFAULT_COVERAGE",
    "DEFAULT_MAX_EXPONENT",
    "DEFAULT_MIN_EXPONENT",
    "RANGE_LABEL",
    "RangeDiscovery",
]

DEFAULT_MIN_EXPONENT = -24
"""Smallest bucket boundary 2^-24 (about 6e-8): the smallest clip discovery picks."""
DEFAULT_MAX_EXPONENT = 40
"""Largest bucket boundary 2^40 (about 1.1e12): the largest clip discovery picks."""
DEFAULT_COVERAGE = 1.0
"""Fraction of a segment's coordinates the discovered clip covers: all of them."""
RANGE_LABEL = "secagg/v1/range-histogram"
IntArray = npt.NDArray[np.int64]
FloatVector = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RangeDiscovery:
    """The public parameters of a range-discovery round (see the module docstring).

    Attributes:
        min_exponent: e_min, the lowest bucket boundary is 2^e_min.
        max_exponent: e_max, the highest is 2^e_max (e_min < e_max, both in -1000..1000).
        coverage: fraction of each segment's coordinates the clip must cover, in (0, 1].
    """

    min_exponent: int = DEFAULT_MIN_EXPONENT
    max_exponent: int = DEFAULT_MAX_EXPONENT
    coverage: float = DEFAULT_COVERAGE

    def __post_init__(self) -> None:
        low = require_int("min_exponent", self.min_exponent, -1000, 1000)
        high = require_int("max_exponent", self.max_exponent, -1000, 1000)
        if low >= high:
            raise ConfigurationError(f"min_exponent must be below max_exponent, got {low} and {high}")
        coverage = require_finite("coverage", self.coverage, 0.0, 1.0)
        if coverage <= 0:
            raise ConfigurationError(f"coverage must be in (0, 1], got {coverage}")
        object.__setattr__(self, "coverage", coverage)

    @property
    def buckets(self) -> int:
        """Buckets per segment: below, one per power of two, above."""
        return self.max_exponent - self.min_exponent + 2

    @staticmethod
    def digits(length: int, bits: int) -> int:
        """Base-``2^(bits-1)`` digits needed for a count up to ``length`` (``bits`` in 2..53)."""
        length = require_int("length", length, 0)
        bits = require_int("bits", bits, 2, 53)
        return max(1, math.ceil((length + 1).bit_length() / (bits - 1)))

    def header(self, bits: int) -> str:
        """The name of the round's first segment; it binds the buckets and the digit base."""
        return f"{RANGE_LABEL} 2^{self.min_exponent}..2^{self.max_exponent} base 2^{bits - 1}"

    def histogram(self, values: npt.ArrayLike) -> IntArray:
        """Count of ``values`` per bucket (length :attr:`buckets`); ConfigurationError on NaN."""
        try:
            x = np.abs(np.asarray(values, dtype=np.float64).ravel())
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"cannot histogram non-numeric values: {exc}") from exc
        if np.isnan(x).any():
            raise ConfigurationError("cannot histogram NaN values")
        _, exponent = np.frexp(x)  # x in [2^(e-1), 2^e); 0 and inf give e = 0
        index = np.clip(exponent.astype(np.int64) - self.min_exponent, 0, self.buckets - 1)
        index[x == 0] = 0
        index[np.isinf(x)] = self.buckets - 1
        counts: IntArray = np.bincount(index, minlength=self.buckets).astype(np.int64)
        return counts

    @staticmethod
    def open_segments(segments: SegmentTable) -> tuple[Segment, ...]:
        """The segments whose clip is discovered: float segments that name no clip."""
        require_instance("segments", segments, SegmentTable)
        return tuple(s for s in segments.segments if not s.integer and s.clip is None)

    def table(self, segments: SegmentTable, bits: int) -> SegmentTable:
        """The discovery round's segment table: an integer header (each hospital
        contributes 1) then one integer segment per open float segment of ``segments``
        (:meth:`open_segments`), same name, ``buckets * digits`` long. ConfigurationError, before
        any round runs, if the smallest clip ``2^min_exponent`` has no finite scale at ``bits``
        (:func:`secagg.segments.check_scales`: the aggregation would be refused after the
        histogram was revealed)."""
        bits = require_int("bits", bits, 2, 53)
        qmax = (1 << (bits - 1)) - 1
        if not math.isfinite(qmax / math.ldexp(1.0, self.min_exponent)):
            raise ConfigurationError(
                f"min_exponent {self.min_exponent} is too small for bits={bits}: the clip 2^{self.min_exponent} "
                f"has no finite scale {qmax} / clip"
            )
        parts = [Segment(self.header(bits), 1, integer=True)]
        parts += [
            Segment(s.name, self.buckets * self.digits(s.length, bits), integer=True)
            for s in self.open_segments(segments)
        ]
        if len(parts) == 1:
            raise ConfigurationError("range discovery needs at least one float segment without a clip")
        return SegmentTable(tuple(parts))

    def encode(self, vector: npt.ArrayLike, segments: SegmentTable, bits: int) -> FloatVector:
        """One hospital's contribution: 1, then each open float segment's histogram as digits
        (bucket-major, least significant digit first), as float64 whole numbers."""
        require_instance("segments", segments, SegmentTable)
        bits = require_int("bits", bits, 2, 53)
        try:
            x = np.asarray(vector, dtype=np.float64).ravel()
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"cannot histogram non-numeric values: {exc}") from exc
        if x.shape[0] != segments.size:
            raise ConfigurationError(f"vector has {x.shape[0]} coordinates, the segment table {segments.size}")
        base = 1 << (bits - 1)
        pieces: list[FloatVector] = [np.ones(1)]
        for segment, part in segments.slices():
            if segment.integer or segment.clip is not None:
                continue
            counts = self.histogram(x[part])
            powers = base ** np.arange(self.digits(segment.length, bits), dtype=np.int64)
            pieces.append(((counts[:, None] // powers) % base).astype(np.float64).ravel())
        return np.concatenate(pieces)

    def decode(
        self, total: npt.ArrayLike, segments: SegmentTable, bits: int, contributors: int
    ) -> dict[str, IntArray]:
        """The summed histogram of each open float segment from the exact sum of ``contributors``
        encodings; OverflowDetectedError if the header or a histogram is impossible,
        ConfigurationError unless ``contributors >= 1`` (a sum of none would pass as the smallest clips)."""
        contributors = require_int("contributors", contributors, 1)
        expected = self.table(segments, bits).size
        try:
            summed = np.asarray(total, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"a range histogram sum holds {expected} numbers: {exc}") from exc
        if summed.shape != (expected,):
            raise ConfigurationError(f"expected {expected} summed entries, got shape {summed.shape}")
        if not np.isfinite(summed).all() or np.abs(summed).max() > 2.0**53:
            # beyond 2^53 a binary64 is no longer every integer: never read as an exact count
            raise OverflowDetectedError("a range histogram sum holds a value that is not an exact integer count")
        sums = np.rint(summed).astype(np.int64)
        if int(sums[0]) != contributors:
            raise OverflowDetectedError(f"range histogram header sums to {int(sums[0])}, not {contributors}")
        base, offset, out = 1 << (bits - 1), 1, {}
        for segment in self.open_segments(segments):
            width = self.digits(segment.length, bits)
            digits = sums[offset : offset + self.buckets * width].reshape(self.buckets, width)
            offset += self.buckets * width
            # Python integers until checked: a forged sum must not overflow int64 on the way.
            counts = [sum(int(d) * base**j for j, d in enumerate(row)) for row in digits]
            if min(counts) < 0 or sum(counts) != segment.length * contributors:
                raise OverflowDetectedError(f"segment {segment.name!r}: the range histogram is impossible")
            out[segment.name] = np.array(counts, dtype=np.int64)
        return out

    def clip(self, counts: npt.ArrayLike) -> float:
        """The smallest power-of-two clip that covers :attr:`coverage` of the counted coordinates.

        ConfigurationError unless ``counts`` is a histogram of this discovery: :attr:`buckets`
        counts, none negative, not all zero, each a whole number (ints, or floats that are exact
        whole numbers of at most 2^53: never truncated or cast; a clip read from anything else would
        be arbitrary)."""
        try:
            raw = np.asarray(counts)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ConfigurationError(f"a range histogram holds {self.buckets} integer counts: {exc}") from exc
        if raw.dtype.kind == "f":
            whole = bool(np.isfinite(raw).all()) and bool((np.abs(raw) <= 2.0**53).all())
            whole = whole and bool((raw == np.floor(raw)).all())
        else:
            whole = raw.dtype.kind == "i" or (raw.dtype.kind == "u" and (raw.size == 0 or int(raw.max()) < 1 << 63))
        if not whole:
            raise ConfigurationError(
                f"a range histogram holds {self.buckets} whole counts; got values of dtype {raw.dtype} "
                "that are not all whole numbers (never truncated or cast)"
            )
        histogram = raw.astype(np.int64)
        if histogram.shape != (self.buckets,) or int(histogram.min()) < 0 or not histogram.any():
            raise ConfigurationError(
                f"a range histogram has {self.buckets} counts, none negative and not all zero; got "
                f"{histogram.size} counts summing to {int(histogram.sum())}"
            )
        total = int(histogram.sum())
        need = total - math.floor((1.0 - self.coverage) * total)
        index = int(np.searchsorted(np.cumsum(histogram), need, side="left"))
        return math.ldexp(1.0, self.min_exponent + min(index, self.buckets - 2))

    def clips(self, histograms: Mapping[str, npt.ArrayLike]) -> dict[str, float]:
        """:meth:`clip` of every segment's summed histogram, by name."""
        return {name: self.clip(counts) for name, counts in histograms.items()}
