"""The Flower server's DP state file: bound to the node count its plan was fixed for, and a
corrupted or locked file skips the round with the reason, never raises out of the run.

- A restarted server over a state file charged under a plan for 5 nodes calibrated its plan for
  its own first round's count (3): same digest (``min_honest`` fixes h; n is not in the digest),
  so it loaded the file and accounted the released 5-node rounds as 3-node ones (the refusal
  residual under-counted). It now calibrates for the count the file records (at least), so a
  restarted run goes on under the very plan the file was charged for.
- A state file that no longer parses (truncated, garbage bytes, a field of the wrong type)
  raised DecodeError out of the round, at the plan or at the charge. It is now a
  ConfigurationError naming the file and what to do: the round is skipped with that reason in
  its RoundReport, nothing charged, nothing released, the file left as it is, and a later
  round goes on once the operator restores the file. A held lock skips the round the same way.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

pytest.importorskip("flwr")
pytest.importorskip("dp_accounting")

from secagg.dp import DPConfig, NoisePlan
from secagg.dp._state_file import locked
from secagg.errors import ConfigurationError, StateLockedError
from secagg.integrations.flower import SecAggGrid
from secagg.integrations.flower import dp as flower_dp
from secagg.integrations.flower.dp import DPRounds
from secagg.masking import SEMI_HONEST, MaskingConfig

from .test_integrations_flower_clipping_dp import DP, dp_grid, options, run

pytestmark = pytest.mark.usefixtures("server_identity")

CONFIG = DPConfig(epsilon=2.0, delta=1e-5, rounds=3, l2_clip=1.0, min_honest=1)
DIMENSION = 10


def _plan_round(rounds: DPRounds, nodes: int) -> None:
    guarantee = MaskingConfig.secagg(nodes, DIMENSION, mode=SEMI_HONEST).guarantee
    rounds.plan_round(nodes, DIMENSION, guarantee, 100, None)


def _charged(path: Path, nodes: int = 5) -> DPRounds:
    rounds = DPRounds(CONFIG, path)
    _plan_round(rounds, nodes)
    assert rounds.charge(1, nodes) is None
    return rounds


def test_a_restarted_server_with_fewer_nodes_goes_on_under_the_plan_its_file_was_charged_for(
    tmp_path: Path,
) -> None:
    # Prepare: round 1 charged under a plan fixed for 5 nodes
    path = tmp_path / "accountant.json"
    first = _charged(path)
    # Execute: the server restarts; its first DP round has 3 nodes
    restarted = DPRounds(CONFIG, path)
    _plan_round(restarted, 3)
    # Assert: the plan is the file's (5 nodes), not one for 3 that would under-count round 1
    assert restarted.plan == first.plan and restarted.plan is not None and restarted.plan.num_clients == 5
    assert restarted.charge(2, 3) is None
    assert json.loads(path.read_text())["num_clients"] == 5


def test_a_restarted_server_with_more_nodes_and_the_same_noise_goes_on_over_counted(tmp_path: Path) -> None:
    # Prepare: round 1 charged under a plan fixed for 3 nodes
    path = tmp_path / "accountant.json"
    first = _charged(path, nodes=3)
    # Execute: the server restarts with 5 nodes; the noise calibrated for 5 is the same (one digest)
    restarted = DPRounds(CONFIG, path)
    _plan_round(restarted, 5)
    # Assert: the plan for 5 takes the file over; its spend bounds the 3-node plan's from above
    assert first.plan is not None and restarted.plan is not None and restarted.plan.num_clients == 5
    assert restarted.plan.variance == first.plan.variance
    assert restarted.charge(2, 5) is None and json.loads(path.read_text())["num_clients"] == 5
    assert restarted.spent() >= first.plan.epsilon_at(CONFIG.delta, 2)


def test_a_restarted_server_with_more_nodes_and_other_noise_goes_on_under_the_files_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: round 1 charged under a plan fixed for 3 nodes; for 5 nodes the calibration gives
    # another sigma^2 (a larger residual can move it past the 21-bit rounding: another digest)
    path = tmp_path / "accountant.json"
    first = _charged(path, nodes=3)
    real = flower_dp.calibrated

    def calibrated(config: DPConfig, num_clients: int, scale: float, dimension: int) -> NoisePlan:
        plan = real(config, num_clients, scale, dimension)
        return plan if num_clients <= 3 else dataclasses.replace(plan, variance=plan.variance * 2)

    monkeypatch.setattr(flower_dp, "calibrated", calibrated)
    # Execute: the server restarts; its first DP round has 5 nodes
    restarted = DPRounds(CONFIG, path)
    _plan_round(restarted, 5)
    # Assert: it goes on under the file's plan (not refused as "another plan"); a round of 5 nodes
    # is skipped naming both counts, a round of 3 is charged
    assert restarted.plan == first.plan
    reason = restarted.charge(2, 5)
    assert reason is not None and "5 nodes" in reason and "for 3" in reason, reason
    assert restarted.charge(3, 3) is None
    assert restarted.accountant is not None and restarted.accountant.num_releases == 2


def _truncated(path: Path) -> bytes:
    return path.read_bytes()[:40]


def _garbage(path: Path) -> bytes:
    return b"\x00\xffnot json at all\x89PNG"


def _wrong_type(path: Path) -> bytes:
    state = json.loads(path.read_bytes())
    state["released"] = "1"
    return json.dumps(state).encode()


CORRUPTIONS = {"truncated": _truncated, "garbage": _garbage, "wrong type": _wrong_type}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_corrupted_state_file_at_the_plan_skips_the_round_naming_the_file(tmp_path: Path, corruption: str) -> None:
    # Prepare: a state file with one charge, then corrupted before a restart
    path = tmp_path / "accountant.json"
    _charged(path)
    path.write_bytes(CORRUPTIONS[corruption](path))
    before = path.read_bytes()
    restarted = DPRounds(CONFIG, path)
    # Execute / Assert: a ConfigurationError (the server skips the round with it), naming the file
    with pytest.raises(ConfigurationError) as refusal:
        _plan_round(restarted, 5)
    message = str(refusal.value)
    assert str(path) in message and "nothing is charged" in message and "backup" in message, message
    assert path.read_bytes() == before and restarted.accountant is None and restarted.reported() is None


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_state_file_corrupted_during_the_run_skips_the_round_and_charges_nothing(
    tmp_path: Path, corruption: str
) -> None:
    # Prepare: round 1 charged; the file is corrupted while the server runs
    path = tmp_path / "accountant.json"
    rounds = _charged(path)
    good = path.read_bytes()
    path.write_bytes(CORRUPTIONS[corruption](path))
    before = path.read_bytes()
    # Execute
    reason = rounds.charge(2, 5)
    # Assert: the round is skipped with the reason, nothing charged, the file unchanged
    assert reason is not None and str(path) in reason and "backup" in reason, reason
    assert path.read_bytes() == before
    assert rounds.accountant is not None and rounds.accountant.num_releases == 1
    # ... and once the operator restores the file, the run goes on
    path.write_bytes(good)
    assert rounds.charge(3, 5) is None and rounds.accountant.num_releases == 2


def test_a_held_lock_skips_the_round_naming_the_lock_and_charges_nothing(tmp_path: Path) -> None:
    # Prepare: no state file yet, its lock held by another accountant
    path = tmp_path / "accountant.json"
    rounds = DPRounds(CONFIG, path)
    # Execute / Assert: opening the accountant (it creates the file under the lock) is refused
    with locked(path), pytest.raises(StateLockedError, match="in use"):
        _plan_round(rounds, 5)
    assert not path.exists() and rounds.accountant is None
    _plan_round(rounds, 5)
    with locked(path):  # ... and a charge while another holds it
        reason = rounds.charge(1, 5)
    assert reason is not None and "in use" in reason and str(path) in reason, reason
    assert rounds.accountant is not None and rounds.accountant.num_releases == 0
    assert json.loads(path.read_text())["released"] == 0


def test_a_flower_server_over_a_garbage_state_file_skips_the_round_and_goes_on(tmp_path: Path) -> None:
    # Prepare: the server's state file holds garbage
    path = tmp_path / "accountant.json"
    path.write_bytes(b"\x00garbage")
    path.chmod(0o600)
    grid, _ = dp_grid(tmp_path)
    secure = SecAggGrid(grid, options(dp=DP, dp_state_file=str(path)))
    # Execute
    run(secure, rounds=1)
    # Assert: the round's report names the file; nothing released, nothing written
    (report,) = secure.reports
    assert report.aggregate is None and report.skipped_reason is not None
    assert str(path) in report.skipped_reason, report.skipped_reason
    assert path.read_bytes() == b"\x00garbage"


def _version_1(path: Path) -> bytes:
    state = json.loads(path.read_bytes())
    return json.dumps({k: v for k, v in state.items() if k not in ("num_clients", "holder")} | {"version": 1}).encode()


@pytest.mark.parametrize("when", ["at the plan", "at the charge"])
def test_a_version_1_state_file_skips_the_round_saying_how_to_update_it_not_to_restore_a_backup(
    tmp_path: Path, when: str
) -> None:
    # Prepare: a file of the previous format (no node count), at a restart or under a running server
    path = tmp_path / "accountant.json"
    rounds = _charged(path)
    path.write_bytes(_version_1(path))
    before = path.read_bytes()
    # Execute
    if when == "at the plan":
        with pytest.raises(ConfigurationError) as refusal:
            _plan_round(DPRounds(CONFIG, path), 5)
        reason: str | None = str(refusal.value)
    else:
        reason = rounds.charge(2, 5)
    # Assert: the reason names the file and the update, and does not call it corrupted
    assert reason is not None and str(path) in reason and "version 1" in reason and '"num_clients"' in reason, reason
    assert "backup" not in reason and "cannot be read" not in reason, reason
    assert "nothing is charged" in reason and path.read_bytes() == before
