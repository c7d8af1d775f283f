"""The demo's DP setup: how a DP run scales the features and builds its training aggregator,
and the DP lines of its report (the guarantee and budget spent, the noise per step).

With DP the un-noised moments round never runs: the features are standardised from a
noised moments release charged to the budget (:mod:`fl_core.dp_moments`) or scaled from
declared public ranges (:func:`fl_core.public_scaling.public_scaler`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from fl_core.aggregators.base import Aggregator
from fl_core.contribution_binding import bind_scaling
from fl_core.data import Federation
from fl_core.demo_config import DemoConfig
from fl_core.dp import DPAggregator
from fl_core.dp_build import supported_honest
from fl_core.dp_moments import MomentsChargedAggregator, moments_dp_config, release_moments
from fl_core.dp_presets import DP_TRAINING, default_min_honest, dp_config
from fl_core.dp_training import public_denominator
from fl_core.public_scaling import public_scaler
from secagg.dp import DPConfig, NoisePlan, Preceding
from secagg.dp.encoding import dp_quantization
from secagg.errors import ConfigurationError

__all__ = ["AggregatorFactory", "check_calibration", "dp_options", "dp_setup", "noise_std", "privacy_line"]


AggregatorFactory = Callable[..., Aggregator]
"""``(name, config, **options) -> Aggregator``: builds the demo's aggregator ``name`` for
``config`` with extra options (:func:`fl_core.demo._aggregator`)."""


def dp_options(config: DemoConfig) -> str:
    """The options a DP calibration follows, as typed: "--dp-epsilon 1 (--dp-delta 1e-05, --rounds 20, ...)"."""
    return (
        f"--dp-epsilon {config.dp_epsilon:g} (--dp-delta {config.dp_delta:g}, --rounds {config.rounds}, "
        f"--hospitals {config.hospitals})"
    )


def check_calibration(
    config: DemoConfig, num_features: int, dimension: int, name: str, options: dict[str, Any]
) -> NoisePlan:
    """The calibrations :func:`dp_setup` makes (the moments release, then the rounds after it; or the
    rounds alone with public ranges), with h capped by the secure sum's floor as
    :func:`fl_core.dp_build.make_dp_aggregator` caps it, but without building an aggregator, a key
    or a release: ConfigurationError as the setup would raise it. Returns the rounds' plan (the
    setup's training aggregator's: tests/fl_core/test_fl_demo_option_errors.py compares them)."""
    assert config.dp_epsilon is not None
    floor = supported_honest(name, config.hospitals, **options)

    def plan(dp: DPConfig, size: int, preceding: Preceding = ()) -> NoisePlan:
        if floor is not None and floor < dp.honest:
            if floor < 1:
                raise ConfigurationError(f"{name} with {config.hospitals} hospitals releases sums with no honest input")
            dp = dataclasses.replace(dp, min_honest=floor)
        calibrated, _, _ = dp_quantization(
            dp, num_clients=config.hospitals, dimension=size, max_samples_per_client=config.max_samples_per_client,
            preceding=preceding,
        )  # fmt: skip
        return calibrated

    rounds = dp_config(config.dataset, config.dp_epsilon, rounds=config.rounds, hospitals=config.hospitals,
                       delta=config.dp_delta)  # fmt: skip
    if config.dp_scaling == "public-ranges":
        return plan(rounds, dimension)
    moments = moments_dp_config(
        config.dp_moments_share * config.dp_epsilon, config.dp_delta, num_features,
        default_min_honest(config.hospitals), DP_TRAINING[config.dataset].moments_clip_share,
    )  # fmt: skip
    return plan(rounds, dimension, ((plan(moments, 2 * num_features), 1),))


def dp_setup(
    config: DemoConfig,
    federation: Federation,
    name: str,
    aggregator: AggregatorFactory,
    dimension: int,
    rng: np.random.Generator,
) -> tuple[Federation, Aggregator]:
    """DP mode's scaling and training aggregator for a model of ``dimension`` parameters
    (see :func:`fl_core.demo._setup`); ``rng`` draws the noised moments release.

    h (the honest hospitals each noise share is sized for) is ``n - 1``
    (:func:`~fl_core.dp_presets.default_min_honest`) capped by the secure sum's floor, for the
    moments release and the rounds alike: over secagg, secagg+ or paillier every sum the server can
    release holds at least that many honest inputs (``size_honest``,
    :func:`fl_core.dp_build.make_dp_aggregator`, :mod:`secagg.dp.floors`); plain-quantized keeps ``n - 1``."""
    assert config.dp_epsilon is not None
    if config.dp_scaling == "public-ranges":
        dp = dp_config(config.dataset, config.dp_epsilon, rounds=config.rounds, hospitals=config.hospitals,
                       delta=config.dp_delta)  # fmt: skip
        updates = aggregator(
            name, config, dp=dp, dimension=dimension, max_samples_per_client=config.max_samples_per_client,
            size_honest=True,
        )  # fmt: skip
        scaler = public_scaler(config.dataset, federation.num_features)
        bind_scaling(updates, "public-ranges", scaler)  # every round's hospitals train at these units
        return federation.standardised(scaler), updates
    moments_dp = moments_dp_config(
        config.dp_moments_share * config.dp_epsilon, config.dp_delta, federation.num_features,
        default_min_honest(config.hospitals), DP_TRAINING[config.dataset].moments_clip_share,
    )  # fmt: skip
    moments = aggregator(
        name, config, dp=moments_dp, dimension=2 * federation.num_features,
        max_samples_per_client=config.max_samples_per_client, size_honest=True,
    )  # fmt: skip
    release = release_moments(
        config.dataset, federation.clients, moments, config.dp_moments_share, rng,
    )  # fmt: skip
    # The training rounds compose with the moments release in one Renyi account: the total
    # budget is (dp_epsilon, dp_delta) for both (fl_core.dp_moments, "Accounting").
    dp = dp_config(config.dataset, config.dp_epsilon, rounds=config.rounds, hospitals=config.hospitals,
                   delta=config.dp_delta)  # fmt: skip
    training = aggregator(
        name, config, dp=dp, dimension=dimension, max_samples_per_client=config.max_samples_per_client,
        size_honest=True,
        preceding=((release.aggregator.plan, 1),),
    )  # fmt: skip
    if not isinstance(training, DPAggregator):
        raise ConfigurationError("DP training needs a DPAggregator")
    updates = MomentsChargedAggregator(training, release)
    bind_scaling(updates, "noised-moments", release.standardiser)  # every round's hospitals train at these units
    return federation.standardised(release.standardiser), updates


def noise_std(aggregator: Aggregator, federation: Federation) -> float | None:
    """Noise std per coordinate of one step's mean clipped gradient, in units of the clip (DP only)."""
    if not isinstance(aggregator, DPAggregator):
        return None
    plan, config = aggregator.plan, aggregator.config
    denominator = public_denominator([c.num_samples for c in federation.clients], config)
    total = math.sqrt(plan.num_clients * float(plan.variance))
    return total / (plan.scale * denominator * config.l2_clip)


def privacy_line(aggregator: Aggregator) -> str:
    """The DP guarantee and the budget spent, or "" without DP."""
    if not isinstance(aggregator, DPAggregator):
        return ""
    epsilon, delta = aggregator.spent()
    return (
        f"{aggregator.guarantee()}; spent epsilon = {epsilon:.3f} at delta = {delta:g} "
        f"in {aggregator.accountant.num_releases} released rounds"
    )
