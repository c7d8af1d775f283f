"""The Flower example trains with the bound training configuration, never a node's run config.

A node's ``context.run_config`` is what the SuperLink served that node (the app's defaults
fused with the run's overrides): a coordinator can serve each node another one, and nothing
binds it into the round. The issue-12 attack over that channel: every node but the target is
served ``learning-rate = 0`` (its update is zero, so the "aggregate" is the target's update),
or the target alone ``dp-clip = 1e6`` (its DP step is not clipped to what the noise is sized
for). The example's nodes therefore read every value that shapes their update from the
message's ``config`` record, which the secure round binds (``RoundSetup.parameters``): a split
of that fails the round (tests/integrations/test_integrations_flower_split_setup.py). And the
ServerApp binds its own run config's digest into every round (``run_config=context.run_config``):
a node served another run config refuses the round, naming it, and the example's nodes refuse a
round that binds none (``require_run_config``), so a split run config reaches no training.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flwr")
pytest.importorskip("sklearn")
pytest.importorskip("dp_accounting")

from flwr.app import Context, Message, RecordDict
from flwr.clientapp.typing import ClientAppCallable

from .flower_example import (
    example,
    example_on_path,  # noqa: F401  (autouse: the example app on the import path)
)
from .flower_harness import FakeGrid

NODES = 4
NODE_IDS = (4001, 4002, 4003, 4004)
TARGET = NODE_IDS[0]


@pytest.fixture
def keys(example_keys: Path) -> Path:
    """This test's copy of the example's shared key ceremony (tests/integrations/conftest.py)."""
    return example_keys


def server_config(keys: Path, **overrides: object) -> dict[str, object]:
    return {"num-server-rounds": 1, "protocol": "secagg", "num-partitions": NODES, "min-nodes": NODES,
            "stage-timeout": 5.0, "trusted-keys-file": str(keys / "federation.keys"), **overrides}


def split_federation(keys: Path, target: dict[str, object], others: dict[str, object]) -> FakeGrid:
    """The example's ClientApp on four nodes; :data:`TARGET` is served the run config ``target``,
    every other node ``others`` (a coordinator's lie: each node fetches its own)."""
    client_app = example("client_app")

    def node_context(node: int) -> ClientAppCallable:
        def mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
            context.node_config.update({"partition-id": NODE_IDS.index(node), "num-partitions": NODES,
                                        "key-dir": str(keys)})
            context.run_config.update(target if node == TARGET else others)  # type: ignore[arg-type]
            return call_next(message, context)

        return mod  # type: ignore[return-value]

    apps = {node: client_app.make_client_app([node_context(node), client_app.node_keys_mod,
                                               client_app.audited_secagg_mod]) for node in NODE_IDS}
    return FakeGrid(apps)  # type: ignore[arg-type]


def record_calls(monkeypatch: pytest.MonkeyPatch, name: str) -> list[dict[str, Any]]:
    """Every call of the example's ``task.<name>`` from now on, by keyword (it still runs)."""
    task = example("task")
    original: Callable[..., Any] = getattr(task, name)
    calls: list[dict[str, Any]] = []

    def recorded(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(task, name, recorded)
    return calls


def run_server(grid: FakeGrid, config: dict[str, object], result: Path | None = None) -> dict[int, str]:
    """The example's ServerApp with ``config`` as its own run config (the one it binds); the
    errors of the first round by node (read from the result file at ``result``, if given)."""
    server = example("server_app").make_server_app({**config, "result-path": str(result or "")})
    server(grid, Context(78, 1, {}, RecordDict(), dict(config)))  # type: ignore[arg-type]
    if result is None:
        return {}
    rounds = json.loads(result.read_text())["rounds"]
    return {int(node): reason for node, reason in rounds[0]["errors"].items()}


def test_a_run_config_split_of_the_learning_rate_is_refused_by_the_nodes_served_it(
    keys: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Prepare: the server's run config says learning-rate 0.1; every node but the target is served 0.0
    calls = record_calls(monkeypatch, "train")
    config = server_config(keys, **{"learning-rate": 0.1, "local-epochs": 2, "batch-size": 16})
    lie = {**config, "learning-rate": 0.0, "local-epochs": 1, "batch-size": 1}
    # Execute
    errors = run_server(split_federation(keys, target=config, others=lie), config, tmp_path / "result.json")
    # Assert: the nodes served another run config refuse, naming it; none trained with its run config's values
    assert all("run config" in errors[node] for node in NODE_IDS if node != TARGET), errors
    assert all(call["learning_rate"] == 0.1 for call in calls), calls
    assert all(call["epochs"] == 2 and call["batch_size"] == 16 for call in calls), calls


def test_a_run_config_split_of_the_dp_clip_does_not_reach_the_target(
    keys: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Prepare: a DP run whose l2_clip the server sizes from dp-learning-rate * dp-clip = 0.02 * 1.0;
    # the target alone is served dp-clip 1e6 and dp-learning-rate 1.0
    calls = record_calls(monkeypatch, "dp_step")
    config = server_config(keys, **{"dp-epsilon": 8.0, "dp-delta": 1e-5, "dp-clip": 1.0, "dp-learning-rate": 0.02})
    lie = {**config, "dp-clip": 1e6, "dp-learning-rate": 1.0}
    # Execute
    errors = run_server(split_federation(keys, target=lie, others=config), config, tmp_path / "result.json")
    # Assert: the target refuses (another run config); every other node's DP step is the plan's
    assert "run config" in errors[TARGET], errors
    assert len(calls) == NODES - 1
    assert all(call["clip"] == 1.0 and call["learning_rate"] == 0.02 for call in calls), calls


def test_a_run_config_split_of_dp_off_does_not_make_the_target_train_unclipped(
    keys: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Prepare: a DP run; the target alone is served dp-epsilon 0 (train plain, unclipped SGD)
    plain, dp = record_calls(monkeypatch, "train"), record_calls(monkeypatch, "dp_step")
    config = server_config(keys, **{"dp-epsilon": 8.0, "dp-delta": 1e-5, "dp-clip": 1.0, "dp-learning-rate": 0.02})
    lie = {**config, "dp-epsilon": 0.0}
    # Execute
    errors = run_server(split_federation(keys, target=lie, others=config), config, tmp_path / "result.json")
    # Assert: the target refuses; no node trained unclipped in the DP round
    assert "run config" in errors[TARGET], errors
    assert plain == []
    assert len(dp) == NODES - 1


def test_a_server_binding_no_run_config_is_refused_by_the_example_nodes(keys: Path, tmp_path: Path) -> None:
    # Prepare: a server whose options bind no run config (a lying server omitting it)
    config = server_config(keys)
    server_app = example("server_app")
    grid = split_federation(keys, target=config, others=config)
    options = server_app.SecAggOptions(protocol="secagg", trusted_keys=server_app.federation_keys(config),
                                       stage_timeout=5.0)
    secure = server_app.SecAggGrid(grid, options)
    # Execute
    server_app.FedAvg(fraction_evaluate=0.0, min_train_nodes=NODES, min_available_nodes=NODES).start(
        grid=secure, initial_arrays=example("task").to_record(example("task").initial_params()), num_rounds=1,
        train_config=server_app.train_config({**server_app.DEFAULTS, **config}))
    # Assert: every node refuses, naming the run config; nothing aggregated
    report = secure.reports[0]
    assert report.aggregate is None
    assert all("run config" in report.errors[node] for node in NODE_IDS), report.errors
