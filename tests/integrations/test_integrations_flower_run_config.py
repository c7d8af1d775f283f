"""The run config is bound into the round (opt-in on the server, checked by every node), in-process.

Flower serves each node its own copy of the run config (the app's defaults fused with the run's
overrides; the same for every node of an honest run), and nothing bound it: a coordinator could
serve one node another. With ``SecAggOptions(run_config=context.run_config)`` (or
``PaillierOptions``) the server binds the digest of its own run config into the training
content (``secagg.run``); each node compares it with the digest of its own
``context.run_config`` at setup and refuses a mismatch, before it trains; a node whose policy
says ``require_run_config`` refuses a round that binds none. The node config is never bound.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

pytest.importorskip("flwr")

from flwr.app import ConfigRecord, Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import FedAvg

from secagg.errors import ConfigurationError
from secagg.integrations.flower import NodePolicy, PaillierGrid, PaillierOptions, SecAggGrid, SecAggOptions
from secagg.integrations.flower.keys import read_public_key
from secagg.integrations.flower.run_binding import RUN_CONFIG_RECORD, run_config_digest

from .flower_harness import TRUSTED_KEYS, FakeGrid, initial_arrays, make_app
from .paillier_keys import PASSPHRASE, key_files

NODES = (1_000_000_007, 2**63 + 11, 42, 9_999_999_999, 2**64 - 1)
TARGET = NODES[2]
RUN = {"num-server-rounds": 3, "learning-rate": 0.1, "protocol": "secagg", "local-epochs": 2, "dp": False}


pytestmark = pytest.mark.usefixtures("server_identity")


def served(app: ClientApp, run_config: dict[str, object], node_config: dict[str, object] | None = None) -> ClientApp:
    """``app`` on a node the coordinator serves ``run_config`` (and ``node_config``, never bound)."""

    def call(message: Message, context: Context) -> Message:
        context.run_config.clear()
        context.run_config.update(run_config)  # type: ignore[arg-type]
        context.node_config.update(node_config or {})  # type: ignore[arg-type]
        return app(message, context)

    return call  # type: ignore[return-value]


def masking_grid(configs: dict[int, dict[str, object]], policy: NodePolicy | None = None) -> FakeGrid:
    policy = NodePolicy(allow_semi_honest=True) if policy is None else policy
    return FakeGrid({node: served(make_app(node, 10, policy=policy), configs[node], {"site": f"h{node}"})
                     for node in NODES})  # fmt: skip


def run(secure: SecAggGrid | PaillierGrid) -> None:
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)
    strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=1, train_config=ConfigRecord({"lr": 0.1}))


def options(**extra: object) -> SecAggOptions:
    return SecAggOptions(mode="semi-honest", protocol="secagg", stage_timeout=5.0, **extra)  # type: ignore[arg-type]


def test_the_run_config_bound_by_the_server_and_served_to_every_node_aggregates_everyone() -> None:
    # Prepare: the same run config everywhere; each node its own node config (never bound)
    secure = SecAggGrid(masking_grid(dict.fromkeys(NODES, RUN)), options(run_config=RUN))
    # Execute
    run(secure)
    # Assert
    report = secure.reports[0]
    assert report.skipped_reason is None and set(report.included) == set(NODES), report.errors


def test_a_node_served_another_run_config_refuses_and_costs_only_itself() -> None:
    # Prepare: the coordinator serves the target learning-rate 0 (a split of the run config)
    configs = {node: {**RUN, "learning-rate": 0.0} if node == TARGET else RUN for node in NODES}
    secure = SecAggGrid(masking_grid(configs), options(run_config=RUN))
    # Execute
    run(secure)
    # Assert: the target refuses at setup, naming the run config; the others aggregate
    report = secure.reports[0]
    assert "run config" in report.errors[TARGET], report.errors
    assert report.skipped_reason is None and set(report.included) == set(NODES) - {TARGET}


def test_a_server_binding_another_run_config_than_the_nodes_have_is_refused_by_every_node() -> None:
    # Prepare: the server binds RUN; every node was served RUN with another type for one value
    secure = SecAggGrid(masking_grid({node: {**RUN, "local-epochs": 2.0} for node in NODES}), options(run_config=RUN))
    # Execute
    run(secure)
    # Assert: nothing aggregated, every node names the run config
    report = secure.reports[0]
    assert report.aggregate is None and report.skipped_reason is not None
    assert all("run config" in report.errors[node] for node in NODES), report.errors


def test_a_node_requiring_a_bound_run_config_refuses_a_round_that_binds_none() -> None:
    policy = NodePolicy(allow_semi_honest=True, require_run_config=True)
    secure = SecAggGrid(masking_grid(dict.fromkeys(NODES, RUN), policy), options())
    run(secure)
    report = secure.reports[0]
    assert report.aggregate is None
    assert all("run config" in report.errors[node] for node in NODES), report.errors


class _StrategyRecordGrid(SecAggGrid):
    """A strategy whose training content already holds a record under the reserved name."""

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        batch = list(messages)
        for message in batch:
            if message.has_content() and "arrays" in message.content:
                message.content[RUN_CONFIG_RECORD] = ConfigRecord({"config-digest": b"\0" * 32})
        return super().send_and_receive(batch, timeout=timeout)


def test_a_strategy_record_under_the_reserved_name_is_refused_before_anything_is_sent() -> None:
    grid = masking_grid(dict.fromkeys(NODES, RUN))
    secure = _StrategyRecordGrid(grid, options(run_config=RUN))
    with pytest.raises(ConfigurationError, match=RUN_CONFIG_RECORD):
        run(secure)
    assert grid.sent == []


def test_the_digest_is_of_names_types_and_values() -> None:
    assert run_config_digest(RUN) == run_config_digest(dict(reversed(list(RUN.items()))))
    assert run_config_digest(RUN) != run_config_digest({**RUN, "local-epochs": 2.0})
    assert run_config_digest(RUN) != run_config_digest({**RUN, "extra": ""})
    with pytest.raises(ConfigurationError):
        SecAggOptions(run_config={"a": [1, 2]})  # type: ignore[dict-item]


def test_a_paillier_node_served_another_run_config_refuses_and_costs_only_itself(tmp_path: Path) -> None:
    # Prepare: a 3-of-5 key; the target is served another run config
    public_path, shares = key_files(tmp_path / "ceremony", len(NODES), 3)
    configs = {node: {**RUN, "learning-rate": 0.0} if node == TARGET else RUN for node in NODES}
    apps = {node: served(make_app(node, 10, paillier=True, key_share_file=share, passphrase=PASSPHRASE,
                                  policy=NodePolicy(min_colluders=0)), configs[node])
            for node, share in zip(NODES, shares, strict=True)}  # fmt: skip
    secure = PaillierGrid(FakeGrid(apps), PaillierOptions(public_key=read_public_key(public_path), stage_timeout=5.0,
                                                          trusted_keys=TRUSTED_KEYS, colluders=0, run_config=RUN))
    # Execute
    run(secure)
    # Assert
    report = secure.reports[0]
    assert "run config" in report.errors[TARGET], report.errors
    assert report.skipped_reason is None and set(report.included) == set(NODES) - {TARGET}


@pytest.mark.parametrize(
    "run_config",
    [{"\ud800": 1}, {"lr": "\udcff"}, {1: 2}],
    ids=["lone-surrogate-name", "lone-surrogate-value", "int-name"],
)
def test_a_run_config_that_cannot_be_encoded_is_refused_with_a_library_error(run_config: dict[object, object]) -> None:
    # A lone surrogate has no UTF-8 encoding and a name must be a string: ConfigurationError,
    # on the server (the options) and on a node (its own run config's digest), never a raw error
    with pytest.raises(ConfigurationError):
        SecAggOptions(run_config=run_config)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        run_config_digest(run_config)  # type: ignore[arg-type]


def test_the_options_bind_the_run_config_as_it_was_given_not_later_changes_to_the_mapping(tmp_path: Path) -> None:
    # The options are frozen and check the run config when made: a ServerApp that changes its
    # context.run_config afterwards (a default filled in, a value made unbindable) must not
    # change what every later round binds behind the options' back
    public_path, _ = key_files(tmp_path / "ceremony", len(NODES), 3)
    public = read_public_key(public_path)
    for make in (options, lambda **extra: PaillierOptions(public_key=public, colluders=0, **extra)):
        given = dict(RUN)
        made = make(run_config=given)
        given["learning-rate"] = 0.0
        given["extra"] = [1, 2]
        assert made.run_config is not None and run_config_digest(made.run_config) == run_config_digest(RUN)
