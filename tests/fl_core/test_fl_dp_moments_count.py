"""The training account composes as many moments releases as the release's aggregator made.

:class:`MomentsChargedAggregator` reports the training accountant's spend, whose plan composes the
moments release as ``preceding = ((release plan, count),)``. The count must be the releases the
moments aggregator actually made: a moments aggregator built for more than one release (its
``DPConfig.rounds``) and run twice, e.g. a retry after the first release, released two noised
sums of the same patients' moments with fresh noise, and a training account composing one of
them under-reported the run's spend. Nor may a release that never happened be claimed.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

pytest.importorskip("dp_accounting")

from fl_core.data import ClientData
from fl_core.dp import DPAggregator
from fl_core.dp_build import make_dp_aggregator
from fl_core.dp_moments import MomentsChargedAggregator, MomentsRelease, moments_dp_config, release_moments
from fl_core.public_scaling import PUBLIC_FEATURE_RANGES
from secagg.dp import DPConfig, SeededRandomSource
from secagg.errors import ConfigurationError

HOSPITALS = 5
FEATURES = len(PUBLIC_FEATURE_RANGES["breast-cancer"])


def _clients() -> list[ClientData]:
    rng = np.random.default_rng(5)
    high = np.array([h for _, h in PUBLIC_FEATURE_RANGES["breast-cancer"]])
    return [
        ClientData(i, rng.uniform(0.2, 0.6, size=(40, FEATURES)) * high, rng.integers(0, 2, size=40))
        for i in range(HOSPITALS)
    ]


def _moments(rounds: int) -> DPAggregator:
    """A moments aggregator whose plan allows ``rounds`` releases (the library's own config allows one)."""
    config = dataclasses.replace(moments_dp_config(0.2, 1e-5, FEATURES, HOSPITALS - 1), rounds=rounds)
    return make_dp_aggregator(
        "plain-quantized", config, num_clients=HOSPITALS, dimension=2 * FEATURES, max_samples_per_client=64,
        noise_source=SeededRandomSource(b"m" * 32),
    )  # fmt: skip


def _training_after(moments: DPAggregator, count: int) -> DPAggregator:
    config = DPConfig(epsilon=1.0, delta=1e-5, rounds=20, l2_clip=0.5, min_honest=HOSPITALS - 1)
    return make_dp_aggregator(
        "plain-quantized", config, num_clients=HOSPITALS, dimension=31, max_samples_per_client=64,
        preceding=((moments.plan, count),),
    )  # fmt: skip


def test_a_training_account_composing_fewer_releases_than_were_made_is_refused() -> None:
    # Prepare: the moments released twice (a retry), each with fresh noise
    moments = _moments(rounds=2)
    release_moments("breast-cancer", _clients(), moments, 0.2, np.random.default_rng(1))
    release = release_moments("breast-cancer", _clients(), moments, 0.2, np.random.default_rng(2))
    assert moments.accountant.num_releases == 2
    # Execute / Assert: a training plan composing one release is refused, naming both counts
    with pytest.raises(ConfigurationError, match=r"2 aggregates.*composes 1"):
        MomentsChargedAggregator(_training_after(moments, 1), release)


def test_a_training_account_composing_every_release_made_reports_them_all() -> None:
    # Prepare: the same two releases, and a training plan that composes both
    moments = _moments(rounds=2)
    release_moments("breast-cancer", _clients(), moments, 0.2, np.random.default_rng(1))
    release = release_moments("breast-cancer", _clients(), moments, 0.2, np.random.default_rng(2))
    # Execute
    charged = MomentsChargedAggregator(_training_after(moments, 2), release)
    # Assert: before any round the spend is the two releases', as their own accountant reports it
    assert math.isclose(charged.spent()[0], moments.spent()[0], rel_tol=1e-9)


def test_a_release_that_was_never_made_is_not_claimed() -> None:
    # Prepare: a MomentsRelease put together around an aggregator that released nothing
    moments = _moments(rounds=1)
    made = release_moments("breast-cancer", _clients(), _moments(rounds=1), 0.2, np.random.default_rng(1))
    unmade = MomentsRelease(moments, made.standardiser, made.share)
    # Execute / Assert
    with pytest.raises(ConfigurationError, match=r"0 aggregates.*composes 1"):
        MomentsChargedAggregator(_training_after(moments, 1), unmade)
