"""Distributed DP in Flower rounds: the server plans and accounts, the nodes add the noise.

With ``SecAggOptions(dp=DPConfig(...))`` every masking round is a DP round, and with
``PaillierOptions(dp=DPConfig(...))`` every Paillier round; both protocols share this module:

- **Server, before anything is sent** (:class:`DPRounds`): at the first DP round it
  calibrates the distributed discrete Gaussian for the round's n nodes and
  h, the honest contributions in the smallest sum the round can release (below;
  ``DPConfig.min_honest`` if lower), and the model's dimension, and opens the
  accountant (state file ``dp_state_file``, optional; a restarted server goes on under the
  plan the file was charged for, fixed for at least the node count the file records,
  :mod:`~secagg.integrations.flower._dp_state`; a file that cannot be read or is locked
  skips the round, naming it, nothing charged). Every round: a round with fewer
  than h nodes is skipped; a round that would exceed the budget is refused (skipped, and
  every later one too); otherwise the round is charged to the accountant *before* the
  session runs and the spent epsilon is logged. The DP parameters
  (:meth:`DPConfig.descriptor_parameters` of the plan: epsilon, delta, rounds, l2 clip,
  sampling rate, h, sigma^2 exactly, dimension, sensitivity) travel in
  :attr:`RoundSetup.dp` (:attr:`PaillierSetup.dp`) and enter the round's descriptor, so a
  split fails the round. In a masking round h is the honest inputs in the smallest sum the
  server can unmask (:func:`unmasked_sums`: t inputs on the complete graph, t + 1 on a
  Harary graph, less the colluders among them; on the complete graph that is the guarantee's
  ``n - c - d``), which every node checks (:func:`check_unmasked_sums`) at setup, before it
  trains or sends anything; the server skips a later round (the plan is fixed at the first)
  whose configuration fails that check, or that has more nodes than the plan was fixed for
  (the first round's n; a restarted server's, at least the n its state file records:
  :mod:`~secagg.integrations.flower._dp_state`), since the plan's refusal residual counts
  n x d noised coordinates a round (:meth:`DPRounds.charge`).
  In a Paillier round h is the honest uploads in the smallest sum a
  key-share holder decrypts: ``min_contributors`` less the colluders c the round's
  guarantee tolerates (:func:`decrypted_sums`), which every node checks
  (:func:`check_decrypted_sums`) before it encrypts. These four functions are
  :mod:`secagg.dp.floors`' (re-exported here): fl_core's DP aggregator applies the same rule.
- **Node** (:func:`node_plan`: :func:`read_dp`, :func:`check_dp_policy`): rebuilds the plan from the bound
  bytes, checks that the sigma^2 it names buys the declared epsilon over the declared
  rounds (recomputed with dp-accounting, not taken on the server's word), that the ring
  holds the noise tail, and its own :class:`NodePolicy` floors; then adds its noise share
  with the exact sampler (OS CSPRNG) to its integer encoding before masking or encryption
  (:func:`node_encoding`, :func:`secagg.dp.encoding.noised_encoding`). Its contribution has no weight and no
  clipped count (the DP rule: nothing is clipped, nothing un-noised is released).
- **Node, its own budget** (:mod:`secagg.integrations.flower.node_budget`): it counts its
  noised contributions against the plan the setup binds and refuses one past the plan's
  (epsilon, delta), or a setup under another plan, whatever the server charged.
- **Server, after the session**: the noised sum of the deltas over the included nodes,
  refused (round skipped) if fewer than h are included; the mean update is that sum
  divided by the number of included nodes (public), the reply's weight.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from secagg.descriptor import Parameter, decode_parameters, encode_parameters
from secagg.dp._state_schema import AnotherPlanError
from secagg.dp.accountant import PrivacyAccountant, PrivacySpent
from secagg.dp.calibration import NoisePlan, noise_tail_bound
from secagg.dp.config import DPConfig
from secagg.dp.contributors import check_contributors, contributor_shortfall
from secagg.dp.encoding import calibrated, dp_scale, noise_room, noised_encoding, size_encoding
from secagg.dp.floors import check_decrypted_sums, check_unmasked_sums, decrypted_sums, unmasked_sums
from secagg.dp.sampler import RandomSource
from secagg.encoding import IntArray, QuantizationConfig
from secagg.errors import (
    BudgetExceededError,
    ConfigurationError,
    DecodeError,
    InsufficientNoiseError,
    OverflowDetectedError,
    ProtocolError,
    ReplayError,
)
from secagg.guarantee import Guarantee
from secagg.integrations.flower._dp_state import another_plan, recorded_plan, unreadable
from secagg.integrations.flower.policy import NodePolicy

__all__ = [
    "DPRounds",
    "check_decrypted_sums",
    "check_dimension",
    "check_dp_options",
    "check_dp_policy",
    "check_unmasked_sums",
    "decode_noised",
    "decrypted_sums",
    "dp_parameters",
    "honest_count",
    "node_encoding",
    "node_plan",
    "noise_multiplier",
    "read_dp",
    "unmasked_sums",
]

LOGGER = logging.getLogger("secagg.flower")
_PREFIX = "secagg.dp."


def honest_count(num_nodes: int, guarantee: Guarantee, config: DPConfig) -> int:
    """h for a round: nodes minus the colluders and dropouts it tolerates (at least 1), or
    ``config.min_honest`` if that is lower."""
    computed = max(1, num_nodes - guarantee.colluders - guarantee.dropouts)
    return computed if config.min_honest is None else min(computed, config.min_honest)


def dp_parameters(plan: NoisePlan) -> bytes:
    """The bound bytes of ``plan``: :func:`encode_parameters` of its ``secagg.dp.*`` parameters."""
    return encode_parameters(plan.config.descriptor_parameters(plan))


def noise_multiplier(plan: NoisePlan) -> float:
    """``sqrt(h sigma^2) / Delta2``: the honest nodes' noise std over the integer sensitivity."""
    return math.sqrt(float(plan.total_variance)) / plan.sensitivity


def _get(params: dict[str, Parameter], name: str, kind: type) -> Parameter:
    value = params.get(_PREFIX + name)
    if value is None or type(value) is not kind:
        raise DecodeError(f"DP parameter {_PREFIX + name} missing or not a {kind.__name__}")
    return value


def read_dp(data: bytes, quantization: QuantizationConfig, num_nodes: int) -> NoisePlan:
    """The noise plan the bound bytes ``data`` name, checked.

    DecodeError if ``data`` is not exactly a plan's parameters; ConfigurationError if it
    counts on more honest nodes than ``num_nodes``, the scale is not the quantization's, the
    variance does not buy the declared epsilon over the declared rounds, or the ring cannot
    hold ``num_nodes`` encodings plus the noise tail.
    """
    params = decode_parameters(data)
    try:
        rate = params.get(_PREFIX + "sampling_rate")
        config = DPConfig(
            epsilon=float(_get(params, "epsilon", float)),
            delta=float(_get(params, "delta", float)),
            rounds=int(_get(params, "rounds", int)),
            l2_clip=float(_get(params, "l2_clip", float)),
            sampling_rate=None if rate is None else float(rate),
            min_honest=int(_get(params, "min_honest", int)),
            mechanism=str(_get(params, "mechanism", str)),
        )
        variance = Fraction(int(_get(params, "variance_num", int)), int(_get(params, "variance_den", int)))
        plan = NoisePlan(config, variance, max(num_nodes, config.honest), int(_get(params, "dimension", int)),
                         quantization.scale)  # fmt: skip
    except (ValueError, ZeroDivisionError) as exc:
        raise DecodeError(f"DP parameters: {exc}") from exc
    if config.honest > num_nodes:  # before the accounting, which sums one term per honest node
        raise ConfigurationError(
            f"the DP plan counts on h = {config.honest} honest nodes, more than the round's {num_nodes}"
        )
    if dp_parameters(plan) != bytes(data):
        raise ConfigurationError("the DP parameters do not match the round's quantization (scale or sensitivity)")
    if plan.scale != dp_scale(config.l2_clip, plan.dimension):
        raise ConfigurationError(f"DP scale {plan.scale} is not the one l2_clip and dimension give")
    spent = plan.spent_after(config.rounds)[0]
    if spent > config.epsilon * (1 + 1e-9):
        raise ConfigurationError(
            f"the noise sigma^2 = {float(variance):.6g} buys epsilon = {spent:.6g} over {config.rounds} rounds, "
            f"not the declared {config.epsilon:g}: under-noised setup refused"
        )
    if num_nodes * quantization.qmax + noise_tail_bound(plan, num_nodes) > quantization.limit:
        raise ConfigurationError("the ring cannot hold the round's noised sum (noise tail at 2^-40)")
    return plan


def check_dp_policy(policy: NodePolicy, plan: NoisePlan | None) -> None:
    """ConfigurationError naming the DP floor of this node's ``policy`` that the round breaks."""
    if plan is None:
        if policy.require_dp:
            raise ConfigurationError("policy: this node requires differential privacy; the round has none")
        return
    config = plan.config
    policy.check_dp_clip(config.l2_clip)
    if policy.max_dp_epsilon is not None and config.epsilon > policy.max_dp_epsilon:
        raise ConfigurationError(
            f"policy: epsilon {config.epsilon:g} exceeds this node's ceiling {policy.max_dp_epsilon:g}"
        )
    if policy.max_dp_delta is not None and config.delta > policy.max_dp_delta:
        raise ConfigurationError(f"policy: delta {config.delta:g} exceeds this node's ceiling {policy.max_dp_delta:g}")
    if policy.min_noise_multiplier is not None and noise_multiplier(plan) < policy.min_noise_multiplier:
        raise ConfigurationError(
            f"policy: noise multiplier sqrt(h sigma^2)/Delta2 = {noise_multiplier(plan):.4g} "
            f"(h = {plan.honest}), this node requires at least {policy.min_noise_multiplier:g}"
        )


def node_plan(data: bytes, quantization: QuantizationConfig, num_nodes: int, policy: NodePolicy) -> NoisePlan | None:
    """What a node accepts before it trains: the plan the bound DP bytes ``data`` name
    (:func:`read_dp`; None if ``data`` is empty) within its ``policy`` (:func:`check_dp_policy`)."""
    plan = read_dp(data, quantization, num_nodes) if data else None
    check_dp_policy(policy, plan)
    return plan


def node_encoding(
    plan: NoisePlan,
    quantization: QuantizationConfig,
    delta: npt.NDArray[np.float64],
    vector_length: int,
    rng: np.random.Generator,
    source: RandomSource | None,
) -> npt.NDArray[np.int64]:
    """A node's noised contribution: ``round(delta * scale) + its noise share``
    (:func:`~secagg.dp.encoding.noised_encoding`), added on the node before masking or
    encryption. ProtocolError unless the model, the plan and the session have the same length."""
    if not delta.shape[0] == plan.dimension == vector_length:
        raise ProtocolError(
            f"the DP session is for {plan.dimension} values ({vector_length} per contribution), "
            f"the model has {delta.shape[0]}"
        )
    return noised_encoding(plan, quantization, delta, rng, source)


def check_dimension(plan: NoisePlan, vector_length: int, values: int | None = None) -> None:
    """ConfigurationError unless the plan's dimension is the session's ``vector_length`` (at setup)
    and, if given, the model's ``values`` (at training): checked before anything is charged, so a
    setup whose noised contribution could never be encoded costs the node no budget."""
    if plan.dimension != vector_length or values not in (None, plan.dimension):
        model = "" if values is None else f", the model {values} values"
        raise ConfigurationError(
            f"the DP plan is for dimension {plan.dimension}, the session's vector length is {vector_length}{model}: "
            "refused before anything is charged"
        )


def check_node_weight(plan: NoisePlan, quantization: QuantizationConfig, weight: int) -> None:
    """ConfigurationError if the node's declared example count could put its clipped sum outside
    the range the round is sized for (the server's ``max_weight``): ``ceil(weight * l2_clip *
    scale) + noise_room(plan) <= qmax``. Checked after training, before anything is charged or
    noised: whether the range then refuses the noised encoding depends on the node's patients
    (a data-dependent, observable event the accounting does not cover), while this refusal
    depends only on the count, which is public (docs/privacy.md, "The refusal residual")."""
    room = noise_room(plan)
    per_example = plan.config.l2_clip * plan.scale
    if math.ceil(weight * per_example) + room > quantization.qmax:
        most = math.floor((quantization.qmax - room) / per_example)
        raise ConfigurationError(
            f"this node reports {weight} examples; the DP round's range holds the clipped sum of at most {most} "
            "(the server's max_weight): refused before anything is noised or charged"
        )


def check_dp_options(dp: object, clips: object) -> None:
    """The server options' DP checks: ``dp`` None or a DPConfig, and no named clips with it."""
    if dp is not None and not isinstance(dp, DPConfig):
        raise ConfigurationError(f"dp must be a DPConfig, got {type(dp).__name__}")
    if dp is not None and clips:
        raise ConfigurationError("clips do not apply with dp: a DP round never clips a coordinate")


def decode_noised(
    integers: IntArray, plan: NoisePlan, quantization: QuantizationConfig, num_summands: int
) -> tuple[npt.NDArray[np.float64], int]:
    """The mean update and the weight (the number of contributions, public) from the noised
    integer sum of ``num_summands`` contributions: ``sum / scale / num_summands``.

    InsufficientNoiseError if fewer than h contributed (the round must be skipped);
    OverflowDetectedError if a coordinate lies beyond ``num_summands * qmax`` plus the noise tail.
    """
    check_contributors(plan, num_summands)
    bound = num_summands * quantization.qmax + noise_tail_bound(plan, num_summands)
    if integers.ndim != 1 or integers.shape[0] != plan.dimension:
        raise ConfigurationError(f"a noised sum has {plan.dimension} entries")
    if int(integers.min()) < -bound or int(integers.max()) > bound:
        raise OverflowDetectedError(f"decoded DP sum exceeds {bound}, beyond what {num_summands} contributions reach")
    mean: npt.NDArray[np.float64] = integers.astype(np.float64) / (quantization.scale * num_summands)
    return mean, num_summands


def _uncounted_nodes(plan: NoisePlan, num_nodes: int) -> str | None:
    """Why a round of ``num_nodes`` nodes cannot be charged under ``plan``, or None: its refusal
    residual counts the noised coordinates of ``plan.num_clients`` nodes a round."""
    if num_nodes <= plan.num_clients:
        return None
    return (
        f"a round of {num_nodes} nodes, but the DP plan was fixed at the first DP round for {plan.num_clients}: "
        f"its refusal residual counts the noised coordinates of at most {plan.num_clients} nodes a round; not charged"
    )


class DPRounds:
    """The server's DP state across rounds: the plan (fixed at the first DP round) and the accountant."""

    def __init__(self, config: DPConfig, state_file: str | os.PathLike[str] | None = None) -> None:
        if not isinstance(config, DPConfig):
            raise ConfigurationError(f"dp must be a DPConfig, got {type(config).__name__}")
        self.config = config
        self.state_file = state_file
        self.accountant: PrivacyAccountant | None = None
        self.exhausted = False

    @property
    def plan(self) -> NoisePlan | None:
        """The calibrated plan, once the first DP round has fixed it."""
        return None if self.accountant is None else self.accountant.plan

    def plan_round(
        self, num_nodes: int, dimension: int, guarantee: Guarantee, max_weight: int, ring_bits: int | None
    ) -> tuple[NoisePlan, QuantizationConfig]:
        """The plan and encoding of a round of ``num_nodes`` nodes (calibrating at the first one).

        ConfigurationError if the model's dimension changed, the encoding could overflow, or the
        state file cannot be read (its reason names it, :func:`unreadable`) or is locked.
        """
        plan = self.plan
        if plan is None:
            config = dataclasses.replace(self.config, min_honest=honest_count(num_nodes, guarantee, self.config))
            # A restarted server goes on under the plan its state file was charged for (_dp_state).
            recorded, digest = recorded_plan(self.state_file)
            scale = dp_scale(config.l2_clip, dimension)
            plan = calibrated(config, max(num_nodes, recorded), scale, dimension)
            if num_nodes > recorded >= config.honest and config.digest(plan).hex() != digest:
                plan = calibrated(config, recorded, scale, dimension)  # rounds of more nodes: skipped (charge)
            try:
                self.accountant = PrivacyAccountant(plan, self.state_file)
            except DecodeError as exc:
                raise ConfigurationError(unreadable(self.state_file, exc)) from exc
            except AnotherPlanError as exc:  # another plan's file (not its budget's): name the h and counts
                differs = another_plan(config, recorded, digest, num_nodes, scale, dimension)
                if differs is None:
                    raise
                raise ConfigurationError(f"{exc}. {differs}") from exc
            LOGGER.info(
                "dp: (%g, %g) per patient over %d rounds; sigma^2 = %.6g per node, sized for h = %d honest of %d "
                "nodes (noise multiplier %.3g)", plan.config.epsilon, plan.config.delta, plan.config.rounds,
                float(plan.variance), plan.honest, plan.num_clients, noise_multiplier(plan),
            )  # fmt: skip
        if plan.dimension != dimension:
            raise ConfigurationError(f"the model has {dimension} values, the DP plan is for {plan.dimension}")
        quantization, _ = size_encoding(
            plan, num_clients=num_nodes, max_samples_per_client=max_weight, ring_bits=ring_bits
        )
        return plan, quantization

    def charge(self, server_round: int, num_nodes: int) -> str | None:
        """Charge one round with ``num_nodes`` contributors to the budget (before anything is sent);
        the reason to skip it instead, or None. A round with more nodes than the plan was fixed
        for is refused: the plan's refusal residual counts ``plan.num_clients x d`` noised
        coordinates a round (:meth:`NoisePlan.tail_coordinates`), fewer than such a round encodes."""
        accountant = self.accountant
        assert accountant is not None  # plan_round ran first
        if self.exhausted or accountant.would_exceed(1):
            self.exhausted = True
            return f"dp: privacy budget: one more round would exceed epsilon = {self.config.epsilon:g}; refused"
        shortfall = _uncounted_nodes(accountant.plan, num_nodes) or contributor_shortfall(accountant.plan, num_nodes)
        if shortfall is not None:
            return f"dp: {shortfall}"
        spent = self._record(accountant, server_round, num_nodes)
        if isinstance(spent, str):
            return spent
        LOGGER.info(
            "dp: round %d charged; spent epsilon = %.4g of %g at delta = %g (%d rounds released)",
            server_round, spent.epsilon, self.config.epsilon, spent.delta, spent.num_releases,
        )  # fmt: skip
        return None

    def _record(self, accountant: PrivacyAccountant, server_round: int, num_nodes: int) -> PrivacySpent | str:
        """The accountant's charge of the round, or the reason it refused it (nothing charged)."""
        try:
            return accountant.record_round(server_round, num_contributors=num_nodes)
        except (BudgetExceededError, InsufficientNoiseError) as exc:
            return f"dp: {exc}"
        except ReplayError:  # a restarted server: the new run counts its rounds from 1 again
            where = "the accountant" if self.state_file is None else f"the accountant's state file {self.state_file}"
            return (
                f"dp: {where} last charged round {accountant.last_round} "
                f"(an earlier run, or this one before a restart): round {server_round} is not charged again; "
                f"this run's rounds after {accountant.last_round} go on within the same budget"
            )
        except ConfigurationError as exc:  # e.g. the state file changed under the accountant, or is locked
            return f"dp: the accountant refused to charge the round: {exc}"
        except DecodeError as exc:  # it no longer parses: left as it is, nothing charged
            return unreadable(self.state_file, exc)

    def spent(self) -> float:
        """Epsilon spent so far (0.0 before the first round)."""
        return 0.0 if self.accountant is None else self.accountant.spent()[0]

    def reported(self) -> float | None:
        """A skipped round's report: the epsilon spent so far (a round charged, then skipped, counts),
        None before the accountant is opened."""
        return None if self.accountant is None else self.spent()
