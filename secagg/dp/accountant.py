"""The privacy budget accountant: what has been spent, and a refusal before it is exceeded.

:class:`PrivacyAccountant` holds the budget (epsilon, delta) declared in the
:class:`~secagg.dp.DPConfig`, counts the aggregates released under a
:class:`~secagg.dp.NoisePlan`, reports the (epsilon, delta) spent so far
(dp-accounting's ``RdpAccountant`` on the plan's per-round events, see
:mod:`secagg.dp.calibration`) and refuses, with
:class:`~secagg.errors.BudgetExceededError`, a round that would exceed the
budget. Call :meth:`PrivacyAccountant.record_round` **before** releasing the
round's aggregate: the state file is written first, so a crash between the two
over-counts, never under-counts.

Its interface mirrors Flower 1.42's ``flwr.serverapp.RdpAccountant`` where the
semantics carry over (``config``, ``num_releases``, ``get_epsilon``,
``get_delta``, ``get_privacy_spent``, ``would_exceed``, ``state_dict``,
``load_state_dict``), so a Flower user reads our budget the way they read
Flower's. The difference: Flower composes caller-supplied Gaussian events,
whereas here the event of a round is fixed by the calibrated plan, so
``would_exceed`` takes a number of rounds (Flower's ``count``) instead of an event.

The state survives a restart in a JSON file (docs/privacy.md, "The budget
file"): written atomically (temporary file, fsync, ``os.replace``, fsync of the
directory) with mode 0600, under an exclusive lock held across each
read-check-write (:mod:`secagg.dp._state_file`; another holder:
:class:`~secagg.errors.StateLockedError`), and read back strictly: anything
other than the exact schema raises :class:`~secagg.errors.DecodeError` naming
the file, a budget or plan that differs from the accountant's raises
:class:`~secagg.errors.ConfigurationError`. The file records the plan's node
count n (``num_clients``, version 2), which the plan digest leaves out but the
refusal residual counts: a plan for fewer nodes than the file records is refused
naming both counts (it would under-count the released rounds), one for as many
or more takes it over (an over-count).
It also records its holder, if any (``holder``: a Flower node's identity public
key), and is refused to another holder. The schema and its strict reading are
:mod:`secagg.dp._state_schema`'s (its names re-exported here).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from secagg._validate import require_finite, require_instance, require_int
from secagg.dp._state_file import (
    MAX_STATE_BYTES,
    STATE_MODE,
    OutdatedStateError,
    locked,
    read_state,
    sync_state_folder,
    write_state,
)
from secagg.dp._state_schema import (
    ACCOUNTING_METHOD,
    MAX_NUM_CLIENTS,
    MAX_SERVER_ROUND,
    STATE_FORMAT,
    STATE_VERSION,
    check_holder,
    holder_bytes,
    parse_state,
    recorded_num_clients,
)
from secagg.dp.calibration import NoisePlan
from secagg.dp.config import MAX_ROUNDS, DPConfig
from secagg.dp.contributors import check_contributors
from secagg.errors import BudgetExceededError, ConfigurationError, DecodeError, ReplayError, SecAggError

__all__ = [
    "MAX_NUM_CLIENTS",
    "MAX_STATE_BYTES",
    "STATE_FORMAT",
    "STATE_MODE",
    "STATE_VERSION",
    "OutdatedStateError",
    "PrivacyAccountant",
    "PrivacySpent",
    "read_state",
    "recorded_num_clients",
]


@dataclass(frozen=True)
class PrivacySpent:
    """The cumulative spend (the fields of Flower's ``PrivacySpent``)."""

    epsilon: float
    delta: float
    num_releases: int
    accounting_method: str = ACCOUNTING_METHOD
    optimal_order: float | None = None


class PrivacyAccountant:
    """The (epsilon, delta) budget of a run, enforced round by round and kept on disk.

    Args:
        plan: the calibrated noise every released round carries.
        path: the state file; loaded if it exists (and must match ``plan``), created otherwise
            (under its lock: StateLockedError if another accountant holds it). None (the
            default) keeps the state in memory only, which gives the budget up across restarts:
            a new process counts from zero releases (simulations and tests only).
        holder: who the budget belongs to, 1 to 64 bytes (a Flower node: its identity public
            key), recorded in the file: a file recorded for another holder, or for one when this
            accountant has none, is refused (ConfigurationError naming both); a file with no
            holder is taken over, its count going on, and records this one at its next write.
            An accident guard (a file copied or swapped between hospitals), not an
            authentication: the file is not signed.
    """

    def __init__(
        self, plan: NoisePlan, path: str | os.PathLike[str] | None = None, *, holder: bytes | None = None
    ) -> None:
        self._plan = require_instance("plan", plan, NoisePlan)
        self._holder = None if holder is None else holder_bytes(holder)
        self._path = None if path is None else Path(path)
        self._released = 0
        self._last_round: int | None = None
        self._unsynced = False  # the last record is in place, its folder not synced (see _record)
        if self._path is not None:
            state = read_state(self._path)  # written by atomic replace: read whole, no lock needed
            if state is None:
                with locked(self._path):  # two accountants creating it: one of them is refused
                    state = read_state(self._path)
                    if state is None:
                        self._save(self.state_dict())
            if state is not None:
                try:  # another holder's file: refused before anything else, with its own way on
                    self._check_holder(state.get("holder"))
                except (ConfigurationError, DecodeError) as exc:
                    raise type(exc)(f"the accountant's state file {self._path}: {exc}") from exc
                try:
                    self.load_state_dict(state)
                except ConfigurationError as exc:  # another budget or plan: say whose file, and the ways on
                    raise type(exc)(
                        f"the accountant's state file {self._path}: {exc}. A state file keeps one budget under one "
                        "plan: configure the one it holds to go on with it, or start a new budget with a new "
                        "state file (a decision for whoever answers for the patients' privacy)"
                    ) from exc
                except DecodeError as exc:  # malformed or outdated: say whose file
                    raise type(exc)(f"the accountant's state file {self._path}: {exc}") from exc

    @property
    def config(self) -> DPConfig:
        """The declared configuration (its epsilon and delta are the budget)."""
        return self._plan.config

    @property
    def plan(self) -> NoisePlan:
        """The calibrated noise plan the rounds are accounted under."""
        return self._plan

    @property
    def budget(self) -> tuple[float, float]:
        """The declared (epsilon, delta)."""
        return self.config.epsilon, self.config.delta

    @property
    def num_releases(self) -> int:
        """The number of rounds recorded as released."""
        return self._released

    @property
    def last_round(self) -> int | None:
        """The server round of the last recorded release, if rounds were numbered."""
        return self._last_round

    def spent(self) -> tuple[float, float]:
        """The (epsilon, delta) spent by the rounds recorded so far (epsilon at the budget's delta)."""
        return self.get_epsilon(), self.config.delta

    def get_epsilon(self, delta: float | None = None) -> float:
        """Cumulative epsilon at total ``delta`` (default: the budget's), the refusal residual of
        the released rounds included: the Renyi account's epsilon at ``delta - (1 + e^epsilon) x
        beta`` (:meth:`NoisePlan.epsilon_at`; inf if the residual alone reaches ``delta``)."""
        target = self.config.delta if delta is None else _probability("delta", delta)
        return self._plan.epsilon_at(target, self._released)

    def get_delta(self, epsilon: float) -> float:
        """Cumulative total delta at ``epsilon``: the Renyi account's plus the refusal residual."""
        target = require_finite("epsilon", epsilon, 0.0)
        return self._plan.delta_at(target, self._released)

    def get_privacy_spent(self, delta: float | None = None) -> PrivacySpent:
        """Cumulative spend at ``delta`` (default: the budget's), as Flower reports it."""
        target = self.config.delta if delta is None else _probability("delta", delta)
        return PrivacySpent(epsilon=self.get_epsilon(target), delta=target, num_releases=self._released)

    def would_exceed(self, rounds: int = 1, max_epsilon: float | None = None) -> bool:
        """Whether releasing ``rounds`` more rounds would spend more than the budget's epsilon
        (or ``max_epsilon``) at the budget's delta. Changes nothing."""
        rounds = require_int("rounds", rounds, 1, MAX_ROUNDS)
        limit = self.config.epsilon if max_epsilon is None else require_finite("max_epsilon", max_epsilon, 0.0)
        return self._plan.spent_after(self._released + rounds)[0] > limit

    def record_round(
        self, server_round: int | None = None, *, num_contributors: int | None = None, colluders: int = 0
    ) -> PrivacySpent:
        """Record one released round and return the spend including it; call before releasing.

        Refuses, recording nothing: InsufficientNoiseError if ``num_contributors`` minus
        ``colluders`` is below the plan's honest count (``colluders`` defaults to 0, every
        contributor counted honest: see :func:`~secagg.dp.contributors.contributor_shortfall`
        for when that holds); ReplayError if ``server_round`` is not
        after the last recorded one; BudgetExceededError if the round would exceed the budget;
        ConfigurationError if the state file no longer holds what this accountant last wrote
        or read (another accountant charged it, or it was rolled back, replaced or removed), or
        cannot be written; if it was replaced but its folder could not be synced, the round is
        refused yet counted, as the file now records it (an over-count: do not release it), and
        each later round refused, nothing written, until that folder syncs;
        StateLockedError if another accountant holds the file's lock (it is held here from the
        re-read to the write, so no two accountants charge from one count); DecodeError if the
        file no longer parses (it is left as it is).
        """
        with contextlib.nullcontext() if self._path is None else locked(self._path):
            return self._record(server_round, num_contributors, colluders)

    def _record(self, server_round: int | None, num_contributors: int | None, colluders: int) -> PrivacySpent:
        self._check_file_unchanged()
        if self._unsynced:  # refused, writing nothing, until the last record's folder syncs
            assert self._path is not None
            sync_state_folder(self._path)
            self._unsynced = False
        if num_contributors is not None:
            check_contributors(self._plan, num_contributors, colluders)
        if server_round is not None:
            server_round = require_int("server_round", server_round, 0, MAX_SERVER_ROUND)
            if self._last_round is not None and server_round <= self._last_round:
                raise ReplayError(f"round {server_round} is not after the last recorded round {self._last_round}")
        if self.would_exceed(1):
            after = self._plan.spent_after(self._released + 1)[0]
            raise BudgetExceededError(
                f"releasing round {self._released + 1} would spend epsilon = {after:.6g} at delta = "
                f"{self.config.delta:g}, over the budget epsilon = {self.config.epsilon:g}; the round is refused"
            )
        state = self.state_dict()
        state["released"] = self._released + 1
        if server_round is not None:
            state["last_round"] = server_round
        if self._path is not None:
            try:
                self._save(state)
            except ConfigurationError as exc:
                if not self._file_holds(state):
                    raise  # the previous record is whole: nothing is counted
                # Replaced, only its folder not synced: the file counts the round, so does this
                # accountant (an over-count; else every later charge would see a changed file).
                self._released, self._last_round = self._parse(state)
                self._unsynced = True  # a file system that never syncs a folder burns no further round
                counted = f"Round {server_round}" if server_round is not None else f"Release {self._released}"
                raise ConfigurationError(
                    f"{exc}. {counted} is counted as released, as the file records it (an over-count): do not "
                    "release it"
                ) from exc
        self._released += 1
        if server_round is not None:
            self._last_round = server_round
        return self.get_privacy_spent()

    def _file_holds(self, state: Mapping[str, object]) -> bool:
        """Whether the state file now records ``state``'s count and last round (after a failed save)."""
        assert self._path is not None
        with contextlib.suppress(SecAggError):
            on_disk = read_state(self._path)
            return on_disk is not None and self._parse(on_disk) == self._parse(state)
        return False

    def _check_file_unchanged(self) -> None:
        """ConfigurationError if the state file differs from this accountant's state (count, last round, plan).

        An accountant charges from the count it holds: a second accountant on the same file (two
        servers, two aggregators) or a rollback while it runs would otherwise make it write a count
        below the rounds released. Re-reading before each charge detects both (a rollback between
        runs, before any accountant has read the file, cannot be seen: docs/privacy.md)."""
        if self._path is None:
            return
        state = read_state(self._path)
        if state is None:
            raise ConfigurationError(f"the accountant's state file {self._path} changed under it: it was removed")
        try:
            recorded = self._parse(state)
        except DecodeError as exc:
            raise type(exc)(f"the accountant's state file {self._path}: {exc}") from exc
        if recorded != (self._released, self._last_round):  # parsed strictly: 1.0 is not 1
            raise ConfigurationError(
                f"the accountant's state file {self._path} changed under it (another accountant charged it, or it "
                f"was rolled back or replaced): it no longer records {self._released} released rounds; refused"
            )

    def state_dict(self) -> dict[str, object]:
        """The JSON-serialisable state (what the state file holds)."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "accounting_method": ACCOUNTING_METHOD,
            "budget": {"epsilon": self.config.epsilon, "delta": self.config.delta},
            "plan_digest": self.config.digest(self._plan).hex(),
            "num_clients": self._plan.num_clients,
            "holder": None if self._holder is None else self._holder.hex(),
            "released": self._released,
            "last_round": self._last_round,
        }

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        """Restore :meth:`state_dict` output: DecodeError if malformed, ConfigurationError if it
        belongs to another budget or plan, or to a plan fixed for more nodes than this one's
        (``num_clients``: a plan for as many or more takes it over, over-counting)."""
        self._released, self._last_round = self._parse(state)

    def _parse(self, state: Mapping[str, object]) -> tuple[int, int | None]:
        """(released, last round) of ``state``, checked as :meth:`load_state_dict` documents."""
        return parse_state(state, self._plan, self._holder)

    def _check_holder(self, recorded: object) -> None:
        """DecodeError if ``recorded`` is no holder; ConfigurationError if it is another one's."""
        check_holder(recorded, self._holder)

    def _save(self, state: dict[str, object]) -> None:
        assert self._path is not None
        data = json.dumps(state, sort_keys=True, indent=1, allow_nan=False).encode("utf-8") + b"\n"
        write_state(self._path, data)  # ConfigurationError if it cannot be written and synced


def _probability(name: str, value: object) -> float:
    number = require_finite(name, value)
    if not 0.0 < number < 1.0:
        raise ConfigurationError(f"{name} must be in (0, 1), got {number}")
    return number
