"""The accountant's state file schema: its fields, their strict reading, and the refusals that
name what differs.

:func:`parse_state` reads a state file's content (format ``secagg/dp-accountant`` version 2,
docs/privacy.md, "The budget file") for the accountant of a plan and holder: anything other than
the exact schema raises :class:`~secagg.errors.DecodeError` (a version-1 file,
:class:`~secagg.dp._state_file.OutdatedStateError`, saying how to update it); a budget, plan,
node count or holder that is not the accountant's raises :class:`~secagg.errors.ConfigurationError`
naming what differs. :class:`~secagg.dp.accountant.PrivacyAccountant` holds the count and the
file's locking and writing; this module only reads and checks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from secagg.dp._state_file import OutdatedStateError
from secagg.dp.calibration import NoisePlan
from secagg.dp.config import MAX_ROUNDS
from secagg.errors import ConfigurationError, DecodeError

__all__ = [
    "ACCOUNTING_METHOD",
    "MAX_HOLDER_BYTES",
    "MAX_NUM_CLIENTS",
    "MAX_SERVER_ROUND",
    "STATE_FORMAT",
    "STATE_VERSION",
    "AnotherPlanError",
    "another_plan",
    "check_holder",
    "holder_bytes",
    "parse_state",
    "recorded_num_clients",
]

STATE_FORMAT = "secagg/dp-accountant"
STATE_VERSION = 2

ACCOUNTING_METHOD = "rdp"
MAX_SERVER_ROUND = (1 << 32) - 1
MAX_NUM_CLIENTS = (1 << 32) - 1
MAX_HOLDER_BYTES = 64
_STATE_KEYS = frozenset(
    {"format", "version", "accounting_method", "budget", "plan_digest", "num_clients", "holder", "released",
     "last_round"}
)  # fmt: skip


class AnotherPlanError(ConfigurationError):
    """A state file charged under another plan (its digest differs, its budget is the same): a caller
    that knows the configuration may name what differs (the Flower server's h, ``another_plan``)."""


def parse_state(state: Mapping[str, object], plan: NoisePlan, holder: bytes | None) -> tuple[int, int | None]:
    """(released, last round) of ``state``, a state file's content, checked for the accountant of
    ``plan`` and ``holder`` as :meth:`PrivacyAccountant.load_state_dict` documents."""
    if isinstance(state, Mapping) and state.get("format") == STATE_FORMAT and _is_int(state.get("version"), 1):
        raise OutdatedStateError(
            f"accountant state is {STATE_FORMAT} version 1, which does not record the node count its plan was "
            f'fixed for; refused, nothing written. To go on with it, add "num_clients": N (the node count of the '
            f"first DP round charged to it, which the Flower server logs: \"sized for h = ... honest of N nodes\"; "
            f"a node's own file may take the federation's size, an over-count) and \"holder\": null, and set "
            f'"version": {STATE_VERSION}; or start a new budget with a new state file'
        )
    if not isinstance(state, Mapping) or set(state) != _STATE_KEYS:
        raise DecodeError(f"accountant state must have exactly the fields {sorted(_STATE_KEYS)}")
    if state["format"] != STATE_FORMAT or type(state["version"]) is not int or state["version"] != STATE_VERSION:
        raise DecodeError(f"accountant state is not {STATE_FORMAT} version {STATE_VERSION}")
    if state["accounting_method"] != ACCOUNTING_METHOD:
        raise DecodeError(f"accountant state uses accounting method {state['accounting_method']!r}, not 'rdp'")
    budget = state["budget"]
    if not isinstance(budget, Mapping) or set(budget) != {"epsilon", "delta"}:
        raise DecodeError("accountant state budget must have exactly the fields epsilon, delta")
    epsilon, delta = (_state_float(f"budget.{k}", budget[k]) for k in ("epsilon", "delta"))
    config = plan.config
    if (epsilon, delta) != (config.epsilon, config.delta):
        raise ConfigurationError(
            f"the state file's budget (epsilon = {epsilon!r}, delta = {delta!r}) differs from the "
            f"configured (epsilon = {config.epsilon!r}, delta = {config.delta!r})"
        )
    digest = state["plan_digest"]
    if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise DecodeError("accountant state plan_digest must be 64 lowercase hex digits")
    count = state["num_clients"]
    if type(count) is not int or not 1 <= count <= MAX_NUM_CLIENTS:
        raise DecodeError(f"accountant state num_clients must be an integer in 1..{MAX_NUM_CLIENTS}")
    if digest != config.digest(plan).hex():
        raise AnotherPlanError(another_plan(plan, digest, count))
    if count > plan.num_clients:
        raise ConfigurationError(
            f"the state file was charged under a plan fixed for {count} nodes, this accountant's plan is for "
            f"{plan.num_clients}: its refusal residual would count the released rounds as rounds of "
            f"{plan.num_clients} nodes (an under-count); a plan for {count} nodes or more goes on with it"
        )
    check_holder(state["holder"], holder)
    released = _state_int("released", state["released"], MAX_ROUNDS)
    last = state["last_round"]
    return released, None if last is None else _state_int("last_round", last, MAX_SERVER_ROUND)


def check_holder(recorded: object, holder: bytes | None) -> None:
    """DecodeError if ``recorded`` is no holder; ConfigurationError if it is another one's."""
    if recorded is None:
        return  # no holder yet: taken over
    valid = isinstance(recorded, str) and 2 <= len(recorded) <= 2 * MAX_HOLDER_BYTES and len(recorded) % 2 == 0
    if not valid or any(c not in "0123456789abcdef" for c in str(recorded)):
        raise DecodeError(f"accountant state holder must be null or 2 to {2 * MAX_HOLDER_BYTES} lowercase hex")
    mine = "no holder" if holder is None else f"holder {holder.hex()[:16]}..."
    if holder is None or recorded != holder.hex():
        raise ConfigurationError(
            f"it belongs to holder {str(recorded)[:16]}..., this accountant has {mine}: a budget file is one "
            "holder's (one hospital's) and is never charged by another; nothing was read into the count or "
            "written. Give each holder its own file"
        )


def another_plan(plan: NoisePlan, digest: str, count: int) -> str:
    """The refusal of a state file charged under another plan: what the file records of it (its
    digest, its node count) beside this plan's parts the digest covers."""
    config = plan.config
    mine = config.digest(plan).hex()
    counts = (
        f"num_clients = {count}, as this plan's"
        if count == plan.num_clients
        else f"num_clients = {count}; this plan's num_clients = {plan.num_clients}"
    )
    return (
        f"the state file was written for another DP configuration or noise plan: it records plan digest "
        f"{digest[:16]}... ({counts}), this plan's digest is {mine[:16]}... (h = {plan.honest} honest, "
        f"sigma^2 = {float(plan.variance):.6g} per node, rounds = {config.rounds}, l2_clip = {config.l2_clip:g}, "
        f"sampling_rate = {config.sampling_rate}, dimension = {plan.dimension}, sensitivity = {plan.sensitivity}, "
        f"{len(plan.preceding)} preceding releases); the file records these only as the digest, so which of "
        "them differs is not in it"
    )


def recorded_num_clients(state: Mapping[str, object] | None) -> int:
    """The node count the plan of ``state`` (a state file's content) was fixed for; 0 if it records
    none or a malformed one (the accountant's strict reading then refuses it)."""
    count = None if state is None else state.get("num_clients")
    return count if type(count) is int and 1 <= count <= MAX_NUM_CLIENTS else 0


def holder_bytes(holder: object) -> bytes:
    """``holder`` if it is 1 to :data:`MAX_HOLDER_BYTES` bytes; ConfigurationError otherwise."""
    if type(holder) is not bytes or not 1 <= len(holder) <= MAX_HOLDER_BYTES:
        raise ConfigurationError(f"holder must be 1 to {MAX_HOLDER_BYTES} bytes, got {type(holder).__name__}")
    return holder


def _is_int(value: object, expected: int) -> bool:
    return type(value) is int and value == expected


def _state_float(name: str, value: object) -> float:
    if type(value) is not float or not math.isfinite(value):
        raise DecodeError(f"accountant state {name} must be a finite float, got {type(value).__name__}")
    return value


def _state_int(name: str, value: object, hi: int) -> int:
    if type(value) is not int or not 0 <= value <= hi:
        raise DecodeError(f"accountant state {name} must be an integer in 0..{hi}")
    return value
