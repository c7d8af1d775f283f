"""Server side: a Flower Grid that runs every training round as a masking session.

:class:`SecAggGrid` wraps the Grid a ServerApp receives. Hand it to any
strategy (``FedAvg().start(grid=SecAggGrid(grid, SecAggOptions(trusted_keys=federation)), ...)``,
``federation`` the federation's identity public keys: active mode needs them): evaluation and other
messages pass through unchanged, and each batch of *training* messages becomes
one masking session (:mod:`secagg.masking`) over the sampled nodes:

0. (active mode, nodes whose identity key the server has not seen yet)
   ``identify``: each such node answers with its signed Ed25519 identity
   public key (:class:`~secagg.integrations.flower.protocol.IdentityAnnouncement`);
1. ``setup``: each node gets a :class:`~secagg.integrations.flower.protocol.RoundSetup`
   (node ids -> protocol ids 1..n, masking and quantization settings, in
   active mode the nodes' identity keys in protocol-id order) and answers
   with fresh public keys (signed in active mode);
2. ``share-keys``: the server relays the key roster; nodes answer with
   encrypted Shamir shares for their neighbours;
3. ``masked-input``: the server delivers the shares together with the
   strategy's training content; each node trains, and answers with its masked
   weighted quantized update;
4. (``consistency-check`` in active mode: nodes sign the survivor set, then)
   ``unmask``: survivors reveal the shares the server needs to remove the masks.

Nodes that time out or answer with an error in any stage are dropouts; the
protocol recovers as long as the threshold allows. The server learns only the
sum, which it turns into the weighted mean update and returns to the strategy
as a *single* reply carrying the new arrays (global + mean update) and the
weight total, so FedAvg's weighted average of that one reply is the secure
weighted average of all nodes. Per-node training metrics are not forwarded
(they would reveal per-node information). If too few nodes remain, the round
returns no reply and the strategy keeps its current model.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from flwr.app import Message
from flwr.serverapp import Grid

from secagg import wire
from secagg.clipping import ClipPolicy, ClipSchedule, clip_policy
from secagg.dp.config import DPConfig
from secagg.encoding import WORD_RINGS, QuantizationConfig, from_ring, smallest_ring_bits
from secagg.errors import (
    AuthenticationError,
    ConfigurationError,
    InsufficientNoiseError,
    SecAggError,
    ThresholdError,
)
from secagg.integrations.flower._grid import (
    LOGGER,
    RoundReport,
    SecureGrid,
    TrainingBatch,
    aggregated_reply,
    require_trusted_keys,
)
from secagg.integrations.flower._limits import masking_reply_limit
from secagg.integrations.flower._masking_plan import MaskingPlan, round_table
from secagg.integrations.flower.clipping import decode_segmented, encoded_length
from secagg.integrations.flower.compression import RoundCompression, check_options
from secagg.integrations.flower.dp import DPRounds, check_dp_options, decode_noised
from secagg.integrations.flower.protocol import MASKED_INPUT, SETUP, stage_of_phase
from secagg.masking import ACTIVE, SEMI_HONEST, MaskingConfig, ServerPhase, ServerState, server_start, server_step
from secagg.masking.config import MAX_CLIENTS
from secagg.primitives.signing import PUBLIC_KEY_SIZE

__all__ = ["DEFAULT_CLIP", "DEFAULT_MAX_WEIGHT", "MIN_NODES", "RoundReport", "SecAggGrid", "SecAggOptions"]

MIN_NODES = 3
"""The fewest nodes a masking session can have."""
DEFAULT_CLIP = 0.5
"""Default clip of update coordinates (updates are local minus global model)."""
DEFAULT_MAX_WEIGHT = 4096
"""Default public bound on one node's weight (its example count)."""
SECAGG = "secagg"
SECAGG_PLUS = "secagg+"


def _placeholder_keys(count: int) -> tuple[bytes, ...]:
    """Distinct stand-in identity keys, to validate active-mode settings before any node is asked."""
    return tuple(index.to_bytes(PUBLIC_KEY_SIZE, "big") for index in range(1, count + 1))


@dataclass(frozen=True)
class SecAggOptions:
    """How secure rounds are run; validated here, so an unsafe setting never starts.

    Attributes:
        protocol: ``"secagg"`` (complete graph; the default: hospital federations
            are small enough for it) or ``"secagg+"`` (sparse Harary graph, k and t
            derived from the fractions).
        clip: update coordinates are clipped to ``[-clip, clip]`` before quantization.
        bits: quantization bits per value, sign included.
        ring_bits: b in 8..64: the ring Z_(2^b) the masked sums live in; None (the default):
            the smallest word ring that cannot overflow for each round's nodes (Z_(2^32) up
            to 16 nodes at the default bounds, Z_(2^64) beyond), logged with the round's guarantee.
        max_weight: public bound on one node's weight (the value under
            ``weight_key``); a larger weight makes that node drop out.
        weight_key: the MetricRecord key of the weight in a node's training
            reply, and of the weight total in the aggregated reply (FedAvg's
            ``weighted_by_key``).
        threshold: SecAgg only: the Shamir threshold (default: the smallest safe
            one for the declared colluders, see ``MaskingConfig.secagg``).
        corrupt_fraction: assumed fraction of nodes colluding with the server
            (default: on the complete graph the most colluders, up to a third,
            that keep the dropout tolerance; 0.05 on a sparse secagg+ graph).
        dropout_per_round: assumed fraction of nodes dropping out at *each* of the
            four stages (setup, share-keys, masked-input, and consistency-check /
            unmask), so 4x that over a round. Default: one dropout below 20
            nodes, 10% per stage from 20 on. secagg+ uses the complete graph up
            to 100 nodes and a Harary graph sized for this assumption beyond.
        dropout_fraction: secagg+ only, instead of ``dropout_per_round``: the
            assumed fraction of nodes dropping out over the whole round.
        mode: ``"active"`` (the default: signed keys, identity keys checked by
            every node against the federation's trusted list, and the
            consistency-check stage) or ``"semi-honest"``, by name only: it does
            not resist a server that lies about dropouts, and the server's log
            and every node's say so; nodes refuse it unless their policy allows it.
        trusted_keys: active mode: the federation's identity public keys (the key ceremony's
            public trusted-keys file, ``read_trusted_keys``); a node announcing another key is
            left out at ``identify`` (the nodes check the keys themselves anyway). SecAggGrid
            refuses active options without it: every node refuses a setup holding a key off its
            own list, so one node with a stray key would fail every round it is sampled in.
        stage_timeout: seconds to wait for the replies of one stage.
        poll_interval: seconds between two pulls of replies within a stage.
        max_nodes: if set, the settings are validated for rounds of up to this
            many nodes now; rounds with more nodes are refused. Otherwise each
            round is validated for its sampled nodes before anything is sent.
        clipping: how each array's clip moves between rounds: ``"adaptive"`` (the
            default: toward 0.1% clipped, from the securely summed clipped counts,
            :mod:`secagg.clipping`), ``"fixed"`` (by name), or a ClipPolicy. ``clip`` is
            every float array's starting clip.
        clips: starting clips of named float arrays (``"<record>/<array>"``), overriding ``clip``.
        dp: a :class:`~secagg.dp.DPConfig`: every round is a distributed-DP round
            (:mod:`secagg.integrations.flower.dp`); ``clip``, ``bits`` and ``clipping`` then do
            not apply (the encoding follows from the DP configuration and nothing is clipped),
            ``max_weight`` bounds a node's patients (the encoding's range).
        dp_state_file: the accountant's state file (survives a restart); None: in memory.
        sparsity: send only part of each update (:mod:`~secagg.integrations.flower.compression`):
            a fraction in (0, 1] (a random subset of that share of the coordinates, drawn
            afresh each round from a public seed) or a sequence of array names
            (``"<record>/<array>"``); each node keeps what it did not send and adds it later.
            None (the default): every coordinate.
        rotate: rotate the float coordinates sent by a public per-round random rotation
            (one segment with one clip; integer arrays stay exact). Neither option applies with ``dp``.
    """

    protocol: str = SECAGG
    clip: float = DEFAULT_CLIP
    bits: int = 16
    ring_bits: int | None = None
    max_weight: int = DEFAULT_MAX_WEIGHT
    weight_key: str = "num-examples"
    threshold: int | None = None
    corrupt_fraction: float | None = None
    dropout_fraction: float | None = None
    dropout_per_round: float | None = None
    mode: str = ACTIVE
    trusted_keys: frozenset[bytes] | None = None
    stage_timeout: float = 60.0
    poll_interval: float = 0.5
    max_nodes: int | None = None
    clipping: str | ClipPolicy = "adaptive"
    clips: Mapping[str, float] | None = None
    dp: DPConfig | None = None
    dp_state_file: str | None = None
    sparsity: float | Sequence[str] | None = None
    rotate: bool = False

    def __post_init__(self) -> None:
        clip_policy(self.clipping)
        check_dp_options(self.dp, self.clips)
        object.__setattr__(self, "sparsity", check_options(self.sparsity, self.rotate, self.dp is not None))
        if self.protocol not in (SECAGG, SECAGG_PLUS):
            raise ConfigurationError(f"protocol must be {SECAGG!r} or {SECAGG_PLUS!r}, got {self.protocol!r}")
        if self.protocol == SECAGG_PLUS and self.threshold is not None:
            raise ConfigurationError("secagg+ derives its threshold; set corrupt_fraction and dropout_fraction")
        if self.protocol == SECAGG and self.dropout_fraction is not None:
            raise ConfigurationError("dropout_fraction applies to secagg+ only (use dropout_per_round)")
        if self.dropout_fraction is not None and self.dropout_per_round is not None:
            raise ConfigurationError("give dropout_per_round or the round-wide dropout_fraction, not both")
        if self.mode not in (SEMI_HONEST, ACTIVE):
            raise ConfigurationError(f"mode must be {SEMI_HONEST!r} or {ACTIVE!r}, got {self.mode!r}")
        if self.trusted_keys is not None and (
            self.mode != ACTIVE or not self.trusted_keys or any(len(k) != PUBLIC_KEY_SIZE for k in self.trusted_keys)
        ):
            raise ConfigurationError(f"trusted_keys: active mode only, non-empty, {PUBLIC_KEY_SIZE}-byte keys")
        for name, value in (("stage_timeout", self.stage_timeout), ("poll_interval", self.poll_interval)):
            if not (np.isfinite(value) and value > 0):
                raise ConfigurationError(f"{name} must be a positive number of seconds, got {value}")
        if not self.weight_key:
            raise ConfigurationError("weight_key must be a non-empty string")
        if self.max_nodes is not None and not MIN_NODES <= self.max_nodes <= MAX_CLIENTS:
            raise ConfigurationError(f"max_nodes must be in {MIN_NODES}..{MAX_CLIENTS}, got {self.max_nodes}")
        # Validate what can be validated before any node is sampled.
        nodes = self.max_nodes or MIN_NODES
        self.quantization(nodes)
        if self.max_nodes is not None or not (self.mode == ACTIVE and self.protocol == SECAGG_PLUS):
            # (Active SecAgg+ is infeasible for the smallest rounds; each round is validated anyway.)
            self.masking(nodes, 2)


    def quantization(self, num_nodes: int) -> QuantizationConfig:
        """The quantization for ``num_nodes``; ConfigurationError if the ring could overflow."""
        return QuantizationConfig(
            self.clip, self.bits, num_nodes, self.ring_for(num_nodes), max_weight=self.max_weight
        )

    def ring_for(self, num_nodes: int) -> int:
        """The ring of a round of ``num_nodes``: ``ring_bits`` if set, else the smallest that fits."""
        if self.ring_bits is not None:
            return self.ring_bits
        return smallest_ring_bits(self.bits, num_nodes, self.max_weight, WORD_RINGS)

    def masking(
        self, num_nodes: int, vector_length: int, identity_keys: tuple[bytes, ...] = (), ring_bits: int | None = None
    ) -> MaskingConfig:
        """The masking configuration for ``num_nodes``; ConfigurationError if unsafe or infeasible.

        In active mode ``identity_keys`` are the nodes' keys in protocol-id
        order (stand-ins are used when none are given, to validate the rest).
        """
        if num_nodes < MIN_NODES:
            raise ConfigurationError(f"secure aggregation needs at least {MIN_NODES} nodes, got {num_nodes}")
        if self.max_nodes is not None and num_nodes > self.max_nodes:
            raise ConfigurationError(f"{num_nodes} nodes sampled, but the options allow at most {self.max_nodes}")
        keys = (identity_keys or _placeholder_keys(num_nodes)) if self.mode == ACTIVE else ()
        if self.protocol == SECAGG:
            return MaskingConfig.secagg(
                num_nodes,
                vector_length,
                threshold=self.threshold,
                ring_bits=ring_bits or self.ring_for(num_nodes),
                mode=self.mode,
                identity_keys=keys,
                corrupt_fraction=self.corrupt_fraction,
                dropout_per_round=self.dropout_per_round,
            )
        return MaskingConfig.secagg_plus(
            num_nodes,
            vector_length,
            ring_bits=ring_bits or self.ring_for(num_nodes),
            mode=self.mode,
            identity_keys=keys,
            corrupt_fraction=self.corrupt_fraction,
            dropout_fraction=self.dropout_fraction,
            dropout_per_round=self.dropout_per_round,
        )


class SecAggGrid(SecureGrid):
    """A Grid that runs training rounds through pairwise masking; everything else passes through.

    ``SecAggGrid(grid, options)`` is what a ServerApp hands to its strategy in
    place of ``grid``. Training batches (message type ``train`` or
    ``train.<action>``) must address distinct nodes and carry the same arrays;
    see the module docstring for the stages. :attr:`reports` records every
    secure round; :attr:`identities` the identity keys nodes announced (active mode).
    """

    def __init__(self, grid: Grid, options: SecAggOptions | None = None) -> None:
        self.options = options or SecAggOptions()
        if self.options.mode == ACTIVE:
            require_trusted_keys(self.options.trusted_keys, "SecAggOptions")
        super().__init__(grid, self.options.stage_timeout, self.options.poll_interval)
        self.schedule = ClipSchedule(clip_policy(self.options.clipping), self.options.clip)
        self.dp = None if self.options.dp is None else DPRounds(self.options.dp, self.options.dp_state_file)

    def secure_round(self, instructions: list[Message]) -> Message | None:
        """Run one masking session over the nodes ``instructions`` address.

        Returns the aggregated reply, or None if too few nodes remained (the
        reason is in the last :class:`RoundReport`).
        """
        started = time.perf_counter()
        batch = TrainingBatch.create(instructions, len(self.reports) + 1)
        sampled = batch.node_ids
        # Refuse unfit settings before anything is sent; the round's public compression seeds are drawn here.
        compression = RoundCompression.draw(batch.layout, self.options.sparsity, self.options.rotate)
        if self.dp is None:
            quantization = self.options.quantization(len(sampled))
            table = round_table(batch, self.options.clips, self.schedule, compression, quantization)
            self.options.masking(len(sampled), encoded_length(table))
        dropped: dict[int, str] = {}
        errors: dict[int, str] = {}
        if self.options.mode == ACTIVE:
            self.identify(batch, self.options.trusted_keys, dropped, errors)
            batch = batch.subset(node for node in sampled if node in self.identities)
        try:
            plan = MaskingPlan.create(
                batch, self.options, self.run.run_id, self.identities, self.schedule, self.dp, compression
            )
            skip = None if self.dp is None else self.dp.charge(batch.server_round, len(batch.node_ids))
            if skip is not None:
                raise ConfigurationError(skip)
        except ConfigurationError as exc:
            # A validated setting becomes infeasible here only through nodes lost in the identify
            # stage, a DP plan (fixed at the first round) its nodes' sums no longer hold h honest
            # inputs for, or the budget.
            LOGGER.warning("secure round %d skipped: %s", batch.server_round, exc)
            self.reports.append(batch.report(started, dropped, errors, reason=str(exc), node_ids=sampled))
            return None
        log = LOGGER.warning if plan.masking.mode == SEMI_HONEST else LOGGER.info
        log("secure round %d (%s, n = %d, t = %d, ring Z_(2^%d)): %s", batch.server_round, plan.masking.mode,
            plan.masking.num_clients, plan.masking.threshold, plan.masking.ring_bits, plan.masking.guarantee)
        state = server_start(plan.masking, context=plan.context)
        outbound = {client: wire.encode(plan.setup) for client in range(1, len(batch.node_ids) + 1)}
        try:
            while state.phase != ServerPhase.DONE:
                stage = stage_of_phase(state.phase)
                payloads = {batch.node_ids[client - 1]: data for client, data in outbound.items()}
                masking = plan.masking
                limit = masking_reply_limit(stage, masking.num_clients, masking.vector_length, masking.ring_bits)
                replies = self.stage(
                    batch, stage, payloads, dropped, errors, limit=limit, with_training=stage == MASKED_INPUT
                )
                inbound = {plan.protocol_ids[node]: data for node, data in replies.items()}
                known = len(state.rejected)
                state, outbound = server_step(state, inbound)
                # A reply the protocol rejected makes its node a dropout of this stage (after the last
                # stage, which sends nothing on, the rejections say who; an accepted input still counts).
                rejected = (
                    set(inbound) - set(outbound) if state.phase != ServerPhase.DONE
                    else {client for client, _ in state.rejected[known:]}
                )
                for client in sorted(rejected):
                    dropped.setdefault(batch.node_ids[client - 1], stage)
        except (ThresholdError, AuthenticationError) as exc:
            # AuthenticationError: a fault of one node the server can only see at Unmasking (a wrong
            # self-mask commitment, spec 12.9 "Limits"); the round cannot be unmasked, so it is
            # skipped with the reason naming that node, like a round below the threshold.
            reason = _skip_reason(exc, dropped, batch.node_ids)
            LOGGER.warning("secure round %d skipped: %s", batch.server_round, reason)
            errors.update(plan.rejections(state))
            self.forget_failed_identities(dropped, SETUP)
            self.reports.append(batch.report(started, dropped, errors, reason=reason, node_ids=sampled))
            return None
        errors.update(plan.rejections(state))
        self.forget_failed_identities(dropped, SETUP)
        return self._finish(plan, state, dropped, errors, started, sampled)

    def _finish(
        self,
        plan: MaskingPlan,
        state: ServerState,
        dropped: dict[int, str],
        errors: dict[int, str],
        started: float,
        sampled: tuple[int, ...],
    ) -> Message | None:
        assert state.result is not None  # the session is DONE
        result = state.result
        batch = plan.batch
        included = [batch.node_ids[client - 1] for client in result.included]
        integers = from_ring(plan.quantization.ring.check(result.aggregate), plan.quantization)
        clipping, epsilon = None, None
        try:
            if plan.dp is not None:
                mean, weight_total = decode_noised(integers, plan.dp, plan.quantization, len(included))
            else:
                assert plan.table is not None
                mean, weight_total, clipping = decode_segmented(integers, plan.table, plan.quantization, len(included))
        except SecAggError as exc:
            # InsufficientNoiseError, or a sum no honest inputs reach (OverflowDetectedError): a node's
            # input is out of range, which the masked inputs hide until the sum, and the sum does not
            # say whose; the round is skipped with the reason, like one below the threshold.
            reason = str(exc) if isinstance(exc, InsufficientNoiseError) else f"the unmasked sum is impossible: {exc}"
            LOGGER.warning("secure round %d skipped: %s", batch.server_round, reason)
            self.reports.append(batch.report(started, dropped, errors, reason=reason, node_ids=sampled))
            return None
        if plan.dp is not None:
            assert self.dp is not None
            epsilon = self.dp.spent()
        else:
            assert clipping is not None
            self.schedule.observe(clipping)
            if plan.compression is not None:
                mean = plan.compression.expand(mean, batch.layout)
        report = batch.report(
            started, dropped, errors, aggregate=result.aggregate, included=included, weight_total=weight_total,
            node_ids=sampled, clipping=clipping, epsilon_spent=epsilon,
        )
        self.reports.append(report)
        LOGGER.info(
            "secure round %d: %d of %d nodes aggregated in %.1f s; %s",
            batch.server_round, len(report.included), len(sampled), report.seconds,
            f"clipped {report.clipped_fraction:.3%} of the coordinates" if epsilon is None
            else f"DP, epsilon spent {epsilon:.4g}",
        )
        return aggregated_reply(batch, mean, self.options.weight_key, weight_total)


def _skip_reason(exc: SecAggError, dropped: Mapping[int, str], node_ids: tuple[int, ...]) -> str:
    """Why a round was skipped: the nodes that dropped (by node id, with their stage), then
    the protocol's message, whose client ids are protocol ids (spelled out)."""
    lost = ", ".join(f"{node} at {stage}" for node, stage in sorted(dropped.items()))
    return (
        f"round skipped, nodes that dropped: {lost or 'none'}; protocol: {exc} "
        f"(protocol ids 1..{len(node_ids)} are nodes {list(node_ids)})"
    )
