"""Segmented quantization: one clip per tensor, and a count of what was clipped.

A vector is a sequence of :class:`Segment` (name, length, clip) back to back, a
:class:`SegmentTable`; a flat vector is one segment (:meth:`SegmentTable.flat`).
Each float segment is quantized as :mod:`secagg.encoding` describes, with its own
clip: ``scale_s = qmax / clip_s``. An *integer* segment (``integer=True``: step
counters such as ``num_batches_tracked``, any int dtype) has scale 1 and no
clip: its values must be whole numbers of magnitude at most ``qmax``
(``2^(bits-1) - 1``, the declared bound) and are refused, never clipped, beyond.

:func:`quantize_segments` also returns, per segment, the number of coordinates
that were clipped (``|x| * scale_s > qmax``). These counts travel as extra
coordinates of the encoding, inside the secure sum, so only their totals are
revealed; :func:`clipping_report` turns the totals into a :class:`ClippingReport`
and issues a :class:`ClippingWarning` when more than
:data:`CLIPPING_WARNING_LEVEL` of a segment's coordinates were clipped.

The table is bound into the session through its :meth:`SegmentTable.digest`
(the descriptor's ``layout_digest``), so a server cannot give two hospitals
different clips. Invariant: every coordinate of an encoding, counts included,
is at most ``max_weight * qmax`` in magnitude when each segment is at most that
long, so the overflow check of :class:`~secagg.encoding.QuantizationConfig`
covers the counts too.
"""

from __future__ import annotations

import hashlib
import math
import struct
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from secagg._validate import require_finite, require_int, require_real_array, require_rng
from secagg.errors import ConfigurationError

__all__ = [
    "CLIPPING_WARNING_LEVEL",
    "MAX_SEGMENT_LENGTH",
    "MAX_SEGMENT_NAME_BYTES",
    "ClippingReport",
    "ClippingWarning",
    "Segment",
    "SegmentTable",
    "check_scales",
    "clipping_report",
    "quantize_segments",
]

CLIPPING_WARNING_LEVEL = 0.01
"""A :class:`ClippingWarning` is issued when more than 1% of one
segment's coordinates (summed over the clients of an aggregate) were clipped."""
MAX_SEGMENT_NAME_BYTES = 1024
MAX_SEGMENT_LENGTH = (1 << 64) - 1
"""A segment's length travels as a u64 (:meth:`SegmentTable.describe`)."""
SEGMENTS_LABEL = b"secagg/v1/segments"
IntArray = npt.NDArray[np.int64]


class ClippingWarning(UserWarning):
    """Not an error: more than :data:`CLIPPING_WARNING_LEVEL` of a segment's
    coordinates were clipped in an aggregate, so its mean is biased toward zero.
    Issued with :func:`warnings.warn`; the counts are in the result either way
    (turn it into an error with ``warnings.simplefilter("error", ClippingWarning)``)."""


@dataclass(frozen=True)
class Segment:
    """One run of coordinates that share a clip.

    Attributes:
        name: the tensor's name (unique in its table; at most 1024 UTF-8 bytes).
        length: number of coordinates (1..2^64 - 1: a u64 in :meth:`SegmentTable.describe`).
        clip: float segments are clipped to ``[-clip, clip]`` (positive, finite);
            ``None`` means "not chosen yet" (an aggregator fills in its clip, see
            :meth:`SegmentTable.resolved`); always ``None`` for integer segments (a clip given
            to one is refused).
        integer: an exact integer segment: scale 1, no clip, ``|v| <= qmax`` or refused.
    """

    name: str
    length: int
    clip: float | None = None
    integer: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ConfigurationError(f"segment name must be a string of at most {MAX_SEGMENT_NAME_BYTES} bytes")
        try:
            encoded = self.name.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate: the table could not be described
            raise ConfigurationError(f"segment name {self.name!r} has no UTF-8 encoding") from exc
        if len(encoded) > MAX_SEGMENT_NAME_BYTES:
            raise ConfigurationError(f"segment name must be a string of at most {MAX_SEGMENT_NAME_BYTES} bytes")
        # u64 in the table's canonical bytes (describe): refused here, not by int.to_bytes there.
        length = require_int(f"segment {self.name!r}: length", self.length, 1, MAX_SEGMENT_LENGTH)
        object.__setattr__(self, "length", length)
        if not isinstance(self.integer, bool):
            raise ConfigurationError(f"segment {self.name!r}: integer must be a bool")
        if self.integer and self.clip is not None:  # never dropped silently: the caller meant something
            raise ConfigurationError(f"segment {self.name!r}: an integer segment is exact and takes no clip")
        if self.clip is None:
            return
        clip = require_finite(f"segment {self.name!r}: clip", self.clip, 0.0)
        if clip <= 0:
            raise ConfigurationError(f"segment {self.name!r}: clip must be positive, got {clip}")
        object.__setattr__(self, "clip", clip)


@dataclass(frozen=True)
class SegmentTable:
    """The segments of a vector, back to back from index 0; names unique."""

    segments: tuple[Segment, ...]

    def __post_init__(self) -> None:
        segments = tuple(self.segments)
        if not segments or not all(isinstance(s, Segment) for s in segments):
            raise ConfigurationError("a segment table needs at least one Segment")
        names = [s.name for s in segments]
        if len(set(names)) != len(names):
            raise ConfigurationError("segment names in a table must be unique")
        object.__setattr__(self, "segments", segments)

    @classmethod
    def flat(cls, length: int, clip: float) -> SegmentTable:
        """One float segment named ``""`` over the whole vector: the plain flat case."""
        return cls((Segment("", length, clip),))

    @property
    def size(self) -> int:
        """The vector's length (sum of the segment lengths)."""
        return sum(s.length for s in self.segments)

    @property
    def names(self) -> tuple[str, ...]:
        """Segment names in vector order."""
        return tuple(s.name for s in self.segments)

    @property
    def clips(self) -> dict[str, float | None]:
        """Clip of each float segment, by name (``None``: not chosen yet)."""
        return {s.name: s.clip for s in self.segments if not s.integer}

    @property
    def resolved(self) -> bool:
        """True when every float segment has a clip (the table can encode)."""
        return all(s.integer or s.clip is not None for s in self.segments)

    def slices(self) -> Iterator[tuple[Segment, slice]]:
        """Each segment with its slice of the vector."""
        offset = 0
        for segment in self.segments:
            yield segment, slice(offset, offset + segment.length)
            offset += segment.length

    def with_clips(self, clips: Mapping[str, float]) -> SegmentTable:
        """The same table with the float segments named in ``clips`` given those clips."""
        unknown = sorted(set(clips) - set(self.clips))
        if unknown:
            raise ConfigurationError(f"no float segment named {unknown[0]!r} in the table")
        return SegmentTable(
            tuple(Segment(s.name, s.length, clips.get(s.name, s.clip), s.integer) for s in self.segments)
        )

    def describe(self) -> bytes:
        """Canonical bytes: ``u32 count``, then per segment ``u32 len || name (UTF-8) ||
        u64 length || u8 integer || clip as IEEE-754 binary64 big-endian`` (0.0 for
        an integer segment or a clip not chosen yet)."""
        out = bytearray(len(self.segments).to_bytes(4, "big"))
        for s in self.segments:
            name = s.name.encode("utf-8")
            out += len(name).to_bytes(4, "big") + name + s.length.to_bytes(8, "big")
            out += bytes((int(s.integer),)) + struct.pack(">d", s.clip or 0.0)
        return bytes(out)

    def digest(self) -> bytes:
        """SHA-256(``"secagg/v1/segments"`` || :meth:`describe`): the layout digest that binds the clips."""
        return hashlib.sha256(SEGMENTS_LABEL + self.describe()).digest()


def check_scales(table: SegmentTable, bits: int) -> SegmentTable:
    """``table`` if every float segment's scale ``qmax / clip`` is a finite binary64
    (``qmax = 2^(bits-1) - 1``); ConfigurationError otherwise. Below that bound (a clip under
    about ``qmax / 1.8e308``) a zero coordinate would scale to ``0 * inf = NaN``, never a
    quantized integer: such a clip is refused, never encoded."""
    bits = require_int("bits", bits, 2, 53)
    qmax = (1 << (bits - 1)) - 1
    for segment in table.segments:
        if segment.clip is not None and not math.isfinite(qmax / segment.clip):
            raise ConfigurationError(
                f"segment {segment.name!r}: clip {segment.clip!r} is too small for bits={bits}: its scale "
                f"{qmax} / clip is not a finite float64"
            )
    return table


def quantize_segments(
    values: npt.ArrayLike, table: SegmentTable, bits: int, rng: np.random.Generator
) -> tuple[IntArray, tuple[int, ...]]:
    """Quantize ``values`` segment by segment; return the integers and each segment's clipped count.

    Float segment s: ``q = floor(x * scale_s) + [u < frac(x * scale_s)]``, clipped
    to ``[-qmax, qmax]``, with ``u`` one uniform draw per coordinate of the whole
    vector (``rng.random(size)``, drawn once). Integer segment: ``q = x``, refused
    (ConfigurationError) if not whole or beyond ``qmax``; its count is 0.
    """
    require_rng("rng", rng)
    bits = require_int("bits", bits, 2, 53)
    qmax = (1 << (bits - 1)) - 1
    x = require_real_array("quantize", values)
    if x.shape[0] != table.size:
        raise ConfigurationError(f"vector has {x.shape[0]} coordinates, the segment table {table.size}")
    if not np.all(np.isfinite(x)):
        raise ConfigurationError("cannot quantize NaN or infinite values")
    if not table.resolved:
        raise ConfigurationError("every float segment needs a clip before it can be quantized")
    check_scales(table, bits)
    uniforms = rng.random(x.shape[0])
    out: IntArray = np.empty(x.shape[0], dtype=np.int64)
    counts: list[int] = []
    for segment, part in table.slices():
        piece = x[part]
        if segment.integer:
            if np.any(piece != np.round(piece)) or np.any(np.abs(piece) > qmax):
                raise ConfigurationError(
                    f"integer segment {segment.name!r}: values must be whole numbers within +-{qmax} "
                    f"(bits={bits}); refused rather than clipped"
                )
            out[part] = piece.astype(np.int64)
            counts.append(0)
            continue
        # Clip after scaling, as secagg.encoding does (clip * scale can round below qmax);
        # in place, as there: each fresh d-sized temporary costs a pass over new memory.
        with np.errstate(over="ignore"):
            scaled = np.multiply(piece, qmax / (segment.clip or 1.0))
        counts.append(int(np.count_nonzero(scaled > qmax)) + int(np.count_nonzero(scaled < -qmax)))
        np.clip(scaled, -qmax, qmax, out=scaled)
        rounded = np.floor(scaled)
        fraction = np.subtract(scaled, rounded, out=scaled)
        np.add(rounded, uniforms[part] < fraction, out=rounded)
        np.clip(rounded, -qmax, qmax, out=rounded)
        out[part] = rounded
    return out, tuple(counts)


@dataclass(frozen=True)
class ClippingReport:
    """How many coordinates of an aggregate were clipped, per segment (totals only).

    Attributes:
        table: the segment table of the aggregate (names, lengths, clips).
        counts: per segment, the clipped coordinates summed over the contributors.
        contributors: how many encodings the totals sum.
    """

    table: SegmentTable
    counts: tuple[int, ...]
    contributors: int

    def __post_init__(self) -> None:
        if len(self.counts) != len(self.table.segments) or self.contributors < 1:
            raise ConfigurationError("a clipping report needs one count per segment and at least one contributor")
        for segment, count in zip(self.table.segments, self.counts, strict=True):
            if not 0 <= count <= segment.length * self.contributors:
                raise ConfigurationError(f"segment {segment.name!r}: clipped count {count} is impossible")

    @property
    def clipped(self) -> int:
        """Coordinates clipped over every segment and contributor."""
        return sum(self.counts)

    @property
    def coordinates(self) -> int:
        """Coordinates quantized: vector length times contributors."""
        return self.table.size * self.contributors

    @property
    def fraction(self) -> float:
        """``clipped / coordinates``."""
        return self.clipped / self.coordinates

    def fractions(self) -> dict[str, float]:
        """Clipped fraction of each segment, by name."""
        return {
            s.name: count / (s.length * self.contributors)
            for s, count in zip(self.table.segments, self.counts, strict=True)
        }


def clipping_report(
    table: SegmentTable, counts: Sequence[int], contributors: int, *, warn_level: float = CLIPPING_WARNING_LEVEL
) -> ClippingReport:
    """The report of an aggregate; :class:`ClippingWarning` if a segment's
    clipped fraction exceeds ``warn_level`` (:data:`CLIPPING_WARNING_LEVEL`)."""
    report = ClippingReport(table, tuple(int(c) for c in counts), contributors)
    over = {name: f for name, f in report.fractions().items() if f > warn_level}
    if over:
        worst = ", ".join(
            f"{name or 'vector'} {f:.1%} (clip {table.clips[name] or 0.0:.4g})"
            for name, f in sorted(over.items(), key=lambda item: -item[1])[:3]
        )
        warnings.warn(
            f"{report.clipped} of {report.coordinates} coordinates clipped ({report.fraction:.2%}); "
            f"above {warn_level:.0%} in {len(over)} segment(s): {worst}. The mean is biased toward zero; "
            "raise the clip: a fixed clip's value, or an adaptive clip's starting value (it moves toward "
            f"its target from the next round on); an adaptive clip whose target is above {warn_level:.0%} "
            "clips that much every round by design: lower its target",
            ClippingWarning,
            stacklevel=3,
        )
    return report
