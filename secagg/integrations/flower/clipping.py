"""Per-array clipping in Flower rounds: one segment per array, clipped counts inside the secure sum.

The model's arrays (:class:`~secagg.integrations.flower.protocol.ArrayLayout`) give the
round's :class:`~secagg.segments.SegmentTable` (:func:`layout_table`): one segment per
non-empty array, named ``"<record>/<array>"``; float and complex arrays are float segments
with their own clip, integer and bool arrays exact integer segments (scale 1, refused
beyond ``+-qmax``, never clipped). A node's contribution is::

    (w * q(delta), c_1, ..., c_S, w)

with ``c_s`` the number of coordinates of segment s it clipped (:func:`encode_segmented`),
so the server learns only the total clipped per segment (:func:`decode_segmented`, with a
:class:`~secagg.segments.ClippingWarning` above 1%). The table with every clip of the
round travels in :attr:`RoundSetup.segments` (:meth:`SegmentTable.describe` bytes) and its
digest is the round descriptor's layout digest, so two nodes given different clips are in
different sessions. The server's clips follow :class:`secagg.clipping.ClipSchedule`
(adaptive by default: the next round's clips from this round's securely summed counts).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from secagg.encoding import IntArray, QuantizationConfig
from secagg.errors import ConfigurationError, DecodeError, OverflowDetectedError, ProtocolError
from secagg.integrations.flower.protocol import ArrayLayout
from secagg.segments import (
    ClippingReport,
    Segment,
    SegmentTable,
    check_scales,
    clipping_report,
    quantize_segments,
)

__all__ = [
    "check_model",
    "check_table",
    "decode_segmented",
    "encode_segmented",
    "encoded_length",
    "layout_table",
    "node_table",
    "parse_table",
    "segment_name",
]


def segment_name(record: str, name: str) -> str:
    """The segment name of array ``name`` in ArrayRecord ``record``: ``"<record>/<name>"``."""
    return f"{record}/{name}"


def layout_table(layout: ArrayLayout, clips: Mapping[str, float] | None = None) -> SegmentTable:
    """One segment per non-empty array of ``layout`` (integer and bool arrays exact), float
    segments with the clip ``clips`` names for them or None (an aggregator fills it in)."""
    clips = dict(clips or {})
    segments = []
    for spec in layout.specs:
        if spec.length == 0:
            continue
        name = segment_name(spec.record, spec.name)
        integer = np.dtype(spec.dtype).kind in "iub"
        segments.append(Segment(name, spec.length, None if integer else clips.pop(name, None), integer))
    if clips:
        raise ConfigurationError(f"clips given for {sorted(clips)}, which are not float arrays of the model")
    if not segments:
        raise ConfigurationError("the model has no values to aggregate")
    return SegmentTable(tuple(segments))


def encoded_length(table: SegmentTable) -> int:
    """Values of one contribution: the coordinates, one clipped count per segment, the weight."""
    return table.size + len(table.segments) + 1


def check_table(table: SegmentTable, config: QuantizationConfig) -> SegmentTable:
    """``table`` if it can encode under ``config``: every float segment clipped, and no count
    can wrap the sum (``num_clients * longest segment``) or exceed a packed value
    (``longest <= max_weight * qmax``), and every clip's scale is finite
    (:func:`secagg.segments.check_scales`); ConfigurationError otherwise."""
    if not table.resolved:
        raise ConfigurationError("every float array needs a clip")
    longest = max(s.length for s in table.segments)
    if config.num_clients * longest > config.limit or longest > config.max_weight * config.qmax:
        raise ConfigurationError(
            f"clipped counts of an array of {longest} values could overflow the encoding "
            f"({config.num_clients} nodes, Z_(2^{config.ring_bits})): split the array or use ring_bits=64"
        )
    return check_scales(table, config.bits)


def node_table(data: bytes, config: QuantizationConfig, max_clip: float | None) -> SegmentTable:
    """The round's table as a node accepts it before training: decoded (:func:`parse_table`),
    encodable under ``config`` (:func:`check_table`) and no clip above the node's ``max_clip``."""
    if not data:
        raise ConfigurationError("the round carries no clip table")
    table = check_table(parse_table(data), config)
    clips = [clip for clip in table.clips.values() if clip is not None]
    if max_clip is not None and clips and max(clips) > max_clip:
        raise ConfigurationError(f"policy: an array's clip {max(clips)} exceeds this node's maximum {max_clip}")
    return table


def check_model(table: SegmentTable, layout: ArrayLayout, vector_length: int) -> None:
    """ProtocolError unless ``table`` describes exactly the arrays of ``layout`` (names, lengths,
    integer flags) and its contributions have the session's ``vector_length`` values."""
    if table != layout_table(layout, {name: clip for name, clip in table.clips.items() if clip is not None}):
        raise ProtocolError("the round's clip table does not describe this model's arrays")
    if encoded_length(table) != vector_length:
        raise ProtocolError(
            f"the session is for {vector_length} values, the clip table gives {encoded_length(table)}"
        )


def parse_table(data: bytes) -> SegmentTable:
    """The :class:`SegmentTable` whose :meth:`~SegmentTable.describe` bytes are ``data``;
    DecodeError if ``data`` is not exactly such a description."""
    view, offset = bytes(data), 0

    def take(size: int) -> bytes:
        nonlocal offset
        if offset + size > len(view):
            raise DecodeError("segment table truncated")
        chunk = view[offset : offset + size]
        offset += size
        return chunk

    segments = []
    try:
        for _ in range(int.from_bytes(take(4), "big")):
            name = take(int.from_bytes(take(4), "big")).decode("utf-8")
            length = int.from_bytes(take(8), "big")
            integer = take(1)
            clip = float(struct.unpack(">d", take(8))[0])
            if integer not in (b"\x00", b"\x01"):
                raise DecodeError(f"segment {name!r}: integer flag must be 0 or 1")
            is_integer = integer == b"\x01"
            segments.append(Segment(name, length, None if is_integer or clip == 0.0 else clip, is_integer))
        table = SegmentTable(tuple(segments))
    except (UnicodeDecodeError, ConfigurationError) as exc:
        raise DecodeError(f"segment table: {exc}") from exc
    if offset != len(view) or table.describe() != view:
        raise DecodeError("segment table is not in canonical form")
    return table


def encode_segmented(
    delta: npt.NDArray[np.float64],
    weight: int,
    table: SegmentTable,
    config: QuantizationConfig,
    rng: np.random.Generator,
) -> IntArray:
    """``(w * q(delta), counts, w)`` as signed int64, ``q`` segment by segment
    (:func:`secagg.segments.quantize_segments`, ``rng`` the rounding randomness).

    ConfigurationError if ``weight`` is not in ``1..config.max_weight`` or an integer
    array holds a value it must refuse.
    """
    if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= config.max_weight:
        raise ConfigurationError(f"weight must be an integer in 1..{config.max_weight}, got {weight}")
    q, counts = quantize_segments(delta, check_table(table, config), config.bits, rng)
    d = q.shape[0]
    encoded: IntArray = np.empty(d + len(counts) + 1, dtype=np.int64)
    np.multiply(q, weight, out=encoded[:d])
    encoded[d:-1] = counts
    encoded[-1] = weight
    return encoded


def decode_segmented(
    integers: IntArray, table: SegmentTable, config: QuantizationConfig, num_summands: int
) -> tuple[npt.NDArray[np.float64], int, ClippingReport]:
    """The weighted mean update, the weight total and the clipping report from the exact integer
    sum of ``num_summands`` :func:`encode_segmented` outputs (a ClippingWarning above 1%).

    OverflowDetectedError if a coordinate, a count or the weight total is impossible for
    that many contributions (a fault, never silently wrong numbers).
    """
    d, segments = table.size, len(table.segments)
    if integers.ndim != 1 or integers.shape[0] != d + segments + 1 or not 1 <= num_summands <= config.num_clients:
        raise ConfigurationError(f"an encoded sum has {d + segments + 1} entries and 1..num_clients summands")
    bound = num_summands * config.max_weight
    weight_total = int(integers[-1])
    if not num_summands <= weight_total <= bound:
        raise OverflowDetectedError(
            f"decoded weight total {weight_total} is impossible for {num_summands} nodes "
            f"of weight <= {config.max_weight}"
        )
    sums = integers[:d]
    limit = bound * config.qmax
    if int(sums.min()) < -limit or int(sums.max()) > limit:
        raise OverflowDetectedError(f"decoded sum exceeds {limit} in magnitude, the most {num_summands} nodes reach")
    counts = [int(c) for c in integers[d:-1]]
    for segment, count in zip(table.segments, counts, strict=True):
        if not 0 <= count <= num_summands * segment.length:
            raise OverflowDetectedError(f"array {segment.name!r}: clipped count {count} is impossible")
    scales = np.empty(d, dtype=np.float64)
    for segment, part in table.slices():
        scales[part] = 1.0 if segment.clip is None else config.qmax / segment.clip
    mean: npt.NDArray[np.float64] = sums.astype(np.float64) / (scales * weight_total)
    return mean, weight_total, clipping_report(table, counts, num_summands)
