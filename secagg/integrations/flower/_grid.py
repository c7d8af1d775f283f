"""What the masking and Paillier server workflows share: the Grid wrapper, identities, stages.

A secure workflow is a :class:`SecureGrid`: it delegates everything to the
Grid a ServerApp receives, except batches of *training* messages, which it
turns into one secure round (:meth:`SecureGrid.secure_round`) returning at
most one aggregated reply. :meth:`SecureGrid.stage` sends one stage's payloads
and collects the replies. What a round fixes (:class:`TrainingBatch`) and
reports (:class:`RoundReport`), and the one reply the strategy sees
(:func:`aggregated_reply`), live in :mod:`~secagg.integrations.flower._round_report`
and are re-exported here.
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from collections.abc import Iterable, Mapping

from flwr.app import Message, MessageType, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.proto.node_pb2 import NodeInfo
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from secagg import wire
from secagg.errors import ConfigurationError, ProtocolError, SecAggError
from secagg.integrations.flower._limits import IDENTIFY_REPLY_LIMIT
from secagg.integrations.flower._records import read_stage, stage_content
from secagg.integrations.flower._round_report import RoundReport, TrainingBatch, aggregated_reply
from secagg.integrations.flower.protocol import IDENTIFY, IdentityAnnouncement

__all__ = [
    "LOGGER",
    "MAX_REASON_CHARS",
    "RoundReport",
    "SecureGrid",
    "TrainingBatch",
    "aggregated_reply",
    "identify_shortfall",
    "reported_reason",
    "require_trusted_keys",
]

LOGGER = logging.getLogger("secagg.flower")
MAX_REASON_CHARS = 1000
"""The most characters of a node's own error reason a round's report and log keep (the library's
refusals are a few hundred): a longer one is cut, saying how long it was."""


def require_trusted_keys(trusted_keys: frozenset[bytes] | None, options: str) -> None:
    """ConfigurationError unless the server knows the federation's identity public keys.

    Every node refuses a setup holding a key off its own trusted list, so a server without the
    list would send one whenever a node with a stray key is sampled, and the round would fail for
    every node; a node's refusal is its unverifiable word, so the server cannot act on it either.
    """
    if trusted_keys is None:
        raise ConfigurationError(
            f"signed rounds need the federation's identity public keys on the server: pass {options}("
            "trusted_keys=read_trusted_keys(path)) (secagg.integrations.flower.keys), path the trusted-keys "
            "file of the key ceremony, the list every node has (`secagg keys trust federation.keys a.key.pub "
            "...`; examples/flower/make-keys.sh DIR N writes DIR/federation.keys). It is public. Without it, one "
            "node whose key is on no list makes every round it is sampled in fail for every node; with it, that "
            "node is left out at identify"
        )


class SecureGrid(Grid):  # type: ignore[misc,unused-ignore]  # Grid is Any where flwr is not installed
    """A Grid that runs training batches as secure rounds and passes everything else through."""

    def __init__(self, grid: Grid, stage_timeout: float, poll_interval: float) -> None:
        self._grid = grid
        self._stage_timeout = stage_timeout
        self._poll_interval = poll_interval
        self.reports: list[RoundReport] = []
        self.identities: dict[int, bytes] = {}

    @abstractmethod
    def secure_round(self, instructions: list[Message]) -> Message | None:
        """One secure round over the nodes ``instructions`` address: the aggregated reply or None."""

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
        is ignored for secure rounds: each stage waits its own stage timeout.
        Raises ConfigurationError before sending anything if the batch (its
        messages or model) is unfit for a secure round; a round whose node count
        the settings cannot serve (too few sampled, more than ``max_nodes``) is
        skipped instead, with the reason in :attr:`reports`, and the run goes on.
        """
        batch = list(messages)
        if not batch or any(m.metadata.message_type.split(".")[0] != MessageType.TRAIN for m in batch):
            replies: Iterable[Message] = self._grid.send_and_receive(batch, timeout=timeout)
            return replies
        reply = self.secure_round(batch)
        return [] if reply is None else [reply]

    # --- identities -------------------------------------------------------------------

    def identify(
        self,
        batch: TrainingBatch,
        trusted_keys: frozenset[bytes] | None,
        dropped: dict[int, str],
        errors: dict[int, str],
    ) -> None:
        """Ask nodes whose identity key is unknown to announce it; keep the valid, trusted, distinct ones
        in :attr:`identities`. The nodes check every key against their own trusted list anyway.

        A key another node of this round holds costs the newcomer its round (``dropped`` at
        ``identify``, the reason in ``errors``); a key whose earlier holder is not in this round
        moves to the node that just proved holding it for this run and its id (a hospital back
        under another node id after a restart), so the old id's entry is forgotten."""
        unknown = {node: b"" for node in batch.node_ids if node not in self.identities}
        if not unknown:
            return
        replies = self.stage(batch, IDENTIFY, unknown, dropped, errors, limit=IDENTIFY_REPLY_LIMIT)
        run_id = self.run.run_id
        for node, payload in sorted(replies.items()):
            try:
                announcement = wire.decode(payload, IdentityAnnouncement)
                announcement.verify(run_id, node)
                key = announcement.public_key
                if trusted_keys is not None and key not in trusted_keys:
                    raise ConfigurationError(
                        f"node {node} announced an identity key outside the trusted list ({key.hex()}, not in "
                        "the server's trusted_keys): left out; add its public key to the federation's list if it "
                        "belongs to the federation"
                    )
                holders = [other for other, known in self.identities.items() if known == key]
                if any(other in batch.node_ids for other in holders):
                    raise ConfigurationError(
                        f"node {node} announced an identity key another node of this round already holds"
                    )
            except SecAggError as exc:
                errors[node] = str(exc)
                dropped[node] = IDENTIFY
                continue
            for other in holders:  # gone from this round: the hospital is back under another node id
                LOGGER.info("identity key %s moved from node %d to node %d", key.hex()[:16], other, node)
                del self.identities[other]
            self.identities[node] = key

    def forget_failed_identities(self, dropped: Mapping[int, str], setup_stage: str) -> None:
        """A node that refused the setup may have a new identity key: ask it again next round."""
        for node, stage in dropped.items():
            if stage == setup_stage:
                self.identities.pop(node, None)

    # --- one stage --------------------------------------------------------------------

    def stage(
        self,
        batch: TrainingBatch,
        stage: str,
        outbound: Mapping[int, bytes],
        dropped: dict[int, str],
        errors: dict[int, str],
        *,
        limit: int,
        with_training: bool = False,
    ) -> dict[int, bytes]:
        """Send ``outbound`` (node id -> payload) as ``stage``; the replies' payloads by node id.

        A reply is an answer of the node a request of this stage was sent to, and comes from it
        (or, an error reply, from the SuperLink, e.g. for a node gone offline); any other reply
        (a late reply of an earlier stage or round, a reply naming another node's request) is
        nobody's answer and is ignored. A node that does not answer in time, answers with an
        error, with a malformed or foreign-stage reply, or more than once, is recorded in
        ``dropped`` (and the reason in ``errors``): a node answers each request once, so a
        node with two answers is faulty, and neither answer reaches the protocol. So is a node
        whose reply holds records beside the stage records, or a payload above ``limit`` bytes
        (the largest honest reply of the stage, :mod:`~secagg.integrations.flower._limits`):
        such a payload is never loaded. ``with_training`` adds the strategy's content.
        """
        messages = [
            Message(
                stage_content(stage, payload, batch.training if with_training else None),
                dst_node_id=node,
                message_type=batch.message_type,
                group_id=str(batch.server_round),
            )
            for node, payload in sorted(outbound.items())
        ]
        answers: dict[int, list[Message]] = {}
        for node, reply in self._exchange(messages):
            answers.setdefault(node, []).append(reply)
        inbound: dict[int, bytes] = {}
        for node, replies in sorted(answers.items()):
            try:
                inbound[node] = _payload(stage, replies, limit)
            except SecAggError as exc:
                errors[node] = str(exc)
        for node in outbound:
            if node not in inbound and node not in dropped:
                dropped[node] = stage
                LOGGER.info("node %d dropped out in stage %s: %s", node, stage, errors.get(node, "no reply"))
        return inbound

    def _exchange(self, messages: list[Message]) -> list[tuple[int, Message]]:
        """Push a stage's messages and pull replies every poll interval until all arrived or the
        stage timeout passed (Flower's own send_and_receive polls every 3 s); each reply with the
        node whose request it answers; replies that are no answer of that node are left out.

        The grid gives each message its id when pushing it, and pulls only replies to the ids it
        is asked for (the SuperLink stores one reply per request, from the node it was sent to);
        other replies are logged and ignored all the same."""
        pending = {message_id for message_id in self._grid.push_messages(messages) if message_id}
        requests = {m.metadata.message_id: m.metadata.dst_node_id for m in messages if m.metadata.message_id}
        deadline = time.monotonic() + self._stage_timeout
        replies: list[tuple[int, Message]] = []
        while pending:
            for reply in self._grid.pull_messages(pending):
                request, sender = reply.metadata.reply_to_message_id, reply.metadata.src_node_id
                node = requests.get(request)
                senders = (node, SUPERLINK_NODE_ID) if reply.has_error() else (node,)
                if node is None or sender not in senders:
                    LOGGER.info("ignored a reply from node %d: not an answer to its request in this stage", sender)
                    continue
                replies.append((node, reply))
                pending.discard(request)
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(min(self._poll_interval, max(0.0, deadline - time.monotonic())))
        return replies


def identify_shortfall(left: int, sampled: int, session: str, least: int) -> str:
    """The reason a round is skipped when only ``left`` of its ``sampled`` nodes survive ``identify``,
    fewer than a ``session`` (``"masking"``, ``"Paillier"``) needs (``least``): said in these words by
    every grid, not as the setup's refusal of the nodes left (which names neither nodes nor identify)."""
    return (
        f"{left} of {sampled} nodes left after identify, fewer than a {session} session needs "
        f"(at least {least}); the report's dropped names each node left out at identify, its errors "
        "the reason of each that replied"
    )


def reported_reason(reason: str | None) -> str:
    """A node's error reason as a report and the log keep it: its text, not the library's, so its
    characters that are not printable (a newline that would forge a log line, a right-to-left
    override) escaped (``\\n``, ``\\u202e``), and at most :data:`MAX_REASON_CHARS` characters of the
    escaped text (an escape lengthens a character up to tenfold, so the bound is taken after it; no
    escape is split), a longer one cut and followed by the node's text's length."""
    text = "" if not isinstance(reason, str) else reason
    pieces: list[str] = []
    size = 0
    for char in text[: MAX_REASON_CHARS + 1]:  # past the bound: no more can be kept
        piece = char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        if size + len(piece) > MAX_REASON_CHARS:
            return f"{''.join(pieces)}... (cut: {len(text)} characters)"
        pieces.append(piece)
        size += len(piece)
    return "".join(pieces)


def _payload(stage: str, replies: list[Message], limit: int) -> bytes:
    """The payload of a node's one reply in ``stage``; DecodeError (or ProtocolError) naming why
    there is none: more than one reply, an error reply, a malformed reply (records beside the stage
    records, a payload above ``limit`` bytes) or one for another stage."""
    if len(replies) != 1:
        raise ProtocolError(f"more than one reply ({len(replies)}) to its {stage!r} request")
    reply = replies[0]
    if reply.has_error():
        reason = reported_reason(reply.error.reason)  # the node's own text: escaped and cut
        raise ProtocolError(reason or f"error reply with no reason (code {reply.error.code})")
    reply_stage, payload = read_stage(reply.content, lambda _: limit, alone=lambda _: True)
    if reply_stage != stage:
        raise ProtocolError(f"replied for stage {reply_stage!r} in stage {stage!r}")
    return payload
