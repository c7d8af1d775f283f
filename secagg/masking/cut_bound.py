"""The adversarial-cut term of SecAgg+'s privacy bound in active mode (spec 12.6, step 2.5).

A lying server chooses its dropouts knowing the graph. To release the sum of an arc of the
ring apart from the rest it must cut the ring at two disjoint windows of k/2 consecutive
clients holding no honest survivor; the arc's edge survivor then has at most k/2 honest
neighbours answering, while it answers only a list signed by t of its neighbours and its
seed needs t shares, so each window holds at least ``m = t - k/2`` colluders, whatever the
server drops (docs/threat-model.md). With ``B = floor(gamma n)`` colluders placed at random
(independently of the graph) and (X1, X2) the colluders in two disjoint windows of k/2
(multivariate hypergeometric), a union bound over the ``n (n - k - 1) / 2`` pairs of
windows that leave both arcs non-empty gives

    P[cut] <= n (n - k - 1) / 2 * P[X1 >= m and X2 >= m].

This module computes the natural log of that bound for every m at once, vectorised:
one (k/2 + 1)^2 grid of terms, summed as suffix sums.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["cut_log_bounds", "cut_log_leading_term"]


def _log_choose(a: int, b: int) -> float:
    return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)


def cut_log_leading_term(num_clients: int, degree: int, colluders: int, least: int) -> float:
    """ln of ``n (n - k - 1) / 2`` times the single term a = b = m = ``least`` of :func:`cut_log_bounds`
    (-inf if it is 0): a lower bound on ``L[m]``, which sums nonnegative terms including it. The
    derivation uses it to skip the grid for thresholds it already rules out."""
    n, k, bad, m = num_clients, degree, colluders, least
    half, rest = k // 2, num_clients - degree
    if not 0 <= m <= half or not 0 <= bad - 2 * m <= rest:
        return -math.inf
    return (
        math.log(n) + math.log(n - k - 1) - math.log(2)
        + 2 * _log_choose(half, m) + _log_choose(rest, bad - 2 * m) - _log_choose(n, bad)
    )


def cut_log_bounds(num_clients: int, degree: int, colluders: int, least: int = 0) -> npt.NDArray[np.float64]:
    """``L[m]`` for m = 0..k/2 + 1: ln of ``n (n - k - 1) / 2 * P[X1 >= m and X2 >= m]`` (-inf where the
    probability is 0: ``2m > B`` or ``m > k/2``), for k even in 2..n - 2 and B = ``colluders``.

    Entries below ``least`` are not computed (left at +inf); the derivation asks only for
    m >= t - k/2 of its smallest t. Terms ``exp(lchoose(w, a) + lchoose(w, b) + lchoose(n - k, B - a - b)
    - lchoose(n, B))`` (w = k/2, CPython's ``math.lgamma``), summed over b from w down to m in each
    row a, then those row sums over a from w down to m (spec 12.6, step 2.5)."""
    n, k, bad = num_clients, degree, colluders
    half = k // 2
    out = np.full(half + 2, -math.inf)
    out[: max(least, 0)] = math.inf
    low = max(least, 0)
    high = min(half, bad - low)  # a + b <= B, so neither count exceeds B - least
    if high < low:
        return out
    rest = n - k
    counts = np.arange(low, high + 1)
    log_window = np.array([_log_choose(half, int(a)) for a in counts])
    # lchoose(n - k, B - s) for s = a + b in 2 low .. 2 high; -inf where B - s is outside 0..n - k
    sums = np.arange(2 * low, 2 * high + 1)
    log_rest = np.array([_log_choose(rest, bad - int(s)) if 0 <= bad - int(s) <= rest else -math.inf for s in sums])
    log_terms = log_window[:, None] + log_window[None, :] + log_rest[counts[:, None] + counts[None, :] - 2 * low]
    terms = np.exp(log_terms - _log_choose(n, bad))
    rows = np.cumsum(terms[:, ::-1], axis=1)[:, ::-1]  # rows[a, m] = sum over b = w .. m, from b = w down
    tails = np.cumsum(rows[::-1, :], axis=0)[::-1, :]  # tails[m, m'] = sum over a = w .. m of rows[a, m']
    probability = np.diagonal(tails).copy()
    scale = math.log(n) + math.log(n - k - 1) - math.log(2)
    with np.errstate(divide="ignore"):
        out[low : high + 1] = scale + np.log(probability)
    return out
