"""Whether a released sum holds the honest noise shares its plan was calibrated for.

A :class:`~secagg.dp.calibration.NoisePlan` sizes each share for h honest contributors;
colluders know (and can subtract) their own noise and dropped hospitals add none, so a sum
with fewer than h honest contributions must be skipped, never released under-noised.
"""

from __future__ import annotations

from secagg._validate import require_instance, require_int
from secagg.dp.calibration import NoisePlan
from secagg.errors import InsufficientNoiseError

__all__ = ["check_contributors", "contributor_shortfall"]


def contributor_shortfall(plan: NoisePlan, num_contributors: int, colluders: int = 0) -> str | None:
    """Why a round with these contributors must be skipped, or None if its noise suffices.

    ``num_contributors`` counts the hospitals whose noised inputs are in the sum;
    ``colluders`` how many of them the configuration must assume collude with the server.
    The default, 0, counts every contributor as honest: right only where h already leaves
    the colluders out (h at most the floor :mod:`secagg.dp.floors` computes from the secure
    sum's t and c, as fl_core's ``DPAggregator`` and the Flower server check); otherwise pass
    the configuration's c (``guarantee.colluders``).
    """
    require_instance("plan", plan, NoisePlan)
    num_contributors = require_int("num_contributors", num_contributors, 0, None)
    colluders = require_int("colluders", colluders, 0, None)
    honest = num_contributors - colluders
    if honest >= plan.honest:
        return None
    return (
        f"only {max(honest, 0)} honest contributors ({num_contributors} contributors, {colluders} assumed "
        f"colluding): the noise is calibrated for at least {plan.honest}, so the round must be skipped, "
        f"not released under-noised"
    )


def check_contributors(plan: NoisePlan, num_contributors: int, colluders: int = 0) -> None:
    """InsufficientNoiseError if the sum would hold fewer honest noise shares than planned."""
    reason = contributor_shortfall(plan, num_contributors, colluders)
    if reason is not None:
        raise InsufficientNoiseError(reason)
