"""SecAgg+'s failure probabilities are computed, and what the guarantee prints holds, in exact arithmetic.

The derivation (:mod:`secagg.masking.parameters`) works in floating point on Hypergeometric(n, ., k),
production's model. Here every probability is recomputed as an exact fraction (``math.comb``):

- the two per-client bounds are the exact minima their definitions state, tested at the bound and
  one below it (``t1 = min{x : P[X > x] < 2^-41/n}``, ``t2 = min{y : P[Y <= y] >= 2^-20/n}``);
- the session-level statements the guarantee prints hold for the derived (k, t) under the exact
  per-client model: an honest client's k neighbours are a uniform k-subset of the *other* n - 1
  clients (so Hypergeometric(n - 1, A, k) for its corrupt neighbours, not (n, A, k)), and a union
  over the honest clients plus the disconnection bound (semi-honest) or a lying server's cut bound
  (active, spec 12.6 step 2.5) stays below 2^-40; likewise completion below
  2^-20 over the survivors (neighbours among n - 1 of which S - 1 survive) and the dropped clients.
  Per client the exact tail can exceed production's 2^-41/n (n = 150, gamma = 0.33: 1.07 times);
  the union cannot, since (n - A) P_honest + A P_corrupt = n P_(n, A, k) exactly.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from secagg.masking.parameters import (
    CORRECTNESS_PARAMETER,
    SECURITY_PARAMETER,
    _disconnection_log_probability,
    corrupt_neighbour_bound,
    derive_secagg_plus,
    surviving_neighbour_quantile,
)

SMALL = 1e-14  # the derivation's guard against floor/ceil representation error
CASES = [
    (n, gamma, delta, active)
    for n in (101, 150, 170, 400, 1000)
    for gamma, delta in ((0.05, 0.05), (0.12, 0.18), (0.33, 0.0), (0.05, 0.33), (0.2, 0.1))
    for active in (False, True)
]


def _pmf(total: int, marked: int, sample: int) -> list[Fraction]:
    """P[X = x] for x in 0..sample, X ~ Hypergeometric(total, marked, sample), exactly."""
    whole = math.comb(total, sample)
    return [Fraction(math.comb(marked, x) * math.comb(total - marked, sample - x), whole) for x in range(sample + 1)]


def _exact_cut_bound(n: int, k: int, t: int, colluders: int) -> Fraction:
    """n (n - k - 1) / 2 x P[two disjoint windows of k/2 each hold at least t - k/2 of the colluders]."""
    half, m = k // 2, t - k // 2
    if m <= 0:
        return Fraction(n * (n - k - 1), 2)
    total = sum(
        math.comb(half, a) * math.comb(half, b) * math.comb(n - k, colluders - a - b)
        for a in range(m, half + 1)
        for b in range(m, half + 1)
        if a + b <= colluders
    )
    return Fraction(n * (n - k - 1) * total, 2 * math.comb(n, colluders))


def _counts(n: int, gamma: float, delta: float) -> tuple[int, int, int]:
    """(A corrupt, D dropped, S surviving) as the derivation counts them."""
    corrupt, dropped = math.floor((gamma + SMALL) * n), math.floor((delta + SMALL) * n)
    return corrupt, dropped, math.ceil((1 - delta - SMALL) * n)


def _derived(n: int, gamma: float, delta: float, active: bool) -> tuple[int, int]:
    params = derive_secagg_plus(n, gamma, delta, active=active)
    if params.complete:
        pytest.skip("no sparse graph qualifies")
    return params.degree, params.threshold


@pytest.mark.parametrize(("n", "gamma", "delta", "active"), CASES)
def test_the_per_client_bounds_are_the_exact_minima_at_the_bound_and_one_below(
    n: int, gamma: float, delta: float, active: bool
) -> None:
    k, _ = _derived(n, gamma, delta, active)
    corrupt, _, surviving = _counts(n, gamma, delta)
    # t1: P[X > t1] < 2^-41/n, and one below it the tail is not
    privacy = Fraction(1, 2 ** (SECURITY_PARAMETER + 1) * n)
    x, corrupt_pmf = corrupt_neighbour_bound(n, k, gamma), _pmf(n, corrupt, k)
    assert sum(corrupt_pmf[x + 1 :]) < privacy
    assert x == 0 or sum(corrupt_pmf[x:]) >= privacy
    # t2: P[Y <= t2] >= 2^-20/n, and one below it the cdf is not
    completion = Fraction(1, 2**CORRECTNESS_PARAMETER * n)
    y, surviving_pmf = surviving_neighbour_quantile(n, k, delta), _pmf(n, surviving, k)
    assert sum(surviving_pmf[: y + 1]) >= completion or y == k
    assert sum(surviving_pmf[:y]) < completion


@pytest.mark.parametrize(("n", "gamma", "delta", "active"), CASES)
def test_the_printed_session_failure_probabilities_hold_under_the_exact_per_client_model(
    n: int, gamma: float, delta: float, active: bool
) -> None:
    # Prepare: the derived graph and what its guarantee prints
    k, t = _derived(n, gamma, delta, active)
    corrupt, dropped, surviving = _counts(n, gamma, delta)
    # Privacy: an honest client's input is exposed iff t of its neighbours collude (semi-honest), or a
    # lying server splits them with 2t <= k + colluding neighbours (active): at least `exposing` of them
    exposing = 2 * t - k if active else t
    honest_tail = sum(_pmf(n - 1, corrupt, k)[max(exposing, 0) :])
    # The second term: semi-honest, the honest survivors' disconnection by bad nodes placed at random;
    # active, a lying server's cut (spec 12.6, step 2.5), which also covers the dropouts' disconnection
    # there (a partial sum is released only through such a cut)
    if active:
        second = _exact_cut_bound(n, k, t, corrupt)
    else:
        second = Fraction(math.exp(_disconnection_log_probability(n, k, corrupt + dropped)))
    privacy_failure = (n - corrupt) * honest_tail + second
    assert privacy_failure < Fraction(1, 2**SECURITY_PARAMETER)
    # One past: a threshold one lower leaves no such margin for a client at the per-client bound, or
    # (active mode, where the cut term raised t) fails the cut term
    one_lower_exposed = sum(_pmf(n, corrupt, k)[max(exposing - (2 if active else 1), 0) :]) * n
    one_lower_cut = _exact_cut_bound(n, k, t - 1, corrupt) if active else Fraction(0)
    assert max(one_lower_exposed, one_lower_cut) >= Fraction(1, 2 ** (SECURITY_PARAMETER + 1))
    # Completion: a survivor's seed (neighbours among the n - 1 others, S - 1 surviving) and a dropped
    # client's mask key (S surviving among its n - 1 others) each need t surviving neighbours
    survivor_short = sum(_pmf(n - 1, surviving - 1, k)[:t])
    dropped_short = sum(_pmf(n - 1, surviving, k)[:t]) if surviving < n else Fraction(0)
    assert surviving * survivor_short + (n - surviving) * dropped_short < Fraction(1, 2**CORRECTNESS_PARAMETER)
