"""The masking server's state, and what every round's collection shares.

:class:`ServerState` is everything the server knows between rounds (never a
client's secret); :func:`accept_messages` decodes one round's messages and
rejects, as dropouts, those that are not acceptable; :func:`require_remaining`
aborts a session that fell below the threshold with a :func:`dropout_report`
naming who was lost at which round.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from secagg import wire
from secagg.errors import ProtocolError, SecAggError, ThresholdError
from secagg.masking.config import ACTIVE, MaskingConfig
from secagg.masking.messages import RosterEntry, SignedBy
from secagg.ring import RingVector

__all__ = [
    "ServerPhase",
    "ServerResult",
    "ServerState",
    "accept_messages",
    "dropout_report",
    "refusal_reason",
    "require_remaining",
]


class ServerPhase(enum.IntEnum):
    """Which client messages the server collects next."""

    COLLECT_KEYS = 0
    COLLECT_SHARES = 1
    COLLECT_MASKED = 2
    COLLECT_CONSISTENCY = 3
    COLLECT_UNMASK = 4
    DONE = 5


@dataclass(frozen=True)
class ServerResult:
    """The unmasked aggregate: the exact ring sum of the inputs of ``included``."""

    aggregate: RingVector
    included: frozenset[int]


@dataclass(frozen=True)
class ServerState:
    """Everything the server knows. It never holds a client's secret."""

    config: MaskingConfig
    context: bytes
    phase: ServerPhase = ServerPhase.COLLECT_KEYS
    roster: Mapping[int, RosterEntry] = field(default_factory=dict)
    session: bytes = b""
    graph: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    shared: frozenset[int] = frozenset()
    commitments: Mapping[int, bytes] = field(default_factory=dict)
    delivered: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    masked_sum: RingVector | None = None
    survivors: tuple[int, ...] = ()
    signers: tuple[SignedBy, ...] = ()
    rejected: tuple[tuple[int, str], ...] = ()
    # (receiver, sender): the receiver's unmask response left out a sender whose box it was
    # delivered, i.e. it says it refused that box in round 2 (spec 12.8). Its claim, not a
    # rejection: the receiver stays in. Increasing receiver, then sender.
    refusals: tuple[tuple[int, int], ...] = ()
    result: ServerResult | None = None


def accept_messages(
    state: ServerState, inbound: Mapping[int, bytes], expected: type[wire.Message], allowed: frozenset[int]
) -> tuple[dict[int, wire.Message], list[tuple[int, str]]]:
    """Decode each sender's message; reject (as a dropout) what is not acceptable."""
    accepted: dict[int, wire.Message] = {}
    rejected: list[tuple[int, str]] = []
    for sender, data in sorted(inbound.items()):
        try:
            if sender not in allowed:
                raise ProtocolError(f"client {sender} is not expected in this round")
            message = wire.decode(data, expected)
            if getattr(message, "sender", None) != sender:
                raise ProtocolError(f"message claims sender {getattr(message, 'sender', None)}")
            if getattr(message, "session_id", state.session) != state.session:
                raise ProtocolError("message belongs to another session")
            accepted[sender] = message
        except SecAggError as exc:
            rejected.append((sender, f"{expected.__name__}: {exc}"))
    return accepted, rejected


def require_remaining(
    state: ServerState,
    remaining: int,
    round_name: str,
    present: Iterable[int],
    needed: int | None = None,
    rejected: Sequence[tuple[int, str]] = (),
) -> None:
    """ThresholdError (with the dropout report) if fewer than ``needed`` (default t) clients remain;
    ``rejected`` are this step's rejections, which the report names with their reasons."""
    needed = state.config.threshold if needed is None else needed
    if remaining < needed:
        raise ThresholdError(
            f"server: only {remaining} clients remain after {round_name}, fewer than {needed}; session aborted. "
            f"{dropout_report(state, round_name, frozenset(present), rejected)}"
        )


_STAGES = ("AdvertiseKeys", "ShareKeys", "MaskedInputCollection", "ConsistencyCheck", "Unmasking")


def dropout_report(
    state: ServerState, round_name: str, present: frozenset[int], rejected: Sequence[tuple[int, str]] = ()
) -> str:
    """Which clients dropped (went silent or were rejected) at which round, what the
    configuration tolerates, which of them the server rejected and why (the first
    reason recorded for each, from ``state.rejected`` and this step's ``rejected``) and, last, the
    share boxes responders say they refused (``state.refusals``, their claims): the part of
    an abort message that names who was lost. An aborting step returns no state, so this is the
    only place its rejections are reported."""
    config = state.config
    everyone = frozenset(range(1, config.num_clients + 1))
    signers = frozenset(s.client for s in state.signers)
    # Who was still in after each round, as far as the session got (present: after round_name).
    after = {
        "AdvertiseKeys": frozenset(state.roster),
        "ShareKeys": state.shared,
        "MaskedInputCollection": frozenset(state.survivors),
        "ConsistencyCheck": signers,
    }
    before, lost = everyone, []
    for stage in _STAGES:
        if config.mode != ACTIVE and stage == "ConsistencyCheck":
            continue
        now = present if stage == round_name else after.get(stage, frozenset())
        gone = sorted(before - now)
        if gone:
            lost.append(f"{', '.join(map(str, gone))} at {stage}")
        if stage == round_name:
            break
        before = now
    dropped = "; ".join(lost) if lost else "none"
    claims = "; ".join(refusal_reason(receiver, sender) for receiver, sender in state.refusals)
    claims = f" Share boxes refused: {claims}." if claims else ""
    return f"Clients that dropped: {dropped}. {_tolerance(config)}{_rejections((*state.rejected, *rejected))}{claims}"


def refusal_reason(receiver: int, sender: int, party: str = "client") -> str:
    """What the server knows of one omission in round 4: ``receiver``'s word, never a proven fact."""
    return (
        f"{party} {receiver} says it refused {party} {sender}'s share box (sealed in ShareKeys; it did not open or "
        f"held no well-formed bundle, so {party} {receiver} revealed no share of {party} {sender}); unproven: "
        f"{party} {sender} sealed a bad box, the relay altered it, or {party} {receiver} withheld the share"
    )


def _rejections(rejected: Sequence[tuple[int, str]]) -> str:
    """`` Rejected: client 2 (MaskedInput: ...); client 4 (...).``, each client once (its first
    reason), in increasing id; "" if none was rejected."""
    first: dict[int, str] = {}
    for client, reason in rejected:
        first.setdefault(client, reason)
    if not first:
        return ""
    return " Rejected: " + "; ".join(f"client {client} ({first[client]})" for client in sorted(first)) + "."


def _tolerance(config: MaskingConfig) -> str:
    guarantee = config.guarantee
    note = f"This configuration (n = {config.num_clients}, t = {config.threshold}) completes with up to "
    note += f"{guarantee.dropouts} dropout{'' if guarantee.dropouts == 1 else 's'}"
    if guarantee.dropouts == 0:
        note += (
            f": each client's secrets are shared among its {config.holders} neighbours and "
            f"recovering them needs t = {config.threshold} (t = 1 would let one neighbour reveal them), so a "
            f"survivor that loses a neighbour cannot be unmasked"
        )
    return note + "."
