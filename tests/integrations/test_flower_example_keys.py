"""The Flower example runs active mode by default: its key ceremony, and how each node finds its keys.

``examples/flower/make-keys.sh`` runs the project's key ceremony (``secagg keys``)
for a federation on one machine; each node of the example finds its identity key
and the trusted list through its own node config (``identity-key-file`` and
``trusted-keys-file``, or a ``key-dir`` holding ``hospital-<partition-id>.key``
and ``federation.keys``) or the node's environment (``$SECAGG_FLOWER_KEY_DIR``),
never through the run config, which the server sets. Semi-honest rounds need
the node's own ``allow-semi-honest = true``.
"""

from __future__ import annotations

import logging
import re
import stat
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("sklearn")

from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.clientapp.typing import ClientAppCallable
from flwr.serverapp.strategy import FedAvg

from secagg.encoding import QuantizationConfig
from secagg.integrations.flower import SecAggGrid, SecAggOptions, make_secagg_mod
from secagg.integrations.flower._records import STAGE_RECORD
from secagg.integrations.flower.keys import read_identity_key, read_trusted_keys
from secagg.integrations.flower.protocol import CONSISTENCY_CHECK, SETUP

from .flower_example import (
    EXAMPLE,
    example,
    example_on_path,  # noqa: F401  (autouse: the example app on the import path)
    make_keys,
)
from .flower_harness import Audit, FakeGrid

NODES = 4


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("ceremony")
    directory = base / "keys"
    result = make_keys(directory, NODES, base)
    assert result.returncode == 0, result.stderr
    return directory


def stage_message(stage: str = SETUP) -> Message:
    content = RecordDict({STAGE_RECORD: ConfigRecord({"stage": stage})})
    return Message(content, dst_node_id=11, message_type=MessageType.TRAIN, group_id="1")


def context(node_config: dict[str, object], run_config: dict[str, object] | None = None) -> Context:
    return Context(77, 11, node_config, RecordDict(), run_config or {})  # type: ignore[arg-type]


class Recorder:
    """The next mod: records the node config it was called with."""

    def __init__(self) -> None:
        self.node_config: dict[str, object] | None = None

    def __call__(self, message: Message, context: Context) -> Message:
        self.node_config = dict(context.node_config)
        return Message(RecordDict(), reply_to=message)


def run_mod(
    node_config: dict[str, object], run_config: dict[str, object] | None = None
) -> tuple[Message, Recorder]:
    recorder = Recorder()
    mod = example("client_app").node_keys_mod
    reply = mod(stage_message(), context(node_config, run_config), recorder)  # type: ignore[arg-type]
    return reply, recorder


def test_the_example_runs_active_mode_unless_semi_honest_is_named() -> None:
    # Prepare
    shipped = re.findall(r'^mode = "([^"]*)"', (EXAMPLE / "pyproject.toml").read_text(), re.M)
    # Assert: the shipped run config and the ServerApp's defaults (no run config) are both active
    assert shipped == ["active"]
    assert example("server_app").DEFAULTS["mode"] == "active"


def test_the_run_config_cannot_opt_a_node_into_semi_honest_rounds() -> None:
    # Prepare
    node_policy = example("client_app").node_policy
    # Execute
    server_says = node_policy(context({"partition-id": 0}, {"mode": "semi-honest"}))
    node_says = node_policy(context({"partition-id": 0, "allow-semi-honest": True}, {"mode": "semi-honest"}))
    # Assert: only the node's own config opts it in
    assert server_says.allow_semi_honest is False
    assert node_says.allow_semi_honest is True


def test_make_keys_runs_the_ceremony_with_secret_files_owner_only(keys: Path, tmp_path: Path) -> None:
    # Prepare / Execute: the fixture ran examples/flower/make-keys.sh for four nodes
    identities = [keys / f"hospital-{partition}.key" for partition in range(NODES)]
    trusted = read_trusted_keys(keys / "federation.keys")
    again = make_keys(keys, NODES, tmp_path)
    # Assert: one fresh identity per partition, 0600 in a 0700 directory; all of them trusted
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in identities)
    assert trusted == frozenset(read_identity_key(path).public for path in identities)
    assert len(trusted) == NODES
    # ... and it never overwrites a key
    assert again.returncode != 0 and "refusing to overwrite" in again.stderr


def test_a_key_dir_in_the_node_config_names_the_partitions_key_and_the_federations_list(keys: Path) -> None:
    # Execute
    reply, recorder = run_mod({"partition-id": 2, "num-partitions": NODES, "key-dir": str(keys)})
    # Assert
    assert not reply.has_error()
    assert recorder.node_config is not None
    assert recorder.node_config["identity-key-file"] == str(keys / "hospital-2.key")
    assert recorder.node_config["trusted-keys-file"] == str(keys / "federation.keys")


def test_the_nodes_environment_names_the_key_dir_when_its_config_does_not(
    keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: what the simulation engine can pass a node (its config holds only the partition)
    monkeypatch.setenv("SECAGG_FLOWER_KEY_DIR", str(keys))
    # Execute
    reply, recorder = run_mod({"partition-id": 1, "num-partitions": NODES})
    # Assert
    assert not reply.has_error() and recorder.node_config is not None
    assert recorder.node_config["identity-key-file"] == str(keys / "hospital-1.key")


def test_explicit_key_files_in_the_node_config_win(keys: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    monkeypatch.setenv("SECAGG_FLOWER_KEY_DIR", str(keys))
    own = {"identity-key-file": str(keys / "hospital-3.key"), "trusted-keys-file": str(keys / "federation.keys")}
    # Execute
    reply, recorder = run_mod({"partition-id": 0, "num-partitions": NODES, **own})
    # Assert
    assert not reply.has_error() and recorder.node_config is not None
    assert recorder.node_config["identity-key-file"] == own["identity-key-file"]


def test_a_missing_identity_key_in_the_key_dir_is_refused_by_name(keys: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Execute: partition 7 of a federation whose ceremony made keys for partitions 0..3
    with caplog.at_level(logging.ERROR):
        reply, recorder = run_mod({"partition-id": 7, "num-partitions": 8, "key-dir": str(keys)})
    # Assert: the node's log says which file it lacks and how to make it, and it goes no further; the
    # reply to the server says what is missing, never where (the path is the node's)
    assert reply.has_error() and recorder.node_config is None
    assert str(keys / "hospital-7.key") in caplog.text and "make-keys.sh" in caplog.text
    assert "no identity key in this node's key directory" in reply.error.reason
    assert str(keys) not in reply.error.reason and "hospital-7.key" not in reply.error.reason


def test_a_missing_trusted_list_in_the_key_dir_is_refused_by_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: a directory with an identity key and no federation.keys
    directory = tmp_path / "keys"
    result = make_keys(directory, 2, tmp_path)
    assert result.returncode == 0, result.stderr
    (directory / "federation.keys").unlink()
    # Execute
    with caplog.at_level(logging.ERROR):
        reply, recorder = run_mod({"partition-id": 0, "num-partitions": 2, "key-dir": str(directory)})
    # Assert
    assert reply.has_error() and recorder.node_config is None
    assert str(directory / "federation.keys") in caplog.text and str(directory) not in reply.error.reason


def test_a_node_without_keys_refuses_a_secure_round_and_says_what_to_set(keys: Path) -> None:
    # Execute: the server's run config names a key directory; the node does not take it
    reply, recorder = run_mod({"partition-id": 0, "num-partitions": NODES}, {"key-dir": str(keys)})
    # Assert
    assert reply.has_error() and recorder.node_config is None
    for hint in ("identity-key-file", "key-dir", "SECAGG_FLOWER_KEY_DIR", "make-keys.sh", "allow-semi-honest"):
        assert hint in reply.error.reason


def test_a_node_that_allows_semi_honest_rounds_needs_no_keys() -> None:
    # Execute
    reply, recorder = run_mod({"partition-id": 0, "num-partitions": NODES, "allow-semi-honest": True})
    # Assert: passed on unchanged (the secagg mod then checks the round's mode against its policy)
    assert not reply.has_error() and recorder.node_config is not None
    assert "identity-key-file" not in recorder.node_config


def test_the_example_app_runs_active_rounds_with_the_ceremonys_keys(keys: Path) -> None:
    # Prepare: the example's ClientApp on four nodes, each told only its partition and the key directory
    task, client_app = example("task"), example("client_app")
    node_ids = (1001, 1002, 1003, 1004)
    audit = Audit()

    def node_config_for(node: int) -> ClientAppCallable:
        def mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
            context.node_config.update({"partition-id": node_ids.index(node), "num-partitions": NODES,
                                        "key-dir": str(keys)})
            return call_next(message, context)

        return mod  # type: ignore[return-value]

    apps = {node: client_app.make_client_app([node_config_for(node), client_app.node_keys_mod,
                                               make_secagg_mod(audit=audit)])
            for node in node_ids}
    grid = FakeGrid(apps)  # type: ignore[arg-type]
    trusted = read_trusted_keys(keys / "federation.keys")  # the server's copy of the public list
    options = SecAggOptions(protocol="secagg", stage_timeout=5.0, trusted_keys=trusted)
    secure = SecAggGrid(grid, options)  # active: the default
    initial = task.to_record(task.initial_params())
    server_app = example("server_app")  # the nodes train with the server's (bound) training config
    train_config = server_app.train_config(server_app.DEFAULTS)
    # Execute
    FedAvg(fraction_evaluate=0.0, min_available_nodes=NODES).start(
        grid=secure, initial_arrays=initial, num_rounds=1, train_config=train_config
    )
    # Assert: every node took part under its own identity; the survivors signed the survivor set
    report = secure.reports[0]
    assert report.included == frozenset(node_ids) and not report.dropped, report.errors
    assert sorted(secure.identities.values()) == sorted(read_trusted_keys(keys / "federation.keys"))
    sent = [m.content[STAGE_RECORD]["stage"] for m in grid.sent if STAGE_RECORD in m.content.config_records]
    assert sent.count(CONSISTENCY_CHECK) == NODES
    quantization = QuantizationConfig(0.5, 16, NODES, max_weight=4096)
    encodings = [a.encoded for a in audit.of_round(1).values()]
    assert np.array_equal(report.aggregate, quantization.ring.sum(encodings, report.aggregate.shape[0]))


def test_the_server_prints_why_nodes_without_keys_sat_out_a_skipped_round(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: the example's ClientApp on three nodes that were given no key files
    task, client_app, server_app = example("task"), example("client_app"), example("server_app")
    node_ids = (2001, 2002, 2003)

    def partition_of(node: int) -> ClientAppCallable:
        def mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
            context.node_config.update({"partition-id": node_ids.index(node), "num-partitions": len(node_ids)})
            return call_next(message, context)

        return mod  # type: ignore[return-value]

    apps = {node: client_app.make_client_app([partition_of(node), client_app.node_keys_mod, make_secagg_mod()])
            for node in node_ids}
    trusted = read_trusted_keys(keys / "federation.keys")  # the server's copy of the public list
    options = SecAggOptions(protocol="secagg", stage_timeout=5.0, trusted_keys=trusted)
    secure = SecAggGrid(FakeGrid(apps), options)  # type: ignore[arg-type]
    report = server_app._Report(secure, "secagg", "", len(node_ids))
    # Execute
    FedAvg(fraction_evaluate=0.0, min_available_nodes=len(node_ids)).start(
        grid=secure, initial_arrays=task.to_record(task.initial_params()), num_rounds=1, evaluate_fn=report.after_round
    )
    # Assert: no aggregate; the operator reads each node's reason
    printed = capsys.readouterr().out
    assert secure.reports[0].aggregate is None
    assert "round 1 skipped" in printed
    assert printed.count("no identity key: set identity-key-file") == len(node_ids)


def test_the_shipped_run_config_declares_every_key_the_server_app_reads_with_its_default() -> None:
    # Prepare: Flower refuses `--run-config KEY=...` for a key pyproject.toml does not declare, so a
    # setting the ServerApp reads (DEFAULTS) but the app does not declare cannot be changed by `flwr run`
    import tomllib  # noqa: PLC0415

    shipped = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    defaults = example("server_app").DEFAULTS
    # Assert: the same keys, the same values
    assert sorted(shipped) == sorted(defaults)
    assert {key: shipped[key] for key in defaults} == defaults
