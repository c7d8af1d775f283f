"""A node's own DP budget: the hospital, not the server, enforces the budget the setup declares.

The server plans and charges the budget (:class:`~secagg.integrations.flower.dp.DPRounds`), but
in the malicious-server threat model its accountant is its word only: a server that declared
20 rounds could run 1000, or several DP sessions within one round, and every node's per-round
check (:func:`~secagg.integrations.flower.dp.read_dp`: sigma^2 buys the declared epsilon over the
declared rounds) would pass each time. So each node counts its own contributions:

- **A contribution** is a session in which the node adds its noise share and sends the noised
  masked input (masking) or the noised upload (Paillier). It is charged to a
  :class:`~secagg.dp.PrivacyAccountant` on the plan the setup binds (the same dp-accounting
  composition as the server's) *before* the contribution leaves the node: a crash in between
  over-counts, never under-counts. Every session counts, several in one round included.
- **The check at setup** (:func:`check_node_budget`), before the node trains or sends anything:
  a DP setup whose contribution would take the node past the plan's (epsilon, delta) is refused
  with BudgetExceededError, and so is a setup under another plan than the one the node's budget
  is bound to (ConfigurationError). The charge (:func:`charge_node_budget`) checks both again.
- **What identifies the budget**: the plan, as the setup binds it (its DP digest: epsilon, delta,
  rounds, l2 clip, sampling rate, h, sigma^2 exactly, dimension, sensitivity). The node's first
  DP contribution binds its budget to that plan; a setup under any other plan is refused, never
  accounted afresh, so a server cannot reset the count by alternating plans. The digest leaves
  out the round's node count n, with which the node rebuilds each round's plan: the budget
  records the largest n it was charged under and accounts each contribution at least at it
  (the refusal residual counts rounds x n x d coordinates: an over-count, never an under-count).
- **Where it lives**: in a state file, or the node takes no part in DP rounds: its default policy
  (:attr:`~secagg.integrations.flower.policy.NodePolicy.require_dp_state_file`) refuses a DP setup
  without one before it trains. Only a node that opts out by name
  (``NodePolicy(require_dp_state_file=False)``) keeps it in ``context.state`` (:data:`BUDGET_KEY`: the
  plan's digest and the count), which belongs to one Flower run: a new run or a node restart opens
  a new budget, so a server that starts a new run collects the whole epsilon again. With a state
  file (the mod's ``dp_state_file`` or the node config's ``dp-state-file``) the budget is the
  file's: the accountant's own format, written atomically with mode 0600 before the contribution
  leaves, read back strictly (another user's, a writable by others, a symlink, or another plan's
  file refused), whatever the run. The file is then the
  hospital's budget for its data: one plan, across runs and restarts, until the hospital's
  operator starts a new file (a new budget is its decision, never the server's).
- **Whose it is**: a node with an identity key (active masking, Paillier) binds its state file
  to its identity public key (the accountant's ``holder``, :func:`budget_holder`) and refuses a
  file bound to another key, naming both: a file copied or swapped between hospitals would
  charge one hospital's contributions to another's budget. A semi-honest masking node has no
  identity key: its file binds no holder, and the first node with a key to charge it takes it
  over. An accident guard, not an authentication (the file is not signed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeGuard

from flwr.app import ConfigRecord, Context

from secagg._file_kinds import _shown
from secagg._validate import require_callable
from secagg.dp.accountant import (
    MAX_NUM_CLIENTS,
    OutdatedStateError,
    PrivacyAccountant,
    read_state,
    recorded_num_clients,
)
from secagg.dp.calibration import NoisePlan
from secagg.errors import (
    BudgetExceededError,
    ConfigurationError,
    DecodeError,
    ProtocolError,
    SecAggError,
    StateLockedError,
)
from secagg.integrations.flower._node import config_path
from secagg.integrations.flower._node_errors import OTHER_PLAN
from secagg.integrations.flower._node_identity import NodeIdentity

__all__ = [
    "BUDGET_CODES",
    "BUDGET_KEY",
    "DP_STATE_FILE",
    "LOCK_ATTEMPTS",
    "LOCK_PAUSE_S",
    "OtherPlanError",
    "budget_holder",
    "charge_node_budget",
    "check_node_budget",
    "node_budget_file",
]

DP_STATE_FILE = "dp-state-file"
"""Node-config key: path of this node's DP budget state file (the accountant's format, 0600)."""
BUDGET_KEY = "secagg.dp.budget"
"""Key of the ConfigRecord in ``context.state`` holding the node's budget when it has no state file:
the digest of the plan it is bound to, the number of contributions charged and the largest node count
they were charged under."""

LOCK_ATTEMPTS = 50
"""How many times a charge tries its state file's lock (never blocking) before it is refused."""
LOCK_PAUSE_S = 0.1
"""Seconds between two attempts: a charge waits at most about five seconds for another process of
the node (a charge holds the lock for a read and an fsync'd write), never until the server's timeout."""

PathLike = str | os.PathLike[str]


def node_budget_file(context: Context, explicit: PathLike | None) -> str | None:
    """The node's budget state file: ``explicit``, else the node config's ``dp-state-file`` (None: none)."""
    return config_path(context, DP_STATE_FILE, explicit)


def budget_holder(identity: NodeIdentity | None) -> bytes | None:
    """Whom this node's budget file is bound to: its identity public key (None without one: a
    semi-honest masking node, whose file binds no holder)."""
    return None if identity is None else identity.key.public


def _open(context: Context, plan: NoisePlan, path: str | None, holder: bytes | None) -> PrivacyAccountant:
    """The node's accountant on ``plan``, accounted at the largest node count its budget was charged
    under (:func:`_at_least`): its state file's (bound to ``holder``, :func:`_check_holder`), else
    ``context.state``'s; ConfigurationError if the budget is another node's or bound to another plan."""
    if path is not None:
        try:
            state = read_state(Path(path))  # the file's own checks (0600, owner, no symlink, strict JSON)
        except DecodeError as exc:
            raise DecodeError(_unreadable(str(exc))) from exc
        if state is not None:
            _check_holder(state.get("holder"), holder, path)
            plan = _at_least(plan, recorded_num_clients(state))
            try:
                _bound(PrivacyAccountant(plan, holder=holder), state, f"{DP_STATE_FILE} {_shown(path)}")
            except OutdatedStateError:  # an earlier format's refusal says its own way on
                raise
            except DecodeError as exc:
                raise DecodeError(_unreadable(str(exc))) from exc
        return PrivacyAccountant(plan, path, holder=holder)
    record = context.state.get(BUDGET_KEY)
    if record is None:
        return PrivacyAccountant(plan)
    if not isinstance(record, ConfigRecord):
        raise ProtocolError("the stored DP budget is malformed")
    digest, released, count = record.get("plan"), record.get("released"), record.get("num_clients")
    if not isinstance(digest, bytes) or not _is_count(released, 0) or not _is_count(count, 1):
        raise ProtocolError("the stored DP budget is malformed")
    accountant = PrivacyAccountant(_at_least(plan, count))  # count: checked above
    state = accountant.state_dict()
    state["plan_digest"], state["released"], state["num_clients"] = digest.hex(), released, count
    _bound(accountant, state, "this run's")
    return accountant


class OtherPlanError(ConfigurationError):
    """A setup under another DP plan than the one this node's budget is bound to (a ConfigurationError
    as before; its own class so that a node's reply can name it apart from a failure of its state
    file, :data:`~secagg.integrations.flower._node_errors.OTHER_PLAN`)."""


BUDGET_CODES: tuple[tuple[type[SecAggError], str], ...] = ((OtherPlanError, OTHER_PLAN),)
"""What a node's reply names a refusal of its budget by (beside the spent budget and the held lock
every local block names): a setup under another plan (the rest of the budget's failures are its
state file's, :data:`~secagg.integrations.flower._node_errors.DP_BUDGET`)."""


def _unreadable(reason: str) -> str:
    """A budget file that no longer reads (``reason`` names it): what the node's operator does, as
    for the server's state file (a new budget is never a repair)."""
    return (
        f"{reason}; nothing was charged, the file is left as it is and this node refuses every DP round until "
        "it reads again. Restore it from its backup (the contributions it recorded stay spent); removing it "
        "would start a new budget for this hospital's data, a decision for whoever answers for the patients' "
        "privacy, never a repair"
    )


def _check_holder(recorded: object, holder: bytes | None, path: str) -> None:
    """ConfigurationError if the file names another identity key than this node's ``holder`` (a file
    with none is taken over; a malformed one is left to the accountant's strict reading)."""
    if not isinstance(recorded, str) or not _is_hex(recorded) or (holder is not None and recorded == holder.hex()):
        return
    mine = "has no identity key" if holder is None else f"has identity key {holder.hex()[:16]}..."
    raise ConfigurationError(
        f"{DP_STATE_FILE} {_shown(path)} is another node's budget: it is bound to identity key {recorded[:16]}..., "
        f"this node {mine}. Each hospital keeps its own budget file: give this node its own {DP_STATE_FILE} (a file "
        "copied or swapped between nodes would charge one hospital's contributions to another's budget); "
        "nothing was charged"
    )


def _is_hex(text: str) -> bool:
    return bool(text) and all(c in "0123456789abcdef" for c in text)


def _is_count(value: object, least: int) -> TypeGuard[int]:
    return type(value) is int and least <= value <= MAX_NUM_CLIENTS


def _at_least(plan: NoisePlan, recorded: int) -> NoisePlan:
    """``plan`` accounted for the node count its budget recorded, if larger than the round's: a
    node rebuilds each round's plan with that round's count, which the DP digest leaves out, and
    the refusal residual counts rounds x n x d coordinates, so a round with fewer nodes than an
    earlier one must not account the earlier contributions at its smaller count (an over-count
    instead)."""
    if recorded > plan.num_clients:
        return dataclasses.replace(plan, num_clients=recorded)
    return plan


def _bound(accountant: PrivacyAccountant, state: Mapping[str, object], where: str) -> None:
    """Load ``state`` into ``accountant``; ConfigurationError naming the rule if it is another plan's,
    DecodeError naming where the budget is kept if it is malformed."""
    try:
        accountant.load_state_dict(state)
    except DecodeError as exc:
        raise DecodeError(f"this node's privacy budget ({where}): {exc}") from exc
    except ConfigurationError as exc:
        raise OtherPlanError(
            f"this node's privacy budget ({where}) is bound to another DP plan, the one it first contributed "
            f"under; a setup under another plan is refused, so no plan change restarts the count ({exc})"
        ) from exc


def _refusal(accountant: PrivacyAccountant, path: str | None) -> BudgetExceededError:
    """The refusal of a contribution past the budget, naming where the budget is kept and, for a
    state file, what a new budget takes (docs/privacy.md, "Flower", Node)."""
    config = accountant.config
    after = accountant.plan.spent_after(accountant.num_releases + 1)[0]
    where = "this run's context.state, no dp-state-file" if path is None else f"{DP_STATE_FILE} {_shown(path)}"
    message = (
        f"this node's privacy budget ({where}): it has made {accountant.num_releases} DP contributions under "
        f"this plan (declared: {config.rounds} rounds, epsilon = {config.epsilon:g} at delta = {config.delta:g}); "
        f"one more would spend epsilon = {after:.6g}: refused"
    )
    if path is not None:
        message += (
            f". The file is this hospital's budget for its data under this plan, and it is spent: a new budget "
            f"is a new state file (another {DP_STATE_FILE}, or this one moved aside and kept: what it records "
            f"stays spent) and a new privacy decision of the hospital, never the server's"
        )
    return BudgetExceededError(message)


def check_node_budget(context: Context, plan: NoisePlan, path: str | None, *, holder: bytes | None = None) -> None:
    """At setup, before training: refuse a setup under another plan than the budget's, or a state
    file bound to another identity key than ``holder`` (this node's identity public key, None
    without one): ConfigurationError; or whose contribution would exceed the budget
    (BudgetExceededError). Changes nothing."""
    accountant = _open(context, plan, path, holder)
    if accountant.would_exceed(1):
        raise _refusal(accountant, path)


def charge_node_budget(
    context: Context,
    plan: NoisePlan,
    path: str | None,
    *,
    holder: bytes | None = None,
    pause: Callable[[float], object] = time.sleep,
) -> None:
    """Charge one contribution under ``plan``, before it leaves the node (the state file is written
    first, under an exclusive lock of its directory: two processes of one node never both read the
    old count, and records ``holder``); refused as :func:`check_node_budget` refuses, recording
    nothing then. ``pause(seconds)`` waits between two attempts at a lock another process holds
    (:func:`time.sleep`; a test hands in one that records instead of sleeping)."""
    pause = require_callable("pause", pause)
    with _locked(path, pause):
        accountant = _open(context, plan, path, holder)
        if accountant.would_exceed(1):
            raise _refusal(accountant, path)
        accountant.record_round()
    if path is None:
        digest, released = plan.config.digest(plan), accountant.num_releases
        count = accountant.plan.num_clients
        context.state[BUDGET_KEY] = ConfigRecord({"plan": digest, "released": released, "num_clients": count})


@contextlib.contextmanager
def _locked(path: str | None, pause: Callable[[float], object]) -> Iterator[None]:
    """An exclusive ``flock`` of the state file's directory (the file itself is replaced on every
    write, so its own lock would not serialise); nothing without a file. Never waited for without
    bound: tried without blocking up to :data:`LOCK_ATTEMPTS` times, ``pause(LOCK_PAUSE_S)`` between two, then
    StateLockedError naming the file (another process holds it; nothing charged); ConfigurationError if
    the file system cannot lock it at all (``flock`` fails otherwise, e.g. ENOLCK)."""
    if path is None:
        yield
        return
    try:
        fcntl = importlib.import_module("fcntl")
    except ImportError:  # not POSIX: no lock (the file is still written before anything leaves)
        yield
        return
    directory = os.path.dirname(os.path.abspath(path))
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError as exc:
        raise ConfigurationError(f"cannot open the directory of {DP_STATE_FILE} {_shown(path)}: {exc}") from exc
    try:
        for attempt in range(1, LOCK_ATTEMPTS + 1):
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as exc:
                if attempt == LOCK_ATTEMPTS:
                    raise StateLockedError(
                        f"{DP_STATE_FILE} {_shown(path)} is in use: another process holds the lock of its directory "
                        f"{_shown(directory)} (another process of this node charging it, or one stuck doing so) after "
                        f"{LOCK_ATTEMPTS} attempts over {(LOCK_ATTEMPTS - 1) * LOCK_PAUSE_S:g} s; this contribution is "
                        "refused and nothing was charged. Retry once the other process is done"
                    ) from exc
                pause(LOCK_PAUSE_S)
            except OSError as exc:  # no lock on this file system (ENOLCK, ...): the library's error, nothing charged
                raise ConfigurationError(
                    f"cannot lock the directory of {DP_STATE_FILE} {_shown(path)} ({_shown(directory)}): {exc}; "
                    "nothing was charged. Keep the file on a local file system that supports flock"
                ) from exc
        yield
    finally:
        os.close(descriptor)  # releases the lock
