"""A DP server restarted over its accountant's state file (a new Flower run, whose rounds count
from 1 again) goes on from the file's count: a round numbered at or below the file's last charged
round is skipped with the reason, never charged twice, and never ends the run with an exception;
the later rounds are charged within the same budget."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("flwr")
pytest.importorskip("dp_accounting")

from secagg.integrations.flower import SecAggGrid
from secagg.integrations.flower.protocol import SETUP

from .test_integrations_flower_clipping_dp import DP, NODES, dp_grid, options, run

pytestmark = pytest.mark.usefixtures("server_identity")


def _server(tmp_path: Path, state: Path) -> SecAggGrid:
    grid, _ = dp_grid(tmp_path)
    return SecAggGrid(grid, options(dp=DP, dp_state_file=str(state)))


def test_a_restarted_dp_server_skips_the_rounds_its_file_charged_and_goes_on(tmp_path: Path) -> None:
    # Prepare: a first run charges round 1 of the 2-round budget to the state file
    state = tmp_path / "accountant.json"
    first = _server(tmp_path, state)
    run(first, rounds=1)
    assert first.reports[0].skipped_reason is None
    # Execute: the server restarts (a new run: its rounds count from 1 again) over the same file
    restarted = _server(tmp_path, state)
    run(restarted, rounds=2)
    # Assert: round 1 is not charged again but skipped, naming the file's round; round 2 is charged
    again, second = restarted.reports
    assert again.aggregate is None and again.epsilon_spent == first.reports[0].epsilon_spent  # the file's spend
    assert again.skipped_reason is not None and "last charged round 1" in again.skipped_reason
    assert str(state) in again.skipped_reason
    assert second.skipped_reason is None and second.aggregate is not None
    assert restarted.dp is not None and restarted.dp.accountant is not None
    assert restarted.dp.accountant.num_releases == 2 and restarted.dp.accountant.spent()[0] <= DP.epsilon


def test_a_restarted_dp_server_past_its_budget_skips_every_round(tmp_path: Path) -> None:
    # Prepare: the whole 2-round budget spent by a first run
    state = tmp_path / "accountant.json"
    run(_server(tmp_path, state), rounds=2)
    # Execute: a restarted run of three rounds
    restarted = _server(tmp_path, state)
    run(restarted, rounds=3)
    # Assert: nothing is released, every round says why, the count is unchanged
    assert [r.aggregate for r in restarted.reports] == [None, None, None]
    assert all(r.skipped_reason for r in restarted.reports)
    assert restarted.dp is not None and restarted.dp.accountant is not None
    assert restarted.dp.accountant.num_releases == 2


def test_a_round_skipped_after_its_charge_reports_the_epsilon_it_spent(tmp_path: Path) -> None:
    # Prepare: three of five nodes never answer the setup, after the server charged the round
    grid, _ = dp_grid(tmp_path)
    grid.silent.update((node, SETUP) for node in NODES[2:])
    secure = SecAggGrid(grid, options(dp=DP, dp_state_file=str(tmp_path / "accountant.json")))
    # Execute
    run(secure, rounds=1)
    # Assert: nothing released, but the report says what the charge spent (not None, "nothing spent")
    report = secure.reports[0]
    assert report.aggregate is None and report.skipped_reason is not None
    assert secure.dp is not None and secure.dp.accountant is not None and secure.dp.accountant.num_releases == 1
    assert report.epsilon_spent is not None and report.epsilon_spent == secure.dp.accountant.spent()[0] > 0
