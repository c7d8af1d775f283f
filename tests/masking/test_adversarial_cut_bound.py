"""The adversarial-cut term: a lying server's chosen cut is inside the printed 2^-40 (active mode).

docs/threat-model.md ("Declared dropouts and a lying server"): to release the sum of an arc of a
Harary ring apart from the rest, a lying server must cut the ring at two disjoint windows of k/2
consecutive clients, each holding at least ``m = t - k/2`` colluders, whatever it drops. With
``B = floor(gamma n)`` colluders placed at random, a union bound over the pairs of windows gives

    n (n - k - 1) / 2 x P[X1 >= m and X2 >= m]     ((X1, X2) multivariate hypergeometric)

which the derivation must keep below 2^-41 in active mode (spec 12.6, step 2.5), with the
corrupt-neighbour term's 2^-41 for a total below 2^-40. Every probability is recomputed here as an
exact fraction (``math.comb``), independent of the library's floating-point evaluation.

The first n at which the term changed the derived parameters (gamma = 0.05, active): n = 206 at
delta = 0 (k = 12, t = 11 had the term at 2^-35.3; now t = 12) and n = 1,480 at the default delta
(``ceil(0.4 n)/n``: k = 916, t = 495 had it at 2^-37.6; now k = 926, t = 501).
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from secagg.errors import ConfigurationError
from secagg.masking import ACTIVE, HARARY, MaskingConfig
from secagg.masking.cut_bound import cut_log_bounds, cut_log_leading_term
from secagg.masking.parameters import (
    CUT_LOG_BOUND,
    SECURITY_PARAMETER,
    cut_log_probability,
    derive_secagg_plus,
    dropout_count,
    planned_dropouts,
)
from secagg.primitives.signing import placeholder_public_keys

GAMMA = 0.05
BOUND = Fraction(1, 2 ** (SECURITY_PARAMETER + 1))


def _exact_cut_bound(n: int, k: int, t: int, colluders: int) -> Fraction:
    """n (n - k - 1) / 2 x P[X1 >= m and X2 >= m], m = t - k/2, exactly."""
    half, m = k // 2, t - k // 2
    if m <= 0:
        return Fraction(n * (n - k - 1), 2)
    total = 0
    for a in range(m, half + 1):
        for b in range(m, half + 1):
            if a + b <= colluders:
                total += math.comb(half, a) * math.comb(half, b) * math.comb(n - k, colluders - a - b)
    return Fraction(n * (n - k - 1) * total, 2 * math.comb(n, colluders))


def _default_delta(n: int) -> float:
    return min(planned_dropouts(n), n - 1) / n


def _identity_keys(n: int) -> tuple[bytes, ...]:
    return placeholder_public_keys(n)


def _active(n: int, degree: int, threshold: int, dropout: float) -> MaskingConfig:
    return MaskingConfig(
        num_clients=n, threshold=threshold, vector_length=1, graph=HARARY, degree=degree, mode=ACTIVE,
        identity_keys=_identity_keys(n), corrupt_fraction=GAMMA, dropout_fraction=dropout,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("n", "dropout", "old", "new"),
    [
        (206, 0.0, (12, 11), (12, 12)),
        (2000, 0.0, (16, 15), (16, 16)),
        (1480, None, (916, 495), (926, 501)),
        (1651, None, (990, 535), (998, 540)),
    ],
)
def test_the_derived_parameters_meet_the_cut_bound_and_one_step_weaker_does_not(
    n: int, dropout: float | None, old: tuple[int, int], new: tuple[int, int]
) -> None:
    # Prepare: the federation, gamma = 0.05, active mode; the default delta where None
    delta = _default_delta(n) if dropout is None else dropout
    colluders = dropout_count(n, GAMMA)

    # Act
    params = derive_secagg_plus(n, GAMMA, delta, active=True)

    # Assert: at the bound, the derived (k, t) keeps the union bound below 2^-41 ...
    assert (params.degree, params.threshold) == new
    assert _exact_cut_bound(n, params.degree, params.threshold, colluders) < BOUND
    # ... and one step weaker, the old (k, t) (t one lower), does not
    assert _exact_cut_bound(n, *old, colluders) >= BOUND


@pytest.mark.parametrize(("n", "dropout"), [(205, 0.0), (1479, None), (1000, None), (200, 0.1)])
def test_where_the_bound_already_held_the_parameters_are_unchanged(n: int, dropout: float | None) -> None:
    delta = _default_delta(n) if dropout is None else dropout
    params = derive_secagg_plus(n, GAMMA, delta, active=True)
    # The old rules alone pick the same (k, t): the term holds there already
    assert _exact_cut_bound(n, params.degree, params.threshold, dropout_count(n, GAMMA)) < BOUND
    assert _exact_cut_bound(n, params.degree, params.threshold - 1, dropout_count(n, GAMMA)) >= BOUND or (
        params.threshold - 1 <= params.degree // 2
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(min_value=101, max_value=2500),
    dropout=st.sampled_from([0.0, 0.05, 0.1, None]),
)
@example(n=206, dropout=0.0)
@example(n=1480, dropout=None)
def test_every_derived_active_harary_configuration_keeps_the_privacy_total_below_2_to_the_minus_40(
    n: int, dropout: float | None
) -> None:
    # Prepare
    delta = _default_delta(n) if dropout is None else dropout
    corrupt = dropout_count(n, GAMMA)

    # Act
    params = derive_secagg_plus(n, GAMMA, delta, active=True)

    # Assert: the cut term below 2^-41, and with the corrupt-neighbour term (an honest client's
    # neighbours among the other n - 1, 2t - k of them colluding lets a lying server split them)
    # the total below 2^-40
    if params.complete:
        return
    k, t = params.degree, params.threshold
    cut = _exact_cut_bound(n, k, t, corrupt)
    assert cut < BOUND
    whole = math.comb(n - 1, k)
    tail = sum(Fraction(math.comb(corrupt, x) * math.comb(n - 1 - corrupt, k - x), whole)
               for x in range(max(2 * t - k, 0), min(k, corrupt) + 1))  # fmt: skip
    assert (n - corrupt) * tail + cut < 2 * BOUND


def test_the_vectorised_term_agrees_with_the_exact_fraction() -> None:
    for n, k, t in ((206, 12, 11), (1651, 990, 535), (2000, 1128, 611), (300, 20, 14), (1000, 52, 37),
                    (4951, 1810, 983)):  # fmt: skip
        exact = _exact_cut_bound(n, k, t, dropout_count(n, GAMMA))
        log_exact = math.log(exact.numerator) - math.log(exact.denominator)
        assert cut_log_probability(n, k, t, GAMMA) == pytest.approx(log_exact, rel=1e-12, abs=1e-9)
    # No cut: k = n - 1, or fewer colluders than two windows need
    assert cut_log_probability(13, 12, 7, 0.3) == -math.inf
    assert cut_log_probability(200, 12, 12, GAMMA) == -math.inf


def test_a_node_refuses_a_record_that_meets_the_old_rules_but_not_the_cut_term() -> None:
    # Prepare: n = 206, gamma = 0.05, delta = 0: the derived (12, 12) is accepted ...
    n = 206
    config = _active(n, 12, 12, 0.0)
    assert MaskingConfig.from_record(config.record()).record() == config.record()

    # Act / Assert: ... and a server's record with t = 11 (the old derivation's t, which meets
    # t > corrupt neighbours, 2t > k + c and t <= t2) is refused, directly and from the record
    with pytest.raises(ConfigurationError, match=r"threshold 11 .*cut.*2\^-35\.3.*2\^-41"):
        _active(n, 12, 11, 0.0)
    with pytest.raises(ConfigurationError, match="cut"):
        MaskingConfig.from_record(dataclasses.replace(config.record(), threshold=11))


def test_semi_honest_mode_is_not_sized_against_a_lying_servers_cut() -> None:
    # The term is a lying server's: an honest-but-curious one drops no one by choice, and
    # semi-honest mode's parameters (and vectors) are unchanged
    params = derive_secagg_plus(206, GAMMA, 0.0, active=False)
    direct = MaskingConfig(
        num_clients=206, threshold=params.threshold, vector_length=1, graph=HARARY, degree=params.degree,
        mode="semi-honest", corrupt_fraction=GAMMA,
    )  # fmt: skip
    assert direct.threshold == params.threshold


@pytest.mark.parametrize(
    ("n", "k", "t", "log2_bound"),
    [(206, 12, 11, -35.3), (2000, 16, 15, -35.0), (1480, 916, 495, -37.6), (1651, 990, 535, -36.0),
     (2000, 16, 16, -50.0), (1651, 998, 540, -45.9), (206, 12, 12, None), (1480, 926, 501, None)],
)  # fmt: skip
def test_the_threat_models_figures_are_the_exact_union_bound(n: int, k: int, t: int, log2_bound: float | None) -> None:
    # docs/threat-model.md, "Declared dropouts and a lying server": old and new (k, t), gamma = 0.05
    bound = _exact_cut_bound(n, k, t, dropout_count(n, GAMMA))
    if log2_bound is None:
        assert bound == 0  # 2 (t - k/2) exceeds the floor(gamma n) colluders: no cut fits
    else:
        assert round(math.log2(bound.numerator) - math.log2(bound.denominator), 1) == log2_bound


@pytest.mark.parametrize(("n", "k", "t"), [(206, 12, 11), (1651, 990, 535), (1651, 990, 560), (2000, 16, 15)])
def test_the_leading_term_the_derivation_skips_by_is_below_the_whole_sum(n: int, k: int, t: int) -> None:
    # The derivation skips the grid for thresholds whose single term a = b = t - k/2 is already 1e-6 above
    # the bound; that is sound only if the term never exceeds the sum (spec 12.6, step 2.5)
    colluders = dropout_count(n, GAMMA)
    leading = cut_log_leading_term(n, k, colluders, t - k // 2)
    assert leading <= cut_log_bounds(n, k, colluders, t - k // 2)[t - k // 2] + 1e-9


def test_the_smallest_decision_margin_the_spec_states() -> None:
    # spec 12.6 states the smallest distance between a compared log C and -41 ln 2 over its grid:
    # 0.00045 at n = 2,012, delta = 0 (k = t = 14, passing); far beyond last-bit differences
    params = derive_secagg_plus(2012, GAMMA, 0.0, active=True)
    assert (params.degree, params.threshold) == (14, 14)
    margin = CUT_LOG_BOUND - cut_log_probability(2012, 14, 14, GAMMA)
    assert 0.00045 <= margin < 0.00046


def test_a_refused_cut_term_just_above_the_bound_never_prints_as_the_bound() -> None:
    # Prepare: n = 318, k = 24, t = 19, delta = 0: the cut term is 2^-40.987, refused (not below 2^-41),
    # and every rule before it holds (connectivity, t > corrupt neighbours, 2t > k + c, t <= t2)
    assert -41 < cut_log_probability(318, 24, 19, GAMMA) / math.log(2) < -40.95

    # Act / Assert: the refusal rounds the exponent up, toward the safe side, as the degree check does:
    # "up to 2^-41.0, not below 2^-41" would contradict itself
    with pytest.raises(ConfigurationError, match=r"threshold 19 .*cut.*up to 2\^-40\.9, not below 2\^-41") as refused:
        _active(318, 24, 19, 0.0)
    assert "2^-41.0" not in str(refused.value)
