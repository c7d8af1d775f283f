"""Fewer bytes per parameter: shared-seed partial updates with error feedback, and a byte budget.

:class:`SparseAggregator` wraps any aggregator of :mod:`fl_core.aggregators`. Each
round it draws a public 32-byte seed from the round's public randomness (the
``rng`` FedAvg passes, the same for every hospital), derives the round's subset of
coordinates from it (:class:`secagg.sparsity.Subset`), binds the subset into the
round's session descriptor (the inner aggregator's quantizer carries the
``secagg.sparsity.*`` entries), and lets every hospital send only those
coordinates of its update plus its residual (:class:`secagg.sparsity.ErrorFeedback`).
The inner aggregator sums the shorter vectors as it sums any vector; the server
scatters the mean back to full length (zeros elsewhere). A hospital keeps its new
residual only when its contribution is in the round's aggregate; the residuals are
per hospital and never leave it (in this simulation: never reach the aggregator).
They cover the float segments only: an exact integer segment (an adapter's
``num_batches_tracked``) holds whole numbers within ``+-qmax`` or the hospital is
withheld, and a backlog of its unsent changes (a counter rising by 50 a round) would
soon pass ``qmax`` and have every hospital withheld whenever a round draws it, for good.
An integer coordinate not sent keeps the global value that round; each round sends its
own change.

:class:`CompressionConfig` says how many coordinates to send: a ``fraction``, or a
``bytes_per_parameter`` budget for the *protected update* (the masked vector or the
ciphertexts, with the encoding's counts) per hospital per round, from which the largest
subset that fits is chosen for the aggregator's encoding
(:func:`protected_update_bytes`). A budget that not even one coordinate fits is
refused, naming the option as the user typed it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fl_core.aggregators.base import (
    AggregationResult,
    Aggregator,
    ClientUpdate,
    DropoutStage,
    FloatVector,
    check_round,
)
from fl_core.aggregators.binding import check_models
from fl_core.aggregators.plain import FLOAT_SIZE
from fl_core.wrapping import Screened, WrappingAggregator, innermost
from secagg._validate import require_bool, require_int
from secagg.errors import ConfigurationError
from secagg.segments import Segment, SegmentTable
from secagg.sparsity import PARAMETER_PREFIX, SEED_SIZE, ErrorFeedback, Subset, count_for_fraction, restrict

__all__ = ["CompressionConfig", "SparseAggregator", "protected_update_bytes", "restrict"]


@dataclass(frozen=True)
class CompressionConfig:
    """How much of each update a hospital sends per round.

    Attributes:
        fraction: the share of coordinates sent, in (0, 1]; None with a budget.
        coordinates: instead, the number of coordinates sent (at most the model's parameter
            count; :mod:`fl_core.budget` gives the count it chose).
        bytes_per_parameter: the budget of the protected update per hospital per
            round, divided by the model's parameter count (the uncompressed 32-bit
            ring costs 4 (d + 1) / d); None with a fraction.
        error_feedback: keep what was not sent and add it to the next update (default; True or
            False only, ConfigurationTypeError otherwise). The residual is kept per client id, so
            every round must give a hospital the same id (the PyTorch and Keras
            ``aggregate_models`` refuse their default ids: :func:`fl_core.wrapping.keeps_residuals`);
            exact integer segments keep none (module docstring).
        option: the option's name in error messages, as the user typed it
            (``--bytes-per-parameter`` on the command line).
    """

    fraction: float | None = None
    bytes_per_parameter: float | None = None
    coordinates: int | None = None
    error_feedback: bool = True
    option: str = "bytes_per_parameter"

    def __post_init__(self) -> None:
        given = [value for value in (self.fraction, self.bytes_per_parameter, self.coordinates) if value is not None]
        if len(given) != 1:
            raise ConfigurationError(
                "compression takes one of a fraction, a number of coordinates or a bytes_per_parameter budget"
            )
        require_bool("CompressionConfig.error_feedback", self.error_feedback)  # "false" is truthy
        if self.coordinates is not None:
            require_int("compression coordinates", self.coordinates, 1)
        if self.fraction is not None:
            count_for_fraction(self.fraction, 1)  # range check only
        budget = self.bytes_per_parameter
        if budget is not None and (
            isinstance(budget, bool) or not isinstance(budget, int | float) or not math.isfinite(budget) or budget <= 0
        ):
            raise ConfigurationError(f"{self.option} must be a positive number of bytes, got {budget!r}")

    def count(self, aggregator: Aggregator, dimension: int) -> int:
        """k, the coordinates sent per round for a ``dimension``-parameter model through ``aggregator``.

        Raises ConfigurationError if the budget cannot be met.
        """
        if self.fraction is not None:
            return count_for_fraction(self.fraction, dimension)
        if self.coordinates is not None:
            if self.coordinates > dimension:
                raise ConfigurationError(
                    f"compression sends {self.coordinates} coordinates, more than the model's {dimension}"
                )
            return self.coordinates
        assert self.bytes_per_parameter is not None
        allowed = self.bytes_per_parameter * dimension
        smallest = protected_update_bytes(aggregator, 1)
        if smallest > allowed:
            raise ConfigurationError(
                f"{self.option} {self.bytes_per_parameter:g} cannot be met with {aggregator.name}: even one "
                f"coordinate (with the encoding's counts) takes {smallest:,} bytes, {smallest / dimension:.3g} "
                f"bytes per parameter of this {dimension:,}-parameter model; allow at least that, or use another "
                "aggregation"
            )
        low, high = 1, dimension  # the largest k whose protected update fits
        while low < high:
            middle = (low + high + 1) // 2
            if protected_update_bytes(aggregator, middle) <= allowed:
                low = middle
            else:
                high = middle - 1
        return low


def protected_update_bytes(aggregator: Aggregator, count: int) -> int:
    """Bytes of one hospital's protected update carrying ``count`` coordinates and the encoding's counts.

    The masked vector for masking (and ``plain-quantized``): ``ceil(length * b / 8)`` bytes
    in Z_(2^b), bit-packed as MaskedInput carries it (4 bytes a value in Z_(2^32));
    the ciphertexts for Paillier; float64 values for ``plain``. Protocol messages
    (keys, shares, signatures) are not included (they do not depend on the subset).
    Under a rotation (:class:`fl_core.rotated.RotatedAggregator`) the ``count``
    coordinates are padded to the rotation's blocks first: the padding is sent too.
    """
    inner = aggregator.inner if isinstance(aggregator, SparseAggregator) else aggregator
    quantizer = getattr(inner, "quantizer", None)
    if quantizer is None:
        return FLOAT_SIZE * (count + 1)
    sent = inner.sent_length(count) if isinstance(inner, WrappingAggregator) else count
    length = int(quantizer.encoded_length(sent))
    protocol = innermost(inner)
    layout = getattr(protocol, "layout", None)
    if layout is not None:  # Paillier: whole ciphertexts of packed slots (two limbs per value if split)
        values = 2 * length if getattr(protocol, "split", False) else length
        ciphertext_bytes = int(protocol.material.public.key.ciphertext_bytes)  # type: ignore[attr-defined]
        return int(layout.num_plaintexts(values)) * ciphertext_bytes
    return -(-int(quantizer.config.ring_bits) * length // 8)


class SparseAggregator(WrappingAggregator):
    """``inner`` summing, each round, only a public seeded subset of the coordinates.

    See the module docstring. ``name``, ``guarantee`` and ``quantizer`` are the inner
    aggregator's (:class:`~fl_core.wrapping.WrappingAggregator`).
    """

    KIND = "compressed"

    def __init__(self, inner: Aggregator, compression: CompressionConfig) -> None:
        super().__init__(inner)
        self.compression = compression
        self._feedback: dict[int, ErrorFeedback] = {}
        self._counts: dict[int, int] = {}
        self.last_subset: Subset | None = None

    def count(self, dimension: int) -> int:
        """k for this dimension (cached); ConfigurationError if the budget cannot be met."""
        if dimension not in self._counts:
            self._counts[dimension] = self.compression.count(self.inner, dimension)
        return self._counts[dimension]

    def protected_bytes_per_parameter(self, dimension: int) -> float:
        """Protected update bytes per hospital per round, divided by ``dimension``."""
        return protected_update_bytes(self.inner, self.count(dimension)) / dimension

    def keeps_residuals(self) -> bool:
        """True with error feedback (each hospital's residual is kept under its client id)."""
        return self.compression.error_feedback or super().keeps_residuals()

    def residual(self, client_id: int) -> np.ndarray[Any, np.dtype[np.float64]] | None:
        """A copy of hospital ``client_id``'s residual (its own state; for tests and inspection: a
        caller cannot change the state through it)."""
        feedback = self._feedback.get(client_id)
        return None if feedback is None else feedback.residual.copy()

    def aggregate(
        self,
        updates: Sequence[ClientUpdate],
        dropouts: Mapping[int, DropoutStage] | None = None,
        *,
        rng: np.random.Generator,
        segments: SegmentTable | None = None,
        model_digest: bytes | None = None,
    ) -> AggregationResult:
        """The inner aggregator's mean of the subset, scattered back to full length.

        ``segments`` (of the full vector) become the segments of the subset: each keeps its
        name, clip and kind over the coordinates of it that are sent. A hospital whose update
        plus residual leaves binary64 is withheld (:meth:`WrappingAggregator.hand_on`); its
        residual is kept as it was, as is that of every hospital the aggregate does not include.
        The round's dimension is decided by authority (:func:`~fl_core.aggregators.binding.check_lengths`):
        a hospital of another length is refused (a stand-in handed on, its residual untouched); one
        of another model is handed on as a stand-in for the inner aggregator to refuse."""
        start = time.perf_counter()
        stages = check_round(updates, dropouts, rng=rng)
        models = check_models(updates, model_digest)
        if models.skipped_reason is not None:  # no model is the round's: skipped as the bare round is
            return self.unmodelled(updates, stages, rng=rng, segments=segments, start=start)
        screened = Screened.of(updates, models, segments)
        dimension, updates, refused = screened.dimension, screened.updates, screened.refused
        stages = screened.stages(stages)
        if segments is not None:
            self._check_every_draw(segments, self.count(dimension))
        subset = Subset.random(rng.bytes(SEED_SIZE), dimension, count=self.count(dimension))
        self.last_subset = subset
        self.bind(PARAMETER_PREFIX, subset.descriptor_parameters())
        pending: dict[int, FloatVector] = {}
        integer = _integer_coordinates(segments)
        if self.compression.error_feedback:
            held = ((c, self._dimension(c)) for c in (u.client_id for u in updates) if c not in refused)
            stale = sorted(c for c, residual in held if residual not in (None, dimension))
            if stale:
                raise ConfigurationError(
                    f"clients {stale} hold residuals of another dimension than this round's {dimension} coordinates"
                )

        def send(update: ClientUpdate) -> FloatVector:
            if update.client_id in refused:  # never joins: a stand-in, its residual untouched
                return np.zeros(subset.count)
            if not self.compression.error_feedback:
                return subset.gather(update.vector)
            feedback = self._feedback.setdefault(update.client_id, ErrorFeedback(dimension))
            if integer is not None:  # none for exact integer segments (module docstring), nor one kept as float
                feedback.residual[integer] = 0.0
            # Refused (ConfigurationError) if the update plus the residual leaves binary64: withheld.
            sent, kept = feedback.prepare(update.vector, subset)
            if integer is not None:
                kept[integer] = 0.0
            pending[update.client_id] = kept
            return sent

        short, stages, withheld = self.hand_on(updates, stages, subset.count, send)
        if segments is None:
            result = self.inner.aggregate(short, stages, rng=rng, model_digest=model_digest)
        else:
            result = self.inner.aggregate(
                short, stages, rng=rng, segments=restrict(segments, subset), model_digest=model_digest
            )
        result = screened.reported(result)
        if result.mean is None:
            return self.report(result, withheld, None, start)
        for client in result.included:  # only these hospitals' values are in the aggregate
            if client in pending:
                self._feedback[client].commit(pending[client])
        return self.report(result, withheld, subset.scatter(result.mean), start)

    def _check_every_draw(self, segments: SegmentTable, count: int) -> None:
        """The round's table check at the longest segments any draw of ``count`` coordinates can give
        (each segment holding min(its length, count)), so a setting some draw would overflow is refused
        whatever this round drew, never by an unlucky later draw mid-run (as over Flower: spec 15.8).
        The wrappers under it check the table's shape (a rotation takes one float segment), then the
        protocol its counts (:meth:`PaillierAggregator.check_table` adds the packing slot's bound to
        the quantizer's); nothing to check for one segment or one coordinate (every draw gives the
        same shape, which the inner aggregator checks)."""
        if len(segments.segments) == 1 or count == 1:
            return
        longest = SegmentTable(
            tuple(Segment(s.name, min(s.length, count), s.clip, s.integer) for s in segments.segments)
        )
        if isinstance(self.inner, WrappingAggregator):  # a rotation under it takes one float segment only
            self.inner.check_segments(longest)
        protocol, quantizer = innermost(self.inner), self.quantizer
        schedule = getattr(protocol, "schedule", None)
        if quantizer is None or schedule is None:
            return
        check = getattr(protocol, "check_table", quantizer.check_table)
        try:
            check(schedule.table(longest.size, longest))
        except ConfigurationError as exc:
            most = max(s.length for s in longest.segments)
            raise ConfigurationError(
                f"{exc} (a round's subset of {count} coordinates can put up to {most} in one segment: refused "
                "whatever this round drew; send fewer coordinates, or widen the ring or the bits)"
            ) from exc

    def _dimension(self, client_id: int) -> int | None:
        """The dimension of hospital ``client_id``'s residual, None before its first round."""
        feedback = self._feedback.get(client_id)
        return None if feedback is None else feedback.dimension


def _integer_coordinates(segments: SegmentTable | None) -> np.ndarray[Any, np.dtype[np.bool_]] | None:
    """True at the coordinates of ``segments``' exact integer segments; None if it has none."""
    if segments is None or not any(s.integer for s in segments.segments):
        return None
    mask = np.zeros(segments.size, dtype=np.bool_)
    for segment, part in segments.slices():
        mask[part] = segment.integer
    return mask
