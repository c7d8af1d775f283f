"""The masking server's state, and what every round's collection shares.

:class:`ServerState` is everything the server knows between rounds (never a
client's secret); :func:`accept_messages` decodes one round's messages and
rejects, as dropouts, those that are not acceptable; :func:`require_remaining`
aborts a session that fell below the threshold (:func:`aborted`): its error
carries an :class:`AbortReport` (:func:`abort_report`) with who was lost at
which round, every rejection and every refusal claim, and its message ends with
the short :func:`dropout_report`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from secagg import wire
from secagg.errors import ProtocolError, SecAggError, ThresholdError
from secagg.masking.config import ACTIVE, MaskingConfig
from secagg.masking.messages import RosterEntry, SignedBy
from secagg.ring import RingVector

__all__ = [
    "AbortReport",
    "ServerPhase",
    "ServerResult",
    "ServerState",
    "abort_report",
    "aborted",
    "accept_messages",
    "attach_report",
    "dropout_report",
    "refusal_reason",
    "require_remaining",
    "summary_list",
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
    # (holder, owner, secret): a share the holder revealed in Unmasking lies off the owner's
    # polynomial for that secret ("self-mask seed" or "mask key"), so the holder revealed a wrong
    # share or the owner dealt it one (spec 12.9). The holder's record is also the last of its
    # step's rejections; neither is left out for it. Increasing holder, then as found.
    share_liars: tuple[tuple[int, int, str], ...] = ()
    result: ServerResult | None = None


def accept_messages(
    state: ServerState,
    inbound: Mapping[int, bytes],
    expected: type[wire.Message],
    allowed: frozenset[int],
    decode: Callable[[bytes], object] | None = None,
) -> tuple[dict[int, object], list[tuple[int, str]]]:
    """Decode each sender's message; reject (as a dropout) what is not acceptable. ``decode``
    (default: as an ``expected`` message; DecodeError if it is not one) may give a well-formed
    message's fields without its bulk (:func:`~secagg.masking.messages.masked_input_header`)."""
    accepted: dict[int, object] = {}
    rejected: list[tuple[int, str]] = []
    for sender, data in sorted(inbound.items()):
        try:
            if sender not in allowed:
                raise ProtocolError(f"client {sender} is not expected in this round")
            message = wire.decode(data, expected) if decode is None else decode(data)
            if getattr(message, "sender", None) != sender:
                raise ProtocolError(f"message claims sender {getattr(message, 'sender', None)}")
            if getattr(message, "session_id", state.session) != state.session:
                raise ProtocolError("message belongs to another session")
            accepted[sender] = message
        except SecAggError as exc:
            rejected.append((sender, f"{expected.__name__}: {exc}"))
    return accepted, rejected


@dataclass(frozen=True)
class AbortReport:
    """The structured report of a session that aborted: the error's message is its short summary.

    An aborting step returns no state, so the error carries this record
    (:func:`abort_report`), with the fields a completed session's
    :class:`~secagg.masking.SessionResult` fills for the same events.

    Attributes:
        round_name: the round whose step aborted (``AdvertiseKeys``, ``ShareKeys``,
            ``MaskedInputCollection``, ``ConsistencyCheck`` or ``Unmasking``).
        dropped: client -> the round it went missing in (silent, or its message rejected), for
            every client that did not get past the aborting round.
        server_rejected: every message the server rejected, with the reason: the earlier steps'
            records and then the aborting step's, exactly as a completed session's
            ``server_rejected`` holds them (a client rejected again keeps every record).
        share_refusals: ``(receiver, sender)``: the share boxes receivers say they refused
            (:func:`refusal_reason`; their claims, unproven), with the aborting Unmasking step's.
        client_errors: clients that aborted, with the error each raised: filled by the in-memory
            driver (:func:`~secagg.masking.run_session`), which runs the clients; empty from
            :func:`~secagg.masking.server_step`, whose server sees such a client only as silent.
        share_liars: ``(holder, owner, secret)``: the revealed shares found off their secret's
            polynomial before the abort, as :attr:`ServerState.share_liars` holds them (each
            holder's record is also the last of the aborting step's in ``server_rejected``).
    """

    round_name: str
    dropped: Mapping[int, str]
    server_rejected: tuple[tuple[int, str], ...]
    share_refusals: tuple[tuple[int, int], ...] = ()
    client_errors: Mapping[int, SecAggError] = field(default_factory=dict)
    share_liars: tuple[tuple[int, int, str], ...] = ()


_REPORT_ATTRIBUTE = "secagg_abort_report"


def abort_report(error: BaseException) -> AbortReport | None:
    """The :class:`AbortReport` a masking server's aborting step attached to ``error`` (the
    ThresholdError or AuthenticationError it raised), or None for any other error."""
    report = vars(error).get(_REPORT_ATTRIBUTE)
    return report if isinstance(report, AbortReport) else None


def attach_report(error: SecAggError, report: AbortReport) -> None:
    """Attach ``report`` to ``error`` (replacing any): what :func:`abort_report` returns."""
    vars(error)[_REPORT_ATTRIBUTE] = report


def aborted(
    error: SecAggError,
    state: ServerState,
    round_name: str,
    present: frozenset[int],
    rejected: Sequence[tuple[int, str]] = (),
    refusals: Sequence[tuple[int, int]] = (),
    share_liars: Sequence[tuple[int, int, str]] = (),
) -> SecAggError:
    """``error`` (the rule that failed) with the summary of :func:`dropout_report` appended to its
    message and its :class:`AbortReport` attached: ``state`` is the state before the aborting step
    of ``round_name``, ``present`` who is still in after it, ``rejected`` and ``refusals`` its own
    records. The error keeps its type (ThresholdError or AuthenticationError)."""
    report = AbortReport(
        round_name=round_name,
        dropped=_lost(state, round_name, present),
        server_rejected=(*state.rejected, *rejected),
        share_refusals=(*state.refusals, *refusals),
        share_liars=tuple(share_liars),
    )
    summary = type(error)(f"{error}; session aborted. {dropout_report(state.config, report)}")
    attach_report(summary, report)
    return summary


def without_liars(
    records: Sequence[tuple[int, str]], share_liars: Sequence[tuple[int, int, str]]
) -> Sequence[tuple[int, str]]:
    """The Unmasking step's ``records`` (its rejections) without the records of holders whose shares
    lie off a polynomial (``share_liars``): those come last, one per holder (spec 12.9), and leave
    nobody out (the holder's response was used; it or the owner is at fault). What remains are
    the responses rejected or the shares discarded of the clients those records name."""
    holders = len({holder for holder, _, _ in share_liars})
    return records[: len(records) - holders]


def require_remaining(
    state: ServerState,
    remaining: int,
    round_name: str,
    present: Iterable[int],
    needed: int | None = None,
    rejected: Sequence[tuple[int, str]] = (),
) -> None:
    """ThresholdError (with the dropout report, :func:`aborted`) if fewer than ``needed`` (default t)
    clients remain; ``rejected`` are this step's rejections, which its :class:`AbortReport` records."""
    needed = state.config.threshold if needed is None else needed
    if remaining < needed:
        error = ThresholdError(f"server: only {remaining} clients remain after {round_name}, fewer than {needed}")
        raise aborted(error, state, round_name, frozenset(present), rejected)


_STAGES = ("AdvertiseKeys", "ShareKeys", "MaskedInputCollection", "ConsistencyCheck", "Unmasking")
SUMMARY_IDS = 10
"""The most clients an abort's message names in one list (those dropped at one round, those
rejected) and the most refusal claims it names; it counts the rest, which its :class:`AbortReport` holds."""


def _lost(state: ServerState, round_name: str, present: frozenset[int]) -> dict[int, str]:
    """Client -> the round it went missing in (went silent or was rejected), as far as the session
    got (``present``: who is still in after ``round_name``)."""
    config = state.config
    signers = frozenset(s.client for s in state.signers)
    after = {
        "AdvertiseKeys": frozenset(state.roster),
        "ShareKeys": state.shared,
        "MaskedInputCollection": frozenset(state.survivors),
        "ConsistencyCheck": signers,
    }
    before: frozenset[int] = frozenset(range(1, config.num_clients + 1))
    lost: dict[int, str] = {}
    for stage in _STAGES:
        if config.mode != ACTIVE and stage == "ConsistencyCheck":
            continue
        now = present if stage == round_name else after.get(stage, frozenset())
        lost.update(dict.fromkeys(sorted(before - now), stage))
        if stage == round_name:
            break
        before = now
    return lost


def dropout_report(config: MaskingConfig, report: AbortReport) -> str:
    """The summary an abort's message ends with: which clients dropped (went silent or were
    rejected) at which round (up to :data:`SUMMARY_IDS` per round), what the configuration
    tolerates, how many clients the server rejected (each named once, with the message it
    rejected, up to :data:`SUMMARY_IDS`), which holders it found lying about a share (spec 12.9,
    named apart: not dropped, not rejected) and how many share boxes responders say they refused
    (the pairs ``receiver of sender``, up to :data:`SUMMARY_IDS`). Ids and counts only: the
    reasons and the claims are in ``report``."""
    stages: dict[str, list[int]] = {}
    for client, stage in report.dropped.items():
        stages.setdefault(stage, []).append(client)
    lost = [f"{summary_list([str(c) for c in sorted(stages[s])])} at {s}" for s in _STAGES if s in stages]
    dropped = "; ".join(lost) if lost else "none"
    found = f"{_rejections(report)}{_liars(report)}{_claims(report)}"
    return f"Clients that dropped: {dropped}. {_tolerance(config)}{found}"


def summary_list(items: Sequence[str]) -> str:
    """Up to :data:`SUMMARY_IDS` of ``items``, comma-separated, then how many more (``"... and 2 more"``)."""
    shown = ", ".join(items[:SUMMARY_IDS])
    return shown if len(items) <= SUMMARY_IDS else f"{shown} and {len(items) - SUMMARY_IDS} more"


def _rejections(report: AbortReport) -> str:
    """`` Rejected: 2 clients (2 at MaskedInput, 4 at AdvertiseKeys; ...).``: each rejected client
    once (with the message of its first record), in increasing id; "" if none was rejected. The
    records of share liars (spec 12.9: last, one per holder) are not rejections here: their
    responses were used and nobody was left out; :func:`_liars` names them apart."""
    first: dict[int, str] = {}
    for client, reason in without_liars(report.server_rejected, report.share_liars):
        first.setdefault(client, reason.partition(":")[0])
    if not first:
        return ""
    count = f"{len(first)} client{'' if len(first) == 1 else 's'}"
    named = summary_list([f"{client} at {first[client]}" for client in sorted(first)])
    return f" Rejected: {count} ({named}); the reasons are in the abort's report (server_rejected)."


def _liars(report: AbortReport) -> str:
    """`` Named as share liars: 1 client (2 about 1's self-mask seed): ...``: each holder whose
    revealed share lay off a recovered secret's polynomial once (with the first secret it was found
    on), in increasing id; "" if none. The holder or the secret's owner lied (spec 12.9)."""
    first: dict[int, str] = {}
    for holder, owner, secret in report.share_liars:
        first.setdefault(holder, f"{owner}'s {secret}")
    if not first:
        return ""
    count = f"{len(first)} client{'' if len(first) == 1 else 's'}"
    named = summary_list([f"{holder} about {first[holder]}" for holder in sorted(first)])
    return (
        f" Named as share liars: {count} ({named}): the holder revealed a wrong share or the owner dealt "
        "it one (spec 12.9); not dropped, its input stays in the sum; the records are in the abort's "
        "report (share_liars)."
    )


def _claims(report: AbortReport) -> str:
    """`` Share boxes refused: 2 claims (2 of 1, 3 of 1): ...``, up to :data:`SUMMARY_IDS` pairs in
    the order recorded; "" if no responder claimed one."""
    claims = report.share_refusals
    if not claims:
        return ""
    count = f"{len(claims)} claim{'' if len(claims) == 1 else 's'}"
    named = summary_list([f"{receiver} of {sender}" for receiver, sender in claims])
    return (
        f" Share boxes refused: {count} ({named}): receiver of sender, each the receiver's word, unproven; "
        "the claims are in the abort's report (share_refusals)."
    )


def refusal_reason(receiver: int, sender: int, party: str = "client") -> str:
    """What the server knows of one omission in round 4: ``receiver``'s word, never a proven fact."""
    return (
        f"{party} {receiver} says it refused {party} {sender}'s share box (sealed in ShareKeys; it did not open or "
        f"held no well-formed bundle, so {party} {receiver} revealed no share of {party} {sender}); unproven: "
        f"{party} {sender} sealed a bad box, the relay altered it, or {party} {receiver} withheld the share"
    )


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
