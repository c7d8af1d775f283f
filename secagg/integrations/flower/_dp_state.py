"""The Flower server's DP state file as :class:`~secagg.integrations.flower.dp.DPRounds` reads it
before its accountant opens: the plan a restarted server goes on under, and the skip reason of a
file that cannot be read.

A state file records the node count its plan was fixed for (``num_clients``) beside the plan's
digest, which leaves the count out. A restarted server whose first round has fewer nodes fixes
its plan for the file's count (the very plan the file was charged for); one with more nodes fixes
it for its own count if that gives the same noise (the file is taken over, over-counted), else
for the file's count, whose rounds with more nodes are then skipped, naming both counts
(:meth:`DPRounds.charge`), rather than refused as another plan's.

A restarted server whose h (the honest contributions in the smallest sum a round releases,
computed from its first round's node count and guarantee) differs from the file's is refused as
another plan's: :func:`another_plan` then names the file's node count and h beside this
server's (it finds the file's h by calibrating this configuration for each h up to
:data:`MAX_HONEST_SEARCHED` at the file's count, only on this refusal) and the way on.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from secagg.dp.accountant import OutdatedStateError, read_state, recorded_num_clients
from secagg.dp.calibration import calibrate
from secagg.dp.config import DPConfig
from secagg.errors import ConfigurationError, DecodeError

__all__ = ["MAX_HONEST_SEARCHED", "another_plan", "recorded_plan", "unreadable"]

MAX_HONEST_SEARCHED = 128
"""The largest h :func:`another_plan` tries: a calibration each (tens of milliseconds; with a
sampling rate, whose RDP is the subsampled mechanism's, up to a few tenths of a second), on a
refusal only. A bound, not the file's node count: the file may record up to 2^32 - 1 nodes."""


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


def another_plan(
    config: DPConfig, recorded: int, digest: object, num_nodes: int, scale: float, dimension: int
) -> str | None:
    """What differs between the plan a state file records (its node count ``recorded``, its plan
    ``digest``) and this server's (``config``, whose ``min_honest`` is the h of its first DP round
    of ``num_nodes`` nodes), and the way on; None if the file records no plan to compare.

    The file's h is found by calibrating ``config`` at the file's count for each h up to
    :data:`MAX_HONEST_SEARCHED`: the one whose digest is the file's."""
    if recorded < 1 or not isinstance(digest, str):
        return None
    mine = config.honest
    found = None
    searched = min(recorded, MAX_HONEST_SEARCHED)
    for honest in range(1, searched + 1):
        candidate = dataclasses.replace(config, min_honest=honest)
        try:
            plan = calibrate(candidate, num_clients=recorded, scale=scale, dimension=dimension)
        except ConfigurationError:  # e.g. a residual past delta / 10 at this count: not the file's plan
            continue
        if candidate.digest(plan).hex() == digest:
            found = honest
            break
    here = f"this server's first DP round has {num_nodes} nodes, whose smallest released sum holds h = {mine} honest"
    if found is None:
        untried = (
            ""
            if searched == recorded
            else f"; h = {searched + 1}..{recorded} were not tried (a calibration each), and the file's h may be one "
            "of them"
        )
        cause = "it was" if searched == recorded else "else it was"
        return (
            f"No honest count h = 1..{searched} gives the file's plan under this configuration at the file's "
            f"{recorded} nodes ({here}){untried}: {cause} charged under another configuration (the declared "
            "rounds, the l2 clip, the sampling rate, the model's dimension), which the file records only as its "
            "plan's digest; configure the one it was charged under, or start a new budget with a new state file"
        )
    if found < mine:
        return (
            f"The file's plan is this configuration's for h = {found} honest of {recorded} nodes; {here}. Its noise "
            f"per node suffices for sums of {found} honest or more: set DPConfig.min_honest = {found} to go on under "
            "the file's plan"
        )
    return (
        f"The file's plan is this configuration's for h = {found} honest of {recorded} nodes; {here}. Its noise "
        f"per node is sized for sums of {found} honest contributions, more than this round's hold: going on under "
        f"it would release sums with too little noise. Run rounds whose sums hold at least {found} honest "
        "contributions (the file's node count and a guarantee tolerating as few colluders and dropouts), or start "
        "a new budget with a new state file (a decision for whoever answers for the patients' privacy)"
    )
