"""SecAgg+ parameter derivation: graph degree k and threshold t from n and the fractions.

This follows the production implementation of Bell et al. (CCS 2020) in Google's
federated-compute (``fcp/secagg/server/graph_parameter_finder.cc``). For n clients,
an assumed corrupt fraction gamma and dropout fraction delta, it scans even k =
2, 4, ... < n - 1 and returns the first k for which, with sigma = 40 and eta = 20:

1. Connectivity: disconnecting the honest survivors of a randomly permuted
   Harary graph needs k/2 consecutive bad nodes in two places; with
   B = floor(gamma n) + floor(delta n) bad nodes, a union bound gives
   ``P <= n (n - k - 1) / 2 * B! / (B - k)! * (n - k)! / n!`` (0 if k > B),
   and this must be below 2^-(sigma + 1).
2. Corrupt neighbours: X ~ Hypergeometric(n, A = floor(gamma n), k).
   ``t1 = min{x : P[X > x] < 2^-(sigma+1) / n}``; in active mode
   ``t1 = ceil((t1 + k - 1.25) / 2)`` so that 2t > k + (corrupt neighbours).
3. Surviving neighbours: Y ~ Hypergeometric(n, S = ceil((1 - delta) n), k).
   ``t2 = min{y : P[Y <= y] >= 2^-eta / n}``.
4. Feasible iff ``t = max(t1 + 1, 2) <= t2``. (Production checks only t2 > t1,
   which the clamp to 2 can break for tiny n; the two agree everywhere else,
   including every case of production's own test suite.)
5. Active mode, adversarial cut: a lying server that releases the sum of an arc of
   the ring needs two disjoint windows of k/2 clients each holding at least
   ``m = t - k/2`` colluders (:mod:`secagg.masking.cut_bound`); with B = floor(gamma n)
   colluders the union bound ``n (n - k - 1) / 2 * P[X1 >= m and X2 >= m]`` must be
   below 2^-(sigma + 1). t is raised to the smallest value up to t2 that meets it; k
   fails if none does. (Production has no such term: from about n = 200 at
   delta = 0, and for several of its own test cases, active mode departs from it.)

So, for a client chosen uniformly at random, P[at least t corrupt neighbours] <
2^-41/n (the secrets stay hidden) and P[fewer than t surviving neighbours] <
2^-20/n (recovery succeeds). In active mode the privacy 2^-40 is the corrupt-neighbour
2^-41 plus the cut's 2^-41; a disconnection by the dropouts releases a partial sum there
only through such a cut, so the connectivity term is inside the cut term (and still kept,
so that k never drops below what semi-honest sizing needs). A given honest client's neighbours are drawn from
the other n - 1 clients (Hypergeometric(n - 1, A, k)), which can exceed 2^-41/n
slightly; the union over clients that the session's 2^-40 and 2^-20 rest on is
exactly n times the uniform-client probability, so it holds.
If no such k < n - 1 exists, SecAgg on the complete graph is used (as production
does) with the smallest safe threshold, provided it tolerates the assumed dropouts.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from secagg._validate import require_finite, require_instance
from secagg.errors import ConfigurationError
from secagg.masking.cut_bound import cut_log_bounds, cut_log_leading_term

__all__ = [
    "COMPLETE_GRAPH_MAX_CLIENTS",
    "CONNECTIVITY_LOG_BOUND",
    "CORRECTNESS_PARAMETER",
    "CUT_LOG_BOUND",
    "DEFAULT_DROPOUT_FRACTION_PER_ROUND",
    "DROPOUT_STAGES",
    "SECURITY_PARAMETER",
    "SMALL_FEDERATION",
    "SecAggPlusParameters",
    "complete_guarantee",
    "complete_threshold",
    "corrupt_count",
    "corrupt_neighbour_bound",
    "cut_log_probability",
    "default_colluders",
    "default_dropout_target",
    "derive_secagg_plus",
    "disconnection_log_probability",
    "dropout_count",
    "planned_dropouts",
    "surviving_neighbour_quantile",
]

SECURITY_PARAMETER = 40
CORRECTNESS_PARAMETER = 20
MAX_CLIENTS = 1 << 16
_SMALL = 1e-14  # as production: guards floor/ceil against representation error


@dataclass(frozen=True)
class SecAggPlusParameters:
    """The derived degree (neighbours, self excluded) and threshold."""

    degree: int
    threshold: int
    complete: bool


def _check_fractions(num_clients: int, corrupt: float, dropout: float, active: bool) -> None:
    if not 3 <= num_clients <= MAX_CLIENTS:
        raise ConfigurationError(f"num_clients must be in 3..{MAX_CLIENTS}, got {num_clients}")
    for name, value in (("corrupt_fraction", corrupt), ("dropout_fraction", dropout)):
        if not 0.0 <= value < 1.0:
            raise ConfigurationError(f"{name} must be in [0, 1), got {value}")
    budget = corrupt + (2 * dropout if active else dropout)
    if budget > 0.9:
        formula = "corrupt + 2 x dropout" if active else "corrupt + dropout"
        raise ConfigurationError(f"{formula} = {budget:.3f} exceeds 0.9: no SecAgg+ graph is secure and live")


def _log_pmf(total: int, marked: int, sample: int, x: int) -> float:
    """log P[X = x] for X ~ Hypergeometric(total, marked, sample)."""

    def log_choose(a: int, b: int) -> float:
        return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)

    return log_choose(marked, x) + log_choose(total - marked, sample - x) - log_choose(total, sample)


def _pmf(total: int, marked: int, sample: int) -> list[float]:
    low, high = max(0, sample - (total - marked)), min(sample, marked)
    return [math.exp(_log_pmf(total, marked, sample, x)) if low <= x <= high else 0.0 for x in range(sample + 1)]


def corrupt_neighbour_bound(num_clients: int, degree: int, corrupt_fraction: float) -> int:
    """``min{x : P[X > x] < 2^-41 / n}``: the corrupt neighbours a client can have,
    except with probability below 2^-41/n, for X ~ Hypergeometric(n, floor(gamma n), k)."""
    corrupt = math.floor((corrupt_fraction + _SMALL) * num_clients)
    pmf = _pmf(num_clients, corrupt, degree)
    bound = 2.0 ** -(SECURITY_PARAMETER + 1) / num_clients
    tail = 0.0  # P[X > x], accumulated from the top to avoid cancellation
    for x in range(degree, -1, -1):
        if tail >= bound:
            return x + 1
        tail += pmf[x]
    return 0


def surviving_neighbour_quantile(num_clients: int, degree: int, dropout_fraction: float) -> int:
    """``min{y : P[Y <= y] >= 2^-20 / n}`` for Y ~ Hypergeometric(n, ceil((1 - delta) n), k)."""
    surviving = math.ceil((1 - dropout_fraction - _SMALL) * num_clients)
    pmf = _pmf(num_clients, surviving, degree)
    bound = 2.0**-CORRECTNESS_PARAMETER / num_clients
    cdf = 0.0
    for y in range(degree + 1):
        cdf += pmf[y]
        if cdf >= bound:
            return y
    return degree


# Cached: MaskingConfig.secagg_plus computes it for the degree the derivation chose and
# again when the config checks that degree (check_degree); a pure function of three ints.
@functools.lru_cache(maxsize=256)
def _disconnection_log_probability(num_clients: int, degree: int, bad: int) -> float:
    if degree > bad:
        return -math.inf
    n, k = num_clients, degree
    return (
        math.log(n) + math.log(n - k - 1) - math.log(2)
        + math.lgamma(bad + 1) + math.lgamma(n - k + 1) - math.lgamma(n + 1) - math.lgamma(bad - k + 1)
    )


CONNECTIVITY_LOG_BOUND = -(SECURITY_PARAMETER + 1) * math.log(2)
"""ln 2^-41: the natural log :func:`disconnection_log_probability` must stay below."""


def disconnection_log_probability(
    num_clients: int, degree: int, corrupt_fraction: float, dropout_fraction: float
) -> float:
    """The natural log of the union bound on the probability that ``floor(gamma n) + floor(delta n)``
    bad nodes disconnect the honest survivors of a randomly permuted Harary graph of degree k (step 1
    of the module docstring; -inf if k exceeds the bad nodes, or if k = n - 1, which no cut
    disconnects). The derivation and :class:`~secagg.masking.config.MaskingConfig` both require it
    below :data:`CONNECTIVITY_LOG_BOUND`: the connectivity term of the printed 2^-40."""
    n, k = num_clients, degree
    if k >= n - 1:
        return -math.inf
    return _disconnection_log_probability(n, k, dropout_count(n, corrupt_fraction) + dropout_count(n, dropout_fraction))


CUT_LOG_BOUND = CONNECTIVITY_LOG_BOUND
"""ln 2^-41: the natural log :func:`cut_log_probability` must stay below (active mode)."""


def cut_log_probability(num_clients: int, degree: int, threshold: int, corrupt_fraction: float) -> float:
    """The natural log of the union bound on a lying server's cut of a Harary ring (step 5 of the
    module docstring): two disjoint windows of k/2 clients each holding at least ``t - k/2`` of the
    ``floor(gamma n)`` colluders; -inf if no cut fits (k = n - 1, or fewer colluders than two windows
    need). Active-mode derivations and :class:`~secagg.masking.config.MaskingConfig` both require it
    below :data:`CUT_LOG_BOUND`."""
    n, k = num_clients, degree
    if k >= n - 1:
        return -math.inf
    least = max(threshold - k // 2, 0)
    return float(cut_log_bounds(n, k, dropout_count(n, corrupt_fraction), least)[min(least, k // 2 + 1)])


def _cut_threshold(num_clients: int, degree: int, corrupt: float, lowest: int, highest: int) -> int | None:
    """The smallest t in lowest..highest whose cut term is below 2^-41, or None."""
    n, k, half = num_clients, degree, degree // 2
    if k >= n - 1:
        return lowest
    colluders = dropout_count(n, corrupt)
    # A threshold whose single leading term is already well above the bound fails (the sum holds that
    # term and more, all nonnegative); the 1e-6 keeps this shortcut clear of rounding, so the grid decides
    # every threshold it does not skip, exactly as spec 12.6 states.
    while lowest <= highest and cut_log_leading_term(n, k, colluders, lowest - half) >= CUT_LOG_BOUND + 1e-6:
        lowest += 1
    if lowest > highest:
        return None
    bounds = cut_log_bounds(n, k, colluders, max(lowest - half, 0))
    for threshold in range(lowest, highest + 1):
        if bounds[threshold - half] < CUT_LOG_BOUND:
            return threshold
    return None


def _threshold_for(num_clients: int, degree: int, corrupt: float, dropout: float, active: bool) -> int | None:
    n, k = num_clients, degree
    if disconnection_log_probability(n, k, corrupt, dropout) >= CONNECTIVITY_LOG_BOUND:
        return None
    t1 = corrupt_neighbour_bound(n, k, corrupt)
    if active:
        t1 = math.ceil((t1 + k - 1.25) / 2)
    t2 = surviving_neighbour_quantile(n, k, dropout)
    threshold = max(t1 + 1, 2)
    # Production only requires t2 > t1; with the clamp to 2 that can leave
    # t > t2 for tiny n (n = 5, delta = 0.2 gives k = t = 2, where one dropout
    # aborts the session). Requiring t <= t2 keeps the liveness guarantee.
    if threshold > t2:
        return None
    if active:
        return _cut_threshold(n, k, corrupt, threshold, t2)
    return threshold


def derive_secagg_plus(
    num_clients: int, corrupt_fraction: float, dropout_fraction: float, *, active: bool | None = None
) -> SecAggPlusParameters:
    """The smallest even degree k < n - 1 and its threshold (see the module docstring).

    ``active`` must be named: True sizes t against a lying server (active mode, the
    library's default), False for semi-honest mode only (a lower t that active mode
    refuses); ConfigurationError if it is left out, never a silent semi-honest sizing.
    Falls back to the complete graph (k = n - 1) when no sparse graph qualifies,
    with t = smallest safe threshold; refuses with ConfigurationError when even
    that cannot tolerate ``floor(dropout_fraction * n)`` dropouts.
    """
    if active is None:
        raise ConfigurationError(
            "derive_secagg_plus needs the mode by name: active=True (against a server that lies about dropouts, "
            "the library's default) or active=False (semi-honest: an honest-but-curious server only)"
        )
    active = require_instance("active", active, bool)
    _check_fractions(num_clients, corrupt_fraction, dropout_fraction, active)
    for degree in range(2, num_clients - 1, 2):
        threshold = _threshold_for(num_clients, degree, corrupt_fraction, dropout_fraction, active)
        if threshold is not None:
            return SecAggPlusParameters(degree=degree, threshold=threshold, complete=False)
    return _complete_graph_fallback(num_clients, corrupt_fraction, dropout_fraction, active)


def corrupt_count(num_clients: int, corrupt_fraction: float) -> int:
    """ceil(gamma * n): the corrupt clients assumed on the complete graph."""
    return math.ceil(corrupt_fraction * num_clients - _SMALL)


def dropout_count(num_clients: int, fraction: float) -> int:
    """floor(fraction * n): the dropouts (or, on a Harary graph, colluders) a fraction declares."""
    return math.floor((fraction + _SMALL) * num_clients)


def complete_threshold(num_clients: int, colluders: int, active: bool) -> int:
    """The smallest safe threshold on the complete graph against c = ``colluders``.

    On the complete graph each client also holds a share of its own self-mask seed
    (spec 12.8, round 1), so a session completes with t live clients, and so the
    server may see a sum of as few as t inputs.

    Semi-honest: ``max(2, c + 2)``: c colluders hold fewer than t shares, and a sum
    of t inputs still holds at least two honest ones.
    Active: ``max(2, c + 2, floor((n + c)/2) + 1)``: a lying server that splits a
    client's n - 1 share holders into "it survived" and "it dropped" gets the
    honest holders of one group plus the c colluders, plus the client's own
    seed share on the "survived" side; 2t > n - 1 + c + 1 = n + c keeps one group
    below t.
    """
    threshold = max(2, colluders + 2)
    if active:
        threshold = max(threshold, (num_clients + colluders) // 2 + 1)
    return threshold


def complete_guarantee(num_clients: int, threshold: int, active: bool) -> tuple[int, int]:
    """(c, d) on the complete graph for threshold t: the colluders it protects against
    and the dropouts it survives (the inverse of :func:`complete_threshold`).

    c = t - 2 (semi-honest) or ``min(t - 2, 2t - n - 1)`` (active, the largest c with
    2t > n + c); d = n - t (a survivor's seed has t live holders, itself included,
    while n - t clients drop; a dropped client's mask key, t of its n - 1 holders).
    c may be negative: no threshold is safe against the lying server itself.
    """
    colluders = threshold - 2
    if active:
        colluders = min(colluders, 2 * threshold - num_clients - 1)
    return colluders, num_clients - threshold


SMALL_FEDERATION = 20
"""Below this many clients the default dropout target is one dropout per session."""
DEFAULT_DROPOUT_FRACTION_PER_ROUND = 0.1
"""From SMALL_FEDERATION clients on, the default target is 10% of n at each of the four stages."""
DROPOUT_STAGES = 4
"""The stages at which a client can drop out of a session: AdvertiseKeys, ShareKeys,
MaskedInputCollection and the unmasking stage (ConsistencyCheck and Unmasking in
active mode: a client that misses ConsistencyCheck is not asked to unmask, so it is
lost once). A per-round dropout fraction p assumes ``DROPOUT_STAGES * p`` of the
clients lost over the whole session."""
COMPLETE_GRAPH_MAX_CLIENTS = 100
"""Up to this many clients :meth:`MaskingConfig.secagg_plus` uses the complete graph.

A client's masking cost is linear in its degree: k + 1 PRG expansions of the
model and k key agreements. Sized for 10% dropouts per stage (40% over a
session), SecAgg+ needs k = 34 (semi-honest) or 86 (active) at n = 100 against
k = 99 for the complete graph, so the complete graph costs at most about 3x
SecAgg+ there (1.15x in active mode), a few tens of milliseconds per client for
a model of 10^6 parameters, while it survives every dropout pattern up to its
guarantee rather than all but a 2^-20 fraction of them and tolerates more
colluders. Beyond 100 clients its cost keeps growing with n; SecAgg+'s does not."""


def default_dropout_target(num_clients: int) -> int:
    """Dropouts a default configuration should survive: 1 below :data:`SMALL_FEDERATION`
    clients, else ``ceil(4 * 0.1 n)`` (10% of n at each of the four stages, 40% in all,
    which active mode on the complete graph can always meet from 20 clients on)."""
    if num_clients < SMALL_FEDERATION:
        return 1
    return math.ceil(DROPOUT_STAGES * DEFAULT_DROPOUT_FRACTION_PER_ROUND * num_clients - _SMALL)


def planned_dropouts(num_clients: int, dropout_per_round: float | None = None) -> int:
    """The dropouts over a whole session that a per-round fraction p plans for:
    ``ceil(DROPOUT_STAGES * p * n)`` (p of the clients at each stage), or
    :func:`default_dropout_target` when p is None. ConfigurationError unless
    ``0 <= p`` and ``DROPOUT_STAGES * p < 1``."""
    if dropout_per_round is None:
        return default_dropout_target(num_clients)
    dropout_per_round = require_finite("dropout_per_round", dropout_per_round)
    if not 0.0 <= dropout_per_round < 1.0 / DROPOUT_STAGES:
        raise ConfigurationError(
            f"dropout_per_round must be in [0, 1/{DROPOUT_STAGES}) (it is lost at each of the "
            f"{DROPOUT_STAGES} stages), got {dropout_per_round}"
        )
    return math.ceil(DROPOUT_STAGES * dropout_per_round * num_clients - _SMALL)


def default_colluders(num_clients: int, active: bool, dropouts: int | None = None) -> int:
    """The default c on the complete graph: the largest c <= floor((n - 1)/3) whose
    threshold (:func:`complete_threshold`) still tolerates ``dropouts`` dropouts
    (t <= n - dropouts; default :func:`default_dropout_target`); 0 if none does
    (e.g. n = 3, where c = 0 and t = 2 survive one dropout)."""
    target = default_dropout_target(num_clients) if dropouts is None else dropouts
    best = 0
    for colluders in range((num_clients - 1) // 3 + 1):
        if complete_threshold(num_clients, colluders, active) <= num_clients - target:
            best = colluders
    return best


def _complete_graph_fallback(num_clients: int, corrupt: float, dropout: float, active: bool) -> SecAggPlusParameters:
    n = num_clients
    corrupted = corrupt_count(n, corrupt)
    threshold = complete_threshold(n, corrupted, active)
    tolerable = n - math.floor((dropout + _SMALL) * n)
    if threshold > tolerable:
        raise ConfigurationError(
            f"no secure graph for n={n}, corrupt_fraction={corrupt}, dropout_fraction={dropout}: even the "
            f"complete graph needs threshold {threshold} but only {tolerable} clients are assumed to survive"
        )
    return SecAggPlusParameters(degree=n - 1, threshold=threshold, complete=True)
