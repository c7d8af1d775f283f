"""DP training settings of the demo and the ``dp`` benchmark, per data set.

Tuned on seeds 100..109 (other data splits and test sets of the same public data sets
than the benchmark's reporting seeds 0..9), 5 hospitals, Dirichlet(0.5), 20 rounds,
delta = 1e-5, h = 4, at epsilon 3 and 1, over a handful of settings (mean accuracy at
epsilon = 3 / 1): breast cancer, learning rate x clip x sampling rate: 1 x 1 x all
97.2 / 96.1, **2 x 1 x all 97.4 / 95.9**, 4 x 1 x all 96.9 / 95.3, 2 x 2 x all 97.4 / 94.4,
4 x 0.5 x all 97.1 / 96.0, 2 x 1 x Poisson 0.5 97.3 / 96.4 (not chosen: its accounting
rests on the subsampling assumption, docs/privacy.md); digits (seeds 100..102), learning
rate 2 / **5** / 10 at clip 1: 90.3 / 93.8 / 93.0 at epsilon 3, 85.5 / 83.4 at epsilon 1.
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
    server momentum (post-processing of the noised sums, no privacy cost)."""

    learning_rate: float
    l2_clip: float
    sampling_rate: float | None
    server_momentum: float = 0.0


DP_TRAINING = {
    "breast-cancer": DPTraining(learning_rate=2.0, l2_clip=1.0, sampling_rate=None),
    "digits": DPTraining(learning_rate=5.0, l2_clip=1.0, sampling_rate=None),
}


def default_min_honest(hospitals: int) -> int:
    """h: tolerate one hospital colluding or dropped (n - 1), at least 1."""
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
