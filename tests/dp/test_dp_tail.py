"""The refusal residual: a hospital's observable refusal of a noised encoding whose own noise
left its room is in the accounted delta (docs/privacy.md, "The refusal residual")."""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import pytest

from secagg.dp import DPConfig, PrivacyAccountant, calibrate, noise_tail_bound
from secagg.dp.encoding import noised_encoding, size_encoding
from secagg.dp.sampler import SeededRandomSource
from secagg.errors import ConfigurationError

# Written out independently of secagg: the per-coordinate refusal probability the encoding's
# room is sized for, and the (1 + e^epsilon) conversion of a total-variation residual.
REFUSAL = 2.0**-64


def residual(epsilon: float, coordinates: int) -> float:
    return (1.0 + math.exp(epsilon)) * coordinates * REFUSAL


def reference(variance: float, sensitivity: float, honest: int, rounds: int) -> dp_accounting.rdp.RdpAccountant:
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(dp_accounting.ZCDpEvent(sensitivity**2 / (2 * honest * variance)), rounds)
    return accountant


# A budget whose residual is a visible share of delta: epsilon 8, delta 1e-9, 5 x 10 x 10^4 coordinates.
CONFIG = DPConfig(epsilon=8.0, delta=1e-9, rounds=10, l2_clip=1.0, min_honest=4)
N, D, SCALE = 5, 10_000, 1024.0


def test_the_plan_accounts_the_residual_of_every_coordinate_hospital_and_release() -> None:
    moments_config = DPConfig(epsilon=2.0, delta=1e-9, rounds=1, l2_clip=1.0, min_honest=4)
    moments = calibrate(moments_config, num_clients=N, scale=SCALE, dimension=60)
    plan = calibrate(CONFIG, num_clients=N, scale=SCALE, dimension=D, preceding=((moments, 1),))
    tail = residual(8.0, 10 * N * D + 1 * N * 60)
    assert tail > 0.05 * CONFIG.delta  # the residual is not negligible here
    assert plan.tail_delta == pytest.approx(tail, rel=1e-9)
    assert plan.mechanism_delta + residual(8.0, 10 * N * D + N * 60) <= CONFIG.delta
    # The mechanism's Renyi account (moments release, then the rounds) spends epsilon at delta - tail.
    sensitivity = SCALE + math.sqrt(D)
    account = reference(float(plan.variance), sensitivity, 4, 10)
    account.compose(dp_accounting.ZCDpEvent((SCALE + math.sqrt(60)) ** 2 / (2 * 4 * float(moments.variance))))
    spent = account.get_epsilon(CONFIG.delta - tail)
    assert spent <= 8.0
    assert plan.spent_after(10) == pytest.approx((spent, CONFIG.delta), rel=1e-9)


def test_an_uncalibrated_variance_at_the_whole_delta_misses_the_budget() -> None:
    plan = calibrate(CONFIG, num_clients=N, scale=SCALE, dimension=D)
    tail = residual(8.0, 10 * N * D)
    sensitivity = SCALE + math.sqrt(D)
    # The smallest variance meeting epsilon at the whole delta is smaller than the plan's.
    lo, hi = 1.0, float(plan.variance)
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if reference(mid, sensitivity, 4, 10).get_epsilon(CONFIG.delta) <= 8.0 else (mid, hi)
    assert hi < float(plan.variance) * (1 - 1e-4)
    assert reference(hi, sensitivity, 4, 10).get_epsilon(CONFIG.delta - tail) > 8.0


def test_calibrate_refuses_a_residual_over_a_tenth_of_delta() -> None:
    # 5 x 10 x 10^5 coordinates at epsilon 8: (1 + e^8) x 5e6 x 2^-64 = 8.1e-10 > delta / 10.
    with pytest.raises(ConfigurationError, match=r"refusal residual.*8\.08e-10.*larger delta"):
        calibrate(CONFIG, num_clients=N, scale=SCALE, dimension=100_000)
    # One round fewer coordinates (a tenth of d) fits.
    assert calibrate(CONFIG, num_clients=N, scale=SCALE, dimension=D).tail_delta < CONFIG.delta / 10


def test_the_accountant_spends_at_the_mechanism_delta() -> None:
    plan = calibrate(CONFIG, num_clients=N, scale=SCALE, dimension=D)
    accountant = PrivacyAccountant(plan)
    for _ in range(3):
        accountant.record_round()
    account = reference(float(plan.variance), SCALE + math.sqrt(D), 4, 3)
    tail3 = residual(8.0, 3 * N * D)  # the coordinates of the three released rounds
    assert accountant.get_epsilon() == pytest.approx(account.get_epsilon(CONFIG.delta - tail3), rel=1e-9)
    assert accountant.spent()[0] == accountant.get_epsilon()
    assert accountant.get_delta(5.0) == pytest.approx(account.get_delta(5.0) + residual(5.0, 3 * N * D), rel=1e-6)
    assert accountant.get_privacy_spent(5e-10).epsilon == pytest.approx(
        account.get_epsilon(5e-10 - residual(8.0, 3 * N * D)), rel=1e-9
    )
    assert accountant.get_epsilon(1e-30) == math.inf  # below the residual no epsilon holds


def test_the_encoding_refuses_a_coordinate_within_the_noise_room_at_the_accounted_probability() -> None:
    plan = calibrate(CONFIG, num_clients=N, scale=SCALE, dimension=D)
    quantization, _ = size_encoding(plan, num_clients=N, max_samples_per_client=10)
    room = noise_tail_bound(plan, 1, REFUSAL)
    # The sub-Gaussian tail at that room: 2 exp(-room^2 / (2 sigma^2)) <= 2^-64.
    assert 2 * math.exp(-(room**2) / (2 * float(plan.variance))) <= REFUSAL
    assert quantization.qmax >= math.ceil(10 * SCALE) + room
    rng = np.random.default_rng(0)
    inside = np.zeros(D)
    inside[0] = (quantization.qmax - room) / SCALE
    assert noised_encoding(plan, quantization, inside, rng, SeededRandomSource(bytes(32))).shape == (D,)
    # A coordinate the 2^-40 room accepted, but whose refusal is likelier than the accounted 2^-64.
    beyond = np.zeros(D)
    beyond[0] = (quantization.qmax - noise_tail_bound(plan, 1, 2.0**-40)) / SCALE
    with pytest.raises(ConfigurationError, match="exceeds the range"):
        noised_encoding(plan, quantization, beyond, rng, SeededRandomSource(bytes(32)))


def test_the_ring_must_hold_the_noise_tail_besides_the_clipped_sums() -> None:
    """256 hospitals x qmax fit Z_(2^32) with 255 to spare; the sum's noise tail does not fit."""
    config = DPConfig(epsilon=3.0, delta=1e-5, rounds=5, l2_clip=1.0, min_honest=4)
    plan = calibrate(config, num_clients=256, scale=1024.0, dimension=31)
    # Execute / Assert
    with pytest.raises(ConfigurationError, match="noise tail"):
        size_encoding(plan, num_clients=256, max_samples_per_client=4081, ring_bits=32)
    quantization, tail = size_encoding(plan, num_clients=256, max_samples_per_client=4081, ring_bits=64)
    assert 256 * quantization.qmax <= 2**31 - 1 < 256 * quantization.qmax + tail  # the case is the tail's
    assert 256 * quantization.qmax + tail <= 2**63 - 1


def test_an_encoding_at_another_scale_than_the_noise_plan_is_refused() -> None:
    """The noise is sized for the plan's scale: an encoding at twice that scale would carry twice
    the sensitivity under the same noise (half the noise it needs)."""
    config = DPConfig(epsilon=3.0, delta=1e-5, rounds=5, l2_clip=1.0, min_honest=4)
    plan = calibrate(config, num_clients=5, scale=1024.0, dimension=31)
    doubled, _ = size_encoding(calibrate(config, num_clients=5, scale=2048.0, dimension=31), num_clients=5,
                               max_samples_per_client=10)
    matching, _ = size_encoding(plan, num_clients=5, max_samples_per_client=10)
    rng = np.random.default_rng(0)
    # Execute / Assert
    with pytest.raises(ConfigurationError, match="differs from the noise plan"):
        noised_encoding(plan, doubled, np.zeros(31), rng, SeededRandomSource(bytes(32)))
    assert noised_encoding(plan, matching, np.zeros(31), rng, SeededRandomSource(bytes(32))).shape == (31,)
