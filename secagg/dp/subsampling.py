"""Amplification by Poisson subsampling, proved for any mechanism (Zhu and Wang, ICML 2019).

When every patient is included in a round independently with probability q (Poisson
sampling; add/remove-one neighbours, as in DP-SGD), a round's release is less revealing than
the same release over every patient. For the continuous Gaussian the amplified Renyi
divergence is known exactly (what dp-accounting's ``PoissonSampledDpEvent`` computes), but a
sum of discrete Gaussians is not a continuous Gaussian, and the exact figure depends on the
whole privacy-loss distribution. What holds for **any** mechanism M that is (l, eps(l))-RDP
at every integer order l = 2..alpha is Theorem 6 of Zhu and Wang, "Poisson Subsampled Renyi
Differential Privacy" (ICML 2019): M on a Poisson sample of rate q is (alpha, eps'(alpha))-RDP
with

    eps'(alpha) = log( (1 - q)^(alpha - 1) (alpha q - q + 1)
                       + C(alpha, 2) q^2 (1 - q)^(alpha - 2) e^eps(2)
                       + 3 sum_{l = 3..alpha} C(alpha, l) q^l (1 - q)^(alpha - l) e^((l - 1) eps(l)) )
                  / (alpha - 1)

for every integer alpha >= 2 (tight up to log(3) / (alpha - 1) and a factor 1 + O(q), the
paper says). Subsampling never hurts (a mixture over the sampled sets, and the Renyi divergence
is jointly quasi-convex), so the account takes ``min(eps'(alpha), eps(alpha))``. The sample the
bound is about is drawn by :func:`secagg.dp.poisson_mask`: secret, at a rate of at most q.

The theorem's neighbours are add/remove-one and its RDP is symmetric (the divergence both ways
between the sampled outputs on a dataset and on it plus one patient; the factor 3 is what the
direction from the smaller dataset's output costs), so it needs the mechanism's RDP both ways: the
distributed discrete Gaussian's bounds hold for every ordered pair of sums within Delta2.

Here eps is the distributed discrete Gaussian's curve: the smaller of its two zCDP bounds at
each order (:func:`secagg.dp.composition.ddg_zcdp_events`; each is valid at every order, so
their pointwise minimum is too). The bound is evaluated in log space at the integer orders of
:data:`ORDERS` (the theorem says nothing of fractional ones, where the unsampled curve is kept),
and rounded up: nextafter(value x (1 + 1e-9), +inf) (so a bound that underflows, about q^2 below
1e-308, is reported as the smallest double, never as 0), except where the unsampled curve is exactly
0 (a release that reveals nothing). The margin covers the float error: every log-space term is a
sum of a few products of magnitude at most about 10^5 (l log q, (l - 1) eps(l), log C(alpha, l),
each binomial taken from the exact integer), so its absolute error is below 1e-10, and an absolute
error d in log S moves log1p(S), hence eps', by a relative d at most.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from secagg.errors import ConfigurationError

__all__ = ["ORDERS", "subsampled_rdp"]

_FRACTIONAL = {1.0 + x / 10.0 for x in range(1, 100) if x % 10}
ORDERS: tuple[float, ...] = tuple(sorted(_FRACTIONAL | {*range(2, 129), 160, 192, 256, 384, 512, 768, 1024}))
"""The Renyi orders a subsampled account is kept at: dp-accounting's fractional orders 1.1..10.9
(where only the unsampled curve holds) and the integers 2..128, then up to 1024."""
_ROUND_UP = 1.0 + 1e-9


def _log_expm1(x: float) -> float:
    """log(e^x - 1) for x >= 0 (-inf at 0), without overflow."""
    if x <= 0.0:
        return -math.inf
    return math.log(math.expm1(x)) if x < 1.0 else x + math.log1p(-math.exp(-x))


@functools.cache
def _log_binomials(alpha: int) -> NDArray[np.float64]:
    """log C(alpha, l) for l = 2..alpha, each the logarithm of the exact integer (read-only, cached)."""
    values = np.array([math.log(math.comb(alpha, ell)) for ell in range(2, alpha + 1)], dtype=np.float64)
    values.flags.writeable = False
    return values


def _amplified(curve: NDArray[np.float64], q: float, alpha: int) -> float:
    """eps'(alpha) of the module docstring; ``curve[l]`` is eps(l) for l = 0..alpha (0 and 1 unused).

    The sum inside the logarithm is 1 + S with S small when q is: summed as written, S would
    drown in the rounding of 1. Since the first term is the binomial law's l = 0 and l = 1 terms,
    1 minus it is the law's terms l >= 2, so S = sum_{l >= 2} C(alpha, l) q^l (1 - q)^(alpha - l)
    (k_l e^((l - 1) eps(l)) - 1), k_2 = 1 and k_l = 3 beyond, every term positive: it is summed
    in log space and the logarithm taken as log1p."""
    if q >= 1.0:
        return math.inf
    ell = np.arange(2, alpha + 1, dtype=np.float64)
    exponents = (ell - 1.0) * curve[2 : alpha + 1]
    with np.errstate(divide="ignore"):  # eps(2) = 0 gives log(0) = -inf: a zero term
        excess = np.empty_like(exponents)
        excess[0] = _log_expm1(float(exponents[0]))
        excess[1:] = exponents[1:] + np.log(3.0 - np.exp(-exponents[1:]))  # log(3 e^x - 1), x >= 0
    logs = _log_binomials(alpha) + ell * math.log(q) + (alpha - ell) * math.log1p(-q) + excess
    top = float(np.max(logs))
    if top == -math.inf:
        return 0.0
    log_s = top + math.log(float(np.sum(np.exp(logs - top))))
    return float(np.logaddexp(0.0, log_s)) / (alpha - 1) if log_s > 0 else math.log1p(math.exp(log_s)) / (alpha - 1)


def subsampled_rdp(
    rhos: Sequence[float], xis: Sequence[float], q: float, orders: Sequence[float] = ORDERS
) -> NDArray[np.float64]:
    """The RDP of one release on a Poisson sample of rate ``q`` at each of ``orders``, of a mechanism
    that is (xi_k + rho_k alpha)-RDP at every order alpha for each pair (rho_k, xi_k): at an integer
    order the module docstring's bound if smaller than the unsampled curve, at a fractional one the
    unsampled curve; rounded up (module docstring)."""
    if not 0.0 < q <= 1.0 or not rhos or len(rhos) != len(xis):
        raise ConfigurationError("subsampled_rdp needs 0 < q <= 1 and one xi per rho")
    if not all(0.0 <= value < math.inf for value in (*rhos, *xis)):
        raise ConfigurationError(f"subsampled_rdp needs finite, non-negative rho and xi, got {rhos} and {xis}")
    if not all(1.0 < alpha < math.inf for alpha in orders):
        raise ConfigurationError(f"subsampled_rdp takes finite orders > 1, got {list(orders)}")
    top = math.floor(max(orders))
    ell = np.arange(top + 1, dtype=np.float64)
    curve = np.min([xi + rho * ell for rho, xi in zip(rhos, xis, strict=True)], axis=0)
    out = np.empty(len(orders), dtype=np.float64)
    revealing = np.empty(len(orders), dtype=bool)  # the unsampled curve is above 0 there
    for index, alpha in enumerate(orders):
        if not alpha > 1.0:
            raise ConfigurationError(f"subsampled_rdp takes orders > 1, got {alpha}")
        unsampled = min(xi + rho * alpha for rho, xi in zip(rhos, xis, strict=True))
        revealing[index] = unsampled > 0.0
        if alpha == int(alpha) and unsampled > 0.0:
            unsampled = min(unsampled, _amplified(curve, q, int(alpha)))
        out[index] = unsampled
    rounded: NDArray[np.float64] = np.where(revealing, np.nextafter(out * _ROUND_UP, np.inf), 0.0)
    return rounded
