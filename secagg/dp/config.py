"""The differential-privacy configuration of a run, and how it is bound into the session.

:class:`DPConfig` is what a deployment declares up front: the budget (epsilon,
delta) per patient over the whole run, the planned number of rounds, the
per-patient L2 bound of a hospital's update, the Poisson sampling rate if the
hospitals sample, and the minimum number of honest contributors the noise must
suffice for. Every value that shapes the noise is bound into the session
descriptor through :meth:`DPConfig.descriptor_parameters` (keys ``secagg.dp.*``,
docs/spec.md, "Differential-privacy parameters"), so a server that told two
hospitals different budgets, clips or noise variances would put them in
different sessions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from secagg._validate import check_fields, require_finite, require_instance
from secagg.descriptor import Parameter, encode_parameters
from secagg.errors import ConfigurationError

if TYPE_CHECKING:
    from secagg.dp.calibration import NoisePlan

__all__ = [
    "DP_PARAMETER_PREFIX",
    "MAX_ROUNDS",
    "MECHANISM_DDG",
    "DPConfig",
    "preceding_digest",
    "variance_parameters",
]

MECHANISM_DDG = "distributed-discrete-gaussian"
"""The distributed discrete Gaussian (Kairouz, Liu, Steinke, ICML 2021)."""
MECHANISMS = (MECHANISM_DDG,)
MAX_ROUNDS = 1_000_000
MAX_EPSILON = 1000.0
DP_PARAMETER_PREFIX = "secagg.dp."
DP_PARAMETERS_VERSION = 1
CONFIG_DIGEST_LABEL = b"secagg/v1/dp-config"
INT64_MAX = (1 << 63) - 1


@dataclass(frozen=True)
class DPConfig:
    """A run's declared differential-privacy guarantee (per patient, whole run).

    Attributes:
        epsilon: the budget's epsilon, in (0, 1000]; :func:`~secagg.dp.calibrate` refuses one
            whose refusal residual, (1 + e^epsilon) x 2^-64 per noised coordinate, exceeds
            delta / 10 (about 21 for the demo's 20 rounds on breast cancer at delta 1e-5).
        delta: the budget's delta, in (0, 1); choose it well below 1 / (number of patients).
        rounds: the planned number of released aggregates (>= 1); the noise is calibrated so
            that all of them together spend at most (epsilon, delta).
        l2_clip: the L2 norm bound, in model units, on how much one patient can change one
            hospital's update (its per-example clip times what the local training does with it).
        sampling_rate: the Poisson sampling rate of patients per round, if hospitals sample
            (None: every patient takes part in every round, no amplification).
        min_honest: the minimum number of hospitals whose noise is trusted to be in every
            released sum: n minus the colluders and dropouts the configuration tolerates
            (None: one, the safe extreme where each hospital adds the whole noise).
        mechanism: ``"distributed-discrete-gaussian"`` (the only one so far).
    """

    epsilon: float
    delta: float
    rounds: int
    l2_clip: float
    sampling_rate: float | None = None
    min_honest: int | None = None
    mechanism: str = MECHANISM_DDG

    def __post_init__(self) -> None:
        check_fields(self, ints=("rounds",), optional_ints=("min_honest",), reals=("epsilon", "delta", "l2_clip"))
        name = type(self).__name__
        if not 0.0 < self.epsilon <= MAX_EPSILON:
            raise ConfigurationError(f"{name}.epsilon must be in (0, {MAX_EPSILON}], got {self.epsilon}")
        if not 0.0 < self.delta < 1.0:
            raise ConfigurationError(f"{name}.delta must be in (0, 1), got {self.delta}")
        if not 1 <= self.rounds <= MAX_ROUNDS:
            raise ConfigurationError(f"{name}.rounds must be in 1..{MAX_ROUNDS}, got {self.rounds}")
        if not self.l2_clip > 0.0:
            raise ConfigurationError(f"{name}.l2_clip must be positive, got {self.l2_clip}")
        if self.sampling_rate is not None:
            rate = require_finite(f"{name}.sampling_rate", self.sampling_rate)
            if not 0.0 < rate <= 1.0:
                raise ConfigurationError(f"{name}.sampling_rate must be in (0, 1], got {rate}")
            object.__setattr__(self, "sampling_rate", rate)
        if self.min_honest is not None and self.min_honest < 1:
            raise ConfigurationError(f"{name}.min_honest must be at least 1, got {self.min_honest}")
        require_instance(f"{name}.mechanism", self.mechanism, str)
        if self.mechanism not in MECHANISMS:
            raise ConfigurationError(f"{name}.mechanism must be one of {MECHANISMS}, got {self.mechanism!r}")

    @property
    def honest(self) -> int:
        """The number of honest contributors the noise is sized for (``min_honest`` or 1)."""
        return 1 if self.min_honest is None else self.min_honest

    def descriptor_parameters(self, plan: NoisePlan | None = None) -> dict[str, Parameter]:
        """The ``secagg.dp.*`` entries to bind into :class:`~secagg.descriptor.SessionDescriptor`.

        With a calibrated ``plan`` (which must belong to this configuration) the per-client
        noise variance is bound too, as exact numerator and denominator, with the honest
        count, dimension and integer-domain sensitivity it was calibrated for, and the digest
        of the releases it composes with (``secagg.dp.preceding``, only when there are any).
        """
        params: dict[str, Parameter] = {
            "secagg.dp.version": DP_PARAMETERS_VERSION,
            "secagg.dp.mechanism": self.mechanism,
            "secagg.dp.epsilon": self.epsilon,
            "secagg.dp.delta": self.delta,
            "secagg.dp.rounds": self.rounds,
            "secagg.dp.l2_clip": self.l2_clip,
            "secagg.dp.min_honest": self.honest,
        }
        if self.sampling_rate is not None:
            params["secagg.dp.sampling_rate"] = self.sampling_rate
        if plan is not None:
            if plan.config != self:
                raise ConfigurationError("the noise plan was calibrated for a different DPConfig")
            params.update(variance_parameters(plan.variance))
            params["secagg.dp.dimension"] = plan.dimension
            params["secagg.dp.sensitivity"] = plan.sensitivity
            if plan.preceding:
                params["secagg.dp.preceding"] = preceding_digest(plan.preceding)
        return params

    def canonical_bytes(self, plan: NoisePlan | None = None) -> bytes:
        """:func:`~secagg.descriptor.encode_parameters` of :meth:`descriptor_parameters`."""
        return encode_parameters(self.descriptor_parameters(plan))

    def digest(self, plan: NoisePlan | None = None) -> bytes:
        """SHA-256(``"secagg/v1/dp-config"`` || :meth:`canonical_bytes`): 32 bytes."""
        return hashlib.sha256(CONFIG_DIGEST_LABEL + self.canonical_bytes(plan)).digest()


def variance_parameters(variance: Fraction) -> dict[str, Parameter]:
    """``secagg.dp.variance_num`` / ``secagg.dp.variance_den``: a positive Fraction in lowest terms."""
    if not isinstance(variance, Fraction) or variance <= 0:
        raise ConfigurationError(f"the noise variance must be a positive Fraction, got {variance!r}")
    if variance.numerator > INT64_MAX or variance.denominator > INT64_MAX:
        raise ConfigurationError(f"the noise variance {variance} does not fit 64-bit numerator and denominator")
    return {"secagg.dp.variance_num": variance.numerator, "secagg.dp.variance_den": variance.denominator}


PRECEDING_DIGEST_LABEL = b"secagg/v1/dp-preceding"


def preceding_digest(preceding: tuple[tuple[NoisePlan, int], ...]) -> bytes:
    """SHA-256("secagg/v1/dp-preceding" || for each release: its plan's DP digest (32 bytes) ||
    the number of aggregates released, 8 bytes big-endian): binds what a plan composes with."""
    hasher = hashlib.sha256(PRECEDING_DIGEST_LABEL)
    for plan, count in preceding:
        hasher.update(plan.config.digest(plan) + count.to_bytes(8, "big"))
    return hasher.digest()
