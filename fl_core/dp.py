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
patients (on its public count), whose contribution the encoding refuses (beyond the range: never
an honest one), or whose own noise, drawn before the charge, exceeds its room (probability below
``d * 2^-64``, the refusal residual; its noise is never released): it goes silent at ``UPLOAD``
(a stand-in of zeros, never sent, keeps the round's shape) and is named with the reason in the
result's ``withheld``. The contributor checks below count the others only, so withholding never
releases a sum with fewer than h noise shares, and a round it leaves too small is not charged.

The encoding itself (:func:`noised_encoding`, :func:`dp_quantization`, :func:`dp_scale`) lives in
:mod:`secagg.dp.encoding`, shared with the Flower adapter; this module re-exports it. The
quantizer that encodes with it, :class:`DPQuantizer`, is in :mod:`fl_core.dp_quantizer`
(re-exported here).

**Overflow.** :func:`dp_quantization` sizes ``qmax`` for one hospital's clipped sum plus
its own noise (``noise_room(plan)``, exceeded with probability below 2^-64 per coordinate,
a residual the accounted delta includes; :func:`noised_encoding` refuses noise beyond it), so
every protocol's
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
when fewer than h hospitals would upload (withheld ones do not count), or fewer than its secure
sum releases anything from (:class:`UploadFloored`: Paillier's ``min_contributors`` and its t,
masking's t); a session its secure sum refuses outright (:class:`SessionChecked`: masking below three
hospitals, Paillier with a new hospital and no key share left) is refused (ConfigurationError), as
without DP, before the charge too. :meth:`DPQuantizer.encode_round` refuses (InsufficientNoiseError)
a round whose withheld hospitals leave fewer than h uploaders, and :meth:`DPQuantizer.decode_integers`
a sum of fewer than h encodings, so a sum with less noise than calibrated is never released. The budget is charged
(the accountant's ``record_round``) before the protocol runs; a round that would exceed it is
refused and skipped.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

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
from fl_core.aggregators.binding import check_lengths, check_models, refuse_other_dp
from fl_core.dp_quantizer import DPQuantizer
from fl_core.guarantees import RoundGuaranteed
from fl_core.wrapping import WrappingAggregator
from secagg.dp import DPConfig, NoisePlan, PrivacyAccountant, contributor_shortfall
from secagg.dp.encoding import ROUNDING_SHARE, dp_quantization, dp_scale, noised_encoding
from secagg.dp.tail import residual_clause
from secagg.errors import BudgetExceededError, ConfigurationError, InsufficientNoiseError
from secagg.segments import SegmentTable

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


@runtime_checkable
class UploadFloored(Protocol):
    """A secure sum that releases nothing when fewer than some number of hospitals upload
    (Paillier's ``min_contributors`` and its key's t, masking's threshold t): why ``uploads`` of ``num_clients``
    are too few (None if they are not), so that such a round is skipped before it is charged."""

    def upload_shortfall(self, uploads: int, num_clients: int, vector_length: int) -> str | None: ...


@runtime_checkable
class SessionChecked(Protocol):
    """A secure sum that refuses some sessions outright, for everyone (masking: fewer than three
    hospitals; Paillier: a new hospital when every key share is taken): ConfigurationError if it
    refuses one over ``client_ids``, checked before the round is charged."""

    def check_session(self, client_ids: Sequence[int]) -> None: ...


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
        """How the noise is split and how many colluding or dropped hospitals it tolerates; over an
        aggregator without a secure sum (``plain-quantized``), that the server reads each hospital's
        encoding, one noise share, so the statement does not hold against it."""
        tolerated = self.plan.num_clients - self.plan.honest
        if not isinstance(self.inner, RoundGuaranteed):  # no wrapper inside (refused above): the inner itself
            return (
                f"noise split across {self.plan.num_clients} hospitals, sized for {self.plan.honest} honest ones; "
                f"no secure sum: the server reads each hospital's encoding, 1 of the {self.plan.honest} noise "
                "shares the epsilon is computed for, so this holds against whoever sees only the aggregates "
                f"(the models), not the server, with up to {tolerated} hospital{'s' if tolerated != 1 else ''} "
                "colluding with them or dropped out (together)"
            )
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
        that trained from another model than the round's (``model_digest``), under another DP
        configuration, or whose update has another length than the configured dimension are
        refused before the round is charged, so the contributors counted are those that can upload."""
        if segments is not None:
            raise ConfigurationError("DP mode encodes one flat range: per-segment clip tables are not used")
        start = time.perf_counter()
        stages = check_round(updates, dropouts, self.quantizer.config.num_clients, rng=rng)
        models = check_models(updates, model_digest)
        if models.skipped_reason is not None:
            return skipped(models.skipped_reason, 0.0, time.perf_counter() - start)
        models = refuse_other_dp(updates, models, self.config.digest())  # before the charge, as models
        # The configured dimension decides the round's length: a hospital of another is refused too.
        dimension = self.plan.dimension
        authority = (dimension, f"the DP aggregator is configured for {dimension} coordinates")
        length, models, updates = check_lengths(updates, models, authority)
        stages = models.stages(stages)
        self.quantizer.check_layout(length)  # the round's shape: refused for everyone
        if isinstance(self.inner, SessionChecked):  # a session refused outright, before the charge
            self.inner.check_session([u.client_id for u in updates])
        # A hospital over max_patients (its public count) or beyond the range is withheld, before the
        # charge: its sum may leave [-R, R], and the contributor check below must not count it.
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
            encoded = self.quantizer.encoded_length(length)
            floor = self.inner.honest_shortfall(self.plan.honest, len(updates), encoded)
            shortfall = None if floor is None else f"{len(updates)} hospitals sampled: {floor}"
        if shortfall is not None:
            return skip(f"dp: {shortfall}")
        # Every hospital's noise, drawn before the charge: one beyond its room is withheld (its
        # noise never released) and the others' encodings use the very noise drawn here.
        drawn, beyond = self.quantizer.draw_noise(updates, stages)
        stages.update({client: DropoutStage.UPLOAD for client, _ in beyond})
        noisy = {client for client, _ in beyond}  # their stand-ins, zeros, are never sent
        updates = [dataclasses.replace(u, vector=np.zeros(length)) if u.client_id in noisy else u for u in updates]
        withheld, sent = (*withheld, *beyond), uploaders(updates, stages)
        shortfall = contributor_shortfall(self.plan, len(sent))
        if shortfall is None and isinstance(self.inner, UploadFloored) and updates:
            shortfall = self.inner.upload_shortfall(len(sent), len(updates), self.quantizer.encoded_length(length))
        if shortfall is not None:
            return skip(f"dp: {shortfall}")
        try:
            self.accountant.record_round(num_contributors=len(sent))
        except (BudgetExceededError, InsufficientNoiseError) as exc:
            return skip(f"dp: {exc}")
        self.quantizer.drawn_noise.update(drawn)
        try:
            result = self.inner.aggregate(updates, stages, rng=rng, model_digest=models.digest)
        finally:
            self.quantizer.drawn_noise.clear()  # never reused: a noise draw goes into one encoding
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
