"""What a secure round fixes and what it reports: the batch, the report, the strategy's one reply.

:class:`TrainingBatch` is what a round fixes from the strategy's training
messages before sending anything; :class:`RoundReport` is what it did (the
server's view); :func:`aggregated_reply` is the one reply the strategy sees.
Shared by the masking and Paillier workflows (:mod:`~secagg.integrations.flower._grid`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict

from secagg.errors import ConfigurationError, DecodeError
from secagg.guarantee import Guarantee
from secagg.integrations.flower._records import check_bindable, model_arrays, training_parameters
from secagg.integrations.flower.bound_plan import BOUND_DP_RECORD
from secagg.integrations.flower.protocol import ArrayLayout, arrays_digest, flatten_arrays, unflatten_arrays
from secagg.segments import ClippingReport

__all__ = ["RoundReport", "TrainingBatch", "aggregated_reply"]


@dataclass(frozen=True)
class RoundReport:
    """What one secure round did (the server's view, nothing more).

    Attributes:
        server_round: the strategy's round number.
        node_ids: the sampled nodes, sorted. A masking round's protocol id k is the k-th of them
            that reached the setup (in active mode, not dropped at ``identify``); a skipped round's
            reason spells out at most ten of that mapping.
        included: nodes whose update is in the aggregate.
        dropped: node -> the stage in which it went missing (timeout, error reply, more than
            one reply to one request, or a reply the protocol rejected). ``identify``: also a
            node that announced a key off the server's ``trusted_keys`` (left out, the round
            goes on); ``setup``: also a node that refused the setup, e.g. because its own
            trusted list lacks another node's key (its word: that node stays in).
        aggregate: the integer sum as the protocol revealed it, or None if skipped:
            masking ``(sum w_k q_k, clipped counts per array, sum w_k)`` in the ring, as
            unmasked (a DP round: the noised ``sum round(delta_k * scale) + noise``);
            Paillier ``(sum w_k q_k, sum w_k)`` as int64, as decrypted.
        weight_total: ``sum w_k`` over ``included`` (0 if skipped).
        seconds: wall-clock time of the round.
        skipped_reason: why no aggregate was produced, or None.
        errors: node -> the reason it gave (error replies, its own or the SuperLink's for it, whose
            text is escaped to one printable line and cut at 1000 escaped characters, ``MAX_REASON_CHARS``;
            malformed or rejected replies; more than one reply to one request); a key off the
            server's list is given in hex; a node refusing a key it does not trust names the
            node whose key it is. A share revealed at ``unmask`` that lies off its secret's
            polynomial names both its holder and the secret's owner (either may be at fault:
            docs/spec.md 12.9); neither is in ``dropped`` for it.
        clipping: the securely summed clipped counts per array with the round's clips
            (:class:`~secagg.segments.ClippingReport`; None in a DP round, where nothing
            is clipped, or when skipped).
        epsilon_spent: in a DP round, the epsilon spent per patient after charging it; a skipped
            DP round gives the spend so far (a round charged, then skipped, counts: its charge is
            not refunded), None if it was skipped before the accountant was opened.
        guarantee: what the round's configuration guarantees, computed for its actual nodes
            (colluders tolerated with a lying server, dropouts survived); None if the round was
            refused before its configuration was fixed.
        share_refusals: masking: ``(receiving node, sending node)`` -> why, for each share box the
            receiving node says it refused (its unmask reply left out a sender whose box it was
            relayed: the box did not open or held no well-formed bundle). The receiving node's
            claim, unproven (a bad box, one the relay altered, or a withheld share look alike to
            the server); the node stays in (docs/spec.md 12.8, round 4). A round aborted at
            ``unmask`` names them here too (its ``skipped_reason`` only counts them).

    A masking round that aborts fills ``dropped``, ``errors`` and ``share_refusals`` as a completed
    round does, the aborting stage's rejections included (the protocol's error carries them:
    :func:`~secagg.masking.abort_report`); its ``skipped_reason`` is a short summary that points
    to these fields rather than repeating each reason.
    """

    server_round: int
    node_ids: tuple[int, ...]
    included: frozenset[int]
    dropped: Mapping[int, str]
    aggregate: npt.NDArray[Any] | None
    weight_total: int
    seconds: float
    skipped_reason: str | None = None
    errors: Mapping[int, str] = field(default_factory=dict)
    clipping: ClippingReport | None = None
    epsilon_spent: float | None = None
    guarantee: Guarantee | None = None
    share_refusals: Mapping[tuple[int, int], str] = field(default_factory=dict)

    @property
    def clipped_fraction(self) -> float:
        """Fraction of the aggregated coordinates that were clipped (0.0 without a report)."""
        return 0.0 if self.clipping is None else self.clipping.fraction


@dataclass(frozen=True)
class TrainingBatch:
    """What a secure round fixes from the strategy's training messages before sending anything."""

    template: Message
    message_type: str
    server_round: int
    training: RecordDict
    base: npt.NDArray[np.float64]
    layout: ArrayLayout
    digest: bytes
    parameters: bytes
    node_ids: tuple[int, ...]

    @classmethod
    def create(cls, instructions: list[Message], counter: int) -> TrainingBatch:
        """Check the batch (distinct nodes, one message type, the same arrays everywhere) and fix it.

        ``counter`` is the round number used if no ConfigRecord carries ``server-round``.
        """
        nodes = [m.metadata.dst_node_id for m in instructions]
        if len(set(nodes)) != len(nodes):
            raise ConfigurationError("a secure round needs one training message per node")
        if len({m.metadata.message_type for m in instructions}) != 1:
            raise ConfigurationError("a secure round's training messages must share one message type")
        template = instructions[0]
        base, layout = flatten_arrays(_strategy_arrays(template))
        if base.shape[0] == 0:
            raise ConfigurationError("a secure round needs model arrays in the training messages")
        digest = arrays_digest(base, layout)
        parameters = training_parameters(template.content)
        for message in instructions:
            check_bindable(message.content, ConfigurationError)  # nothing unbound reaches a train handler
            if BOUND_DP_RECORD in message.content:  # every node would refuse it at training, after setup
                raise ConfigurationError(
                    f"the strategy's training content holds a {BOUND_DP_RECORD!r} record: the name is the node "
                    "mod's (the bound DP configuration it hands the train handler)"
                )
        for message in instructions[1:]:
            vector, other = flatten_arrays(_strategy_arrays(message))
            if other != layout or arrays_digest(vector, other) != digest:
                raise ConfigurationError("a secure round needs the same arrays in every training message")
            if training_parameters(message.content) != parameters:
                raise ConfigurationError("a secure round needs the same config records in every training message")
        server_round = counter
        for record in template.content.config_records.values():
            value = record.get("server-round")
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 32:
                server_round = value
        return cls(
            template=template,
            message_type=template.metadata.message_type,
            server_round=server_round,
            training=template.content,
            base=base,
            layout=layout,
            digest=digest,
            parameters=parameters,
            node_ids=tuple(sorted(nodes)),
        )

    def subset(self, node_ids: Iterable[int]) -> TrainingBatch:
        """The same batch restricted to ``node_ids`` (nodes that left before the round's setup)."""
        kept = tuple(sorted(set(node_ids) & set(self.node_ids)))
        return TrainingBatch(**{**self.__dict__, "node_ids": kept})

    def report(
        self,
        started: float,
        dropped: Mapping[int, str],
        errors: Mapping[int, str],
        *,
        aggregate: npt.NDArray[Any] | None = None,
        included: Iterable[int] = (),
        weight_total: int = 0,
        reason: str | None = None,
        node_ids: tuple[int, ...] | None = None,
        clipping: ClippingReport | None = None,
        epsilon_spent: float | None = None,
        guarantee: Guarantee | None = None,
        share_refusals: Mapping[tuple[int, int], str] | None = None,
    ) -> RoundReport:
        """The round's :class:`RoundReport`."""
        return RoundReport(
            server_round=self.server_round,
            node_ids=self.node_ids if node_ids is None else node_ids,
            included=frozenset(included),
            dropped=dict(dropped),
            aggregate=aggregate,
            weight_total=weight_total,
            seconds=time.perf_counter() - started,
            skipped_reason=reason,
            errors=dict(errors),
            clipping=clipping,
            epsilon_spent=epsilon_spent,
            guarantee=guarantee,
            share_refusals=dict(share_refusals or {}),
        )


def _strategy_arrays(message: Message) -> list[tuple[str, str, npt.NDArray[Any]]]:
    """The model arrays of one of the strategy's messages; ConfigurationError if one is unreadable
    (the strategy's own content: unfit for a secure round, refused before anything is sent)."""
    try:
        return model_arrays(message.content)
    except DecodeError as exc:
        raise ConfigurationError(f"a training message's arrays cannot be aggregated: {exc}") from exc


def aggregated_reply(
    batch: TrainingBatch, mean: npt.NDArray[np.float64], weight_key: str, weight_total: int
) -> Message:
    """The one reply the strategy sees: the new arrays (global + mean update) and the weight total,
    so FedAvg's weighted average of that single reply is the secure weighted average of all nodes."""
    arrays = unflatten_arrays(batch.base + mean, batch.layout)
    content = RecordDict()
    for spec, array in zip(batch.layout.specs, arrays, strict=True):
        if spec.record not in content:
            content[spec.record] = ArrayRecord()
        content.array_records[spec.record][spec.name] = Array(np.ascontiguousarray(array))
    content["metrics"] = MetricRecord({weight_key: weight_total})
    return Message(content, reply_to=batch.template)
