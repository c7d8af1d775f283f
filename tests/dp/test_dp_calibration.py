"""Calibration of the distributed discrete Gaussian, checked against dp-accounting directly."""

from __future__ import annotations

import dataclasses
import itertools
import math
from fractions import Fraction

import dp_accounting
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.dp import DPConfig, NoisePlan, calibrate, check_contributors, contributor_shortfall, noise_tail_bound
from secagg.dp.calibration import MIN_VARIANCE, ddg_tau
from secagg.errors import ConfigurationError, InsufficientNoiseError, ThresholdError


def residual(config: DPConfig, coordinates: int) -> float:
    """The refusal residual (1 + e^epsilon) x coordinates x 2^-64 (tests/dp/test_dp_tail.py)."""
    return (1 + math.exp(config.epsilon)) * coordinates * 2.0**-64


def reference_epsilon(
    config: DPConfig, variance: float, scale: float, dimension: int, rounds: int, num_clients: int | None = None
) -> float:
    """The paper's bound composed by dp-accounting, written out independently of secagg, at
    delta less the refusal residual of ``num_clients`` hospitals (none if None)."""
    delta = config.delta - (0.0 if num_clients is None else residual(config, rounds * num_clients * dimension))
    h = config.honest
    sensitivity = config.l2_clip * scale + math.sqrt(dimension)
    tau = 10 * sum(math.exp(-2 * math.pi**2 * variance * k / (k + 1)) for k in range(1, h))
    scaled = sensitivity / math.sqrt(h * variance)
    assert config.sampling_rate is None  # sampled plans: tests/dp/test_dp_subsampling.py
    events = [
        dp_accounting.ZCDpEvent(rho=scaled**2 / 2, xi=tau * dimension),
        dp_accounting.ZCDpEvent(rho=(scaled + tau * math.sqrt(dimension)) ** 2 / 2),
    ]
    epsilons = []
    for event in events:
        accountant = dp_accounting.rdp.RdpAccountant()
        accountant.compose(dp_accounting.SelfComposedDpEvent(event, rounds))
        epsilons.append(accountant.get_epsilon(delta))
    return min(epsilons)


configs = st.builds(
    DPConfig,
    epsilon=st.sampled_from([0.5, 1.0, 2.0, 3.0, 8.0]),
    delta=st.sampled_from([1e-5, 1e-6, 1e-3]),
    rounds=st.integers(1, 200),
    l2_clip=st.floats(0.01, 10.0),
    min_honest=st.integers(1, 10),
)


@settings(max_examples=25, deadline=None)
@given(config=configs, scale=st.sampled_from([1.0, 64.0, 1024.0, 65536.0]), dimension=st.integers(1, 10**6))
def test_calibrated_variance_meets_the_target_and_a_smaller_one_does_not(
    config: DPConfig, scale: float, dimension: int
) -> None:
    n = config.honest + 1
    if residual(config, config.rounds * n * dimension) > config.delta / 10:
        with pytest.raises(ConfigurationError, match="refusal residual"):
            calibrate(config, num_clients=n, scale=scale, dimension=dimension)
        return
    plan = calibrate(config, num_clients=n, scale=scale, dimension=dimension)
    assert isinstance(plan.variance, Fraction)
    spent = reference_epsilon(config, float(plan.variance), scale, dimension, config.rounds, n)
    assert spent <= config.epsilon
    assert plan.spent_after(config.rounds) == pytest.approx((spent, config.delta), rel=1e-9)
    if plan.variance > MIN_VARIANCE:
        smaller = float(plan.variance) * (1 - 1e-3)
        assert reference_epsilon(config, smaller, scale, dimension, config.rounds, n) > config.epsilon


def test_figures_against_dp_accounting_breast_cancer_setting() -> None:
    # 5 hospitals, one colluding or dropped: noise sized for 4; 20 rounds, delta = 1e-5.
    config = DPConfig(epsilon=3.0, delta=1e-5, rounds=20, l2_clip=1.0, min_honest=4)
    plan = calibrate(config, num_clients=5, scale=1024.0, dimension=31)
    sensitivity = 1024.0 + math.sqrt(31)
    assert plan.sensitivity == pytest.approx(sensitivity, rel=1e-11)
    assert plan.total_variance == 4 * plan.variance
    # rho per round and a hand-composed RdpAccountant agree with the plan.
    rho = sensitivity**2 / (2 * 4 * float(plan.variance))
    assert plan.rho == pytest.approx(rho, rel=1e-10)
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(dp_accounting.ZCDpEvent(rho), 20)
    assert plan.spent_after(20)[0] == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-9)
    schedule = plan.schedule()
    assert len(schedule) == 20
    assert all(a[0] < b[0] for a, b in itertools.pairwise(schedule))
    assert schedule[-1][0] <= 3.0
    assert plan.spent_after(21)[0] > 3.0


@pytest.mark.parametrize("rate", [None, 0.1])
def test_the_calibrated_variance_has_21_significant_bits_as_documented(rate: float | None) -> None:
    # docs/privacy.md: sigma^2 is rounded up to a multiple of 2^(e - 20), 2^e <= sigma^2 < 2^(e + 1):
    # 21 significant bits (the leading one and 20 after it), a relative step of 2^-20 < 1e-6
    config = DPConfig(epsilon=3.0, delta=1e-5, rounds=20, l2_clip=1.0, min_honest=4, sampling_rate=rate)
    variance = calibrate(config, num_clients=5, scale=1024.0, dimension=31).variance
    e = math.floor(math.log2(variance))
    assert Fraction(2) ** e <= variance < Fraction(2) ** (e + 1)
    steps = variance / Fraction(2) ** (e - 20)
    assert steps.denominator == 1 and 2**20 <= steps.numerator < 2**21
    if rate is not None:
        assert variance == Fraction(2077081, 4) and steps.numerator % 2 == 1  # 519,270.25: all 21 bits used


def test_tau_term_matches_the_paper_and_counts_h_summands() -> None:
    variance = Fraction(1, 2)
    expected = 10 * sum(math.exp(-2 * math.pi**2 * 0.5 * k / (k + 1)) for k in range(1, 4))
    assert ddg_tau(variance, 4) == pytest.approx(expected, rel=1e-14)
    assert ddg_tau(variance, 1) == 0.0
    # Where tau matters (small variance, large d), the plan still agrees with the reference.
    config = DPConfig(epsilon=8.0, delta=1e-5, rounds=1, l2_clip=0.01, min_honest=3)
    plan = NoisePlan(config=config, variance=Fraction(3, 4), num_clients=3, dimension=10**4, scale=1.0)
    assert plan.tau > 0
    mechanism = min(float(a.get_epsilon(config.delta)) for a in plan.composed_accountants(1))
    assert mechanism == pytest.approx(reference_epsilon(config, 0.75, 1.0, 10**4, 1), rel=1e-9)
    assert plan.spent_after(1)[0] == math.inf  # epsilon ~2600: (1 + e^epsilon) x beta alone exceeds delta


def test_more_honest_clients_need_less_noise_each() -> None:
    few = calibrate(
        DPConfig(epsilon=1.0, delta=1e-5, rounds=10, l2_clip=1.0, min_honest=2),
        num_clients=5,
        scale=256.0,
        dimension=100,
    )
    many = calibrate(
        DPConfig(epsilon=1.0, delta=1e-5, rounds=10, l2_clip=1.0, min_honest=4),
        num_clients=5,
        scale=256.0,
        dimension=100,
    )
    assert many.variance < few.variance
    assert many.total_variance == pytest.approx(few.total_variance, rel=1e-5)


def test_calibration_refuses_bad_arguments() -> None:
    config = DPConfig(epsilon=1.0, delta=1e-5, rounds=10, l2_clip=1.0, min_honest=4)
    with pytest.raises(ConfigurationError):
        calibrate(config, num_clients=3, scale=1.0, dimension=10)
    with pytest.raises(ConfigurationError):
        calibrate(config, num_clients=5, scale=0.0, dimension=10)
    with pytest.raises(ConfigurationError):
        calibrate(config, num_clients=5, scale=1.0, dimension=0)


def test_noise_tail_bound() -> None:
    config = DPConfig(epsilon=3.0, delta=1e-5, rounds=20, l2_clip=1.0, min_honest=4)
    plan = calibrate(config, num_clients=5, scale=1024.0, dimension=31)
    bound = noise_tail_bound(plan, 5)
    target = 2 * 5 * float(plan.variance) * math.log(2 / 2**-40)
    assert (bound - 1) ** 2 < target <= bound**2
    assert noise_tail_bound(plan, 5, probability=2**-80) > bound
    assert noise_tail_bound(plan, 10) > bound
    with pytest.raises(ConfigurationError):
        noise_tail_bound(plan, 5, probability=0.0)


def test_rounds_with_too_few_honest_contributors_are_refused() -> None:
    config = DPConfig(epsilon=3.0, delta=1e-5, rounds=20, l2_clip=1.0, min_honest=4)
    plan = calibrate(config, num_clients=5, scale=1024.0, dimension=31)
    assert contributor_shortfall(plan, 5, colluders=1) is None
    check_contributors(plan, 4)
    reason = contributor_shortfall(plan, 4, colluders=1)
    assert reason is not None
    assert "skipped" in reason
    with pytest.raises(InsufficientNoiseError):
        check_contributors(plan, 3)
    with pytest.raises(ThresholdError):
        check_contributors(plan, 5, colluders=2)


def test_rounds_after_a_preceding_release_against_dp_accounting() -> None:
    # A release of 60 sums, then 20 training rounds calibrated after it: dp-accounting, given
    # the same events written out here, finds the whole run within (epsilon, delta).
    release_config = DPConfig(epsilon=0.6, delta=1e-5, rounds=1, l2_clip=7.75, min_honest=4)
    release = calibrate(release_config, num_clients=5, scale=64.0, dimension=60)
    config = DPConfig(epsilon=3.0, delta=1e-5, rounds=20, l2_clip=0.5, min_honest=4)
    plan = calibrate(config, num_clients=5, scale=1024.0, dimension=31, preceding=((release, 1),))

    def rho(p: NoisePlan, l2_clip: float, scale: float, dimension: int) -> float:
        return (l2_clip * scale + math.sqrt(dimension)) ** 2 / (2 * p.honest * float(p.variance))

    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(dp_accounting.ZCDpEvent(rho=rho(release, 7.75, 64.0, 60)))
    accountant.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.ZCDpEvent(rho=rho(plan, 0.5, 1024.0, 31)), 20))
    assert accountant.get_epsilon(1e-5) == pytest.approx(plan.spent_after(20)[0], rel=1e-6)
    assert plan.spent_after(20)[0] <= 3.0
    assert plan.spent_after(0)[0] == pytest.approx(release.spent_after(1)[0], rel=1e-9)
    # 0.1% less noise than calibrated no longer meets the budget: the rounds get all that is left.
    lowered = dataclasses.replace(plan, variance=plan.variance * Fraction(999, 1000))
    assert lowered.spent_after(20)[0] > 3.0


def test_where_the_tau_term_matters_the_plan_is_calibrated_to_the_better_bound() -> None:
    # Two hospitals, one coordinate, a tiny clip and epsilon 8: a variance near 1/4, where tau ~0.8
    # and Proposition 14's two bounds differ by half (8.0 and 12.5); the smaller one is the account.
    config = DPConfig(epsilon=8.0, delta=1e-5, rounds=1, l2_clip=0.01, min_honest=2)
    plan = calibrate(config, num_clients=2, scale=1.0, dimension=1)
    assert plan.tau > 0.5
    spent = reference_epsilon(config, float(plan.variance), 1.0, 1, 1, 2)
    assert spent <= 8.0
    assert plan.spent_after(1)[0] == pytest.approx(spent, rel=1e-9)
    assert reference_epsilon(config, float(plan.variance) * (1 - 1e-5), 1.0, 1, 1, 2) > 8.0
