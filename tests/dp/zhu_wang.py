"""An independent reference of the subsampled account (secagg/dp/subsampling.py), in mpmath.

Zhu and Wang, "Poisson Subsampled Renyi Differential Privacy" (ICML 2019), Theorem 6, for a
mechanism that is (xi_k + rho_k alpha)-RDP for each pair; written from the paper, not from
secagg's code: exact binomials, 50 digits, no log-space tricks.
"""

from __future__ import annotations

import functools
import math

import mpmath

mpmath.mp.dps = 50


def curve(pairs: list[tuple[float, float]], alpha: float) -> mpmath.mpf:
    return min(mpmath.mpf(xi) + mpmath.mpf(rho) * alpha for rho, xi in pairs)


@functools.lru_cache(maxsize=1 << 16)
def _growth(pairs: tuple[tuple[float, float], ...], ell: int, prec: int) -> mpmath.mpf:
    """exp((ell - 1) eps(ell)): the same for every alpha >= ell, so computed once per pairs and ell
    (and working precision: a caller may raise it, test_dp_subsampling.py's underflow test does)."""
    return mpmath.exp((ell - 1) * curve(list(pairs), ell))


@functools.lru_cache(maxsize=1 << 16)
def _power(q: float, exponent: int, complement: bool, prec: int) -> mpmath.mpf:
    """q^exponent, or (1 - q)^exponent: computed once per q, exponent and precision (every alpha
    needs most)."""
    g = mpmath.mpf(q)
    return (1 - g) ** exponent if complement else g**exponent


def amplified(pairs: list[tuple[float, float]], q: float, alpha: int) -> mpmath.mpf:
    """Theorem 6's eps'(alpha) at integer alpha >= 2."""
    g = mpmath.mpf(q)
    key, prec = tuple(pairs), mpmath.mp.prec
    total = (1 - g) ** (alpha - 1) * (alpha * g - g + 1)
    total += math.comb(alpha, 2) * g**2 * (1 - g) ** (alpha - 2) * mpmath.exp(curve(pairs, 2))
    for ell in range(3, alpha + 1):
        binomial = math.comb(alpha, ell) * _power(q, ell, False, prec) * _power(q, alpha - ell, True, prec)
        total += 3 * binomial * _growth(key, ell, prec)
    return mpmath.log(total) / (alpha - 1)


def rdp(pairs: list[tuple[float, float]], q: float, alpha: float) -> float:
    """The account's RDP at ``alpha``: the smaller of the amplified and the unsampled curve at an
    integer order, the unsampled curve at a fractional one."""
    value = curve(pairs, alpha)
    if alpha == int(alpha) and q < 1.0:
        value = min(value, amplified(pairs, q, int(alpha)))
    return float(value)
