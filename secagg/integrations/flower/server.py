"""Server side: a Flower Grid that runs every training round as a masking session.

:class:`SecAggGrid` wraps the Grid a ServerApp receives. Hand it to any
strategy (``FedAvg().start(grid=SecAggGrid(grid, SecAggOptions(trusted_keys=federation)), ...)``,
``federation`` the federation's identity public keys: active mode needs them): evaluation and other
messages pass through unchanged (a node whose policy requires DP refuses evaluate and query
messages unless its mod opts in: :mod:`~secagg.integrations.flower.client`), and each batch of
*training* messages becomes one masking session (:mod:`secagg.masking`) over the sampled nodes:

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
(they would reveal per-node information). If too few nodes remain, or the
strategy samples fewer nodes than a secure round needs (or more than ``max_nodes``),
the round returns no reply, the strategy keeps its current model, the reason is in
:attr:`SecAggGrid.reports` and the run goes on.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping

from flwr.app import Message
from flwr.serverapp import Grid

from secagg import wire
from secagg.clipping import ClipSchedule, clip_policy
from secagg.encoding import from_ring
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
    identify_shortfall,
    require_trusted_keys,
)
from secagg.integrations.flower._limits import masking_reply_limit
from secagg.integrations.flower._masking_options import DEFAULT_CLIP, DEFAULT_MAX_WEIGHT, MIN_NODES, SecAggOptions
from secagg.integrations.flower._masking_plan import MaskingPlan, add_reasons, round_table
from secagg.integrations.flower.clipping import decode_segmented, encoded_length
from secagg.integrations.flower.compression import RoundCompression
from secagg.integrations.flower.dp import DPRounds, decode_noised
from secagg.integrations.flower.protocol import MASKED_INPUT, SETUP, stage_of_phase
from secagg.integrations.flower.run_binding import bind_run_config, run_config_digest
from secagg.masking import ACTIVE, SEMI_HONEST, ServerPhase, ServerState, server_start, server_step
from secagg.masking.server_state import abort_report, summary_list, without_liars

__all__ = ["DEFAULT_CLIP", "DEFAULT_MAX_WEIGHT", "MIN_NODES", "RoundReport", "SecAggGrid", "SecAggOptions"]

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
        if self.options.run_config is not None:  # bound with the training content, before anything is sent
            bind_run_config(instructions, run_config_digest(self.options.run_config))
        batch = TrainingBatch.create(instructions, len(self.reports) + 1)
        sampled = batch.node_ids
        # Refuse unfit settings before anything is sent; the round's public compression seeds are drawn here.
        compression = RoundCompression.draw(batch.layout, self.options.sparsity, self.options.rotate)
        dropped: dict[int, str] = {}
        errors: dict[int, str] = {}
        if self.dp is None:
            try:  # the options were validated at construction: what fails here is this round's node count
                quantization = self.options.quantization(len(sampled))
            except ConfigurationError as exc:
                return self._skip(batch, started, dropped, errors, str(exc))
            table = round_table(batch, self.options.clips, self.schedule, compression, quantization,
                                self.options.rotate)
            try:
                self.options.masking(len(sampled), encoded_length(table))
            except ConfigurationError as exc:
                return self._skip(batch, started, dropped, errors, str(exc))
        if self.options.mode == ACTIVE:
            self.identify(batch, self.options.trusted_keys, dropped, errors)
            batch = batch.subset(node for node in sampled if node in self.identities)
            if len(batch.node_ids) < MIN_NODES:  # said so, not as the quantization's refusal of 0 summands
                reason = identify_shortfall(len(batch.node_ids), len(sampled), "masking", MIN_NODES)
                return self._skip(batch, started, dropped, errors, reason, sampled)
        try:
            plan = MaskingPlan.create(
                batch, self.options, self.run.run_id, self.identities, self.schedule, self.dp, compression
            )
            skip = None if self.dp is None else self.dp.charge(batch.server_round, len(batch.node_ids))
            if skip is not None:
                raise ConfigurationError(skip)
        except ConfigurationError as exc:
            # A validated setting becomes infeasible here only through the round's node count (too
            # few sampled, or left after the identify stage), a DP plan (fixed at the first round)
            # its nodes' sums no longer hold h honest inputs for, or the budget.
            return self._skip(batch, started, dropped, errors, str(exc), sampled)
        log = LOGGER.warning if plan.masking.mode == SEMI_HONEST else LOGGER.info
        log("secure round %d (%s, n = %d, t = %d, ring Z_(2^%d)): %s", batch.server_round, plan.masking.mode,
            plan.masking.num_clients, plan.masking.threshold, plan.masking.ring_bits, plan.masking.guarantee)
        state = server_start(plan.masking, context=plan.context)
        outbound = {client: wire.encode(plan.setup) for client in range(1, len(batch.node_ids) + 1)}
        inbound: dict[int, bytes] = {}
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
                # A share found off its polynomial leaves nobody out (its holder and owner are named
                # in the errors: plan.rejections).
                rejected = (
                    set(inbound) - set(outbound) if state.phase != ServerPhase.DONE
                    else {client for client, _ in without_liars(state.rejected, state.share_liars)[known:]}
                )
                for client in sorted(rejected):
                    dropped.setdefault(batch.node_ids[client - 1], stage)
        except (ThresholdError, AuthenticationError) as exc:
            # AuthenticationError: a fault of one node the server can only see at Unmasking (a wrong
            # self-mask commitment, spec 12.9 "Limits"); the round cannot be unmasked, so it is
            # skipped with the reason naming that node, like a round below the threshold.
            self._abort(plan, state, stage, exc, dropped, errors, started, sampled)
            return None
        add_reasons(errors, plan.rejections(state))
        self.forget_failed_identities(dropped, SETUP)
        return self._finish(plan, state, dropped, errors, started, sampled)

    def _abort(
        self,
        plan: MaskingPlan,
        state: ServerState,
        stage: str,
        exc: SecAggError,
        dropped: dict[int, str],
        errors: dict[int, str],
        started: float,
        sampled: tuple[int, ...],
    ) -> None:
        """Record a session that aborted in ``stage``'s step from ``state`` (the state before it: an
        aborting step returns none): the strategy gets no reply. The step's own records come with
        its error (:func:`~secagg.masking.abort_report`): its rejected nodes become dropouts of
        ``stage`` with the protocol's reasons, and its refusal claims are reported, as in a
        completed round (:meth:`secure_round`, :meth:`_finish`)."""
        batch = plan.batch
        report = abort_report(exc)
        if report is not None:
            for client, _ in without_liars(report.server_rejected, report.share_liars)[len(state.rejected):]:
                dropped.setdefault(batch.node_ids[client - 1], stage)
            state = dataclasses.replace(state, rejected=report.server_rejected, refusals=report.share_refusals,
                                        share_liars=report.share_liars)
        add_reasons(errors, plan.rejections(state))
        refusals = plan.refusals(state)
        rejected = len({client for client, _ in without_liars(state.rejected, state.share_liars)})
        reason = _skip_reason(exc, dropped, batch.node_ids, rejected, len(refusals))
        LOGGER.warning("secure round %d skipped: %s", batch.server_round, reason)
        self.forget_failed_identities(dropped, SETUP)
        self.reports.append(batch.report(started, dropped, errors, reason=reason, node_ids=sampled,
                                         guarantee=plan.masking.guarantee, share_refusals=refusals,
                                         epsilon_spent=self.dp.reported() if self.dp is not None else None))

    def _skip(
        self,
        batch: TrainingBatch,
        started: float,
        dropped: dict[int, str],
        errors: dict[int, str],
        reason: str,
        sampled: tuple[int, ...] | None = None,
    ) -> Message | None:
        """Record a round refused before its configuration was fixed (no guarantee): the strategy
        gets no reply (None) and keeps its model, and the run goes on."""
        LOGGER.warning("secure round %d skipped: %s", batch.server_round, reason)
        self.reports.append(batch.report(started, dropped, errors, reason=reason, node_ids=sampled or batch.node_ids,
                                         epsilon_spent=self.dp.reported() if self.dp is not None else None))
        return None

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
        refusals = plan.refusals(state)
        if refusals:  # one line for all of them: each claim's sentence is in the report
            LOGGER.warning("secure round %d: %s", batch.server_round, _claims_summary(refusals))
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
            self.reports.append(batch.report(started, dropped, errors, reason=reason, node_ids=sampled,
                                             guarantee=plan.masking.guarantee, share_refusals=refusals,
                                             epsilon_spent=self.dp.reported() if self.dp is not None else None))
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
            node_ids=sampled, clipping=clipping, epsilon_spent=epsilon, guarantee=plan.masking.guarantee,
            share_refusals=refusals,
        )
        self.reports.append(report)
        LOGGER.info(
            "secure round %d: %d of %d nodes aggregated in %.1f s; %s",
            batch.server_round, len(report.included), len(sampled), report.seconds,
            f"clipped {report.clipped_fraction:.3%} of the coordinates" if epsilon is None
            else f"DP, epsilon spent {epsilon:.4g}",
        )
        return aggregated_reply(batch, mean, self.options.weight_key, weight_total)


def _skip_reason(
    exc: SecAggError, dropped: Mapping[int, str], node_ids: tuple[int, ...], rejected: int = 0, claims: int = 0
) -> str:
    """Why a round was skipped: the nodes that dropped (by node id, with their stage), how many
    the protocol rejected and how many share-box refusal claims the round holds (both in the
    report's structured fields), then the protocol's short message, whose client ids are protocol
    ids (spelled out). Each list names up to :data:`~secagg.masking.server_state.SUMMARY_IDS`
    entries, then counts the rest (the report's ``dropped`` holds every node)."""
    lost = summary_list([f"{node} at {stage}" for node, stage in sorted(dropped.items())])
    notes = f"; {rejected} rejected by the protocol (see dropped and errors)" if rejected else ""
    if claims:
        notes += f"; {claims} share-box refusal claim{'' if claims == 1 else 's'} (see share_refusals)"
    return (
        f"round skipped, nodes that dropped: {lost or 'none'}{notes}; protocol: {exc} "
        f"(protocol ids 1..{len(node_ids)} are nodes [{summary_list([str(node) for node in node_ids])}])"
    )


def _claims_summary(refusals: Mapping[tuple[int, int], str]) -> str:
    """One log line for a round's refusal claims: how many, and up to
    :data:`~secagg.masking.server_state.SUMMARY_IDS` pairs (receiving node of sending node)."""
    pairs = [f"{receiver} of {sender}" for receiver, sender in refusals]
    shown = summary_list(pairs)
    return (
        f"{len(pairs)} share-box refusal claim{'' if len(pairs) == 1 else 's'} ({shown}: receiving node of sending "
        "node, each the receiving node's word, unproven; see the report's share_refusals)"
    )
