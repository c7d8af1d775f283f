"""The per-aggregate privacy events of the distributed discrete Gaussian, and their composition.

:mod:`secagg.dp.calibration` states the bound (Kairouz, Liu, Steinke, Proposition 14);
this module turns a release (its configuration, per-client variance, integer sensitivity and
dimension) into dp-accounting events and composes a run: releases made before a plan's rounds
(``preceding``, e.g. the demo's noised feature-moments release), then the rounds, in one
``RdpAccountant`` per combination of valid events (every combination is a valid account;
report the smallest epsilon). When any release is Poisson-subsampled, its amplification is the
bound :mod:`secagg.dp.subsampling` proves for any mechanism, and the run is composed as Renyi
curves (:class:`RenyiAccount`) instead.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from secagg.dp._backend import dp_accounting
from secagg.dp.config import DPConfig
from secagg.dp.subsampling import ORDERS, subsampled_rdp

if TYPE_CHECKING:
    from secagg.dp.calibration import NoisePlan

__all__ = [
    "Preceding",
    "RenyiAccount",
    "composed_accountants",
    "ddg_tau",
    "ddg_zcdp_events",
    "epsilon_after",
]


def ddg_tau(variance: Fraction | float, summands: int) -> float:
    """tau = 10 * sum_{k=1}^{n-1} exp(-2 pi^2 sigma^2 k / (k + 1)) for n summands of N_Z(0, sigma^2)."""
    sigma2 = float(variance)
    return 10.0 * math.fsum(math.exp(-2.0 * math.pi**2 * sigma2 * k / (k + 1)) for k in range(1, summands))


def ddg_zcdp_events(variance: Fraction | float, summands: int, sensitivity: float, dimension: int) -> list[Any]:
    """The per-round ``ZCDpEvent``\\ s of the sum of ``summands`` discrete Gaussians (module docstring)."""
    dpa = dp_accounting()
    scaled = sensitivity / math.sqrt(summands * float(variance))
    tau = ddg_tau(variance, summands)
    events = [dpa.ZCDpEvent(rho=scaled**2 / 2.0, xi=tau * dimension)]
    if tau > 0.0:
        events.append(dpa.ZCDpEvent(rho=(scaled + tau * math.sqrt(dimension)) ** 2 / 2.0))
    return events


def _release_events(
    config: DPConfig, variance: Fraction | float, sensitivity: float, dimension: int, count: int
) -> list[Any]:
    """Each valid per-aggregate event of an unsampled release, composed ``count`` times."""
    dpa = dp_accounting()
    events = ddg_zcdp_events(variance, config.honest, sensitivity, dimension)
    return [dpa.SelfComposedDpEvent(event, count) for event in events]


def _release_curves(
    config: DPConfig, variance: Fraction | float, sensitivity: float, dimension: int, count: int
) -> list[NDArray[np.float64]]:
    """Each valid Renyi curve, at :data:`~secagg.dp.subsampling.ORDERS`, of ``count`` aggregates of
    one release: one per zCDP bound unsampled, the proved amplification of both when sampled."""
    events = ddg_zcdp_events(variance, config.honest, sensitivity, dimension)
    pairs = [(float(event.rho), float(event.xi)) for event in events]  # (xi + rho * alpha)-RDP each
    if config.sampling_rate is None:
        orders = np.asarray(ORDERS, dtype=np.float64)
        return [count * (xi + rho * orders) for rho, xi in pairs]
    rhos, xis = zip(*pairs, strict=True)
    return [count * subsampled_rdp(rhos, xis, config.sampling_rate)]


@dataclass(frozen=True)
class RenyiAccount:
    """A composed Renyi curve, read as dp-accounting's ``RdpAccountant`` is: its ``get_epsilon`` /
    ``get_delta`` use that library's conversion (``compute_epsilon``, ``compute_delta``) at these
    orders. Used when any release is subsampled (:mod:`secagg.dp.subsampling`)."""

    orders: tuple[float, ...]
    rdp: tuple[float, ...]

    def get_epsilon(self, target_delta: float) -> float:
        return float(dp_accounting().rdp.rdp_privacy_accountant.compute_epsilon(self.orders, self.rdp, target_delta)[0])

    def get_delta(self, target_epsilon: float) -> float:
        return float(dp_accounting().rdp.rdp_privacy_accountant.compute_delta(self.orders, self.rdp, target_epsilon)[0])


Preceding = tuple[tuple["NoisePlan", int], ...]
"""Releases made before a plan's rounds, composed with them: (plan, number of aggregates released)."""


def composed_accountants(
    config: DPConfig,
    variance: Fraction | float,
    sensitivity: float,
    dimension: int,
    rounds: int,
    preceding: Preceding = (),
) -> list[Any]:
    """Accounts of the ``preceding`` releases followed by ``rounds`` rounds.

    Every release has one or two valid per-aggregate events (module docstring); each
    combination of one event per release is a valid account, so there is one account
    per combination (at most four in practice) and any of them bounds the spend. Without
    subsampling they are dp-accounting ``RdpAccountant``\\ s; when any release is subsampled,
    :class:`RenyiAccount`\\ s (the amplification is proved at integer orders only)."""
    releases: list[tuple[DPConfig, Fraction | float, float, int, int]] = [
        (p.config, p.variance, p.sensitivity, p.dimension, count) for p, count in preceding
    ]
    if rounds > 0:
        releases.append((config, variance, sensitivity, dimension, rounds))
    if any(release[0].sampling_rate is not None for release in releases):
        curves = [_release_curves(*release) for release in releases]
        return [
            RenyiAccount(ORDERS, tuple(float(v) for v in np.sum(combination, axis=0)))
            for combination in itertools.product(*curves)
        ]
    dpa = dp_accounting()
    accountants = []
    # dp-accounting logs (through absl) every fractional RDP order it drops as not converged;
    # dropping an order only loosens the bound, so the warnings are noise here.
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        for combination in itertools.product(*(_release_events(*release) for release in releases)):
            accountant = dpa.rdp.RdpAccountant()
            for event in combination:
                accountant.compose(event)
            accountants.append(accountant)
    finally:
        absl.setLevel(level)
    return accountants


def epsilon_after(
    config: DPConfig,
    variance: Fraction | float,
    sensitivity: float,
    dimension: int,
    rounds: int,
    preceding: Preceding = (),
    *,
    delta: float,
) -> float:
    """The mechanism's epsilon at ``delta`` spent by the ``preceding`` releases and ``rounds`` rounds
    (the Renyi account alone; :mod:`secagg.dp.tail` adds the refusal residual)."""
    if rounds == 0 and not preceding:
        return 0.0
    accountants = composed_accountants(config, variance, sensitivity, dimension, rounds, preceding)
    return min(float(a.get_epsilon(delta)) for a in accountants)
