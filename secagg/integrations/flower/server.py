"""Server side: a Flower Grid that runs every training round as a secure aggregation.

:class:`SecAggGrid` wraps the Grid a ServerApp receives. Hand it to any
strategy (``FedAvg().start(grid=SecAggGrid(grid), ...)``): evaluation and other
messages pass through unchanged, and each batch of *training* messages becomes
one masking session (:mod:`secagg.masking`) over the sampled nodes:

1. ``setup``: each node gets a :class:`~secagg.integrations.flower.protocol.RoundSetup`
   (node ids -> protocol ids 1..n, masking and quantization settings, the
   round context) and answers with fresh public keys;
2. ``share-keys``: the server relays the key roster; nodes answer with
   encrypted Shamir shares for their neighbours;
3. ``masked-input``: the server delivers the shares together with the
   strategy's training content; each node trains, and answers with its masked
   weighted quantized update;
4. (``consistency-check`` in active mode, then) ``unmask``: survivors reveal
   the shares the server needs to remove the masks.

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

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.proto.node_pb2 import NodeInfo
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from secagg.encoding import QuantizationConfig
from secagg.errors import ConfigurationError, SecAggError, ThresholdError
from secagg.integrations.flower._records import model_arrays, read_stage, stage_content
from secagg.integrations.flower.protocol import (
    MASKED_INPUT,
    ArrayLayout,
    RoundSetup,
    arrays_digest,
    decode_sum,
    flatten_arrays,
    round_context,
    stage_of_phase,
    unflatten_arrays,
)
from secagg.masking import MaskingConfig, ServerPhase, ServerState, server_start, server_step
from secagg.masking.config import MAX_CLIENTS
from secagg.ring import RingVector
from secagg.wire import encode

__all__ = ["DEFAULT_CLIP", "DEFAULT_MAX_WEIGHT", "MIN_NODES", "RoundReport", "SecAggGrid", "SecAggOptions"]

LOGGER = logging.getLogger("secagg.flower")

MIN_NODES = 3
"""The fewest nodes a masking session can have."""
DEFAULT_CLIP = 0.5
"""Default clip of update coordinates (updates are local minus global model)."""
DEFAULT_MAX_WEIGHT = 4096
"""Default public bound on one node's weight (its example count)."""
SECAGG = "secagg"
SECAGG_PLUS = "secagg+"


@dataclass(frozen=True)
class SecAggOptions:
    """How secure rounds are run; validated here, so an unsafe setting never starts.

    Attributes:
        protocol: ``"secagg+"`` (sparse Harary graph, k and t derived from the
            fractions) or ``"secagg"`` (complete graph).
        clip: update coordinates are clipped to ``[-clip, clip]`` before quantization.
        bits: quantization bits per value, sign included.
        ring_bits: 32 or 64: the ring the masked sums live in.
        max_weight: public bound on one node's weight (the value under
            ``weight_key``); a larger weight makes that node drop out.
        weight_key: the MetricRecord key of the weight in a node's training
            reply, and of the weight total in the aggregated reply (FedAvg's
            ``weighted_by_key``).
        threshold: SecAgg only: the Shamir threshold (default: a majority).
        corrupt_fraction: assumed fraction of nodes colluding with the server
            (default 0.05 for secagg+, 0 for secagg).
        dropout_fraction: secagg+ only: assumed fraction of nodes dropping out (default 0.1).
        stage_timeout: seconds to wait for the replies of one stage.
        poll_interval: seconds between two pulls of replies within a stage.
        max_nodes: if set, the settings are validated for rounds of up to this
            many nodes now; rounds with more nodes are refused. Otherwise each
            round is validated for its sampled nodes before anything is sent.
    """

    protocol: str = SECAGG_PLUS
    clip: float = DEFAULT_CLIP
    bits: int = 16
    ring_bits: int = 32
    max_weight: int = DEFAULT_MAX_WEIGHT
    weight_key: str = "num-examples"
    threshold: int | None = None
    corrupt_fraction: float | None = None
    dropout_fraction: float | None = None
    stage_timeout: float = 60.0
    poll_interval: float = 0.5
    max_nodes: int | None = None

    def __post_init__(self) -> None:
        if self.protocol not in (SECAGG, SECAGG_PLUS):
            raise ConfigurationError(f"protocol must be {SECAGG!r} or {SECAGG_PLUS!r}, got {self.protocol!r}")
        if self.protocol == SECAGG_PLUS and self.threshold is not None:
            raise ConfigurationError("secagg+ derives its threshold; set corrupt_fraction and dropout_fraction")
        if self.protocol == SECAGG and self.dropout_fraction is not None:
            raise ConfigurationError("dropout_fraction applies to secagg+ only")
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
        self.masking(nodes, 2)

    def quantization(self, num_nodes: int) -> QuantizationConfig:
        """The quantization for ``num_nodes``; ConfigurationError if the ring could overflow."""
        return QuantizationConfig(self.clip, self.bits, num_nodes, self.ring_bits, max_weight=self.max_weight)

    def masking(self, num_nodes: int, vector_length: int) -> MaskingConfig:
        """The masking configuration for ``num_nodes``; ConfigurationError if unsafe or infeasible."""
        if num_nodes < MIN_NODES:
            raise ConfigurationError(f"secure aggregation needs at least {MIN_NODES} nodes, got {num_nodes}")
        if self.max_nodes is not None and num_nodes > self.max_nodes:
            raise ConfigurationError(f"{num_nodes} nodes sampled, but the options allow at most {self.max_nodes}")
        if self.protocol == SECAGG:
            return MaskingConfig.secagg(
                num_nodes,
                vector_length,
                threshold=self.threshold,
                ring_bits=self.ring_bits,
                corrupt_fraction=self.corrupt_fraction or 0.0,
            )
        return MaskingConfig.secagg_plus(
            num_nodes,
            vector_length,
            ring_bits=self.ring_bits,
            corrupt_fraction=0.05 if self.corrupt_fraction is None else self.corrupt_fraction,
            dropout_fraction=0.1 if self.dropout_fraction is None else self.dropout_fraction,
        )


@dataclass(frozen=True)
class RoundReport:
    """What one secure round did (the server's view, nothing more).

    Attributes:
        server_round: the strategy's round number.
        node_ids: the sampled nodes, sorted (protocol id = position + 1).
        included: nodes whose update is in the aggregate.
        dropped: node -> the stage in which it went missing (timeout, error reply, or a
            reply the protocol rejected).
        aggregate: the unmasked ring sum ``(sum w_k q_k, sum w_k)``, or None if skipped.
        weight_total: ``sum w_k`` over ``included`` (0 if skipped).
        seconds: wall-clock time of the round.
        skipped_reason: why no aggregate was produced, or None.
        errors: node -> the reason it gave (error replies, malformed replies).
    """

    server_round: int
    node_ids: tuple[int, ...]
    included: frozenset[int]
    dropped: Mapping[int, str]
    aggregate: RingVector | None
    weight_total: int
    seconds: float
    skipped_reason: str | None = None
    errors: Mapping[int, str] = field(default_factory=dict)


class SecAggGrid(Grid):  # type: ignore[misc,unused-ignore]  # Grid is Any where flwr is not installed
    """A Grid that runs training rounds through secure aggregation; everything else passes through.

    ``SecAggGrid(grid, options)`` is what a ServerApp hands to its strategy in
    place of ``grid``. Training batches (message type ``train`` or
    ``train.<action>``) must address distinct nodes and carry the same arrays;
    see the module docstring for the stages. :attr:`reports` records every
    secure round.
    """

    def __init__(self, grid: Grid, options: SecAggOptions | None = None) -> None:
        self._grid = grid
        self.options = options or SecAggOptions()
        self.reports: list[RoundReport] = []

    # --- the Grid interface, delegated ------------------------------------------------

    def set_run(self, run: Run) -> None:
        """Delegate to the wrapped grid."""
        self._grid.set_run(run)

    @property
    def run(self) -> Run:
        """The wrapped grid's run."""
        return self._grid.run

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None
    ) -> Message:
        """Delegate to the wrapped grid."""
        return self._grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        """Delegate to the wrapped grid."""
        node_ids: Iterable[int] = self._grid.get_node_ids()
        return node_ids

    def get_nodes(self) -> Iterable[NodeInfo]:
        """Delegate to the wrapped grid."""
        nodes: Iterable[NodeInfo] = self._grid.get_nodes()
        return nodes

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Delegate to the wrapped grid (no secure aggregation on this low-level path)."""
        message_ids: Iterable[str] = self._grid.push_messages(messages)
        return message_ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """Delegate to the wrapped grid."""
        replies: Iterable[Message] = self._grid.pull_messages(message_ids)
        return replies

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """Training batches: one secure round, returning at most one aggregated reply.

        Other batches are sent through the wrapped grid unchanged. ``timeout``
        is ignored for secure rounds: each stage waits ``options.stage_timeout``.
        Raises ConfigurationError before sending anything if the batch or the
        settings are unfit for a secure round.
        """
        batch = list(messages)
        if not batch or any(m.metadata.message_type.split(".")[0] != MessageType.TRAIN for m in batch):
            replies: Iterable[Message] = self._grid.send_and_receive(batch, timeout=timeout)
            return replies
        reply = self.secure_round(batch)
        return [] if reply is None else [reply]

    # --- the secure round -------------------------------------------------------------

    def secure_round(self, instructions: list[Message]) -> Message | None:
        """Run one masking session over the nodes ``instructions`` address.

        Returns the aggregated reply, or None if too few nodes remained (the
        reason is in the last :class:`RoundReport`).
        """
        started = time.perf_counter()
        plan = _RoundPlan.create(instructions, self.options, self.run.run_id, len(self.reports) + 1)
        state = server_start(plan.masking, context=plan.context)
        outbound = {plan.setup.protocol_id(node): encode(plan.setup) for node in plan.setup.node_ids}
        dropped: dict[int, str] = {}
        errors: dict[int, str] = {}
        try:
            while state.phase != ServerPhase.DONE:
                stage = stage_of_phase(state.phase)
                inbound = self._stage(plan, stage, outbound, dropped, errors)
                state, outbound = server_step(state, inbound)
                if state.phase != ServerPhase.DONE:
                    # A reply the protocol rejected makes its node a dropout of this stage.
                    for client in sorted(set(inbound) - set(outbound)):
                        dropped.setdefault(plan.setup.node_ids[client - 1], stage)
        except ThresholdError as exc:
            LOGGER.warning("secure round %d skipped: %s", plan.server_round, exc)
            errors.update(plan.rejections(state))
            self.reports.append(plan.report(None, dropped, errors, started, str(exc)))
            return None
        errors.update(plan.rejections(state))
        return self._finish(plan, state, dropped, errors, started)

    def _stage(
        self,
        plan: _RoundPlan,
        stage: str,
        outbound: Mapping[int, bytes],
        dropped: dict[int, str],
        errors: dict[int, str],
    ) -> dict[int, bytes]:
        """Send one stage's messages, collect the replies keyed by protocol id."""
        messages = []
        for client, payload in sorted(outbound.items()):
            node = plan.setup.node_ids[client - 1]
            base = plan.training if stage == MASKED_INPUT else None
            messages.append(
                Message(
                    stage_content(stage, payload, base),
                    dst_node_id=node,
                    message_type=plan.message_type,
                    group_id=str(plan.server_round),
                )
            )
        replies = self._exchange(messages)
        inbound: dict[int, bytes] = {}
        for reply in replies:
            node = reply.metadata.src_node_id
            if node not in plan.protocol_ids:
                continue
            if reply.has_error():
                errors[node] = reply.error.reason or ""
                continue
            try:
                reply_stage, payload = read_stage(reply.content)
            except SecAggError as exc:
                errors[node] = str(exc)
                continue
            if reply_stage != stage:
                errors[node] = f"replied for stage {reply_stage!r} in stage {stage!r}"
                continue
            inbound[plan.protocol_ids[node]] = payload
        for client in outbound:
            node = plan.setup.node_ids[client - 1]
            if client not in inbound and node not in dropped:
                dropped[node] = stage
                LOGGER.info("node %d dropped out in stage %s: %s", node, stage, errors.get(node, "no reply"))
        return inbound

    def _exchange(self, messages: list[Message]) -> list[Message]:
        """Push a stage's messages and pull replies every ``poll_interval`` until all
        arrived or ``stage_timeout`` passed (Flower's own send_and_receive polls every 3 s)."""
        pending = set(self._grid.push_messages(messages))
        deadline = time.monotonic() + self.options.stage_timeout
        replies: list[Message] = []
        while pending:
            arrived = list(self._grid.pull_messages(pending))
            replies.extend(arrived)
            pending.difference_update(reply.metadata.reply_to_message_id for reply in arrived)
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(min(self.options.poll_interval, max(0.0, deadline - time.monotonic())))
        return replies

    def _finish(
        self, plan: _RoundPlan, state: ServerState, dropped: dict[int, str], errors: dict[int, str], started: float
    ) -> Message:
        assert state.result is not None  # the session is DONE
        result = state.result
        mean, weight_total = decode_sum(result.aggregate, plan.quantization, len(result.included))
        arrays = unflatten_arrays(plan.base + mean, plan.layout)
        content = RecordDict()
        for spec, array in zip(plan.layout.specs, arrays, strict=True):
            if spec.record not in content:
                content[spec.record] = ArrayRecord()
            content.array_records[spec.record][spec.name] = Array(np.ascontiguousarray(array))
        content["metrics"] = MetricRecord({self.options.weight_key: weight_total})
        report = plan.report(result.aggregate, dropped, errors, started, None, result.included, weight_total)
        self.reports.append(report)
        LOGGER.info(
            "secure round %d: %d of %d nodes aggregated in %.1f s",
            plan.server_round,
            len(report.included),
            len(plan.setup.node_ids),
            report.seconds,
        )
        return Message(content, reply_to=plan.template)


@dataclass(frozen=True)
class _RoundPlan:
    """Everything fixed before a secure round sends its first message."""

    template: Message
    message_type: str
    server_round: int
    training: RecordDict
    base: np.ndarray
    layout: ArrayLayout
    quantization: QuantizationConfig
    masking: MaskingConfig
    setup: RoundSetup
    context: bytes
    protocol_ids: Mapping[int, int]

    @classmethod
    def create(cls, instructions: list[Message], options: SecAggOptions, run_id: int, counter: int) -> _RoundPlan:
        nodes = [m.metadata.dst_node_id for m in instructions]
        if len(set(nodes)) != len(nodes):
            raise ConfigurationError("a secure round needs one training message per node")
        if len({m.metadata.message_type for m in instructions}) != 1:
            raise ConfigurationError("a secure round's training messages must share one message type")
        template = instructions[0]
        training = template.content
        base, layout = flatten_arrays(model_arrays(training))
        if base.shape[0] == 0:
            raise ConfigurationError("a secure round needs model arrays in the training messages")
        digest = arrays_digest(base, layout)
        for message in instructions[1:]:
            vector, other = flatten_arrays(model_arrays(message.content))
            if other != layout or arrays_digest(vector, other) != digest:
                raise ConfigurationError("a secure round needs the same arrays in every training message")
        quantization = options.quantization(len(nodes))
        masking = options.masking(len(nodes), base.shape[0] + 1)
        configured = template.content.config_records
        server_round = counter
        for record in configured.values():
            value = record.get("server-round")
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 32:
                server_round = value
        setup = RoundSetup.create(server_round, nodes, masking, quantization, options.weight_key, digest)
        return cls(
            template=template,
            message_type=template.metadata.message_type,
            server_round=server_round,
            training=training,
            base=base,
            layout=layout,
            quantization=quantization,
            masking=masking,
            setup=setup,
            context=round_context(run_id, server_round, digest),
            protocol_ids={node: index for index, node in enumerate(setup.node_ids, start=1)},
        )

    def rejections(self, state: ServerState) -> dict[int, str]:
        """Messages the protocol rejected (malformed or inconsistent), by node."""
        return {self.setup.node_ids[client - 1]: reason for client, reason in state.rejected}

    def report(
        self,
        aggregate: RingVector | None,
        dropped: Mapping[int, str],
        errors: Mapping[int, str],
        started: float,
        reason: str | None,
        included: frozenset[int] = frozenset(),
        weight_total: int = 0,
    ) -> RoundReport:
        return RoundReport(
            server_round=self.server_round,
            node_ids=self.setup.node_ids,
            included=frozenset(self.setup.node_ids[client - 1] for client in included),
            dropped=dict(dropped),
            aggregate=aggregate,
            weight_total=weight_total,
            seconds=time.perf_counter() - started,
            skipped_reason=reason,
            errors=dict(errors),
        )

