"""The noised moments release (fl_core.dp_moments): noised as planned, charged, inside the total budget."""

from __future__ import annotations

import importlib.util
import math
from typing import Any

import numpy as np
import pytest

import fl_core.dp_quantizer as fl_dp  # where the DP quantizer calls noised_encoding
import secagg.dp.encoding as dp_module  # where noised_encoding draws its noise
from fl_core import demo
from fl_core.aggregators.base import ClientUpdate
from fl_core.data import ClientData
from fl_core.demo import DemoConfig, run_demo
from fl_core.dp import DPAggregator, DPQuantizer
from fl_core.dp_build import make_dp_aggregator
from fl_core.dp_moments import (
    VARIANCE_FLOOR,
    MomentsChargedAggregator,
    moments_contribution,
    moments_dp_config,
    release_moments,
)
from fl_core.public_scaling import PUBLIC_FEATURE_RANGES, public_scaler
from secagg.dp import DPConfig, SeededRandomSource
from secagg.errors import ConfigurationError

needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="needs the examples extra")

HOSPITALS = 5
FEATURES = len(PUBLIC_FEATURE_RANGES["breast-cancer"])


def _clients(rng: np.random.Generator) -> list[ClientData]:
    high = np.array([h for _, h in PUBLIC_FEATURE_RANGES["breast-cancer"]])
    return [
        ClientData(i, rng.uniform(0.2, 0.6, size=(40, FEATURES)) * high, rng.integers(0, 2, size=40))
        for i in range(HOSPITALS)
    ]


def _moments_aggregator(epsilon: float, delta: float, source: Any = None) -> DPAggregator:
    config = moments_dp_config(epsilon, delta, FEATURES, HOSPITALS - 1)
    return make_dp_aggregator(
        "plain-quantized", config, num_clients=HOSPITALS, dimension=2 * FEATURES, max_samples_per_client=64,
        noise_source=source,
    )  # fmt: skip


def _training_after(release_plan: Any, epsilon: float, delta: float) -> DPAggregator:
    config = DPConfig(epsilon=epsilon, delta=delta, rounds=20, l2_clip=0.5, min_honest=HOSPITALS - 1)
    return make_dp_aggregator(
        "plain-quantized", config, num_clients=HOSPITALS, dimension=31, max_samples_per_client=64,
        preceding=((release_plan, 1),),
    )  # fmt: skip


def test_training_composes_with_the_release_in_one_account_and_beats_basic_composition() -> None:
    # Arrange: a release calibrated alone at 20% of epsilon = 1, then the training after it.
    moments = _moments_aggregator(0.2, 1e-5)
    training = _training_after(moments.plan, 1.0, 1e-5)
    basic = make_dp_aggregator(
        "plain-quantized", DPConfig(epsilon=0.8, delta=5e-6, rounds=20, l2_clip=0.5, min_honest=HOSPITALS - 1),
        num_clients=HOSPITALS, dimension=31, max_samples_per_client=64,
    )  # fmt: skip

    # Assert: before any round the account holds the release alone; all 20 rounds fit the
    # total budget, a 21st would not; the training noise is well below what basic
    # composition of (0.2, delta/2) + (0.8, delta/2) needs.
    release_alone = moments.plan.spent_after(1)[0]
    assert training.spent()[0] == pytest.approx(
        min(float(a.get_epsilon(1e-5)) for a in moments.plan.composed_accountants(1))
    )
    assert 0.0 < training.spent()[0] <= release_alone + 1e-9
    assert training.plan.spent_after(20)[0] <= 1.0
    assert training.plan.spent_after(21)[0] > 1.0
    assert float(training.plan.variance) < 0.8 * float(basic.plan.variance)


def test_a_release_that_spends_the_budget_leaves_no_round() -> None:
    moments = _moments_aggregator(1.0, 1e-5)
    with pytest.raises(ConfigurationError, match="already spend"):
        _training_after(moments.plan, 0.9, 1e-5)


def test_one_patient_moves_the_sums_by_at_most_the_declared_sensitivity() -> None:
    rng = np.random.default_rng(1)
    high = np.array([h for _, h in PUBLIC_FEATURE_RANGES["breast-cancer"]])
    base = rng.uniform(0, 1, size=(10, FEATURES)) * high
    for extreme in (np.zeros(FEATURES), high, 10 * high, -high):  # out-of-range values are clipped first
        with_patient = moments_contribution("breast-cancer", np.vstack([base, extreme]))
        change = np.linalg.norm(with_patient - moments_contribution("breast-cancer", base))
        assert change <= math.sqrt(2 * FEATURES) + 1e-9
    assert moments_dp_config(0.6, 5e-6, FEATURES, 4).l2_clip == pytest.approx(math.sqrt(2 * FEATURES))


def test_release_is_noised_with_the_planned_variance_and_charged(monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange: record every noise draw.
    draws: list[tuple[Any, int]] = []
    original = dp_module.sample_discrete_gaussian

    def recording(variance: Any, size: int, source: Any = None) -> Any:
        draws.append((variance, size))
        return original(variance, size, source)

    monkeypatch.setattr(dp_module, "sample_discrete_gaussian", recording)
    clients = _clients(np.random.default_rng(2))
    aggregator = _moments_aggregator(0.6, 5e-6, SeededRandomSource(b"moments-test".ljust(32, b"0")))
    plan = aggregator.plan

    # Execute
    release = release_moments("breast-cancer", clients, aggregator, 0.2, np.random.default_rng(3))

    # Assert: every hospital drew its share at the planned variance, the release is charged once
    # and within its (epsilon_m, delta_m).
    assert draws == [(plan.variance, 2 * FEATURES)] * HOSPITALS
    assert plan.config.rounds == 1 and plan.honest == HOSPITALS - 1
    assert aggregator.accountant.num_releases == 1
    epsilon, delta = aggregator.spent()
    assert 0 < epsilon <= 0.6 + 1e-9 and delta <= 5e-6
    assert np.all(release.standardiser.std > 0)
    assert aggregator.accountant.would_exceed(1)  # the single planned release is spent


def test_noised_sums_have_the_planned_spread() -> None:
    # The decoded sum minus the exact sum, over repeated releases, has variance n * sigma^2 / scale^2.
    clients = _clients(np.random.default_rng(4))
    exact = sum(moments_contribution("breast-cancer", c.features) for c in clients)
    errors = []
    for i in range(60):
        aggregator = _moments_aggregator(0.6, 5e-6, SeededRandomSource(bytes([i]) * 32))
        updates = [ClientUpdate(c.client_id, moments_contribution("breast-cancer", c.features), 1) for c in clients]
        result = aggregator.aggregate(updates, {}, rng=np.random.default_rng(i))
        assert result.mean is not None
        errors.append(np.asarray(result.mean) - exact)
    assert isinstance(aggregator.quantizer, DPQuantizer)
    plan = aggregator.plan
    planned = HOSPITALS * float(plan.variance) / plan.scale**2
    measured = float(np.var(np.concatenate(errors)))
    assert measured == pytest.approx(planned, rel=0.1)  # 3600 draws: about 2.4% standard error


@needs_sklearn
def test_demo_charges_the_moments_release_and_stays_within_the_total(monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange: count every noised encoding and every aggregator built.
    encodings: list[int] = []
    original = fl_dp.noised_encoding

    def counting(*args: Any, **kwargs: Any) -> Any:
        encodings.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(fl_dp, "noised_encoding", counting)

    def no_moments(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("DP mode ran the un-noised standardisation round")

    monkeypatch.setattr(demo, "federated_standardiser", no_moments)

    # Execute
    config = DemoConfig(aggregation="secagg", rounds=3, compare=False, dp_epsilon=1.0, dp_moments_share=0.2)
    report = run_demo(config)

    # Assert: 5 noised encodings for the moments and 5 per training round, nothing else sent;
    # the total spent is within (epsilon, delta) and includes the moments' share.
    released = [r for r in report.result.rounds if r.skipped_reason is None]
    assert len(released) == 3 and len(encodings) == HOSPITALS * (1 + 3)
    spent = released[-1].epsilon_spent
    assert spent is not None and 0.2 < spent <= 1.0 + 1e-9
    assert "feature-moments release and 3 training rounds, in total (one Renyi account" in report.privacy


def test_charged_aggregator_reports_the_release_and_refuses_an_unchained_training() -> None:
    moments = _moments_aggregator(0.2, 1e-5, SeededRandomSource(b"x" * 32))
    release = release_moments("breast-cancer", _clients(np.random.default_rng(5)), moments, 0.2,
                              np.random.default_rng(6))  # fmt: skip
    charged = MomentsChargedAggregator(_training_after(moments.plan, 1.0, 1e-5), release)
    # No training round yet: the spend is the release's alone, within the whole budget.
    assert charged.spent()[0] == pytest.approx(moments.spent()[0])
    assert charged.spent()[0] <= 1.0 and charged.spent()[1] <= 1e-5 * (1 + 1e-12)
    assert "one noised feature-moments release" in charged.guarantee()
    with pytest.raises(ConfigurationError, match="calibrated after the moments release"):
        MomentsChargedAggregator(_moments_aggregator(0.8, 1e-5), release)


def test_variance_floor_applies_when_noise_swamps_the_variance() -> None:
    clients = _clients(np.random.default_rng(7))
    release = release_moments("breast-cancer", clients, _moments_aggregator(0.01, 5e-6), 0.2, np.random.default_rng(8))
    half = np.array([h / 2 for _, h in PUBLIC_FEATURE_RANGES["breast-cancer"]])
    assert np.all(release.standardiser.std >= half * math.sqrt(VARIANCE_FLOOR) * (1 - 1e-12))
    assert np.all(release.standardiser.std <= half * (1 + 1e-12))


def test_the_moments_divide_by_the_included_hospitals_declared_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    # A release whose sum leaves hospital 0 out (here: the protocol reports it excluded) holds
    # only the other hospitals' patients: the means divide by their declared sizes (4 x 40).
    clients = _clients(np.random.default_rng(4))
    aggregator = _moments_aggregator(30.0, 1e-2, SeededRandomSource(b"moments-included".ljust(32, b"0")))
    inner = aggregator.aggregate

    def without_hospital_zero(updates: Any, dropouts: Any = None, **kwargs: Any) -> Any:
        result = inner(updates[1:], dropouts, **kwargs)
        assert result.included == frozenset({1, 2, 3, 4})
        return result

    monkeypatch.setattr(aggregator, "aggregate", without_hospital_zero)
    release = release_moments("breast-cancer", clients, aggregator, 0.2, np.random.default_rng(5))
    scaled = np.concatenate([c.features for c in clients[1:]])
    public = public_scaler("breast-cancer", scaled.shape[1])
    u = np.clip(public.apply(scaled), -1.0, 1.0)
    released = (release.standardiser.mean - public.mean) / public.std  # the released mean of u
    # At epsilon = 30, delta = 1e-2 (the largest epsilon whose refusal residual fits a tenth of
    # delta) the noise moves each mean by under 0.03 and their average over the 30 features by
    # under 0.01; dividing by all five hospitals' 200 patients would shrink every mean by a fifth
    # (about 0.04 on means near -0.2).
    np.testing.assert_allclose(released, u.mean(axis=0), atol=0.03)
    assert abs(float(np.mean(released - u.mean(axis=0)))) < 0.01
    assert abs(float(np.mean(u.mean(axis=0)))) * 0.2 > 0.03
