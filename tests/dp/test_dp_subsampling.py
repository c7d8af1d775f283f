"""The proved amplification by Poisson subsampling (secagg/dp/subsampling.py), against an
independent mpmath reference of Zhu and Wang's Theorem 6 (tests/dp/zhu_wang.py)."""

from __future__ import annotations

import dataclasses
import itertools
import math
from fractions import Fraction

import dp_accounting
import mpmath
import numpy as np
import pytest
from dp_accounting.rdp import rdp_privacy_accountant as rdp_module
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.dp import DPConfig, NoisePlan, calibrate
from secagg.dp.subsampling import ORDERS, subsampled_rdp
from secagg.errors import ConfigurationError
from tests.dp import zhu_wang

SAMPLED = DPConfig(epsilon=3.0, delta=1e-5, rounds=20, l2_clip=1.0, min_honest=4, sampling_rate=0.1)


def reference_pairs(variance: float, honest: int, sensitivity: float, dimension: int) -> list[tuple[float, float]]:
    """(rho, xi) of the distributed discrete Gaussian's two zCDP bounds, written out here."""
    tau = 10 * sum(math.exp(-2 * math.pi**2 * variance * k / (k + 1)) for k in range(1, honest))
    scaled = sensitivity / math.sqrt(honest * variance)
    return [(scaled**2 / 2, tau * dimension), ((scaled + tau * math.sqrt(dimension)) ** 2 / 2, 0.0)]


def reference_epsilon(config: DPConfig, variance: float, scale: float, dimension: int, num_clients: int) -> float:
    """The sampled rounds' epsilon at delta less the refusal residual, composed from the reference."""
    assert config.sampling_rate is not None
    sensitivity = config.l2_clip * scale + math.sqrt(dimension)
    pairs = reference_pairs(variance, config.honest, sensitivity, dimension)
    curve = [config.rounds * zhu_wang.rdp(pairs, config.sampling_rate, order) for order in ORDERS]
    residual = (1 + math.exp(config.epsilon)) * config.rounds * num_clients * dimension * 2.0**-64
    return float(rdp_module.compute_epsilon(ORDERS, curve, config.delta - residual)[0])


@settings(max_examples=12, deadline=None)
@given(
    rho=st.floats(1e-4, 5.0),
    xi=st.floats(0.0, 0.5),
    other=st.floats(1e-4, 5.0),
    q=st.floats(1e-4, 1.0),
)
def test_matches_the_independent_reference_and_rounds_up(rho: float, xi: float, other: float, q: float) -> None:
    pairs = [(rho, xi), (other, 0.0)]
    ours = subsampled_rdp([rho, other], [xi, 0.0], q)
    reference = np.array([zhu_wang.rdp(pairs, q, order) for order in ORDERS])
    assert np.all(ours >= reference)
    assert np.all(ours <= reference * (1 + 2e-9))


@pytest.mark.parametrize("z", [0.7, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("q", [0.001, 0.05, 0.3, 0.9])
def test_never_below_the_exact_subsampled_gaussian_and_equal_to_it_at_order_two(z: float, q: float) -> None:
    # A continuous Gaussian is one of the mechanisms the theorem covers, so the general bound
    # cannot undercut its exact subsampled RDP (dp-accounting), and at order 2 the two coincide.
    integers = [order for order in ORDERS if order == int(order)]
    ours = subsampled_rdp([1 / (2 * z * z)], [0.0], q, integers)
    exact = rdp_module._compute_rdp_poisson_subsampled_gaussian(q, z, np.array(integers, dtype=float))
    # dp-accounting sums 1 + O(q^2) as written, so its figure carries rounding of 1e-16 / q^2.
    assert np.all(ours >= exact * (1 - 1e-6))
    assert ours[0] == pytest.approx(exact[0], rel=1e-6)
    assert np.any(ours > exact * 1.01)  # and it is looser than that assumption somewhere


def test_sampling_at_rate_one_is_the_unsampled_account_and_a_lower_rate_spends_less() -> None:
    pairs = ([0.4, 0.5], [0.01, 0.0])
    orders = np.array(ORDERS)
    unsampled = np.minimum(0.01 + 0.4 * orders, 0.5 * orders)
    assert np.allclose(subsampled_rdp(*pairs, 1.0), unsampled, rtol=2e-9, atol=0)
    rates = [subsampled_rdp(*pairs, q) for q in (1.0, 0.5, 0.1, 0.01)]
    assert all(np.all(b <= a) for a, b in itertools.pairwise(rates))
    second = ORDERS.index(2)
    assert rates[-1][second] < unsampled[second] / 100


def test_a_sampled_plan_meets_the_proved_bound_and_a_smaller_variance_does_not() -> None:
    # Before the proved bound, the plan assumed the subsampled continuous Gaussian: its variance
    # (375556.75 here) spends 3.92 by the proved bound, beyond the declared 3.
    plan = calibrate(SAMPLED, num_clients=5, scale=1024.0, dimension=31)
    spent = reference_epsilon(SAMPLED, float(plan.variance), 1024.0, 31, 5)
    assert spent <= 3.0
    assert plan.spent_after(20)[0] == pytest.approx(spent, rel=1e-9)
    assert reference_epsilon(SAMPLED, float(plan.variance) * (1 - 1e-5), 1024.0, 31, 5) > 3.0
    unsampled = calibrate(dataclasses.replace(SAMPLED, sampling_rate=None), num_clients=5, scale=1024.0, dimension=31)
    assert plan.variance < unsampled.variance


@pytest.mark.parametrize("q", [0.01, 0.5, 1.0])
def test_every_sampling_rate_is_calibrated_to_the_proved_bound(q: float) -> None:
    config = dataclasses.replace(SAMPLED, sampling_rate=q, rounds=10, epsilon=1.0)
    plan = calibrate(config, num_clients=5, scale=256.0, dimension=60)
    assert reference_epsilon(config, float(plan.variance), 256.0, 60, 5) <= 1.0
    assert reference_epsilon(config, float(plan.variance) * (1 - 1e-5), 256.0, 60, 5) > 1.0


def test_unsampled_preceding_release_and_sampled_rounds_compose_in_one_account() -> None:
    moments_config = DPConfig(epsilon=0.6, delta=1e-5, rounds=1, l2_clip=1.0, min_honest=4)
    moments = calibrate(moments_config, num_clients=5, scale=256.0, dimension=60)
    plan = calibrate(SAMPLED, num_clients=5, scale=1024.0, dimension=31, preceding=((moments, 1),))
    rounds = reference_pairs(float(plan.variance), 4, 1024.0 + math.sqrt(31), 31)
    first = reference_pairs(float(moments.variance), 4, 256.0 + math.sqrt(60), 60)
    best = math.inf
    for rho, xi in first:  # each valid bound of the unsampled release, as the library combines them
        curve = [xi + rho * order + 20 * zhu_wang.rdp(rounds, 0.1, order) for order in ORDERS]
        residual = (1 + math.exp(3.0)) * (20 * 5 * 31 + 5 * 60) * 2.0**-64
        best = min(best, float(rdp_module.compute_epsilon(ORDERS, curve, 1e-5 - residual)[0]))
    assert best <= 3.0
    assert plan.spent_after(20)[0] == pytest.approx(best, rel=1e-9)
    alone = calibrate(SAMPLED, num_clients=5, scale=1024.0, dimension=31)
    assert plan.variance > alone.variance  # the release took its share of the budget


@pytest.mark.parametrize(
    ("rhos", "xis", "q", "orders"),
    [
        ([0.1], [0.0], 0.0, ORDERS),
        ([0.1], [0.0], 1.5, ORDERS),
        ([0.1], [], 0.5, ORDERS),
        ([], [], 0.5, ORDERS),
        ([0.1], [0.0], 0.5, (1.0,)),
        ([0.1], [0.0], 0.5, (2, math.inf)),
        ([0.1], [0.0], 0.5, (2, math.nan)),
        ([math.nan], [0.0], 0.5, ORDERS),
        ([0.1], [math.inf], 0.5, ORDERS),
        ([-0.1], [0.0], 0.5, ORDERS),
        ([0.1], [-1.0], 0.5, ORDERS),
        ([0.1], [0.0], math.nan, ORDERS),
    ],
)
def test_refuses_what_the_theorem_does_not_cover(
    rhos: list[float], xis: list[float], q: float, orders: tuple[float, ...]
) -> None:
    with pytest.raises(ConfigurationError):
        subsampled_rdp(rhos, xis, q, orders)


def test_dp_accounting_has_no_subsampling_bound_for_a_zcdp_event() -> None:
    # Why the bound is ours: dp-accounting refuses a subsampled zCDP event (if it ever accepts
    # one, compare with it and say so in docs/privacy.md).
    accountant = dp_accounting.rdp.RdpAccountant()
    event = dp_accounting.PoissonSampledDpEvent(0.1, dp_accounting.ZCDpEvent(0.1))
    assert not accountant.supports(event)


def test_rounds_up_where_the_amplified_bound_underflows() -> None:
    # At q = 1e-200 the bound is about q^2 e^eps(2) / 2 ~ 1e-400, below the smallest double: the
    # account must not report 0 (an underestimate), but the smallest double above it.
    integers = [2, 3, 10, 128, 1024]
    ours = subsampled_rdp([1e-3], [0.0], 1e-200, integers)
    with mpmath.workdps(1000):  # 1 + 1e-400 needs 400 digits to differ from 1
        exact = [zhu_wang.amplified([(1e-3, 0.0)], 1e-200, order) for order in integers]
    assert all(0 < value < 1e-300 for value in exact)
    assert all(mine >= value for mine, value in zip(ours, exact, strict=True))


@settings(max_examples=12, deadline=None)
@given(
    log_rho=st.floats(-6.0, 1.7),
    xi=st.floats(0.0, 1.0),
    log_q=st.floats(-9.0, 0.0),
    near_one=st.booleans(),
)
def test_tiny_and_near_one_rates_and_high_orders_stay_finite_and_above_the_theorem(
    log_rho: float, xi: float, log_q: float, near_one: bool
) -> None:
    # The rates the first property test leaves out (q down to 1e-9, and 1 - q down to 1e-9) and
    # curves up to rho = 50 (e^((l - 1) eps(l)) far beyond a double at l = 1024): every value is
    # finite, non-negative, and no smaller than the theorem at 50 digits.
    rho, q = 10.0**log_rho, 10.0**log_q
    if near_one:
        q = 1.0 - q if q < 1.0 else q
    pairs = [(rho, xi), (rho * 1.5, 0.0)]
    ours = subsampled_rdp([rho, rho * 1.5], [xi, 0.0], q)
    assert np.all(np.isfinite(ours)) and np.all(ours >= 0)
    for order, mine in zip(ORDERS, ours, strict=True):
        reference = zhu_wang.curve(pairs, order)
        if order == int(order) and q < 1.0:
            reference = min(reference, zhu_wang.amplified(pairs, q, int(order)))
        assert mine >= reference
        assert mine <= reference * (1 + 2e-9) + 1e-320


@pytest.mark.parametrize("q", [0.001, 0.5, 1.0])
def test_a_mechanism_that_reveals_nothing_stays_at_zero_at_every_order(q: float) -> None:
    # A bound (0, 0) is a valid zCDP bound of a mechanism whose output does not depend on its data:
    # its curve is 0 at every order, sampled or not (the pointwise minimum with another bound too).
    assert np.all(subsampled_rdp([0.0], [0.0], q) == 0.0)
    assert np.all(subsampled_rdp([0.3, 0.0], [0.0, 0.0], q) == 0.0)


@pytest.mark.parametrize("q", [0.9, 1.0])
@pytest.mark.parametrize("variance", [1 << 30, 1 << 18])
def test_sampling_never_spends_more_than_not_sampling_whatever_the_best_order(q: float, variance: int) -> None:
    # A strong guarantee (epsilon ~0.04 over 10 rounds) is read at a Renyi order beyond 128, a weak
    # one (epsilon ~3.7) at a fractional order between 6 and 7: the sampled account keeps every
    # order the unsampled one has, so that at a rate where the amplification brings nothing there,
    # it spends no more than without sampling.
    config = DPConfig(epsilon=0.1, delta=1e-5, rounds=10, l2_clip=1.0, min_honest=4)
    unsampled = NoisePlan(config=config, variance=Fraction(variance), num_clients=5, dimension=60, scale=256.0)
    sampled = dataclasses.replace(unsampled, config=dataclasses.replace(config, sampling_rate=q))
    assert sampled.spent_after(10)[0] <= unsampled.spent_after(10)[0] * (1 + 1e-9)


def test_an_unsampled_release_made_twice_composes_with_sampled_rounds_at_its_better_bound() -> None:
    # Prepare: a release made twice before the sampled rounds, with the tau term (small variance),
    # where its pure zCDP bound (the second) is the better one; the rounds are Poisson-sampled.
    release_config = DPConfig(epsilon=1000.0, delta=1e-5, rounds=2, l2_clip=0.01, min_honest=3)
    release = NoisePlan(config=release_config, variance=Fraction(1, 2), num_clients=3, dimension=1000, scale=1.0)
    plan = NoisePlan(
        config=SAMPLED, variance=Fraction(1 << 19), num_clients=5, dimension=31, scale=1024.0, preceding=((release, 2),)
    )
    rounds = reference_pairs(float(1 << 19), 4, 1024.0 + math.sqrt(31), 31)
    sampled = [3 * zhu_wang.rdp(rounds, 0.1, order) for order in ORDERS]
    # Execute: the library's account after three rounds, the smallest over its combinations
    spent = min(float(a.get_epsilon(1e-5)) for a in plan.composed_accountants(3))
    # Assert: each bound of the release counted twice, plus the sampled rounds, as written out here
    references = []
    for rho, xi in reference_pairs(0.5, 3, 0.01 + math.sqrt(1000), 1000):
        curve = [2 * (xi + rho * order) + rounds_rdp for order, rounds_rdp in zip(ORDERS, sampled, strict=True)]
        references.append(float(rdp_module.compute_epsilon(ORDERS, curve, 1e-5)[0]))
    assert references[1] < references[0] * 0.995  # the second bound is the better one here
    assert spent == pytest.approx(min(references), rel=1e-9)


def test_the_delta_of_a_sampled_account_is_that_of_the_proved_curve() -> None:
    # Prepare: three sampled rounds charged
    plan = NoisePlan(config=SAMPLED, variance=Fraction(1 << 19), num_clients=5, dimension=31, scale=1024.0)
    rounds = reference_pairs(float(1 << 19), 4, 1024.0 + math.sqrt(31), 31)
    curve = [3 * zhu_wang.rdp(rounds, 0.1, order) for order in ORDERS]
    # Execute / Assert: the delta at epsilon 2 is the curve's, plus the refusal residual of 3 x 5 x 31 draws
    residual = (1 + math.exp(2.0)) * 3 * 5 * 31 * 2.0**-64
    expected = float(rdp_module.compute_delta(ORDERS, curve, 2.0)[0]) + residual
    assert 0 < expected < 1e-3
    assert plan.delta_at(2.0, 3) == pytest.approx(expected, rel=1e-6)
