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

**Accounting.** Basic sequential composition: the declared ``(epsilon, delta)`` is split into
``(share * epsilon, delta / 2)`` for the moments and ``((1 - share) * epsilon, delta / 2)``
for the training rounds, each calibrated and charged to its own
:class:`~secagg.dp.PrivacyAccountant`. :class:`MomentsChargedAggregator` reports the sum of
both accountants' spending and states the total and the split.

The server divides the noised sums by the **public** total of declared hospital sizes
(no count is sent), clamps the variance to :data:`VARIANCE_FLOOR` (in public-scaled units)
and standardises with the result; everything it learns is the noised sums.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fl_core.aggregators.base import Aggregator, ClientUpdate
from fl_core.data import ClientData, Standardiser
from fl_core.dp import DPAggregator
from fl_core.models import FloatArray
from fl_core.public_scaling import public_scaler
from secagg.dp import DPConfig
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
    "split_budget",
]

DP_SCALINGS = ("noised-moments", "public-ranges")
"""DP mode's feature scalings: the noised moments release (this module) or the public ranges alone."""

DEFAULT_MOMENTS_SHARE = 0.2
"""Share of epsilon spent on the moments release (tuned on seeds 100..109, docs/privacy.md)."""

VARIANCE_FLOOR = 0.2
"""Smallest variance (public-scaled units, ``u`` in ``[-1, 1]``) the noised moments may give."""


def split_budget(epsilon: float, delta: float, share: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """``((share * epsilon, delta / 2), ((1 - share) * epsilon, delta / 2))``: moments, then training."""
    if not 0.0 < share < 1.0:
        raise ConfigurationError(f"the moments' share of epsilon must be in (0, 1), got {share}")
    moments = share * epsilon
    return (moments, delta / 2.0), (epsilon - moments, delta / 2.0)


def moments_dp_config(epsilon: float, delta: float, num_features: int, min_honest: int) -> DPConfig:
    """One released aggregate of ``2 * num_features`` sums, L2 sensitivity ``sqrt(2 * num_features)``."""
    return DPConfig(
        epsilon=epsilon, delta=delta, rounds=1, l2_clip=math.sqrt(2.0 * num_features), min_honest=min_honest
    )


def _scaled(dataset: str, features: FloatArray) -> FloatArray:
    """Features mapped by the public ranges onto ``[-1, 1]`` and clipped there."""
    scaler = public_scaler(dataset, features.shape[1])
    clipped: FloatArray = np.clip(scaler.apply(features), -1.0, 1.0)
    return clipped


def moments_contribution(dataset: str, features: FloatArray) -> FloatArray:
    """A hospital's float contribution: ``(sum u, sum u^2)`` per feature, ``u`` clipped to ``[-1, 1]``."""
    scaled = _scaled(dataset, features)
    vector: FloatArray = np.concatenate([scaled.sum(axis=0), (scaled * scaled).sum(axis=0)])
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
    :func:`moments_dp_config`) and derive the :class:`Standardiser` in raw feature units."""
    if not isinstance(aggregator, DPAggregator):
        raise ConfigurationError("the moments release must go through a DPAggregator (noised)")
    updates = [ClientUpdate(c.client_id, moments_contribution(dataset, c.features), c.num_samples) for c in clients]
    result = aggregator.aggregate(updates, {}, rng=rng)
    if result.mean is None:
        raise ConfigurationError(f"the noised moments release failed: {result.skipped_reason}")
    total = float(sum(c.num_samples for c in clients))  # public declared sizes, as for training
    sums = np.asarray(result.mean, dtype=np.float64)
    mean, mean_square = np.split(sums / total, 2)
    mean = np.clip(mean, -1.0, 1.0)
    variance = np.clip(mean_square - mean * mean, VARIANCE_FLOOR, 1.0)
    public = public_scaler(dataset, mean.shape[0])
    standardiser = Standardiser(public.mean + public.std * mean, public.std * np.sqrt(variance))
    return MomentsRelease(aggregator, standardiser, share)


class MomentsChargedAggregator(DPAggregator):
    """The training :class:`DPAggregator`, reporting the budget of the moments release too.

    Rounds are charged and refused by the training accountant (budget ``(1 - share) * epsilon,
    delta / 2``); :meth:`spent` adds the moments accountant's spending (basic composition),
    :meth:`guarantee` states the total and the split."""

    def __init__(self, training: DPAggregator, release: MomentsRelease, epsilon: float, delta: float) -> None:
        super().__init__(training.inner, training.quantizer, training.accountant)
        self.release = release
        self.total_epsilon = epsilon
        self.total_delta = delta

    def spent(self) -> tuple[float, float]:
        """(epsilon, delta) spent per patient: moments release plus training rounds so far."""
        moments_eps, moments_delta = self.release.aggregator.spent()
        training_eps, training_delta = self.accountant.spent()
        return moments_eps + training_eps, moments_delta + training_delta

    def guarantee(self) -> str:
        """The total guarantee, the split and the training's own sentence."""
        moments = self.release.aggregator.config
        return (
            f"({self.total_epsilon:g}, {self.total_delta:g})-differential privacy per patient over "
            f"{self.config.rounds} rounds and one noised feature-moments release, in total by basic composition: "
            f"moments ({moments.epsilon:g}, {moments.delta:g}; L2 sensitivity {moments.l2_clip:.3g}) + training "
            f"{super().guarantee()}"
        )
