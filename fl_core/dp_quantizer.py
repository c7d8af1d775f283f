"""The DP quantizer: a hospital's noised integer encoding inside fl_core's secure sums.

:class:`DPQuantizer` is a :class:`~fl_core.aggregators.quantizer.WeightedQuantizer` whose
encodings are noised sums (:func:`secagg.dp.encoding.noised_encoding`: no weight coordinate, no
clipped count, one flat range; see :mod:`fl_core.dp` for the rules). Any aggregator built on a
WeightedQuantizer (plain-quantized, secagg, secagg+, paillier) sums these encodings unchanged.

**Noise beyond its room costs only its hospital.** A hospital's noise exceeds the room its
encoding keeps for it (:func:`secagg.dp.encoding.noise_overflow`) with probability below
``d * 2^-64``, whatever the data (the refusal residual, accounted in delta). :meth:`encode_round`
withholds such a hospital (its noise never released) as it withholds one it cannot encode, and
refuses (InsufficientNoiseError) a round left with fewer than h uploaders. :class:`~fl_core.dp.DPAggregator`
draws every hospital's noise *before* the round is charged (:meth:`DPQuantizer.draw_noise`) and
hands it to the encodings of that round (:attr:`DPQuantizer.drawn_noise`), so a round that noise
leaves below h is skipped uncharged, and the noise checked is the noise sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from fl_core.aggregators.base import ClientUpdate, DropoutStage, FloatVector, uploaders
from fl_core.aggregators.binding import NO_MODEL
from fl_core.aggregators.quantizer import DecodedSum, EncodedRound, WeightedQuantizer
from secagg.descriptor import SessionDescriptor
from secagg.dp import NoisePlan, RandomSource, check_contributors, noise_tail_bound
from secagg.dp.config import DP_PARAMETER_PREFIX
from secagg.dp.encoding import check_contribution, noise_overflow, noised_encoding, own_noise
from secagg.dp.poisson import poisson_mask
from secagg.errors import ConfigurationError, OverflowDetectedError
from secagg.segments import ClippingReport, SegmentTable

__all__ = ["DPQuantizer"]


@dataclass(frozen=True)
class DPQuantizer(WeightedQuantizer):
    """A :class:`WeightedQuantizer` whose encodings are noised sums (no weight coordinate).

    Any aggregator built on a WeightedQuantizer (plain-quantized, secagg, secagg+,
    paillier) sums these encodings unchanged; :meth:`decode_integers` returns the noised
    *sum* in model units (not a mean) and refuses a sum of fewer than h encodings.
    ``max_patients``: the public bound on a hospital's patients its range was sized for
    (``max_samples_per_client``); :class:`DPAggregator` refuses a hospital declaring more,
    before anything is encoded. It has no default: ``max_patients=None``, by name, gives that
    refusal up, and a hospital with more patients than the range holds is then refused (or not)
    by its data when it encodes, which the server sees (:func:`~fl_core.dp_build.make_dp_aggregator`
    always passes its ``max_samples_per_client``).
    """

    plan: NoisePlan = field(kw_only=True)
    tail_bound: int = field(kw_only=True)
    max_patients: int | None = field(kw_only=True)
    noise_source: RandomSource | None = field(default=None, kw_only=True, repr=False, compare=False)
    drawn_noise: dict[int, npt.NDArray[np.int64]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    """Client id -> the noise drawn for its next encoding before the round was charged
    (:meth:`draw_noise`); :meth:`encode_integers` takes it (once) instead of drawing. Empty between rounds."""

    def __post_init__(self) -> None:
        # The noise and every Poisson sample come from noise_source: a numpy Generator (predictable) or
        # an object without random_bytes(n) is refused here, at setup, by the samples' own check.
        poisson_mask(0, None, self.noise_source)

    #: A hospital whose encoding raises one of these is withheld (its noise beyond its room included).
    WITHHELD_ERRORS: ClassVar[tuple[type[Exception], ...]] = (ConfigurationError, OverflowDetectedError)

    def descriptor(
        self, server_round: int, table: SegmentTable | None = None, *, model_digest: bytes = NO_MODEL, run_id: int = 0
    ) -> bytes:
        """The round's descriptor digest: the encoding, the segment table (if any), every
        ``secagg.dp.*`` parameter (epsilon, delta, rounds, l2 clip, sampling rate, h, sigma^2,
        dimension, sensitivity), the round's model digest and run id and, as for any
        :class:`WeightedQuantizer`, the extra ``parameters`` entries (ConfigurationError if one
        is named like a DP parameter)."""
        entries = self.plan.config.descriptor_parameters(self.plan)
        shadowing = sorted(name for name, _ in self.parameters if name.startswith(DP_PARAMETER_PREFIX))
        if shadowing:
            raise ConfigurationError(f"a bound entry takes the DP parameter name {shadowing[0]!r}")
        return SessionDescriptor.create(
            self.config,
            server_round=server_round,
            layout_digest=bytes(32) if table is None else table.digest(),
            model_digest=model_digest,
            run_id=run_id,
            parameters={**entries, **dict(self.parameters)},
        ).digest()

    def encoded_length(self, vector_length: int, table: SegmentTable | None = None) -> int:
        """The contribution's coordinates only: no sample count and no clipped count is sent in DP mode."""
        return vector_length

    def encode_integers(
        self, update: ClientUpdate, rng: np.random.Generator, table: SegmentTable | None = None
    ) -> npt.NDArray[np.int64]:
        """:func:`noised_encoding` of ``update.vector`` (``num_samples`` is not used or sent; one
        flat range, so ``table`` must be the flat one or None)."""
        if table is not None and len(table.segments) != 1:
            raise ConfigurationError("DP mode encodes one flat range: per-segment clip tables are not used")
        noise = self.drawn_noise.pop(update.client_id, None)
        try:
            return noised_encoding(self.plan, self.config, update.vector, rng, self.noise_source, noise=noise)
        except OverflowDetectedError as exc:
            raise OverflowDetectedError(f"client {update.client_id}: {exc}") from exc

    def draw_noise(
        self, updates: Sequence[ClientUpdate], stages: Mapping[int, DropoutStage]
    ) -> tuple[dict[int, npt.NDArray[np.int64]], tuple[tuple[int, str], ...]]:
        """Every client's noise for this round, drawn in round order (one draw each, as encoding
        them would), and the uploaders whose noise exceeds its room, with the reason
        (:func:`~secagg.dp.encoding.noise_overflow`). Such a client's noise is replaced by zeros:
        it must be withheld (its stand-in is never sent), so its noise is never released."""
        sending = {u.client_id for u in uploaders(updates, stages)}
        drawn: dict[int, npt.NDArray[np.int64]] = {}
        beyond: list[tuple[int, str]] = []
        for update in updates:
            noise = own_noise(self.plan, self.noise_source)
            reason = noise_overflow(self.plan, noise)
            if reason is not None:
                noise = np.zeros_like(noise)
                if update.client_id in sending:
                    beyond.append((update.client_id, reason))
            drawn[update.client_id] = noise
        return drawn, tuple(beyond)

    def check_layout(self, vector_length: int, table: SegmentTable | None = None) -> None:
        """ConfigurationError unless the round's vectors have the plan's dimension, in one flat range."""
        if table is not None and len(table.segments) != 1:
            raise ConfigurationError("DP mode encodes one flat range: per-segment clip tables are not used")
        if vector_length != self.plan.dimension:
            raise ConfigurationError(f"a DP contribution has {self.plan.dimension} coordinates, got {vector_length}")

    def refusal(self, update: ClientUpdate) -> str | None:
        """Why ``update`` cannot be encoded (more patients than ``max_patients``, on its public count; a
        contribution beyond the range, :func:`secagg.dp.encoding.check_contribution`), or None. Drawn
        from no noise: :class:`DPAggregator` asks before the round is charged."""
        if self.max_patients is not None and update.num_samples > self.max_patients:
            return (
                f"{update.num_samples} patients exceeds max_samples_per_client = {self.max_patients}: its clipped "
                "sum may leave the encoding's range"
            )
        try:
            check_contribution(self.plan, self.config, update.vector)
        except ConfigurationError as exc:
            return str(exc)
        return None

    def encode_round(
        self,
        updates: Sequence[ClientUpdate],
        stages: Mapping[int, DropoutStage],
        rng: np.random.Generator,
        table: SegmentTable | None = None,
        *,
        ring: bool = True,
    ) -> EncodedRound:
        """As :meth:`WeightedQuantizer.encode_round`; InsufficientNoiseError if the withheld hospitals
        leave fewer than h uploaders (before anything is sent: never a sum with less noise than planned)."""
        encoded = super().encode_round(updates, stages, rng, table, ring=ring)
        if encoded.withheld:
            check_contributors(self.plan, len(uploaders(updates, encoded.stages)))
        return encoded

    def decode_sum(self, total: npt.NDArray[Any], num_summands: int, table: SegmentTable | None = None) -> DecodedSum:
        """The noised sum in model units (``mean`` holds the **sum**), from the integer sum of
        ``num_summands`` encodings; the clipping report counts zero (nothing is clipped by
        construction) and ``weight_total`` is 0 (no count is sent).

        InsufficientNoiseError if ``num_summands`` is below h; OverflowDetectedError if a
        coordinate lies beyond ``num_summands * qmax`` plus the noise tail bound."""
        integers = np.asarray(total)
        if integers.ndim != 1 or integers.dtype.kind not in "iu":
            raise ConfigurationError("an encoded sum is a one-dimensional integer array")
        check_contributors(self.plan, num_summands)
        if num_summands > self.config.num_clients:
            raise ConfigurationError(f"num_summands must be at most {self.config.num_clients}, got {num_summands}")
        bound = num_summands * self.config.qmax + noise_tail_bound(self.plan, num_summands)
        sums = integers.astype(np.int64)
        if int(sums.min()) < -bound or int(sums.max()) > bound:
            raise OverflowDetectedError(f"decoded DP sum exceeds {bound}, beyond what {num_summands} encodings reach")
        noised: FloatVector = sums.astype(np.float64) / self.config.scale
        flat = self.flat_table(sums.shape[0]) if table is None else table
        report = ClippingReport(flat, (0,) * len(flat.segments), num_summands)
        return DecodedSum(mean=noised, clipping=report, weight_total=0)
