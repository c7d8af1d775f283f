"""A node keeps its own DP budget: a lying server cannot spend more of the patients' privacy
than the plan the setup binds declares, whatever it charges (or does not charge) itself.

The server here charges nothing (its accountant patched out), so only the nodes stand between
it and unbounded releases: more DP rounds than the plan's, several DP sessions in one round,
a node restart (fresh ``context.state``; the node's ``dp-state-file`` survives it), and
alternating between two plans. In each case the node refuses, before it trains or sends
anything, the first contribution that would take it past the plan's (epsilon, delta), and the
round report carries its reason.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("flwr")
pytest.importorskip("dp_accounting")

from flwr.app import ConfigRecord, Context, MessageType, RecordDict

from secagg.dp import DPConfig, calibrate
from secagg.dp.calibration import NoisePlan
from secagg.errors import BudgetExceededError, ConfigurationError, ProtocolError
from secagg.integrations.flower import NodePolicy, PaillierGrid, SecAggGrid
from secagg.integrations.flower._grid import RoundReport
from secagg.integrations.flower._node_errors import OTHER_PLAN
from secagg.integrations.flower.dp import DPRounds
from secagg.integrations.flower.node_budget import BUDGET_KEY, charge_node_budget, check_node_budget

from . import test_integrations_flower_paillier_dp as paillier_dp
from .flower_harness import Audit, FakeGrid, initial_arrays
from .test_integrations_flower_clipping_dp import DP, NODES, dp_grid, options

Secure = SecAggGrid | PaillierGrid
REFUSED = "privacy budget"
"""What a node's refusal of a contribution past its budget says."""


pytestmark = pytest.mark.usefixtures("server_identity")


@pytest.fixture(autouse=True)
def lying_accountant(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server charges nothing: its own accountant never refuses a round (nor a second session in one)."""
    monkeypatch.setattr(DPRounds, "charge", lambda self, server_round, num_nodes: None)


def dp_round(secure: Secure, server_round: int, lr: float = 0.1) -> RoundReport:
    """One DP training round driven by the server itself (``lr`` varies the session within a round)."""
    messages = [
        secure.create_message(
            RecordDict({"arrays": initial_arrays(), "config": ConfigRecord({"server-round": server_round, "lr": lr})}),
            MessageType.TRAIN, node, str(server_round),
        )
        for node in sorted(secure.get_node_ids())
    ]  # fmt: skip
    secure.send_and_receive(messages)
    return secure.reports[-1]


Federation = Callable[[Path, Audit, DPConfig], tuple[FakeGrid, Secure, tuple[int, ...]]]


REPEATS = {"allow_repeat_model": True, "max_sessions_per_round": 8}
"""The budget is what these tests pin: every round sends one model, several sessions a round, so the
nodes opt out of the one-sum rule by name (tests/integrations/test_integrations_flower_one_sum.py)."""


def masking(tmp_path: Path, audit: Audit, dp: DPConfig = DP) -> tuple[FakeGrid, Secure, tuple[int, ...]]:
    grid, _ = dp_grid(tmp_path, audit, policy=NodePolicy(allow_semi_honest=True, **REPEATS))  # type: ignore[arg-type]
    return grid, SecAggGrid(grid, options(dp=dp)), NODES


def paillier(tmp_path: Path, audit: Audit, dp: DPConfig = DP) -> tuple[FakeGrid, Secure, tuple[int, ...]]:
    policy = NodePolicy(min_colluders=0, **REPEATS)  # type: ignore[arg-type]
    grid, secure = paillier_dp.dp_grid(tmp_path, audit, policy, dp=dp)
    return grid, secure, paillier_dp.NODES


# The Paillier rounds are heavy: CI runs them in the slow suite, beside the default suite.
PROTOCOLS = pytest.mark.parametrize(
    "federation", [masking, pytest.param(paillier, marks=pytest.mark.slow)], ids=["masking", "paillier"]
)


def contributed(report: RoundReport, nodes: tuple[int, ...]) -> bool:
    return report.skipped_reason is None and report.included == frozenset(nodes)


def refused_by_all(report: RoundReport, nodes: tuple[int, ...], reason: str = REFUSED) -> bool:
    return report.aggregate is None and all(reason in report.errors.get(node, "") for node in nodes)


@PROTOCOLS
def test_a_node_refuses_the_first_dp_round_past_the_plans_rounds(tmp_path: Path, federation: Federation) -> None:
    # Prepare: the plan declares 2 rounds (epsilon 2); the server runs a third one
    audit = Audit()
    _, secure, nodes = federation(tmp_path, audit, DP)
    # Execute
    reports = [dp_round(secure, server_round) for server_round in (1, 2, 3)]
    # Assert: two contributions, then every node refuses before training, and says why
    assert contributed(reports[0], nodes) and contributed(reports[1], nodes), reports[1].errors
    assert refused_by_all(reports[2], nodes), reports[2].errors
    assert audit.of_round(3) == {}


@PROTOCOLS
def test_every_dp_session_within_one_round_is_charged(tmp_path: Path, federation: Federation) -> None:
    # Prepare: one round, three sessions (another training configuration each: another session id)
    audit = Audit()
    _, secure, nodes = federation(tmp_path, audit, DP)
    # Execute
    reports = [dp_round(secure, 1, lr) for lr in (0.1, 0.2, 0.3)]
    # Assert: the plan's two contributions, then the third session of the round is refused
    assert contributed(reports[0], nodes) and contributed(reports[1], nodes), reports[1].errors
    assert refused_by_all(reports[2], nodes), reports[2].errors
    assert [record.server_round for record in audit.records] == [1] * (2 * len(nodes))


@PROTOCOLS
def test_a_restarted_node_with_a_state_file_still_refuses_past_the_budget(
    tmp_path: Path, federation: Federation
) -> None:
    # Prepare: every node names a state file in its node config; two rounds are contributed
    audit = Audit()
    grid, secure, nodes = federation(tmp_path, audit, DP)
    files = {node: tmp_path / f"budget-{i}.json" for i, node in enumerate(nodes)}
    grid.node_configs.update({node: {"dp-state-file": str(path)} for node, path in files.items()})
    first = [dp_round(secure, server_round) for server_round in (1, 2)]
    assert all(contributed(report, nodes) for report in first), [r.errors for r in first]
    # Execute: the nodes restart (fresh context.state), the server too, and starts again at round 1
    grid.states.clear()
    restarted = type(secure)(grid, secure.options)
    report = dp_round(restarted, 1)
    # Assert: still refused; the files hold the two charged contributions, mode 0600
    assert refused_by_all(report, nodes), report.errors
    for path in files.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert json.loads(path.read_text())["released"] == 2


@pytest.mark.parametrize("state_file", [False, True], ids=["context-state", "state-file"])
def test_alternating_between_two_plans_never_resets_the_count(tmp_path: Path, state_file: bool) -> None:
    # Prepare: one federation, two servers on it with different plans (another epsilon and rounds)
    audit = Audit()
    if state_file:
        grid, plan_a, nodes = masking(tmp_path, audit, DP)
        files = {node: str(tmp_path / f"budget-{i}.json") for i, node in enumerate(nodes)}
        grid.node_configs.update({node: {"dp-state-file": path} for node, path in files.items()})
    else:  # the budget in context.state: no state file, the named opt-out
        policy = NodePolicy(allow_semi_honest=True, require_dp_state_file=False, **REPEATS)  # type: ignore[arg-type]
        grid, _ = dp_grid(tmp_path, audit, policy=policy)
        grid.dp_state_dir = None
        plan_a, nodes = SecAggGrid(grid, options(dp=DP)), NODES
    plan_b = SecAggGrid(grid, options(dp=dataclasses.replace(DP, epsilon=4.0, rounds=4)))
    # Execute: A, B, A, A, B in rounds 1..5
    reports = [dp_round(secure, r) for r, secure in enumerate((plan_a, plan_b, plan_a, plan_a, plan_b), start=1)]
    # Assert: the plan the node first contributed under binds its budget: B is refused, and A's
    # count goes on (its third contribution is refused)
    assert contributed(reports[0], nodes), reports[0].errors
    assert refused_by_all(reports[1], nodes, OTHER_PLAN), reports[1].errors
    assert contributed(reports[2], nodes), reports[2].errors
    assert refused_by_all(reports[3], nodes), reports[3].errors
    assert refused_by_all(reports[4], nodes, OTHER_PLAN), reports[4].errors
    assert sorted({record.server_round for record in audit.records}) == [1, 3]


# --- The node's budget on its own ----------------------------------------------------------------


@pytest.fixture(scope="module")
def plan() -> NoisePlan:
    config = DPConfig(epsilon=2.0, delta=1e-5, rounds=2, l2_clip=1.0, min_honest=2)
    return calibrate(config, num_clients=5, scale=256.0, dimension=17)


def test_a_refused_charge_records_nothing(plan: NoisePlan) -> None:
    context = Context(1, 7, {}, RecordDict(), {})
    charge_node_budget(context, plan, None)
    charge_node_budget(context, plan, None)
    with pytest.raises(BudgetExceededError, match="it has made 2 DP contributions under this plan"):
        charge_node_budget(context, plan, None)
    record = context.state[BUDGET_KEY]
    assert isinstance(record, ConfigRecord) and record["released"] == 2


def test_the_setup_check_refuses_a_contribution_past_the_budget_before_any_charge(plan: NoisePlan) -> None:
    # The check a node runs at setup, before it trains (the charge before sending comes later)
    context = Context(1, 7, {}, RecordDict(), {})
    check_node_budget(context, plan, None)  # control: a fresh budget allows a contribution
    charge_node_budget(context, plan, None)
    check_node_budget(context, plan, None)
    charge_node_budget(context, plan, None)
    # Execute / Assert
    with pytest.raises(BudgetExceededError, match="it has made 2 DP contributions under this plan"):
        check_node_budget(context, plan, None)
    record = context.state[BUDGET_KEY]
    assert isinstance(record, ConfigRecord) and record["released"] == 2


def test_a_malformed_stored_count_and_a_state_file_others_can_write_are_refused(
    tmp_path: Path, plan: NoisePlan
) -> None:
    context = Context(1, 7, {}, RecordDict(), {})
    context.state[BUDGET_KEY] = ConfigRecord({"plan": plan.config.digest(plan), "released": -1})
    with pytest.raises(ProtocolError, match="malformed"):
        check_node_budget(context, plan, None)
    path = tmp_path / "budget.json"
    charge_node_budget(Context(1, 7, {}, RecordDict(), {}), plan, str(path))
    path.chmod(0o666)  # others could roll the count back
    with pytest.raises(ConfigurationError, match="writable by its owner only"):
        check_node_budget(Context(1, 7, {}, RecordDict(), {}), plan, str(path))


def test_without_posix_locks_the_state_file_still_counts_every_contribution(
    tmp_path: Path, plan: NoisePlan, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a platform without fcntl (the directory lock is POSIX only)
    real_import = importlib.import_module

    def no_fcntl(name: str, package: str | None = None) -> object:
        if name == "fcntl":
            raise ImportError("no fcntl here")
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", no_fcntl)
    path = str(tmp_path / "budget.json")
    # Execute / Assert: the file still binds the budget across fresh contexts
    charge_node_budget(Context(1, 7, {}, RecordDict(), {}), plan, path)
    charge_node_budget(Context(1, 8, {}, RecordDict(), {}), plan, path)
    with pytest.raises(BudgetExceededError, match="it has made 2 DP contributions"):
        charge_node_budget(Context(1, 9, {}, RecordDict(), {}), plan, path)


def test_a_refusal_past_the_budget_names_the_state_file_and_what_a_new_budget_takes(
    tmp_path: Path, plan: NoisePlan
) -> None:
    # Prepare: a node whose budget file holds the plan's two contributions
    path = tmp_path / "hospital-0.dp-budget.json"
    charge_node_budget(Context(1, 7, {}, RecordDict(), {}), plan, str(path))
    charge_node_budget(Context(1, 8, {}, RecordDict(), {}), plan, str(path))
    # Execute / Assert: the setup check and the charge both refuse the third, naming the file, and
    # say what a new budget is: a new state file and the hospital's new privacy decision
    for refuse in (check_node_budget, charge_node_budget):
        with pytest.raises(BudgetExceededError) as info:
            refuse(Context(1, 9, {}, RecordDict(), {}), plan, str(path))
        message = str(info.value)
        assert f"(dp-state-file {path})" in message, message
        assert "a new budget is a new state file" in message, message
        assert "a new privacy decision of the hospital, never the server's" in message, message
    assert json.loads(path.read_text())["released"] == 2


def test_a_refusal_past_a_budget_without_a_file_says_where_it_is_kept(plan: NoisePlan) -> None:
    context = Context(1, 7, {}, RecordDict(), {})
    charge_node_budget(context, plan, None)
    charge_node_budget(context, plan, None)
    with pytest.raises(BudgetExceededError, match=r"\(this run's context.state, no dp-state-file\)"):
        check_node_budget(context, plan, None)
