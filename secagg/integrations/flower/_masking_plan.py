"""What a masking round fixes before it sends its setup: quantization, clip table or DP plan,
compression, masking configuration and the bound :class:`RoundSetup`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from secagg.clipping import ClipSchedule
from secagg.dp.calibration import NoisePlan
from secagg.encoding import QuantizationConfig
from secagg.errors import ConfigurationError
from secagg.integrations.flower._round_report import TrainingBatch
from secagg.integrations.flower.clipping import check_table, encoded_length, layout_table
from secagg.integrations.flower.compression import ROTATED, RoundCompression
from secagg.integrations.flower.dp import DPRounds, check_unmasked_sums, dp_parameters, unmasked_sums
from secagg.integrations.flower.protocol import RoundSetup, round_context
from secagg.masking import ACTIVE, MaskingConfig, ServerState
from secagg.masking.server_state import refusal_reason, without_liars
from secagg.segments import Segment, SegmentTable

if TYPE_CHECKING:
    from secagg.integrations.flower._masking_options import SecAggOptions

__all__ = ["MaskingPlan", "add_reasons", "bound_table", "round_table", "suspect_reasons"]


def round_table(
    batch: TrainingBatch,
    clips: Mapping[str, float] | None,
    schedule: ClipSchedule,
    compression: RoundCompression | None,
    quantization: QuantizationConfig,
    rotate: bool,
) -> SegmentTable:
    """The round's clip table: one segment per array with the schedule's clips (a named starting
    clip until the schedule has moved it), as the round's compression makes it (restricted to the
    subset; one rotated segment); ConfigurationError if its counts could overflow, in this round
    or in any round a random subset of the same options (``rotate`` the option) could draw
    (:func:`bound_table`): refused whatever this round drew, not by the luck of a later draw."""
    starting = layout_table(batch.layout, schedule.unseen(clips))
    table = schedule.table(batch.layout.size, starting)
    if compression is not None:
        bound = bound_table(table, compression, rotate)
        try:
            check_table(schedule.table(bound.size, bound), quantization)
        except ConfigurationError as exc:
            longest = max(s.length for s in bound.segments)
            raise ConfigurationError(
                f"{exc} (a round's random subset can put up to {longest} values in one segment: refused "
                "whatever this round drew; send a smaller fraction, or raise bits or max_weight)"
                if compression.subset is not None and compression.subset.seed is not None else str(exc)
            ) from exc
        compressed = compression.table(table)
        table = schedule.table(compressed.size, compressed)
    return check_table(table, quantization)


def bound_table(full: SegmentTable, compression: RoundCompression | None, rotate: bool) -> SegmentTable:
    """Segments at least as long as those of any round of these options, for the model's table
    ``full``: with a random subset of k coordinates, whose segments change with each round's draw,
    each array of n values as one segment of min(n, k) (all k drawn in it) and, with ``rotate``,
    the float arrays as one :data:`ROTATED` block of min(f, k) floats (f the model's: the largest
    padding a draw can give); otherwise the round's own table, the same every round. What a round
    checks its counts against, so that a setting some draw would overflow is refused whatever this
    round drew, and no later draw can end the run."""
    if compression is None:
        return full
    subset = compression.subset
    if subset is None or subset.seed is None:
        return compression.table(full)
    k = subset.count
    if not rotate and compression.rotation is None:
        return SegmentTable(tuple(Segment(s.name, min(s.length, k), s.clip, s.integer) for s in full.segments))
    floats = sum(s.length for s in full.segments if not s.integer)
    integers = tuple(Segment(s.name, min(s.length, k), None, True) for s in full.segments if s.integer)
    rotated = (Segment(ROTATED, 1 << (min(floats, k) - 1).bit_length()),) if floats else ()
    return SegmentTable((*rotated, *integers))


@dataclass(frozen=True)
class MaskingPlan:
    """Everything a masking round fixes before it sends its setup."""

    batch: TrainingBatch
    quantization: QuantizationConfig
    masking: MaskingConfig
    setup: RoundSetup
    context: bytes
    protocol_ids: Mapping[int, int]
    table: SegmentTable | None
    dp: NoisePlan | None
    compression: RoundCompression | None

    @classmethod
    def create(
        cls,
        batch: TrainingBatch,
        options: SecAggOptions,
        run_id: int,
        identities: Mapping[int, bytes],
        schedule: ClipSchedule,
        dp: DPRounds | None,
        compression: RoundCompression | None,
    ) -> MaskingPlan:
        """The plan of ``batch``'s round; ConfigurationError if a setting is unfit for its nodes."""
        nodes = batch.node_ids
        keys = tuple(identities[node] for node in nodes) if options.mode == ACTIVE else ()
        size = batch.layout.size
        table, plan = None, None
        if dp is None:
            quantization = options.quantization(len(nodes))
            table = round_table(batch, options.clips, schedule, compression, quantization, options.rotate)
            masking = options.masking(len(nodes), encoded_length(table), keys)
            packed = b"" if compression is None else compression.parameters()
            extra = {"segments": table.describe(), "compression": packed}
        else:
            sums = unmasked_sums(options.masking(len(nodes), size, keys, ring_bits=64))
            plan, quantization = dp.plan_round(len(nodes), size, sums, options.max_weight, options.ring_bits)
            masking = options.masking(len(nodes), size, keys, ring_bits=quantization.ring_bits)
            # The nodes refuse a round whose smallest unmasked sum holds fewer than h honest inputs
            # (the plan is fixed at the first DP round; a later round may have other nodes): skip it here.
            check_unmasked_sums(plan, masking)
            extra = {"dp": dp_parameters(plan)}
        setup = RoundSetup.create(
            batch.server_round, nodes, masking, quantization, options.weight_key, batch.digest, run_id,
            batch.parameters, message_type=batch.message_type, **extra,
        )
        return cls(
            table=table,
            dp=plan,
            compression=compression,
            batch=batch,
            quantization=quantization,
            masking=setup.bound_masking_config(run_id, batch.message_type),
            setup=setup,
            context=round_context(run_id, batch.server_round, batch.digest),
            protocol_ids={node: index for index, node in enumerate(nodes, start=1)},
        )

    def rejections(self, state: ServerState) -> dict[int, str]:
        """Messages the protocol rejected (malformed or inconsistent), by node; and, for each share
        found off its secret's polynomial at ``unmask``, both its holder and its owner, with the
        reason in node ids (:func:`suspect_reasons`)."""
        nodes = self.batch.node_ids
        reasons = {nodes[client - 1]: reason for client, reason in without_liars(state.rejected, state.share_liars)}
        for node, reason in suspect_reasons(nodes, state.share_liars).items():
            reasons[node] = f"{reasons[node]}; {reason}" if node in reasons else reason
        return reasons

    def refusals(self, state: ServerState) -> dict[tuple[int, int], str]:
        """The share boxes nodes say they refused, (receiving node, sending node) -> why (their claims)."""
        nodes = self.batch.node_ids
        return {
            (nodes[receiver - 1], nodes[sender - 1]): refusal_reason(nodes[receiver - 1], nodes[sender - 1], "node")
            for receiver, sender in state.refusals
        }


def add_reasons(errors: dict[int, str], reasons: Mapping[int, str]) -> None:
    """Add ``reasons`` (node -> why) to a round's ``errors``, keeping what is there: a node named for
    a share off its polynomial as its owner may have dropped in an earlier stage with a reason of
    its own (an error reply, a reply over its limit), which naming it must not replace."""
    for node, reason in reasons.items():
        known = errors.get(node)
        errors[node] = reason if known is None or known == reason else f"{known}; {reason}"


def suspect_reasons(nodes: tuple[int, ...], share_liars: tuple[tuple[int, int, str], ...]) -> dict[int, str]:
    """Node -> why it is named for the shares found off their polynomial (``(holder, owner, secret)``
    in protocol ids, 1 the first of ``nodes``): the holder revealed a wrong share or the owner dealt
    it one, which the server cannot tell apart (docs/spec.md 12.9), so both are named, neither as a
    dropout. A node named for several gets the first sentence and how many more."""
    named: dict[int, list[str]] = {}
    for holder, owner, what in share_liars:
        held, owned = nodes[holder - 1], nodes[owner - 1]
        sentence = (
            f"node {held}'s revealed share of node {owned}'s {what} lies off the secret's polynomial: node {held} "
            f"revealed a wrong share or node {owned} dealt it one (the server cannot tell which); outvoted if "
            "t other shares agree, neither node is left out for it"
        )
        for node in dict.fromkeys((held, owned)):
            named.setdefault(node, []).append(sentence)
    return {
        node: sentences[0] + (f" (and {len(sentences) - 1} more such shares)" if len(sentences) > 1 else "")
        for node, sentences in named.items()
    }
