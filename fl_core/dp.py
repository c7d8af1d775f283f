"""Distributed DP inside fl_core's secure sum: each hospital noises its own integer encoding.

A DP round (DP-FedSGD with distributed noise, patient-level; :mod:`fl_core.dp_training`
builds the float contributions):

1. every sampled hospital Poisson-samples its patients at rate q, computes each sampled
   patient's loss gradient at the global model, clips it to L2 norm ``l2_clip`` and sums;
2. it encodes that sum with :func:`noised_encoding`: scale by ``scale`` (a power of two),
   stochastic rounding to integers, then ``+ N_Z(0, sigma^2)`` per coordinate from the exact
   sampler (:func:`secagg.dp.sample_discrete_gaussian`, OS CSPRNG), all on the hospital,
   **before** masking or encryption;
3. the aggregator sums the noised encodings securely; the server decodes the noised sum
   and divides by a public denominator (:func:`fl_core.dp_training.public_denominator`).

**Sensitivity.** Adding or removing one patient changes one hospital's float sum by one
clipped gradient, so by at most ``l2_clip`` in L2, and the sum over hospitals by the same.
After scaling and stochastic rounding the integer sum moves by at most
``Delta2 = l2_clip * scale + sqrt(d)`` (:mod:`secagg.dp.calibration` gives the coupling
argument); σ² is calibrated for that Δ2, h honest hospitals and the planned rounds.

**No coordinate clipping in DP mode (the rule).** A hospital's sum has at most
``max_samples_per_client`` terms of norm <= ``l2_clip``, so every coordinate lies in
``[-R, R]`` with ``R = max_samples_per_client * l2_clip``; the encoding's range is set to
at least R, so the quantizer never clips a coordinate and there is no clipped-coordinate
count to report through the secure sum (it would be a data-dependent, un-noised
release). :func:`noised_encoding` refuses (ConfigurationError) a contribution beyond the
range less room for its own noise (it contains ``[-R, R]``) instead of clipping it. No
sample count is sent: the encoding has no weight coordinate, the denominator is public.

**One faulty hospital costs only itself.** :class:`DPAggregator` withholds, before the round is
charged and before anything is sent, a hospital declaring more than ``max_samples_per_client``
patients (on its public count) or whose contribution the encoding refuses (beyond the range: never
an honest one): it goes silent at ``UPLOAD`` (a stand-in of zeros, never sent, keeps the round's
shape) and is named with the reason in the result's ``withheld``. The contributor check below
counts the others only, so withholding never releases a sum with fewer than h noise shares.

The encoding itself (:func:`noised_encoding`, :func:`dp_quantization`, :func:`dp_scale`) lives in
:mod:`secagg.dp.encoding`, shared with the Flower adapter; this module re-exports it.

**Overflow.** :func:`dp_quantization` sizes ``qmax`` for one hospital's clipped sum plus
its own noise (``noise_room(plan)``, exceeded with probability below 2^-64 per coordinate,
a residual the accounted delta includes; :func:`noised_encoding` refuses an encoding beyond
it), so every protocol's
per-value bound (ring, Paillier slots) holds for noised encodings, and picks the ring so
that ``n * qmax + noise_tail_bound(plan, n)`` fits; it refuses otherwise. Decoding checks
that bound and raises OverflowDetectedError beyond it.

**The honest floor (one rule with Flower, :mod:`secagg.dp.floors`).** The noise a released sum
carries is that of the honest contributions in it, so h must not exceed the fewest honest inputs
of any sum the server (lying, with the colluders the protocol tolerates) can obtain: ``t - c`` on
the complete graph, ``t + 1 - c`` on a Harary one, ``min_contributors - c`` with Paillier. A
:class:`DPAggregator` over a secure sum refuses (ConfigurationError) a plan whose h exceeds the
full roster's floor, and skips, uncharged and before anything is sent, a round whose session
(fewer clients: another t and c) has a lower one. :func:`fl_core.dp_build.make_dp_aggregator` with
``size_honest=True`` sizes h as ``min(dp.min_honest, floor)`` instead, as the Flower server does.

**Too few contributors.** :class:`DPAggregator` skips a round, uncharged, before anything is sent
when fewer than h hospitals would upload (withheld ones do not count),
:meth:`DPQuantizer.encode_round` refuses (InsufficientNoiseError) a round whose withheld hospitals
leave fewer than h uploaders, and :meth:`DPQuantizer.decode_integers` a sum of fewer than h
encodings, so a sum with less noise than calibrated is never released. The budget is charged
(the accountant's ``record_round``) before the protocol runs; a round that would exceed it is
refused and skipped.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from fl_core.aggregators.base import (
    AggregationResult,
    Aggregator,
    ClientUpdate,
    DropoutStage,
    FloatVector,
    check_round,
    skipped,
    uploaders,
    with_withheld,
)
from fl_core.aggregators.binding import NO_MODEL, check_models, refuse_other_dp
from fl_core.aggregators.quantizer import DecodedSum, EncodedRound, WeightedQuantizer
from fl_core.wrapping import WrappingAggregator
from secagg.descriptor import SessionDescriptor
from secagg.dp import (
    DPConfig,
    NoisePlan,
    PrivacyAccountant,
    RandomSource,
    check_contributors,
    contributor_shortfall,
    noise_tail_bound,
)
from secagg.dp.config import DP_PARAMETER_PREFIX
from secagg.dp.encoding import ROUNDING_SHARE, check_contribution, dp_quantization, dp_scale, noised_encoding
from secagg.dp.tail import residual_clause
from secagg.errors import BudgetExceededError, ConfigurationError, InsufficientNoiseError, OverflowDetectedError
from secagg.segments import ClippingReport, SegmentTable

__all__ = [
    "ROUNDING_SHARE",
    "DPAggregator",
    "DPQuantizer",
    "dp_quantization",
    "dp_scale",
    "noised_encoding",
]


@runtime_checkable
class HonestFloored(Protocol):
    """A secure sum whose releasable sums have an honest floor (masking, Paillier): the largest h a
    session of ``num_clients`` supports, and why a given h is above it (None if it is not)."""

    def honest_floor(self, num_clients: int, vector_length: int) -> int: ...

    def honest_shortfall(self, honest: int, num_clients: int, vector_length: int) -> str | None: ...


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
        return noised_encoding(self.plan, self.config, update.vector, rng, self.noise_source)

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


class DPAggregator:
    """Wraps an aggregator built on a :class:`DPQuantizer`: budget and contributor checks.

    Per round: withholds the hospitals whose contribution cannot be encoded
    (:meth:`DPQuantizer.refusal`); refuses (skips) a round that would exceed the budget or that
    fewer than h hospitals would upload to, before any hospital sends anything; charges the round
    to the accountant; runs the inner secure sum. ``result.mean`` is the noised **sum** of
    the contributions (divide by the public denominator).
    """

    def __init__(self, inner: Aggregator, quantizer: DPQuantizer, accountant: PrivacyAccountant) -> None:
        if not isinstance(quantizer, DPQuantizer):
            raise ConfigurationError("DPAggregator needs the DPQuantizer its inner aggregator encodes with")
        if isinstance(inner, WrappingAggregator):
            raise ConfigurationError(
                f"DP noise does not go over a {inner.KIND} aggregator: a DP round sends every coordinate, in the "
                "model's own basis (a residual would carry patient data past the accountant, and a rotation's "
                "padding changes the sensitivity the noise is calibrated for)"
            )
        if getattr(inner, "quantizer", None) is not quantizer:
            raise ConfigurationError("the inner aggregator must encode with the DPQuantizer given")
        if accountant.plan != quantizer.plan:
            raise ConfigurationError("the accountant's noise plan differs from the quantizer's")
        self.floor: int | None = None
        if isinstance(inner, HonestFloored):
            roster, length = quantizer.config.num_clients, quantizer.encoded_length(quantizer.plan.dimension)
            shortfall = inner.honest_shortfall(quantizer.plan.honest, roster, length)
            if shortfall is not None:
                raise ConfigurationError(f"{inner.name} with {roster} hospitals: {shortfall}")
            self.floor = inner.honest_floor(roster, length)
        self.inner = inner
        self.quantizer = quantizer
        self.accountant = accountant
        self.exhausted = False

    @property
    def name(self) -> str:
        """The inner aggregator's name with ``+dp``."""
        return f"{self.inner.name}+dp"

    @property
    def plan(self) -> NoisePlan:
        """The calibrated noise every released round carries."""
        plan: NoisePlan = self.quantizer.plan
        return plan

    @property
    def config(self) -> DPConfig:
        """The declared guarantee."""
        return self.plan.config

    def spent(self) -> tuple[float, float]:
        """(epsilon, delta) spent so far per patient."""
        return self.accountant.spent()

    def guarantee(self) -> str:
        """The declared guarantee in one sentence."""
        config = self.config
        return (
            f"({config.epsilon:g}, {config.delta:g})-differential privacy per patient over {config.rounds} rounds "
            f"({self.sampling_clause()}; per-patient L2 clip {config.l2_clip:g}); {self.coverage_clause()}; "
            f"{self.residual_clause()}"
        )

    def residual_clause(self) -> str:
        """The refusal residual inside delta (:mod:`secagg.dp.tail`)."""
        return residual_clause(self.plan.tail_delta, self.plan.tail_coordinates(self.plan.config.rounds))

    def sampling_clause(self) -> str:
        """Who takes part in a round: every patient, or Poisson sampling at the declared rate."""
        rate = self.config.sampling_rate
        if rate is None:
            return "every patient in every round"
        return f"patients Poisson-sampled at rate {rate:g} per round"

    def coverage_clause(self) -> str:
        """How the noise is split and how many colluding or dropped hospitals it tolerates."""
        tolerated = self.plan.num_clients - self.plan.honest
        floor = (
            ""
            if self.floor is None
            else f" (at most {self.inner.name}'s floor: every sum its server can release holds {self.floor} "
            "honest ones)"
        )
        return (
            f"noise split across {self.plan.num_clients} hospitals, sized for {self.plan.honest} honest ones{floor}: "
            f"holds with up to {tolerated} hospital{'s' if tolerated != 1 else ''} colluding with the server or "
            "dropped out (together)"
        )

    def aggregate(
        self,
        updates: Sequence[ClientUpdate],
        dropouts: Mapping[int, DropoutStage] | None = None,
        *,
        rng: np.random.Generator,
        segments: SegmentTable | None = None,
        model_digest: bytes | None = None,
    ) -> AggregationResult:
        """The noised sum of the uploaders' contributions, or a skipped round (see the class).

        ``segments`` must be None: DP mode encodes one flat range (no per-segment clips). Hospitals
        that trained from another model than the round's (``model_digest``) are refused before the
        round is charged, so the contributors counted are those that can upload."""
        if segments is not None:
            raise ConfigurationError("DP mode encodes one flat range: per-segment clip tables are not used")
        start = time.perf_counter()
        stages = check_round(updates, dropouts, self.quantizer.config.num_clients)
        models = check_models(updates, model_digest)
        if models.skipped_reason is not None:
            return skipped(models.skipped_reason, 0.0, time.perf_counter() - start)
        models = refuse_other_dp(updates, models, self.config.digest())  # before the charge, as models
        stages = models.stages(stages)
        self.quantizer.check_layout(updates[0].vector.shape[0])  # the round's shape: refused for everyone
        # A hospital over max_patients (its public count) or beyond the range is withheld, before the
        # charge: its sum may leave [-R, R], and the contributor check below must not count it.
        length = updates[0].vector.shape[0]
        updates, stages, withheld = WrappingAggregator.hand_on(updates, stages, length, self._screen)
        sent = uploaders(updates, stages)

        def skip(reason: str) -> AggregationResult:  # the refused and the withheld named, nothing charged
            return with_withheld(skipped(reason, 0.0, time.perf_counter() - start, models.refused), withheld)

        if self.exhausted or self.accountant.would_exceed(1):
            self.exhausted = True
            return skip(f"privacy budget: one more round would exceed epsilon = {self.config.epsilon:g}; refused")
        shortfall = contributor_shortfall(self.plan, len(sent))
        if shortfall is None and isinstance(self.inner, HonestFloored) and updates:
            # The session this round will run (its own t and c for len(updates) clients) must
            # release no sum with fewer honest noise shares than h: checked before anything is sent.
            length = self.quantizer.encoded_length(updates[0].vector.shape[0])
            floor = self.inner.honest_shortfall(self.plan.honest, len(updates), length)
            shortfall = None if floor is None else f"{len(updates)} hospitals sampled: {floor}"
        if shortfall is not None:
            return skip(f"dp: {shortfall}")
        try:
            self.accountant.record_round(num_contributors=len(sent))
        except (BudgetExceededError, InsufficientNoiseError) as exc:
            return skip(f"dp: {exc}")
        result = self.inner.aggregate(updates, stages, rng=rng, model_digest=models.digest)
        if result.mean is not None and len(result.included) < self.plan.honest:
            raise InsufficientNoiseError(f"the protocol included {len(result.included)} < h = {self.plan.honest}")
        # The inner aggregator saw the hospitals refused for their DP configuration as JOIN dropouts.
        return with_withheld(dataclasses.replace(result, refused=models.refused), withheld)

    def _screen(self, update: ClientUpdate) -> FloatVector:
        """``update``'s vector, or ConfigurationError (it is withheld) if it cannot be encoded."""
        reason = self.quantizer.refusal(update)
        if reason is not None:
            raise ConfigurationError(reason)
        return update.vector


_MOVED = {"make_dp_aggregator": "fl_core.dp_build", "supported_honest": "fl_core.dp_build"}


def __getattr__(name: str) -> Any:
    """The names that moved to :mod:`fl_core.dp_build`, still importable from here (lazily: that
    module imports this one)."""
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
