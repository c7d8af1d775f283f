"""DP mode's feature standardisation from a noised, budget-charged release of the moments.

Before training, every hospital maps each patient's features onto ``[-1, 1]`` with the
declared public ranges (:mod:`fl_core.public_scaling`) and **clips** them there, then
contributes the per-feature sums ``(sum u, sum u^2)`` (2d coordinates) through the same
secure aggregator, noised like a training round: :func:`fl_core.dp.noised_encoding` adds an
exact discrete Gaussian share on the hospital, sized for h honest hospitals, before masking.

**Sensitivity.** One patient (added or removed) changes the sums by ``(u, u^2)`` with every
``|u_j| <= 1``, so by at most ``sqrt(2 d)`` in L2: in raw units, at most the feature's range
per feature for ``sum x`` and its square for ``sum x^2`` (divided by the half-range and its
square). The release is one DP aggregate with that L2 clip (:func:`moments_dp_config`).

**Accounting.** The moments release is calibrated on its own as a ``(share * epsilon, delta)``
release; the training rounds are then calibrated **after** it, in one Renyi account
(:func:`secagg.dp.calibrate` with ``preceding``): the moments event and the rounds' events
compose in dp-accounting's ``RdpAccountant`` and the whole run spends at most the declared
``(epsilon, delta)``. This leaves the training much more than basic sequential composition
of two (epsilon, delta) shares would (at epsilon = 1, delta = 1e-5, 20 rounds, the training
noise multiplier is about 18.5 instead of 23.1 for a 20% share; docs/privacy.md).
:class:`MomentsChargedAggregator` reports the training accountant's spend, which includes the
release, and states the total.

The server divides the noised sums by the **public** total of the declared sizes of the
hospitals in the sum (no count is sent), clamps the variance to :data:`VARIANCE_FLOOR` (in
public-scaled units) and standardises with the result; everything it learns is the noised sums.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fl_core.aggregators.base import Aggregator, ClientUpdate
from fl_core.contribution_binding import bind_scaling
from fl_core.data import ClientData, Standardiser
from fl_core.dp import DPAggregator
from fl_core.models import FloatArray
from fl_core.public_scaling import public_scaler
from secagg.dp import DPConfig, NoisePlan
from secagg.errors import ConfigurationError

__all__ = [
    "DEFAULT_MOMENTS_SHARE",
    "DP_SCALINGS",
    "VARIANCE_FLOOR",
    "MomentsChargedAggregator",
    "MomentsRelease",
    "moments_contribution",
    "moments_dp_config",
    "release_moments",
]

DP_SCALINGS = ("noised-moments", "public-ranges")
"""DP mode's feature scalings: the noised moments release (this module) or the public ranges alone."""

DEFAULT_MOMENTS_SHARE = 0.2
"""Share of epsilon spent on the moments release (tuned on seeds 100..109, docs/privacy.md)."""

VARIANCE_FLOOR = 0.2
"""Smallest variance (public-scaled units, ``u`` in ``[-1, 1]``) the noised moments may give."""


MOMENTS_CLIP_SHARE = 1.0
"""Each patient's ``(u, u^2)`` is clipped to this share of its largest possible norm ``sqrt(2 d)``."""


def moments_dp_config(
    epsilon: float, delta: float, num_features: int, min_honest: int, clip_share: float = MOMENTS_CLIP_SHARE
) -> DPConfig:
    """One released aggregate of ``2 * num_features`` sums, L2 sensitivity ``clip_share * sqrt(2 * num_features)``."""
    if not 0.0 < clip_share <= 1.0:
        raise ConfigurationError(f"the moments clip share must be in (0, 1], got {clip_share}")
    return DPConfig(
        epsilon=epsilon, delta=delta, rounds=1, l2_clip=clip_share * math.sqrt(2.0 * num_features),
        min_honest=min_honest,
    )  # fmt: skip


def _scaled(dataset: str, features: FloatArray) -> FloatArray:
    """Features mapped by the public ranges onto ``[-1, 1]`` and clipped there."""
    scaler = public_scaler(dataset, features.shape[1])
    clipped: FloatArray = np.clip(scaler.apply(features), -1.0, 1.0)
    return clipped


def moments_contribution(dataset: str, features: FloatArray, l2_clip: float | None = None) -> FloatArray:
    """A hospital's float contribution: ``(sum u, sum u^2)`` per feature, ``u`` clipped to ``[-1, 1]``
    and each patient's ``(u, u^2)`` to L2 norm ``l2_clip`` (None: ``sqrt(2 d)``, which never clips)."""
    scaled = _scaled(dataset, features)
    rows = np.concatenate([scaled, scaled * scaled], axis=1)
    if l2_clip is not None:
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        rows = rows * np.minimum(1.0, l2_clip / np.maximum(norms, 1e-300))
    vector: FloatArray = rows.sum(axis=0)
    return vector


@dataclass(frozen=True)
class MomentsRelease:
    """The noised moments release: its aggregator (with its accountant) and the standardiser."""

    aggregator: DPAggregator
    standardiser: Standardiser
    share: float


def release_moments(
    dataset: str, clients: Sequence[ClientData], aggregator: Aggregator, share: float, rng: np.random.Generator
) -> MomentsRelease:
    """Run the release through ``aggregator`` (a :class:`DPAggregator` built on
    :func:`moments_dp_config`) and derive the :class:`Standardiser` in raw feature units.

    The release binds the public ranges its sums are scaled by (:func:`fl_core.contribution_binding.bind_scaling`,
    ``"public-ranges"``): a hospital holding another version of them is refused at the session's
    first step, never summed in other units."""
    if not isinstance(aggregator, DPAggregator):
        raise ConfigurationError("the moments release must go through a DPAggregator (noised)")
    clip = aggregator.config.l2_clip  # the bound sensitivity: one patient moves the sums by at most this
    # The units every hospital's sums are in, for the release's features (half its configured dimension).
    public = public_scaler(dataset, aggregator.plan.dimension // 2)
    bind_scaling(aggregator, "public-ranges", public)
    updates = [
        ClientUpdate(c.client_id, moments_contribution(dataset, c.features, clip), c.num_samples) for c in clients
    ]
    result = aggregator.aggregate(updates, {}, rng=rng)
    if result.mean is None:
        raise ConfigurationError(f"the noised moments release failed: {result.skipped_reason}")
    # Public declared sizes of the hospitals in the sum, as for training (fl_core.dp_training).
    total = float(sum(c.num_samples for c in clients if c.client_id in result.included))
    sums = np.asarray(result.mean, dtype=np.float64)
    mean, mean_square = np.split(sums / total, 2)
    mean = np.clip(mean, -1.0, 1.0)
    variance = np.clip(mean_square - mean * mean, VARIANCE_FLOOR, 1.0)
    standardiser = Standardiser(public.mean + public.std * mean, public.std * np.sqrt(variance))
    return MomentsRelease(aggregator, standardiser, share)


class MomentsChargedAggregator(DPAggregator):
    """The training :class:`DPAggregator`, whose plan composes the moments release before its rounds.

    Rounds are charged and refused by the training accountant, whose budget is the whole
    run's and whose account already holds the release; :meth:`guarantee` states the total.
    ConfigurationError unless the training plan composes exactly the releases the moments
    aggregator made (its accountant's ``num_releases``): a second release, a retry with fresh
    noise, would otherwise be left out of the account."""

    def __init__(self, training: DPAggregator, release: MomentsRelease) -> None:
        made = release.aggregator.accountant.num_releases
        preceding = training.plan.preceding
        if len(preceding) != 1 or preceding[0][0] != release.aggregator.plan:
            raise ConfigurationError("the training plan must be calibrated after the moments release (preceding)")
        if preceding[0][1] != made:  # each release is charged: a retry released the moments again
            raise ConfigurationError(
                f"the moments aggregator released {made} aggregates, but the training plan composes "
                f"{preceding[0][1]}: calibrate the training after every release made (preceding)"
            )
        super().__init__(training.inner, training.quantizer, training.accountant)
        self.release = release

    def guarantee(self) -> str:
        """The total guarantee over the release and the rounds, in one sentence."""
        config, moments = self.config, self.release.aggregator.plan
        return (
            f"({config.epsilon:g}, {config.delta:g})-differential privacy per patient over one noised "
            f"feature-moments release and {config.rounds} training rounds, in total (one Renyi account; release: "
            f"L2 sensitivity {moments.config.l2_clip:.3g}, noise multiplier {_noise_multiplier(moments):.3g}; "
            f"rounds: {self.sampling_clause()}, per-patient L2 clip {config.l2_clip:g}, noise multiplier "
            f"{_noise_multiplier(self.plan):.3g}); {self.coverage_clause()}; {self.residual_clause()}"
        )


def _noise_multiplier(plan: NoisePlan) -> float:
    """sqrt(h sigma^2) / Delta2: the honest noise's standard deviation per unit of sensitivity."""
    return math.sqrt(float(plan.total_variance)) / plan.sensitivity
