"""Noise calibration for the distributed discrete Gaussian, and the checks that rely on it.

The mechanism (Kairouz, Liu, Steinke, "The Distributed Discrete Gaussian
Mechanism for Federated Learning with Secure Aggregation", ICML 2021,
arXiv:2102.06387): every hospital adds integer noise drawn from the discrete
Gaussian N_Z(0, sigma^2) to each coordinate of its quantized update, before
masking or encryption, so the server only sees the sum.

**The privacy bound.** Let Z = X_1 + ... + X_n with X_i independent, each
coordinate N_Z(0, sigma^2), and let D in Z^d with ||D||_2 <= Delta2 and
||D||_1 <= Delta1. Proposition 14 of the paper (its Renyi-divergence bound,
the form the authors' reference accounting in google-research/federated
``distributed_dp/accounting_utils.py`` implements, citing it; Theorem 1 states
a simplified single-epsilon zCDP corollary, which we do not use) bounds, for
every order alpha > 1, with tau = 10 * sum_{k=1}^{n-1} exp(-2 pi^2 sigma^2 k / (k+1)):

    D_alpha(Z || Z + D) <= min( alpha/2 * Delta2^2/(n sigma^2) + tau d,
                                alpha/2 * (Delta2^2/(n sigma^2) + 2 Delta1 tau/(sqrt(n) sigma) + tau^2 d),
                                alpha/2 * (Delta2/(sqrt(n) sigma) + tau sqrt(d))^2 ).

With Delta1 <= sqrt(d) Delta2 (Cauchy-Schwarz) the second term equals the
third. So one round is (xi, rho)-zCDP in two ways, each a dp-accounting
``ZCDpEvent``: (xi = tau d, rho = Delta2^2 / (2 n sigma^2)) and
(xi = 0, rho = (Delta2/(sqrt(n) sigma) + tau sqrt(d))^2 / 2). Each composes
over the rounds (``SelfComposedDpEvent``) in dp-accounting's ``RdpAccountant``
and converts to (epsilon, delta) there; both are valid bounds for the same
mechanism, so we report the smaller epsilon. At the variances used in practice
tau underflows to 0 and both events coincide with the continuous Gaussian of
variance n sigma^2.

**Who counts.** The noise is sized for ``h = DPConfig.min_honest`` summands:
colluders know their own noise and can subtract it, and dropped hospitals add
none, so only the h honest shares are trusted; more honest contributors only
add independent noise (post-processing). A round with fewer than h honest
contributors must be skipped (:func:`secagg.dp.contributors.check_contributors`).

**Sensitivity in the integer domain.** A hospital's update is clipped so one
patient moves it by at most ``l2_clip`` (L2), scaled by ``scale`` quantization
steps per unit and stochastically rounded per coordinate. Stochastic rounding of
v has the law of floor(v + U) with U uniform on [0, 1); coupling the two
neighbouring updates u, u' through the same U moves every coordinate of the
difference by less than 1, so ||Q(u) - Q(u')||_2 < ||u - u'||_2 + sqrt(d). The
released distribution is a mixture over U with the same weights for both
datasets, and Renyi divergence is jointly quasi-convex (van Erven, Harremoes
2014), so the divergence is at most the worst case over U:
``Delta2 = l2_clip * scale + sqrt(d)``. Coordinate clipping (a projection) and a
rotation (an isometry) do not increase it.

**Subsampling (a proved bound).** With ``sampling_rate = q`` (every patient included in
each round independently with probability q: Poisson sampling at the patient level,
add/remove-one neighbours, as in DP-SGD) a round is accounted by the amplification bound
that holds for any mechanism (Zhu, Wang, ICML 2019, Theorem 6) applied to the pointwise
smaller of the two zCDP curves above, at integer Renyi orders
(:mod:`secagg.dp.subsampling`). It is looser than the exact figure for a subsampled
continuous Gaussian (which this module used to assume for the discrete sum, unproved), so a
sampled plan carries more noise than that assumption asked for, never less than it needs.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from secagg._validate import check_fields, require_finite, require_instance, require_int
from secagg.dp.composition import Preceding, composed_accountants, ddg_tau, ddg_zcdp_events, epsilon_after
from secagg.dp.config import DPConfig, preceding_digest
from secagg.dp.tail import MAX_TAIL_SHARE, REFUSAL_PROBABILITY, epsilon_at_total_delta, tail_coordinates, tail_delta
from secagg.errors import ConfigurationError

__all__ = [
    "MIN_VARIANCE",
    "NoisePlan",
    "Preceding",
    "calibrate",
    "ddg_tau",
    "ddg_zcdp_events",
    "integer_sensitivity",
    "noise_tail_bound",
    "preceding_digest",
    "tail_coordinates",
]

MIN_VARIANCE = Fraction(1, 4)
"""The smallest per-client variance calibration returns (sigma >= 1/2)."""
VARIANCE_BITS = 20
"""The calibrated variance is rounded up to a multiple of 2^-VARIANCE_BITS of its leading power of two:
VARIANCE_BITS + 1 significant bits (relative step < 1e-6)."""
MAX_VARIANCE = Fraction(1 << 60)
MAX_DIMENSION = 1 << 40
TAIL_PROBABILITY = 2.0**-40


def integer_sensitivity(l2_clip: float, scale: float, dimension: int) -> float:
    """``l2_clip * scale + sqrt(dimension)``, rounded up: the L2 sensitivity in quantization steps."""
    value = l2_clip * scale + math.sqrt(dimension)
    return math.nextafter(value * (1.0 + 1e-12), math.inf)


@dataclass(frozen=True)
class NoisePlan:
    """The calibrated noise of a run: what each hospital adds and what it buys.

    Attributes:
        config: the declared guarantee.
        variance: sigma^2, the per-client, per-coordinate variance of N_Z(0, sigma^2), exact.
        num_clients: n, the hospitals in the federation.
        dimension: d, the number of noised integer coordinates (after padding/rotation).
        scale: quantization steps per model unit.
        preceding: releases made before these rounds under other plans (e.g. a noised
            feature-moments release), composed with them in one Renyi account: the budget
            ``config.epsilon, config.delta`` covers all of them together.

    The stated (epsilon, delta) is the total: the Renyi account of the mechanism spends epsilon
    at ``mechanism_delta = delta - tail_delta``, and ``tail_delta`` is the refusal residual
    (:mod:`secagg.dp.tail`).
    """

    config: DPConfig
    variance: Fraction
    num_clients: int
    dimension: int
    scale: float
    preceding: Preceding = ()

    def __post_init__(self) -> None:
        require_instance("NoisePlan.config", self.config, DPConfig)
        require_instance("NoisePlan.variance", self.variance, Fraction)
        check_fields(self, ints=("num_clients", "dimension"), reals=("scale",))
        if not MIN_VARIANCE <= self.variance <= MAX_VARIANCE:
            raise ConfigurationError(f"NoisePlan.variance must be in [{MIN_VARIANCE}, 2^60], got {self.variance}")
        if not 1 <= self.dimension <= MAX_DIMENSION:
            raise ConfigurationError(f"NoisePlan.dimension must be in 1..2^40, got {self.dimension}")
        if not self.scale > 0.0:
            raise ConfigurationError(f"NoisePlan.scale must be positive, got {self.scale}")
        _check_preceding(self.preceding)
        if not self.config.honest <= self.num_clients:
            raise ConfigurationError(
                f"min_honest = {self.config.honest} exceeds the {self.num_clients} hospitals of the federation"
            )

    @property
    def honest(self) -> int:
        """h: the honest contributors the noise is sized for."""
        return self.config.honest

    @property
    def total_variance(self) -> Fraction:
        """h * sigma^2: the variance of the noise of the honest contributors together."""
        return self.honest * self.variance

    @property
    def sensitivity(self) -> float:
        """Delta2 = l2_clip * scale + sqrt(d), in quantization steps (module docstring)."""
        return integer_sensitivity(self.config.l2_clip, self.scale, self.dimension)

    @property
    def tau(self) -> float:
        """The paper's tau for h summands."""
        return ddg_tau(self.variance, self.honest)

    @property
    def rho(self) -> float:
        """rho per round (pure zCDP: the third bound of Proposition 14, xi = 0)."""
        scaled = self.sensitivity / math.sqrt(float(self.total_variance))
        return (scaled + self.tau * math.sqrt(self.dimension)) ** 2 / 2.0

    def tail_coordinates(self, rounds: int) -> int:
        """The noised coordinates the hospitals encode over the preceding releases and ``rounds``
        rounds, each refused with probability at most 2^-64 (the union bound of the residual)."""
        rounds = require_int("rounds", rounds, 0, None)
        return tail_coordinates(rounds, self.num_clients, self.dimension, self.preceding)

    @property
    def tail_delta(self) -> float:
        """The refusal residual over the planned rounds: (1 + e^epsilon) x coordinates x 2^-64."""
        return tail_delta(self.config.epsilon, self.tail_coordinates(self.config.rounds))

    @property
    def mechanism_delta(self) -> float:
        """delta - tail_delta: the delta at which the mechanism's Renyi account spends epsilon."""
        return self.config.delta - self.tail_delta

    def epsilon_at(self, delta: float, rounds: int) -> float:
        """The epsilon at total ``delta`` (refusal residual included) once ``rounds`` aggregates
        have been released: the Renyi account's epsilon at ``delta - (1 + e^epsilon) x beta``,
        beta = :meth:`tail_coordinates` x 2^-64; inf if the residual alone reaches ``delta``."""
        rounds = require_int("rounds", rounds, 0, None)
        if rounds == 0 and not self.preceding:
            return 0.0
        accountants = self.composed_accountants(rounds)

        def mechanism(target: float) -> float:
            return min(float(a.get_epsilon(target)) for a in accountants)

        return epsilon_at_total_delta(mechanism, delta, self.tail_coordinates(rounds), self.config.epsilon)

    def delta_at(self, epsilon: float, rounds: int) -> float:
        """The total delta at ``epsilon`` once ``rounds`` aggregates have been released: the Renyi
        account's delta plus the refusal residual (1 + e^epsilon) x beta (at most 1)."""
        rounds = require_int("rounds", rounds, 0, None)
        if rounds == 0 and not self.preceding:
            return 0.0
        mechanism = min(float(a.get_delta(epsilon)) for a in self.composed_accountants(rounds))
        return min(1.0, mechanism + tail_delta(epsilon, self.tail_coordinates(rounds)))

    def spent_after(self, rounds: int) -> tuple[float, float]:
        """The (epsilon, delta) spent once ``rounds`` aggregates have been released; delta is the
        budget's, the refusal residual included (:meth:`epsilon_at`)."""
        return self.epsilon_at(self.config.delta, rounds), self.config.delta

    def composed_accountants(self, rounds: int) -> list[Any]:
        """dp-accounting ``RdpAccountant``\\ s with the preceding releases and ``rounds`` rounds
        composed, one per valid bound; any of them is a valid account, so report the smallest
        epsilon (or delta) among them."""
        rounds = require_int("rounds", rounds, 0, None)
        return composed_accountants(
            self.config, self.variance, self.sensitivity, self.dimension, rounds, self.preceding
        )

    def schedule(self) -> tuple[tuple[float, float], ...]:
        """The predicted (epsilon, delta) after each planned round, 1..config.rounds."""
        return tuple(self.spent_after(t) for t in range(1, self.config.rounds + 1))


def _meets(
    config: DPConfig,
    variance: Fraction | float,
    sensitivity: float,
    dimension: int,
    preceding: Preceding = (),
    *,
    delta: float,
) -> bool:
    spent = epsilon_after(config, variance, sensitivity, dimension, config.rounds, preceding, delta=delta)
    return spent <= config.epsilon


def _search(config: DPConfig, sensitivity: float, dimension: int, preceding: Preceding = (), *, delta: float) -> float:
    """A variance that meets ``config``, within a factor 1 + 1e-7 of the smallest (or MIN_VARIANCE)."""
    if _meets(config, float(MIN_VARIANCE), sensitivity, dimension, preceding, delta=delta):
        return float(MIN_VARIANCE)
    lo = float(MIN_VARIANCE)
    if config.sampling_rate is not None:
        # Subsampling only helps: the unsampled calibration bounds the sampled one from above.
        unsampled = dataclasses.replace(config, sampling_rate=None)
        hi = _search(unsampled, sensitivity, dimension, preceding, delta=delta)
        lo = max(lo, hi * config.sampling_rate**2 / 4.0)
        if _meets(config, lo, sensitivity, dimension, preceding, delta=delta):
            lo = float(MIN_VARIANCE)
    else:
        hi = max(lo, sensitivity**2 / config.honest)
        while not _meets(config, hi, sensitivity, dimension, preceding, delta=delta):
            lo, hi = hi, hi * 2.0
            if hi > float(MAX_VARIANCE):
                raise ConfigurationError(f"no noise variance up to 2^60 meets {config}")
    while hi / lo > 1.0 + 1e-7:
        mid = math.sqrt(lo * hi)
        if _meets(config, mid, sensitivity, dimension, preceding, delta=delta):
            hi = mid
        else:
            lo = mid
    return hi


def _round_up(value: float) -> Fraction:
    """The smallest multiple of 2^(e - VARIANCE_BITS) >= value, where 2^e <= value < 2^(e+1)."""
    step = Fraction(2) ** (math.frexp(value)[1] - 1 - VARIANCE_BITS)
    return math.ceil(Fraction(value) / step) * step


def calibrate(
    config: DPConfig, *, num_clients: int, scale: float, dimension: int, preceding: Preceding = ()
) -> NoisePlan:
    """The smallest per-client variance that meets ``config``'s budget over its planned rounds.

    Binary search on sigma^2 (the spent epsilon decreases as sigma^2 grows), then the
    result is rounded up to 21 significant bits as an exact Fraction and checked again:
    ``calibrate(...).spent_after(config.rounds)[0] <= config.epsilon`` (refusal residual
    included, below). Never below
    :data:`MIN_VARIANCE`. ConfigurationError if no variance up to 2^60 suffices.

    ``preceding`` releases (plan, count) are composed with the rounds in one Renyi account
    (their own noise is fixed): the rounds get what the budget leaves after them, which is
    much more than sequential composition of separate (epsilon, delta) shares would leave.
    ConfigurationError if the preceding releases alone spend the budget.

    The refusal residual (:mod:`secagg.dp.tail`): the hospitals encode
    ``rounds x n x d`` noised coordinates plus each preceding release's count x n x d, each
    refused with probability at most 2^-64 whatever the data, which adds
    ``tail_delta = (1 + e^epsilon) x coordinates x 2^-64`` to delta. The noise is calibrated
    so that the Renyi account spends epsilon at ``delta - tail_delta``, so the stated
    (epsilon, delta) is the total. ConfigurationError if ``tail_delta`` exceeds a tenth of delta.
    """
    require_instance("config", config, DPConfig)
    num_clients = require_int("num_clients", num_clients, 1, None)
    dimension = require_int("dimension", dimension, 1, MAX_DIMENSION)
    scale = require_finite("scale", scale)
    if not scale > 0.0:
        raise ConfigurationError(f"scale must be positive, got {scale}")
    if config.honest > num_clients:
        raise ConfigurationError(f"min_honest = {config.honest} exceeds the {num_clients} hospitals")
    _check_preceding(preceding)
    sensitivity = integer_sensitivity(config.l2_clip, scale, dimension)
    coordinates = tail_coordinates(config.rounds, num_clients, dimension, preceding)
    residual = tail_delta(config.epsilon, coordinates)
    if residual > MAX_TAIL_SHARE * config.delta:
        raise ConfigurationError(
            f"the refusal residual (1 + e^{config.epsilon:g}) x {coordinates} noised coordinates "
            f"({config.rounds} rounds x {num_clients} hospitals x {dimension}, plus the preceding releases) x "
            f"2^{math.log2(REFUSAL_PROBABILITY):g} = {residual:.3g} exceeds {MAX_TAIL_SHARE:g} x delta = "
            f"{MAX_TAIL_SHARE * config.delta:.3g}: choose a larger delta, fewer coordinates or rounds, or a "
            "smaller epsilon"
        )
    delta = config.delta - residual
    if preceding:
        already = epsilon_after(config, float(MAX_VARIANCE), sensitivity, dimension, 0, preceding, delta=delta)
        if already >= config.epsilon:
            raise ConfigurationError(
                f"the preceding releases already spend epsilon = {already:.6g} at delta = {delta:g} "
                f"(delta {config.delta:g} less the refusal residual {residual:.3g}), the whole budget "
                f"epsilon = {config.epsilon:g}: no round can follow"
            )
    hi = _search(config, sensitivity, dimension, preceding, delta=delta)
    variance = max(MIN_VARIANCE, _round_up(hi))
    # float rounding at the boundary
    while not _meets(config, variance, sensitivity, dimension, preceding, delta=delta):
        variance = _round_up(float(variance) * (1.0 + 2.0**-VARIANCE_BITS))
    return NoisePlan(
        config=config, variance=variance, num_clients=num_clients, dimension=dimension, scale=scale, preceding=preceding
    )


def _check_preceding(preceding: object) -> None:
    """A tuple of (NoisePlan without preceding releases of its own, count >= 1)."""
    if not isinstance(preceding, tuple):
        raise ConfigurationError("preceding releases must be a tuple of (NoisePlan, count) pairs")
    for entry in preceding:
        if not (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], NoisePlan)):
            raise ConfigurationError("each preceding release is a (NoisePlan, count) pair")
        plan, count = entry
        require_int("preceding release count", count, 1, 1 << 32)
        if plan.preceding:
            raise ConfigurationError("a preceding release's plan must not itself compose earlier releases")


def noise_tail_bound(plan: NoisePlan, num_clients: int, probability: float = TAIL_PROBABILITY) -> int:
    """B such that |sum of ``num_clients`` clients' noise| <= B per coordinate, except with
    probability at most ``probability`` per coordinate.

    The discrete Gaussian is sub-Gaussian with variance proxy sigma^2 (its moment
    generating function is at most exp(t^2 sigma^2 / 2); Canonne, Kamath, Steinke 2020),
    so the sum S of n shares satisfies P(|S| >= B) <= 2 exp(-B^2 / (2 n sigma^2)); B is
    the smallest integer with B^2 >= 2 n sigma^2 ln(2 / probability), computed exactly
    from sigma^2 and an upward-rounded logarithm. The overflow check at setup adds B to
    the largest quantized sum.
    """
    require_instance("plan", plan, NoisePlan)
    num_clients = require_int("num_clients", num_clients, 1, None)
    probability = require_finite("probability", probability)
    if not 0.0 < probability < 1.0:
        raise ConfigurationError(f"probability must be in (0, 1), got {probability}")
    log_term = Fraction(math.nextafter(math.log(2.0 / probability) * (1.0 + 1e-12), math.inf))
    target = 2 * num_clients * plan.variance * log_term
    bound = math.isqrt(math.ceil(target))
    while bound * bound < target:
        bound += 1
    return bound


def __getattr__(name: str) -> Any:
    """``check_contributors`` and ``contributor_shortfall`` moved to :mod:`secagg.dp.contributors`;
    still importable from here (lazily: that module imports this one)."""
    if name in ("check_contributors", "contributor_shortfall"):
        return getattr(importlib.import_module("secagg.dp.contributors"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
