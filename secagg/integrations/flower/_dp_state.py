"""The Flower server's DP state file as :class:`~secagg.integrations.flower.dp.DPRounds` reads it
before its accountant opens: the plan a restarted server goes on under, and the skip reason of a
file that cannot be read.

A state file records the node count its plan was fixed for (``num_clients``) beside the plan's
digest, which leaves the count out. A restarted server whose first round has fewer nodes fixes
its plan for the file's count (the very plan the file was charged for); one with more nodes fixes
it for its own count if that gives the same noise (the file is taken over, over-counted), else
for the file's count, whose rounds with more nodes are then skipped, naming both counts
(:meth:`DPRounds.charge`), rather than refused as another plan's.
"""

from __future__ import annotations

import os
from pathlib import Path

from secagg.dp.accountant import OutdatedStateError, read_state, recorded_num_clients
from secagg.errors import ConfigurationError, DecodeError

__all__ = ["recorded_plan", "unreadable"]


def recorded_plan(state_file: str | os.PathLike[str] | None) -> tuple[int, object]:
    """(the node count, the plan digest) the state file records; (0, None) without a file, and 0
    for a missing or malformed count (the accountant then reads the file strictly).
    ConfigurationError, the round's skip reason (:func:`unreadable`), if it cannot be read."""
    if state_file is None:
        return 0, None
    try:
        state = read_state(Path(state_file))
    except DecodeError as exc:
        raise ConfigurationError(unreadable(state_file, exc)) from exc
    if state is None:
        return 0, None
    return recorded_num_clients(state), state.get("plan_digest")


def unreadable(state_file: str | os.PathLike[str] | None, exc: DecodeError) -> str:
    """Why a round is skipped when the state file no longer parses, and what the operator does: an
    outdated file (:class:`~secagg.dp.accountant.OutdatedStateError`) is updated as its refusal says,
    a corrupted one restored from its backup."""
    if isinstance(exc, OutdatedStateError):
        return (
            f"dp: the server's DP state file {state_file} is of an earlier format ({exc}); nothing is charged or "
            "released, and the file is left as it is. Every DP round is skipped until it is updated as said"
        )
    return (
        f"dp: the server's DP state file {state_file} cannot be read ({exc}); nothing is charged or released, and "
        "the file is left as it is. Restore it from its backup (the rounds it recorded stay spent); removing it "
        "would start a new budget, a decision for whoever answers for the patients' privacy, never a repair. "
        "Every DP round is skipped until the file reads again"
    )
