"""DP training settings of the demo and the ``dp`` benchmark, per data set.

Tuned on seeds 100..109 (other data splits and test sets of the same public data sets
than the benchmark's reporting seeds 0..9), 5 hospitals, Dirichlet(0.5), 20 rounds,
delta = 1e-5, h = 4, features scaled from declared public ranges
(:mod:`fl_core.public_scaling`; no data-dependent standardisation in DP mode), mean
accuracy at epsilon = 3 / 1. Breast cancer, server optimiser : learning rate : clip :
momentum: sgd 2 : 1 : 0 94.5 / 93.7, sgd 4 : 1 : 0 95.2 / 92.9, sgd 8 : 1 : 0 94.0 / 91.8,
sgd 2 : 1 : 0.5 95.1 / 93.9, sgd 4 : 1 : 0.5 95.3 / 93.3, sgd 8 : 0.5 : 0.5 95.6 / 93.4,
sgd 6 : 0.5 : 0.5 95.7 / 93.3, sgd 4 : 0.5 : 0.8 95.8 / 93.2, sgd 2 : 0.5 : 0.8 95.3 / 94.5,
**sgd 4 : 0.5 : 0.5 95.4 / 95.0** (best mean over both budgets), adam (FedAdam, tau 1e-3,
beta2 0.99) 0.1 : 1 : 0.9 94.9 / 94.7, 0.3 : 1 : 0.9 95.7 / 92.9, 0.2 : 0.5 : 0.9
95.4 / 92.8 (not better). Without noise (epsilon = 1000) 20 steps on the public scaling
reach only 95.7-95.8% (sgd) and 96.8% (adam): the scaling, not the noise, bounds these
figures. Digits (seeds 100..102), sgd 5 : 1 : 0 **91.8 / 83.9**, 5 : 1 : 0.5 93.8 / 78.1,
10 : 1 : 0.5 90.3 / 57.7. Before public scaling (pooled standardisation, un-noised) the
choice was sgd 2 : 1 : 0 at 97.4 / 95.9. Poisson sampling is not used: it was off when these
were tuned, its amplification then an assumption for this mechanism; it is now accounted by a
proved, looser bound (docs/privacy.md, "Poisson subsampling"), not tried with these settings.
These settings were kept for the noised moments release that is now DP mode's default
scaling (:mod:`fl_core.dp_moments`): with the release composed with the training in one
Renyi account, its share, moments clip (0.6 of ``sqrt(2 d)`` on breast cancer) and floor
were tuned with them fixed (docs/privacy.md), and learning rate 6 / 8 or clip 0.4 / 0.75
around them were not better on the tuning seeds.
Hyper-parameters chosen on private data leak too; in a deployment choose them on public
or synthetic data.
"""

from __future__ import annotations

from dataclasses import dataclass

from secagg.dp import DPConfig
from secagg.errors import ConfigurationError

__all__ = ["DEFAULT_DELTA", "DP_TRAINING", "DPTraining", "default_min_honest", "dp_config"]

DEFAULT_DELTA = 1e-5
"""delta per patient over the run: well below 1 / (number of patients) for both data sets."""


@dataclass(frozen=True)
class DPTraining:
    """One data set's DP-FedSGD settings: server step size, per-patient clip, sampling rate,
    server momentum (post-processing of the noised sums, no privacy cost), and the share of
    ``sqrt(2 d)`` each patient's ``(u, u^2)`` is clipped to in the moments release
    (:mod:`fl_core.dp_moments`; 1.0 never clips)."""

    learning_rate: float
    l2_clip: float
    sampling_rate: float | None
    server_optimizer: str = "sgd"
    server_momentum: float = 0.0
    moments_clip_share: float = 1.0


DP_TRAINING = {
    "breast-cancer": DPTraining(
        learning_rate=4.0, l2_clip=0.5, sampling_rate=None, server_momentum=0.5, moments_clip_share=0.6
    ),
    "digits": DPTraining(learning_rate=5.0, l2_clip=1.0, sampling_rate=None),
}


def default_min_honest(hospitals: int) -> int:
    """h: tolerate one hospital colluding or dropped (n - 1), at least 1. Over a secure sum the
    demo caps it by the protocol's floor (:func:`fl_core.dp_build.supported_honest`; ``size_honest``)."""
    return max(1, hospitals - 1)


def dp_config(dataset: str, epsilon: float, *, rounds: int, hospitals: int, delta: float = DEFAULT_DELTA) -> DPConfig:
    """The DPConfig of a demo or benchmark run on ``dataset``."""
    if dataset not in DP_TRAINING:
        raise ConfigurationError(f"no DP settings for dataset {dataset!r}")
    settings = DP_TRAINING[dataset]
    return DPConfig(
        epsilon=epsilon,
        delta=delta,
        rounds=rounds,
        l2_clip=settings.l2_clip,
        sampling_rate=settings.sampling_rate,
        min_honest=default_min_honest(hospitals),
    )
