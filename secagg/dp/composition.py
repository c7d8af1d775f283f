"""The per-aggregate privacy events of the distributed discrete Gaussian, and their composition.

:mod:`secagg.dp.calibration` states the bound (Kairouz, Liu, Steinke, Proposition 14) and
the subsampling assumption; this module turns a release (its configuration, per-client
variance, integer sensitivity and dimension) into dp-accounting events and composes a run:
releases made before a plan's rounds (``preceding``, e.g. the demo's noised
feature-moments release), then the rounds, in one ``RdpAccountant`` per combination of
valid events (every combination is a valid account; report the smallest epsilon).
"""

from __future__ import annotations

import itertools
import logging
import math
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from secagg.dp._backend import dp_accounting
from secagg.dp.config import DPConfig

if TYPE_CHECKING:
    from secagg.dp.calibration import NoisePlan

__all__ = [
    "Preceding",
    "composed_accountants",
    "ddg_tau",
    "ddg_zcdp_events",
    "epsilon_after",
    "round_events",
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


def round_events(config: DPConfig, variance: Fraction | float, sensitivity: float, dimension: int) -> list[Any]:
    dpa = dp_accounting()
    if config.sampling_rate is None:
        return ddg_zcdp_events(variance, config.honest, sensitivity, dimension)
    scaled = sensitivity / math.sqrt(config.honest * float(variance))
    tau = ddg_tau(variance, config.honest)
    gaussian = dpa.GaussianDpEvent(noise_multiplier=1.0 / (scaled + tau * math.sqrt(dimension)))
    return [dpa.PoissonSampledDpEvent(config.sampling_rate, gaussian)]


Preceding = tuple[tuple["NoisePlan", int], ...]
"""Releases made before a plan's rounds, composed with them: (plan, number of aggregates released)."""


def _composed_events(
    config: DPConfig, variance: Fraction | float, sensitivity: float, dimension: int, count: int
) -> list[Any]:
    """Each valid per-aggregate event of one release, composed ``count`` times."""
    dpa = dp_accounting()
    return [dpa.SelfComposedDpEvent(event, count) for event in round_events(config, variance, sensitivity, dimension)]


def composed_accountants(
    config: DPConfig,
    variance: Fraction | float,
    sensitivity: float,
    dimension: int,
    rounds: int,
    preceding: Preceding = (),
) -> list[Any]:
    """dp-accounting ``RdpAccountant``\\ s of the ``preceding`` releases followed by ``rounds`` rounds.

    Every release has one or two valid per-aggregate events (module docstring); each
    combination of one event per release is a valid account, so there is one accountant
    per combination (at most four in practice) and any of them bounds the spend."""
    dpa = dp_accounting()
    choices = [_composed_events(p.config, p.variance, p.sensitivity, p.dimension, count) for p, count in preceding]
    if rounds > 0:
        choices.append(_composed_events(config, variance, sensitivity, dimension, rounds))
    accountants = []
    # dp-accounting logs (through absl) every fractional RDP order it drops as not converged;
    # dropping an order only loosens the bound, so the warnings are noise here.
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        for combination in itertools.product(*choices):
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
