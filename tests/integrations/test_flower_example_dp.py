"""The Flower example's optional DP mode: ``dp-epsilon > 0`` in the run config.

The ServerApp then runs every masking round as a distributed-DP round
(``SecAggOptions(dp=DPConfig(...))``, docs/privacy.md, "Flower"), and each node
trains one DP step per round: ``-learning-rate * sum_i clip(g_i, dp-clip)``, so one
patient moves a node's update by at most ``learning-rate * dp-clip``, the
``l2_clip`` the server declares. A node may insist on DP with ``require-dp = true``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import stat
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("sklearn")
pytest.importorskip("dp_accounting")

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable

from secagg.dp import DPConfig
from secagg.errors import ConfigurationError

from .flower_example import (
    EXAMPLE,
    example,
    example_on_path,  # noqa: F401  (autouse: the example app on the import path)
)
from .flower_harness import FakeGrid
from .paillier_keys import PASSPHRASE, key_files

NODES = 4
NODE_IDS = (3001, 3002, 3003, 3004)


@pytest.fixture
def keys(example_keys: Path) -> Path:
    """This test's copy of the example's shared key ceremony (tests/integrations/conftest.py)."""
    return example_keys


def run_config(**overrides: object) -> dict[str, object]:
    return {"num-server-rounds": 2, "protocol": "secagg", "num-partitions": NODES, "min-nodes": NODES,
            "stage-timeout": 5.0, "dp-epsilon": 8.0, "dp-delta": 1e-5, "dp-clip": 1.0,
            "dp-learning-rate": 0.02, **overrides}


def _with_node_config(app: ClientApp, extra: dict[str, object]) -> ClientApp:
    """``app`` with ``extra`` added to every node config first."""

    def call(message: Message, context: Context) -> Message:
        context.node_config.update(extra)  # type: ignore[arg-type]
        return app(message, context)

    return call  # type: ignore[return-value]


def federation(keys: Path, config: dict[str, object], node_config: dict[str, object] | None = None) -> FakeGrid:
    """The example's ClientApp on four in-process nodes with the ceremony's keys and ``config`` as run config
    (to which the server's copy of the federation's public list is added, as simulate.py passes it)."""
    client_app = example("client_app")
    config.setdefault("trusted-keys-file", str(keys / "federation.keys"))

    def node_context(node: int) -> ClientAppCallable:
        def mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
            context.node_config.update({"partition-id": NODE_IDS.index(node), "num-partitions": NODES,
                                        "key-dir": str(keys), **(node_config or {})})
            context.run_config.update(config)  # type: ignore[arg-type]
            return call_next(message, context)

        return mod  # type: ignore[return-value]

    apps = {node: client_app.make_client_app([node_context(node), client_app.node_keys_mod,
                                               client_app.audited_secagg_mod]) for node in NODE_IDS}
    return FakeGrid(apps)  # type: ignore[arg-type]


def run_server(grid: FakeGrid, config: dict[str, object], tmp_path: Path) -> dict[str, object]:
    result = tmp_path / "result.json"
    server = example("server_app").make_server_app({**config, "result-path": str(result)})
    server(grid, Context(77, 1, {}, RecordDict(), dict(config)))  # type: ignore[arg-type]  # the nodes' run config
    return dict(json.loads(result.read_text()))


def test_the_run_config_turns_dp_on_and_every_round_is_charged(keys: Path, tmp_path: Path) -> None:
    # Prepare
    config = run_config()
    # Execute
    report = run_server(federation(keys, config), config, tmp_path)
    # Assert: two noised rounds of all four nodes, the spend rising to at most the budget
    rounds = report["rounds"]
    assert isinstance(rounds, list) and len(rounds) == 2
    assert all(len(r["included"]) == NODES and r["aggregate"] is not None for r in rounds)
    spent = [r["epsilon_spent"] for r in rounds]
    assert 0.0 < spent[0] < spent[1] <= 8.0
    assert rounds[-1]["accuracy"] > 0.85


def budget_files(keys: Path) -> list[Path]:
    return [keys / f"hospital-{partition}.dp-budget.json" for partition in range(NODES)]


def test_each_node_keeps_its_dp_budget_in_a_0600_file_in_its_key_directory(keys: Path, tmp_path: Path) -> None:
    # Prepare
    config = run_config()
    # Execute
    run_server(federation(keys, config), config, tmp_path)
    # Assert: one file per node, owner-only, counting the node's two noised contributions
    for path in budget_files(keys):
        assert path.is_file(), sorted(p.name for p in keys.iterdir())
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert json.loads(path.read_text())["released"] == 2


def test_a_restarted_node_remembers_its_budget_and_refuses_to_exceed_it(keys: Path, tmp_path: Path) -> None:
    # Prepare: a run of the plan's two rounds spends every node's budget
    config = run_config()
    first = run_server(federation(keys, config), config, tmp_path)
    assert all(r["aggregate"] is not None for r in first["rounds"])  # type: ignore[union-attr]
    # Execute: the nodes restart (a fresh context.state) and a server with a fresh accountant
    # runs the same plan again
    config = run_config()
    again = run_server(federation(keys, config), config, tmp_path)
    # Assert: every node refuses from its own file; nothing is aggregated
    for only in again["rounds"]:  # type: ignore[union-attr]
        assert only["aggregate"] is None
        assert len(only["errors"]) == NODES, only["errors"]
        assert all("budget" in reason for reason in only["errors"].values()), only["errors"]
    assert all(json.loads(path.read_text())["released"] == 2 for path in budget_files(keys))


def test_a_node_config_dp_state_file_is_kept(keys: Path, tmp_path: Path) -> None:
    # Prepare: node 0's operator names its own file
    own = tmp_path / "hospital-a-budget.json"
    config = run_config(**{"num-server-rounds": 1})
    grid = federation(keys, config)
    first = NODE_IDS[0]
    grid.apps[first] = _with_node_config(grid.apps[first], {"dp-state-file": str(own)})
    # Execute
    run_server(grid, config, tmp_path)
    # Assert
    assert json.loads(own.read_text())["released"] == 1
    assert not budget_files(keys)[0].exists()
    assert all(path.is_file() for path in budget_files(keys)[1:])


def test_without_dp_epsilon_no_round_is_noised(keys: Path, tmp_path: Path) -> None:
    # Prepare
    config = run_config(**{"dp-epsilon": 0.0, "num-server-rounds": 1})
    # Execute
    report = run_server(federation(keys, config), config, tmp_path)
    # Assert
    assert [r["epsilon_spent"] for r in report["rounds"]] == [None]  # type: ignore[union-attr]


def test_a_node_that_requires_dp_refuses_a_round_without_it(keys: Path, tmp_path: Path) -> None:
    # Prepare
    config = run_config(**{"dp-epsilon": 0.0, "num-server-rounds": 1})
    # Execute
    report = run_server(federation(keys, config, {"require-dp": True}), config, tmp_path)
    # Assert: no aggregate; every node said why
    (only,) = report["rounds"]  # type: ignore[misc]
    assert only["aggregate"] is None
    assert all("differential privacy" in reason or "DP" in reason for reason in only["errors"].values())


def test_one_patient_moves_a_nodes_dp_step_by_at_most_the_declared_clip() -> None:
    # Prepare: a node's rows with and without its first patient
    task = example("task")
    data = task.local_data(0, NODES)
    params = task.initial_params()
    fewer = type(data)(data.client_id, data.features[1:], data.labels[1:])
    # Execute
    with_all = task.dp_step(params, data, learning_rate=0.02, clip=1.0)
    without = task.dp_step(params, fewer, learning_rate=0.02, clip=1.0)
    # Assert
    change = np.sqrt(sum(float(np.sum((a - b) ** 2)) for a, b in zip(with_all, without, strict=True)))
    assert 0.0 < change <= 0.02 * 1.0 + 1e-12


def test_the_dp_step_clip_is_the_bound_l2_clip_over_the_rate_and_a_sampled_plan_is_refused() -> None:
    # Mutation audit: the example takes full-batch DP steps, so a bound plan declaring Poisson
    # sampling (its amplification assumed by the noise) must be refused, not trained without it
    client_app = example("client_app")
    plan = DPConfig(epsilon=8.0, delta=1e-5, rounds=2, l2_clip=0.02)
    assert client_app.dp_clip(plan, 0.02) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="Poisson sampling"):
        client_app.dp_clip(dataclasses.replace(plan, sampling_rate=0.1), 0.02)
    with pytest.raises(ValueError, match="learning rate"):
        client_app.dp_clip(plan, 0.0)


def test_dp_settings_are_validated_before_any_round(keys: Path, tmp_path: Path) -> None:
    # Prepare
    config = run_config(**{"dp-delta": 1.5})
    # Execute / Assert
    with pytest.raises(ConfigurationError, match="delta"):
        run_server(federation(keys, config), config, tmp_path)


def paillier_federation(
    keys: Path, tmp_path: Path, node_config: dict[str, object] | None = None, **overrides: object
) -> tuple[FakeGrid, dict[str, object]]:
    """The example's four nodes with a 3-of-4 Paillier key (each node its sealed share and a 0600
    passphrase file), DP on, and the run config that names the key."""
    ceremony = tmp_path / "ceremony"
    public_path, shares = key_files(ceremony, NODES, 3)
    passphrase = ceremony / "passphrase"
    passphrase.write_text(PASSPHRASE + "\n")
    passphrase.chmod(0o600)
    config = run_config(**{"protocol": "paillier", "public-key-file": str(public_path), "dp-epsilon": 3.0,
                           **overrides})

    def share_of(partition: int) -> dict[str, object]:
        return {"key-share-file": str(shares[partition]), "key-share-passphrase-file": str(passphrase)}

    grid = federation(keys, config, node_config)
    for node, app in list(grid.apps.items()):
        grid.apps[node] = _with_node_config(app, share_of(NODE_IDS.index(node)))
    return grid, config


def test_paillier_nodes_apply_the_example_node_policy(keys: Path, tmp_path: Path) -> None:
    # Prepare: Paillier rounds without DP; every node's own config requires DP
    grid, config = paillier_federation(keys, tmp_path, {"require-dp": True}, **{"dp-epsilon": 0.0})
    # Execute
    report = run_server(grid, config, tmp_path)
    # Assert: no aggregate; every node said why (the example gave Paillier nodes no policy before)
    rounds = report["rounds"]
    assert isinstance(rounds, list) and all(r["aggregate"] is None for r in rounds)
    assert all("DP" in reason or "differential privacy" in reason for reason in rounds[0]["errors"].values())


@pytest.mark.slow  # a heavy Flower round: CI runs it in the slow suite, beside the default suite
def test_paillier_rounds_take_the_same_dp_run_config(keys: Path, tmp_path: Path) -> None:
    # Prepare: a 3-of-4 key, DP on
    grid, config = paillier_federation(keys, tmp_path)
    # Execute
    report = run_server(grid, config, tmp_path)
    # Assert
    rounds = report["rounds"]
    assert isinstance(rounds, list) and [r["protocol"] for r in rounds] == ["paillier", "paillier"]
    assert all(r["aggregate"] is not None for r in rounds), [r["errors"] for r in rounds]
    assert 0.0 < rounds[0]["epsilon_spent"] < rounds[1]["epsilon_spent"] <= 3.0
    # the 3-of-4 key is the default threshold for 4 shares: one colluder, one dropout, reported per round
    assert [r["guarantee"] for r in rounds] == [
        "private against a lying server plus up to 1 colluding client; completes with up to 1 dropout"
    ] * 2


def keyless(extra: dict[str, object] | None = None) -> dict[str, object]:
    """The node config of a node without an identity key that takes part in semi-honest rounds."""
    return {"key-dir": "", "allow-semi-honest": True, **(extra or {})}


def test_a_node_without_an_identity_key_refuses_dp_without_a_budget_file(keys: Path, tmp_path: Path) -> None:
    # Prepare: semi-honest DP rounds; the nodes have no identity key (the semi-honest opt-in) and
    # name no dp-state-file, so their budget could only live in context.state (forgotten on restart)
    config = run_config(mode="semi-honest", **{"num-server-rounds": 1})
    # Execute
    report = run_server(federation(keys, config, keyless()), config, tmp_path)
    # Assert: every node refused the setup, naming the file it needs; nothing aggregated
    (only,) = report["rounds"]  # type: ignore[misc]
    assert only["aggregate"] is None
    assert len(only["errors"]) == NODES, only["errors"]
    assert all("dp-state-file" in reason for reason in only["errors"].values()), only["errors"]
    assert not any(keys.glob("*.dp-budget.json"))


def test_a_node_without_an_identity_key_keeps_its_budget_in_its_named_file(keys: Path, tmp_path: Path) -> None:
    # Prepare: each keyless node names its own budget file
    files = {node: tmp_path / f"budget-{node}.json" for node in NODE_IDS}

    def grid(config: dict[str, object]) -> FakeGrid:
        nodes = federation(keys, config, keyless())
        for node, app in list(nodes.apps.items()):
            nodes.apps[node] = _with_node_config(app, {"dp-state-file": str(files[node])})
        return nodes

    # Execute: a run of the plan's two rounds, then the nodes restart (a fresh context.state) and a
    # server with a fresh accountant runs the same plan again
    config = run_config(mode="semi-honest")
    first = run_server(grid(config), config, tmp_path)
    config = run_config(mode="semi-honest")
    again = run_server(grid(config), config, tmp_path)
    # Assert: the first run counted in the files (0600); the restarted nodes refuse from them
    assert all(r["aggregate"] is not None for r in first["rounds"]), first["rounds"]  # type: ignore[union-attr]
    for path in files.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and json.loads(path.read_text())["released"] == 2
    for only in again["rounds"]:  # type: ignore[union-attr]
        assert only["aggregate"] is None
        assert all("budget" in reason for reason in only["errors"].values()), only["errors"]


def test_the_simulation_refuses_semi_honest_dp_before_starting(capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: simulate.py's virtual nodes without keys have no budget file of their own
    spec = importlib.util.spec_from_file_location("flower_simulate", EXAMPLE / "simulate.py")
    assert spec is not None and spec.loader is not None
    simulate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(simulate)
    # Execute / Assert: refused by the argument parser, before Ray starts
    with pytest.raises(SystemExit) as exit_info:
        simulate.main(["--semi-honest", "--dp-epsilon", "1.0"])
    assert exit_info.value.code == 2
    assert "dp-state-file" in capsys.readouterr().err


@pytest.mark.parametrize("lie", ["no DP", "a larger epsilon", "a larger delta"])
def test_a_server_running_other_dp_than_the_bound_run_config_declares_is_refused(
    keys: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lie: str
) -> None:
    # Prepare: every node and the ServerApp hold the same run config (dp-epsilon 8, delta 1e-5;
    # its digest bound into every round), but a lying ServerApp runs rounds without DP, or with
    # more epsilon or delta than that run config declares
    config = run_config(**{"num-server-rounds": 1})
    server_app = example("server_app")
    honest = server_app.dp_settings

    def lying(settings: dict[str, object]) -> tuple[DPConfig | None, str | None]:
        dp, state = honest(settings)
        assert dp is not None
        if lie == "no DP":
            return None, None
        if lie == "a larger epsilon":
            return dataclasses.replace(dp, epsilon=1.5 * dp.epsilon), state
        return dataclasses.replace(dp, delta=10 * dp.delta), state

    monkeypatch.setattr(server_app, "dp_settings", lying)
    # Execute
    report = run_server(federation(keys, config), config, tmp_path)
    # Assert: no aggregate; every node said why
    (only,) = report["rounds"]  # type: ignore[misc]
    assert only["aggregate"] is None, only
    assert len(only["errors"]) == NODES, only["errors"]



def evaluate(grid: FakeGrid) -> Message:
    """The first node's reply to an evaluate message carrying the example's initial model."""
    task = example("task")
    content = RecordDict({"arrays": task.to_record(task.initial_params())})
    (reply,) = grid.send_and_receive([grid.create_message(content, "evaluate", NODE_IDS[0], "1")])
    return reply


@pytest.mark.parametrize(("dp_epsilon", "node_config"), [(8.0, {}), (0.0, {"require-dp": True})])
def test_a_node_holding_the_server_to_dp_refuses_federated_evaluation(
    keys: Path, dp_epsilon: float, node_config: dict[str, object]
) -> None:
    # Prepare: the example's nodes under a run config declaring DP, or insisting on it themselves
    grid = federation(keys, run_config(**{"dp-epsilon": dp_epsilon}), node_config)
    # Execute: the server asks for the node's metrics on a model it chose
    reply = evaluate(grid)
    # Assert: refused, naming the rule and the opt-in (the node's evaluate handler never answers)
    assert reply.has_error() and not reply.has_content()
    assert "require_dp" in reply.error.reason and "allow_plain_evaluate" in reply.error.reason, reply.error.reason


def test_a_node_without_dp_answers_federated_evaluation(keys: Path) -> None:
    # Prepare: no DP declared, none required
    grid = federation(keys, run_config(**{"dp-epsilon": 0.0}))
    # Execute
    reply = evaluate(grid)
    # Assert: the node's metrics, as before
    assert not reply.has_error() and 0.0 <= reply.content["metrics"]["accuracy"] <= 1.0
