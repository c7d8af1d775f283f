"""What a node's error reply tells the server, and what stays on the node.

The server is untrusted. An error reply (the node is then a dropout of the round) carries:

- for a refusal of the server's own message (its setup under the node's policy, a replay, a
  malformed or forged message): a stable code for the class of the refusal
  (:func:`refusal_code`: ``refused (replay)``, ``refused (policy or configuration)``, ...) and the
  library's words, which name what in the server's message the node refused;
- for a failure of the node's own files or state (its identity key files, its key share and
  passphrase, its DP budget state file) or a refusal computed from its data (an update beyond the
  round's DP bound, an example count outside the round's range, a train handler's reply the round
  cannot encode or a library error the handler raised): the code alone (:class:`LocalFailure`,
  raised by :func:`kept_local`). The words of such a failure can name a file system path, a link's
  target (chosen by whoever made the link, another local user in a sticky folder), a mode, a user
  id, the ``find -samefile`` hint, the system's error text or a value computed from the hospital's
  data: none of it is the server's;
- for a foreign exception of the node's own code (its audit hook, a bug): the exception's type
  only (:func:`~secagg.integrations._foreign.foreign_reason`); Flower itself would send an
  exception escaping the mod with its text.

Whatever is not sent is logged on the node's logger (:data:`LOGGER`, ``secagg.flower``, at ERROR,
with the exception and its traceback): the hospital's operator loses nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

from flwr.app import Context, Error, Message
from flwr.common.constant import ErrorCode

from secagg.errors import (
    AuthenticationError,
    BudgetExceededError,
    ConfigurationError,
    DecodeError,
    ProtocolError,
    ReplayError,
    SecAggError,
    StateLockedError,
    ThresholdError,
    UnsafeRequestError,
)
from secagg.integrations._foreign import foreign_reason

__all__ = [
    "AUDIT_HOOK",
    "DP_BUDGET",
    "DP_UPDATE",
    "IDENTITY_FILES",
    "KEY_SHARE",
    "LOGGER",
    "NODE_UPDATE",
    "NODE_WEIGHT",
    "OTHER_PLAN",
    "LocalFailure",
    "TrainingFailedError",
    "error_reply",
    "failure_reply",
    "kept_local",
    "refusal_code",
]

LOGGER = logging.getLogger("secagg.flower")
"""The node's logger: the full words (and traceback) of every failure whose reply names its code or
type only."""

IDENTITY_FILES = "local configuration error (this node's identity key files)"
"""The code a node sends when its identity key or trusted-keys file cannot be used."""
KEY_SHARE = "local configuration error (this node's key share or its passphrase)"
"""The code a Paillier node sends when its key share or the share's passphrase cannot be used."""
DP_BUDGET = "local configuration error (this node's DP budget)"
"""The code a node sends when its DP budget refuses the round otherwise than spent: its state file
cannot be used (unreadable, another user's, a link, another node's) or is bound to another plan."""
OTHER_PLAN = "refused (the round's DP plan is not the one this node's budget is bound to)"
"""The code a node sends when its DP budget is bound to another plan than the round's."""
DP_UPDATE = "refused (this node's update is beyond the round's DP bound)"
"""The code a node sends when its own training did not clip at the bound DP configuration (the
update's norm, computed from its data, stays on the node)."""

NODE_WEIGHT = "refused (this node's example count is outside the round's range: 1 to the server's max_weight)"
"""The code a node sends when the example count its training reports does not fit the round's encoding
(the count travels inside the secure sum only; the number stays on the node)."""
NODE_UPDATE = "refused (this node's training gave a result the round cannot encode)"
"""The code a node sends when its train handler's reply (its arrays, its weight) or the encoding of its
update is refused, or the handler raised a library error: what it refused is the hospital's."""

AUDIT_HOOK = "local configuration error (this node's audit hook)"
"""The code a node sends when its audit hook raises a library error (its words name the node's
records, folders or values)."""

_LOCAL_CODES: tuple[tuple[type[SecAggError], str], ...] = (
    (BudgetExceededError, "refused (privacy budget: this node allows no further contribution under this plan)"),
    (StateLockedError, "local configuration error (a state file of this node is in use)"),
)
_REFUSAL_CODES: tuple[tuple[type[SecAggError], str], ...] = (
    (ReplayError, "refused (replay)"),
    (UnsafeRequestError, "refused (unsafe request)"),
    (ThresholdError, "refused (too few parties)"),
    (ProtocolError, "refused (protocol)"),
    (AuthenticationError, "refused (authentication)"),
    (DecodeError, "refused (malformed message)"),
    (BudgetExceededError, "refused (privacy budget)"),
    (ConfigurationError, "refused (policy or configuration)"),
)


class LocalFailure(Exception):  # noqa: N818  (a control-flow signal, as TrainingFailedError)
    """A failure of this node's own files, state or data: the reply carries :attr:`code` alone; the
    library's error (with its words) is the cause, logged on the node."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class TrainingFailedError(Exception):
    """The app's train handler answered with an error: pass that reply on."""

    def __init__(self, reply: Message) -> None:
        super().__init__("train handler failed")
        self.reply = reply


@contextlib.contextmanager
def kept_local(code: str, codes: Sequence[tuple[type[SecAggError], str]] = ()) -> Iterator[None]:
    """Raise any library error of the block as a :class:`LocalFailure` with ``code`` (a refusal
    whose class has a code of its own in ``codes`` or of every block, a spent budget or a held lock,
    with that one), its cause the error: what the block reads or computes is this node's, and so are
    the words of its refusal."""
    try:
        yield
    except SecAggError as exc:
        specific = next((name for kind, name in (*codes, *_LOCAL_CODES) if isinstance(exc, kind)), code)
        raise LocalFailure(specific) from exc


def refusal_code(exc: SecAggError) -> str:
    """The stable code of a refusal of the server's message: its class, in words."""
    return next((code for kind, code in _REFUSAL_CODES if isinstance(exc, kind)), "refused")


def error_reply(message: Message, reason: str) -> Message:
    """The error reply a mod sends when it refuses (the server counts the node as a dropout)."""
    return Message(Error(code=ErrorCode.MOD_FAILED_PRECONDITION, reason=f"secagg: {reason}"), reply_to=message)


def failure_reply(message: Message, context: Context, exc: Exception) -> Message:
    """The error reply for ``exc``, raised while the node handled ``message``: a library error's code
    and words (logged on :data:`LOGGER` at WARNING too: the node's operator sees every refusal), a
    :class:`LocalFailure`'s code alone, a foreign exception's type alone; whatever is not sent is
    logged on :data:`LOGGER` at ERROR."""
    node = context.node_id
    if isinstance(exc, LocalFailure):
        LOGGER.error("node %s: %s: %s", node, exc.code, exc.__cause__, exc_info=exc.__cause__)
        return error_reply(message, f"node {node}: {exc.code}; the details are in this node's log")
    if isinstance(exc, SecAggError):  # the server's message refused: sent, and logged for the operator
        LOGGER.warning("node %s: %s: %s", node, refusal_code(exc), exc)
        return error_reply(message, f"node {node}: {refusal_code(exc)}: {exc}")
    reason = foreign_reason("this node's mod", exc, logger=LOGGER, hospital=node, level=logging.ERROR)
    return error_reply(message, f"node {node}: internal error: {reason}")
