"""What a Paillier node remembers between messages: the sessions it uploaded to, the aggregates it decrypted.

Flower starts a fresh process per message, so the Paillier mod
(:mod:`~secagg.integrations.flower.paillier_client`) keeps this history in
``context.state`` under :data:`HISTORY_KEY` (public values only: session ids and aggregate
digests). It is what refuses a second upload, or a second, different aggregate, in one session.
Only the latest round's uploads are kept: an upload for an earlier round is refused, and so is
a second upload in one round (the policy's ``max_sessions_per_round``, 1 by default, never past
1,024: refused rather than an older session forgotten, so no flood of rounds or uploads makes the
node upload twice in one session).
"""

from __future__ import annotations

from flwr.app import ConfigRecord, Context

from secagg.errors import ProtocolError, ReplayError

__all__ = ["HISTORY_KEY", "HISTORY_SIZE", "check_answer", "check_upload", "remember_answer", "remember_upload"]

HISTORY_KEY = "secagg.paillier.history"
"""Key of the ConfigRecord in ``context.state`` remembering uploaded sessions and decrypted aggregates."""
HISTORY_SIZE = 1024
"""How many uploads the node makes in one round at most (an honest server asks for one), and how
many decrypted aggregates it remembers."""
_ID = 32


def _history(context: Context) -> tuple[bytes, bytes]:
    """(uploaded session ids, answered session id || aggregate digest entries), concatenated."""
    record = context.state.get(HISTORY_KEY)
    if not isinstance(record, ConfigRecord):
        return b"", b""
    uploaded, answered = record.get("uploaded", b""), record.get("answered", b"")
    if not isinstance(uploaded, bytes) or not isinstance(answered, bytes):
        raise ProtocolError("the stored Paillier history is malformed")
    return uploaded, answered


def _remember(context: Context, uploaded: bytes, answered: bytes, latest: int | None = None) -> None:
    """Store the history; ``uploaded`` holds the sessions of round ``latest`` only (never trimmed:
    a 1025th upload in one round is refused instead), so no flood of uploads evicts one."""
    latest = _latest_round(context) if latest is None else latest
    context.state[HISTORY_KEY] = ConfigRecord(
        {"round": latest, "uploaded": uploaded, "answered": answered[-HISTORY_SIZE * 2 * _ID :]}
    )


def _latest_round(context: Context) -> int:
    """The latest round this node uploaded in (0: none yet); ``context.state`` belongs to one run."""
    record = context.state.get(HISTORY_KEY)
    latest = record.get("round", 0) if isinstance(record, ConfigRecord) else 0
    if not isinstance(latest, int) or isinstance(latest, bool):
        raise ProtocolError("the stored Paillier history is malformed")
    return latest


def _entries(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def check_upload(context: Context, server_round: int, session_id: bytes, most: int) -> tuple[bytes, bytes]:
    """The history :func:`remember_upload` extends once the upload is made; ReplayError unless this
    node may upload in session ``session_id`` of round ``server_round``: not an earlier round than
    its latest, not a session it uploaded to, not past ``most`` uploads in the round (the policy's
    ``max_sessions_per_round``; never past :data:`HISTORY_SIZE`); ProtocolError if the stored
    history is malformed."""
    uploaded, answered = _history(context)
    latest = _latest_round(context)
    if server_round < latest:
        # Its sessions are forgotten (remember_upload), so an earlier round is refused as a whole.
        raise ReplayError(f"this node already uploaded in round {latest}; an upload for round {server_round} "
                          "(an earlier round) is refused")
    if server_round > latest:
        uploaded = b""
    if session_id in _entries(uploaded, _ID):
        raise ReplayError("this node already uploaded its update in this session")
    limit = min(most, HISTORY_SIZE)
    if len(uploaded) >= limit * _ID:
        raise ReplayError(
            f"this node refuses more uploads in round {server_round}: it made {limit} (an honest server runs one "
            f"session per round; NodePolicy(max_sessions_per_round=...) accepts more by name, up to {HISTORY_SIZE})"
        )
    return uploaded, answered


def remember_upload(context: Context, history: tuple[bytes, bytes], server_round: int, session_id: bytes) -> None:
    """Record the upload in session ``session_id`` of round ``server_round`` on ``history``, what
    :func:`check_upload` returned for it (the sessions of earlier rounds left out)."""
    uploaded, answered = history
    _remember(context, uploaded + session_id, answered, server_round)


def check_answer(context: Context, session_id: bytes, digest: bytes) -> None:
    """ReplayError if this node decrypted an aggregate other than ``digest`` in ``session_id``."""
    _, answered = _history(context)
    for entry in _entries(answered, 2 * _ID):
        if entry[:_ID] == session_id and entry[_ID:] != digest:
            raise ReplayError("this node already decrypted a different aggregate in this session")


def remember_answer(context: Context, session_id: bytes, digest: bytes) -> None:
    """Record that this node decrypted the aggregate ``digest`` in ``session_id`` (once)."""
    uploaded, answered = _history(context)
    if session_id + digest not in _entries(answered, 2 * _ID):
        _remember(context, uploaded, answered + session_id + digest)
