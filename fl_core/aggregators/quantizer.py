"""The weighted, segmented encoding every quantized aggregator shares.

Client k quantizes its update segment by segment (:mod:`secagg.segments`: one
clip per segment, integer segments exact), multiplies the integers by its sample
count ``n_k``, and appends one clipped count per segment and then ``n_k``::

    e_k = (n_k * q_k[0], ..., n_k * q_k[d-1], c_k[1], ..., c_k[S], n_k)

The sum is ``(sum n_k q_k, sum c_k, sum n_k)``: the weighted mean, the clipped
counts and the sample total, and nothing about one client. A flat vector is one
segment (S = 1). No wrap: every coordinate of ``e_k`` is at most ``max_weight *
qmax`` (checked by :class:`~secagg.encoding.QuantizationConfig`) or, for a count,
at most its segment's length, and :meth:`WeightedQuantizer.check_table` refuses a
table whose longest segment times ``num_clients`` could wrap the ring.

One client costs only itself: :meth:`WeightedQuantizer.encode_round` (what the aggregators call)
withholds a client whose update cannot be encoded (more samples than the public bound, an
integer segment value that is fractional or beyond +-qmax): it goes silent at ``UPLOAD`` (or
its earlier stage), a stand-in of zeros keeps the round's shape (never sent, never summed), and
the round names it with the reason. A refusal that holds for every client (the table, the
ring) is still raised, before anything is encoded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from fl_core.aggregators.base import (
    DEFAULT_BITS,
    DEFAULT_CLIP,
    DEFAULT_MAX_SAMPLES_PER_CLIENT,
    ClientUpdate,
    DropoutStage,
    FloatVector,
    client_rounding_rng,
)
from fl_core.aggregators.binding import NO_MODEL
from secagg._validate import is_int, require_int
from secagg.descriptor import Parameter, SessionDescriptor
from secagg.encoding import WORD_RINGS, QuantizationConfig, from_ring, smallest_ring_bits, to_ring
from secagg.errors import ConfigurationError, ConfigurationTypeError, OverflowDetectedError
from secagg.ring import RingVector
from secagg.segments import ClippingReport, SegmentTable, check_scales, clipping_report, quantize_segments

__all__ = ["RING_OPTIONS", "DecodedSum", "EncodedRound", "WeightedQuantizer", "resolve_ring_bits"]

RING_OPTIONS = ("word", "smallest")
"""Named ring choices: ``"word"`` (Z_(2^32) or Z_(2^64), the default) and ``"smallest"``
(the smallest Z_(2^b), b in 8..64, that cannot overflow)."""


def resolve_ring_bits(ring_bits: int | str | None, bits: int, num_clients: int, max_weight: int) -> int:
    """The ring width a ``ring_bits`` option names: an int as given, ``None`` or ``"word"`` the
    smaller word ring that fits, ``"smallest"`` the smallest b in 8..64 that fits (a numpy integer
    is an int). ConfigurationError for another name, ConfigurationTypeError for another type (a
    ``bool``, a ``float``); the range is QuantizationConfig's check."""
    if ring_bits is None or (isinstance(ring_bits, str) and ring_bits == "word"):  # (an array compares
        return smallest_ring_bits(bits, num_clients, max_weight, WORD_RINGS)  # element-wise: names first)
    if isinstance(ring_bits, str) and ring_bits == "smallest":
        return smallest_ring_bits(bits, num_clients, max_weight)
    if is_int(ring_bits):
        return int(ring_bits)
    error = ConfigurationError if isinstance(ring_bits, str) else ConfigurationTypeError
    raise error(f"ring_bits must be an int in 8..64, 'word' or 'smallest', got {ring_bits!r}")


@dataclass(frozen=True)
class DecodedSum:
    """A decoded aggregate: the weighted mean, the clipping totals and the sample total."""

    mean: FloatVector
    clipping: ClippingReport
    weight_total: int


@dataclass(frozen=True)
class EncodedRound:
    """A round's encodings (:meth:`WeightedQuantizer.encode_round`).

    Attributes:
        encodings: client id -> its encoding (ring or int64); a withheld client's is a stand-in
            of zeros, never sent.
        stages: the round's dropouts with every withheld client silent at ``UPLOAD`` at the latest.
        withheld: (client id, reason) of the clients whose update could not be encoded.
    """

    encodings: dict[int, Any]
    stages: dict[int, DropoutStage]
    withheld: tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class WeightedQuantizer:
    """Count-weighted segmented encoding of updates, and decoding of their sum.

    Built from a :class:`secagg.encoding.QuantizationConfig` whose
    ``num_clients`` is the most clients that will ever be summed, whose
    ``max_weight`` is the public bound on one client's sample count and whose
    ``clip`` is the clip of a flat vector (the starting clip of every segment
    under the adaptive clip). Every method takes an optional segment ``table``;
    without one the vector is one flat segment with ``config.clip``. ``parameters``
    are extra ``(name, value)`` entries bound into every round's session descriptor
    (e.g. the round's sparsity subset, :mod:`fl_core.compression`).
    """

    config: QuantizationConfig
    parameters: tuple[tuple[str, Parameter], ...] = ()

    #: The errors of :meth:`encode_integers` that withhold a client in :meth:`encode_round`.
    WITHHELD_ERRORS: ClassVar[tuple[type[Exception], ...]] = (ConfigurationError,)

    @classmethod
    def create(
        cls,
        num_clients: int,
        *,
        clip: float = DEFAULT_CLIP,
        bits: int = DEFAULT_BITS,
        ring_bits: int | str | None = None,
        max_samples_per_client: int = DEFAULT_MAX_SAMPLES_PER_CLIENT,
    ) -> WeightedQuantizer:
        """A quantizer for up to ``num_clients`` summands; ConfigurationError if it could overflow.

        ``ring_bits``: an int in 8..64 names the ring Z_(2^b) (a narrow ring's encodings are
        masked and sent bit-packed, b bits a coordinate); ``None`` (the default) picks the
        smaller word ring that cannot overflow for this federation: Z_(2^32) up to 16 clients
        at the default bounds, Z_(2^64) beyond; ``"smallest"`` picks the smallest b in 8..64
        the overflow rule allows (:func:`secagg.encoding.smallest_ring_bits`). :attr:`config`
        says which was chosen. A narrow ring also bounds the segments (see :meth:`check_table`).
        ConfigurationTypeError for a count that is no integer (a ``str``, a ``bool``)."""
        num_clients = require_int("num_clients", num_clients)
        bits = require_int("bits", bits)
        max_samples_per_client = require_int("max_samples_per_client", max_samples_per_client)
        ring_bits = resolve_ring_bits(ring_bits, bits, num_clients, max_samples_per_client)
        return cls(QuantizationConfig(clip, bits, num_clients, ring_bits, max_weight=max_samples_per_client))

    @property
    def max_samples_per_client(self) -> int:
        """The public bound on one client's sample count."""
        return self.config.max_weight

    def flat_table(self, vector_length: int) -> SegmentTable:
        """One segment over ``vector_length`` coordinates with ``config.clip``."""
        return SegmentTable.flat(vector_length, self.config.clip)

    def check_table(self, table: SegmentTable) -> SegmentTable:
        """``table`` if its clipped counts cannot wrap the ring for ``num_clients`` clients
        (``num_clients * longest segment <= 2^(ring-1) - 1``), every float segment has a clip
        and every clip's scale is finite (:func:`secagg.segments.check_scales`); ConfigurationError otherwise."""
        longest = max(s.length for s in table.segments)
        if self.config.num_clients * longest > self.config.limit:
            raise ConfigurationError(
                f"clipped counts could overflow Z_(2^{self.config.ring_bits}): {self.config.num_clients} clients "
                f"x a segment of {longest} coordinates; split the segment or use a wider ring (ring_bits >= "
                f"{(self.config.num_clients * longest).bit_length() + 1})"
            )
        if not table.resolved:
            raise ConfigurationError("every float segment needs a clip before encoding")
        return check_scales(table, self.config.bits)

    def descriptor(
        self, server_round: int, table: SegmentTable | None = None, *, model_digest: bytes = NO_MODEL, run_id: int = 0
    ) -> bytes:
        """The digest of round ``server_round``'s :class:`~secagg.descriptor.SessionDescriptor`:
        this quantization, the weight (the sample count), as its layout digest the segment table
        with every segment's clip (:meth:`SegmentTable.digest`), the round's model digest
        (:func:`fl_core.aggregators.binding.model_digest`) and the aggregator's run id."""
        return SessionDescriptor.create(
            self.config,
            weight_key="num_samples",
            server_round=server_round,
            layout_digest=bytes(32) if table is None else table.digest(),
            model_digest=model_digest,
            run_id=run_id,
            parameters=dict(self.parameters),
        ).digest()

    def encoded_length(self, vector_length: int, table: SegmentTable | None = None) -> int:
        """Length of an encoding: the coordinates, one count per segment, the weight."""
        return vector_length + (1 if table is None else len(table.segments)) + 1

    def encode_integers(
        self, update: ClientUpdate, rng: np.random.Generator, table: SegmentTable | None = None
    ) -> npt.NDArray[np.int64]:
        """``(n_k * q_k, c_k, n_k)`` as signed int64, with ``rng`` the client's rounding randomness.

        Raises ConfigurationError if ``num_samples`` exceeds the public bound or an
        integer segment holds a value it must refuse.
        """
        n_k = update.num_samples
        if n_k > self.config.max_weight:
            raise ConfigurationError(
                f"client {update.client_id}: {n_k} samples exceeds the declared bound "
                f"max_samples_per_client={self.config.max_weight}"
            )
        table = self.check_table(self.flat_table(update.vector.shape[0]) if table is None else table)
        try:
            q, counts = quantize_segments(update.vector, table, self.config.bits, rng)
        except ConfigurationError as exc:
            raise ConfigurationError(f"client {update.client_id}: {exc}") from exc
        d = q.shape[0]
        encoded: npt.NDArray[np.int64] = np.empty(d + len(counts) + 1, dtype=np.int64)
        np.multiply(q, n_k, out=encoded[:d])
        encoded[d:-1] = counts
        encoded[-1] = n_k
        return encoded

    def encode(self, update: ClientUpdate, rng: np.random.Generator, table: SegmentTable | None = None) -> RingVector:
        """:meth:`encode_integers` in two's complement in the config's ring."""
        return to_ring(self.encode_integers(update, rng, table), self.config)

    def encode_all(
        self, updates: Sequence[ClientUpdate], rng: np.random.Generator, table: SegmentTable | None = None
    ) -> dict[int, RingVector]:
        """Ring encodings of ``updates`` keyed by client id.

        Draws exactly one number from ``rng`` (the round seed) and gives each
        client its own rounding generator (:func:`client_rounding_rng`). Raises if any
        client cannot be encoded; aggregators call :meth:`encode_round`, which withholds it.
        """
        round_seed = self.round_seed(rng)
        return {u.client_id: self.encode(u, client_rounding_rng(round_seed, u.client_id), table) for u in updates}

    def encode_all_integers(
        self, updates: Sequence[ClientUpdate], rng: np.random.Generator, table: SegmentTable | None = None
    ) -> dict[int, npt.NDArray[np.int64]]:
        """Like :meth:`encode_all` but signed int64 encodings (for non-ring sums)."""
        round_seed = self.round_seed(rng)
        return {
            u.client_id: self.encode_integers(u, client_rounding_rng(round_seed, u.client_id), table) for u in updates
        }

    def check_layout(self, vector_length: int, table: SegmentTable | None = None) -> None:
        """What must hold for every client of a round before any is encoded (ConfigurationError
        otherwise): here the table's (:meth:`check_table`)."""
        self.check_table(self.flat_table(vector_length) if table is None else table)

    def encode_round(
        self,
        updates: Sequence[ClientUpdate],
        stages: Mapping[int, DropoutStage],
        rng: np.random.Generator,
        table: SegmentTable | None = None,
        *,
        ring: bool = True,
    ) -> EncodedRound:
        """Every client's encoding (ring, or signed int64 with ``ring=False``), as :meth:`encode_all`
        draws it, except that a client whose update cannot be encoded (a ConfigurationError of
        :meth:`encode_integers`, or another of :attr:`WITHHELD_ERRORS`) is withheld (see the
        module docstring) instead of ending the round for everyone. :meth:`check_layout` is
        checked first: a refusal for everyone stays one. The round's length is the table's (the
        first update's without one); a client of another length is withheld too (aggregators
        refuse one before, :func:`fl_core.aggregators.binding.check_lengths`)."""
        round_seed = self.round_seed(rng)
        length = updates[0].vector.shape[0] if table is None else table.size
        self.check_layout(length, table)
        silent = dict(stages)
        encodings: dict[int, Any] = {}
        withheld: list[tuple[int, str]] = []
        for update in updates:
            client = update.client_id
            try:
                if update.vector.shape[0] != length:
                    raise ConfigurationError(f"its update has {update.vector.shape[0]} values, the round's {length}")
                integers = self.encode_integers(update, client_rounding_rng(round_seed, client), table)
            except self.WITHHELD_ERRORS as exc:
                withheld.append((client, str(exc).removeprefix(f"client {client}: ")))
                silent[client] = min(silent.get(client, DropoutStage.UPLOAD), DropoutStage.UPLOAD)
                integers = np.zeros(self.encoded_length(length, table), dtype=np.int64)
            encodings[client] = to_ring(integers, self.config) if ring else integers
        return EncodedRound(encodings, silent, tuple(withheld))

    @staticmethod
    def round_seed(rng: np.random.Generator) -> int:
        """The one draw from the round's ``rng`` that seeds every client's rounding."""
        return int(rng.integers(0, 2**63 - 1))

    def ring_sum(self, encodings: Sequence[RingVector]) -> RingVector:
        """The plain ring sum of encodings (what a secure protocol computes obliviously)."""
        if not encodings:
            raise ConfigurationError("cannot sum zero encodings")
        return self.config.ring.sum(encodings, encodings[0].shape[0])

    def decode(self, total: RingVector, num_summands: int, table: SegmentTable | None = None) -> FloatVector:
        """The weighted mean from the ring sum of ``num_summands`` encodings (see :meth:`decode_sum`)."""
        return self.decode_sum(self.integers_of(total), num_summands, table).mean

    def integers_of(self, total: RingVector) -> npt.NDArray[np.int64]:
        """A ring sum read as signed integers."""
        return from_ring(self.config.ring.check(total), self.config)

    def decode_integers(
        self, total: npt.NDArray[Any], num_summands: int, table: SegmentTable | None = None
    ) -> FloatVector:
        """The weighted mean from the exact integer sum (see :meth:`decode_sum`)."""
        return self.decode_sum(total, num_summands, table).mean

    def decode_sum(self, total: npt.NDArray[Any], num_summands: int, table: SegmentTable | None = None) -> DecodedSum:
        """Mean, clipping report and sample total from the exact integer sum of ``num_summands`` encodings.

        ``total`` is ``(sum n_k q_k, sum c_k, sum n_k)``; segment s of the mean is
        ``sum n_k q_k / (scale_s * sum n_k)`` (scale 1 for an integer segment).
        Raises OverflowDetectedError if a coordinate, a count or the sample total
        is impossible for that many encodings. Issues a ClippingWarning above
        :data:`secagg.segments.CLIPPING_WARNING_LEVEL`.
        """
        integers = np.asarray(total)
        if integers.ndim != 1 or integers.shape[0] < 3 or integers.dtype.kind not in "iu":
            raise ConfigurationError("an encoded sum is a one-dimensional integer array of at least three entries")
        if not 1 <= num_summands <= self.config.num_clients:
            raise ConfigurationError(f"num_summands must be in 1..{self.config.num_clients}, got {num_summands}")
        table = self.flat_table(integers.shape[0] - 2) if table is None else table
        d, segments = table.size, len(table.segments)
        if integers.shape[0] != d + segments + 1:
            raise ConfigurationError(f"expected {d + segments + 1} encoded entries, got {len(integers)}")
        bound = num_summands * self.config.max_weight
        weight_total = int(integers[-1])
        if not num_summands <= weight_total <= bound:
            raise OverflowDetectedError(
                f"decoded sample total {weight_total} is impossible for {num_summands} clients "
                f"with at most {self.config.max_weight} samples each"
            )
        sums = integers[:d].astype(np.int64)
        # Compare min and max, not abs: np.abs(-2^63) overflows int64 and stays negative.
        if int(sums.min()) < -bound * self.config.qmax or int(sums.max()) > bound * self.config.qmax:
            raise OverflowDetectedError(
                f"decoded sum exceeds {bound * self.config.qmax}, the largest value {num_summands} encodings can reach"
            )
        counts = [int(c) for c in integers[d:-1]]
        for segment, count in zip(table.segments, counts, strict=True):
            if not 0 <= count <= num_summands * segment.length:
                raise OverflowDetectedError(
                    f"segment {segment.name!r}: clipped count {count} is impossible for {num_summands} clients"
                )
        scales = np.empty(d, dtype=np.float64)
        for segment, part in table.slices():
            scales[part] = 1.0 if segment.clip is None else self.config.qmax / segment.clip
        mean: FloatVector = sums.astype(np.float64) / (scales * weight_total)
        return DecodedSum(mean, clipping_report(table, counts, num_summands), weight_total)
