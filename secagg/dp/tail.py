"""The refusal residual: the delta a hospital's observable refusal of its noised encoding adds.

:func:`secagg.dp.encoding.noised_encoding` refuses (and the server sees it) an encoding whose
noise exceeds the room its range keeps for it (``noise_tail_bound(plan, 1, REFUSAL_PROBABILITY)``,
:func:`secagg.dp.encoding.noise_overflow`; within it no coordinate leaves ``[-qmax, qmax]``):
probability at most :data:`REFUSAL_PROBABILITY` per coordinate, whatever the data. fl_core's
``DPAggregator`` then withholds that hospital and releases the others' sum; either way the
outcome differs from the mechanism without refusals on that event only, so the refusal is not
free. The rule (docs/privacy.md, "The refusal residual"): let M be the mechanism
without refusals, (epsilon, delta_M)-DP by its Renyi account, and M' the one that may refuse.
On every input M and M' differ only on the refusal event, of probability at most
beta = (coordinates encoded over the run) x REFUSAL_PROBABILITY (a union bound over the
coordinates, hospitals and releases). So for every set S of outcomes
P[M'(x) in S] <= P[M(x) in S] + beta <= e^epsilon P[M(x') in S] + delta_M + beta
<= e^epsilon P[M'(x') in S] + delta_M + (1 + e^epsilon) beta: M' is
(epsilon, delta_M + (1 + e^epsilon) beta)-DP. Calibration therefore accounts the mechanism at
``delta_M = delta - (1 + e^epsilon) beta`` and refuses a plan whose residual exceeds
:data:`MAX_TAIL_SHARE` of delta.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from secagg.dp.composition import Preceding

__all__ = [
    "MAX_TAIL_SHARE",
    "REFUSAL_PROBABILITY",
    "epsilon_at_total_delta",
    "residual_clause",
    "tail_coordinates",
    "tail_delta",
]

REFUSAL_PROBABILITY = 2.0**-64
"""The per-coordinate probability that a hospital's own noise leaves the room its encoding keeps
for it (and the encoding is refused)."""
MAX_TAIL_SHARE = 0.1
"""The largest share of delta the refusal residual may take (calibration refuses beyond)."""
_MAX_EXPONENT = 700.0


def tail_coordinates(rounds: int, num_clients: int, dimension: int, preceding: Preceding = ()) -> int:
    """The noised coordinates encoded (each refused with probability at most REFUSAL_PROBABILITY):
    rounds x n x d plus, for each preceding release, its count x its n x its d."""
    earlier = sum(count * plan.num_clients * plan.dimension for plan, count in preceding)
    return rounds * num_clients * dimension + earlier


def tail_delta(epsilon: float, coordinates: int) -> float:
    """(1 + e^epsilon) x coordinates x REFUSAL_PROBABILITY, rounded up (inf when e^epsilon overflows)."""
    if coordinates == 0:
        return 0.0
    if epsilon > _MAX_EXPONENT:
        return math.inf
    value = (1.0 + math.exp(epsilon)) * coordinates * REFUSAL_PROBABILITY
    return math.nextafter(value * (1.0 + 1e-12), math.inf)


def epsilon_at_total_delta(
    mechanism_epsilon: Callable[[float], float], delta: float, coordinates: int, start: float
) -> float:
    """The smallest epsilon found with ``mechanism_epsilon(delta - tail_delta(epsilon)) <= epsilon``.

    ``mechanism_epsilon(d)`` is the mechanism's epsilon at delta d (without refusals). The
    statement (e, delta) holds for the mechanism with refusals when e is the mechanism's epsilon
    at ``delta - tail_delta(c)`` for some c >= e (the residual grows with c). Starting at
    ``start`` (the budget's epsilon: one evaluation when the spend is within the budget), raise c
    until it holds; inf if the residual alone reaches ``delta``.
    """
    candidate = start
    for attempt in range(40):
        residual = tail_delta(candidate, coordinates)
        if residual >= delta:
            return math.inf
        spent = mechanism_epsilon(delta - residual)
        if spent <= candidate:
            return spent
        candidate = spent + max(1e-9, 1e-6 * spent) * 2.0 ** (attempt // 4)
    return math.inf


def residual_clause(tail: float, coordinates: int) -> str:
    """The sentence a printed guarantee states the residual inside its delta with."""
    return (
        f"delta includes the encodings' refusal residual {tail:.2g} ((1 + e^epsilon) x 2^-64 per noised "
        f"coordinate, {coordinates} of them): the noise is calibrated at delta less it"
    )
