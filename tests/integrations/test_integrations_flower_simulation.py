"""The example Flower app in Flower's simulation engine (Ray), with a node dropping out mid-protocol.

Four virtual SuperNodes run the example ClientApp behind the secagg mod, in
active mode (the example's default) with the identity keys of the example's
key ceremony (``make-keys.sh``), found through ``$SECAGG_FLOWER_KEY_DIR``; the
node with partition 3 fails in the masked-input stage of round 1. Each round's
server-side aggregate must equal the plain ring sum of the included nodes' own
contributions (their audit logs), and the model the previous one plus the
decoded weighted mean.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import pytest

pytest.importorskip("flwr")
pytest.importorskip("ray")
pytest.importorskip("sklearn")

from flwr.app import ConfigRecord, Context, Error, Message
from flwr.clientapp.typing import ClientAppCallable
from flwr.simulation import run_simulation

from secagg.integrations.flower import make_paillier_mod, make_secagg_mod

from .flower_checks import check_rounds
from .flower_example import make_keys
from .paillier_keys import PASSPHRASE, identity_files, key_files

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flower"
NODES = 4


def drop_partition_3_in_round_1(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Fault injection: the node of partition 3 fails after sharing its keys in round 1."""
    record = message.content.config_records.get("secagg") if message.has_content() else None
    if (
        context.node_config.get("partition-id") == 3
        and isinstance(record, ConfigRecord)
        and record.get("stage") == "masked-input"
        and message.metadata.group_id == "1"
    ):
        return Message(Error(code=9001, reason="fault injection: partition 3 drops out"), reply_to=message)
    return call_next(message, context)


def test_secure_fedavg_in_the_simulation_engine_with_a_dropout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: the example app importable here and in Ray's workers; Flower's files in tmp_path
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(EXAMPLE), os.environ.get("PYTHONPATH", "")]))
    for name, value in {"FLWR_HOME": str(tmp_path / "flwr-home"), "FLWR_DISABLE_UPDATE_CHECK": "1",
                        "FLWR_TELEMETRY_ENABLED": "0", "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0"}.items():
        monkeypatch.setenv(name, value)
    client_app = importlib.import_module("secagg_flower_app.client_app")
    server_app = importlib.import_module("secagg_flower_app.server_app")

    # The example's key ceremony; every node finds its key through its environment (as Ray's workers do)
    keys = tmp_path / "keys"
    ceremony = make_keys(keys, NODES, tmp_path)
    assert ceremony.returncode == 0, ceremony.stderr
    monkeypatch.setenv("SECAGG_FLOWER_KEY_DIR", str(keys))
    audit_dir = tmp_path / "audit"
    audit_dir.mkdir()
    result_path = tmp_path / "result.json"
    server = server_app.make_server_app(  # active mode (the default); the server's list: $SECAGG_FLOWER_KEY_DIR
        {"num-server-rounds": 2, "protocol": "secagg", "num-partitions": NODES, "min-nodes": NODES,
         "result-path": str(result_path)}
    )
    writer = client_app.audit_writer(str(audit_dir))
    mod = make_secagg_mod(audit=writer)
    client = client_app.make_client_app([drop_partition_3_in_round_1, client_app.node_keys_mod, mod])
    # Execute
    run_simulation(
        server_app=server,
        client_app=client,
        num_supernodes=NODES,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                        "init_args": {"num_cpus": 2, "include_dashboard": False}},
    )
    # Assert
    rounds = check_rounds(json.loads(result_path.read_text()), audit_dir)
    assert [r["round"] for r in rounds] == [1, 2]
    assert len(rounds[0]["included"]) == NODES - 1 and list(rounds[0]["dropped"].values()) == ["masked-input"]
    assert len(rounds[1]["included"]) == NODES and rounds[1]["dropped"] == {}
    assert rounds[1]["accuracy"] > 0.9


def key_files_by_partition(directory: Path) -> ClientAppCallable:
    """A mod standing in for per-node config files (the simulation engine's node config has only
    the partition): node ``partition-id = i`` reads key share ``i + 1`` and a passphrase file."""
    passphrase_file = directory / "passphrase"

    def mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        partition = int(context.node_config["partition-id"])
        share = directory / f"key-share-{partition + 1}.bin"
        context.node_config.update({"key-share-file": str(share), "key-share-passphrase-file": str(passphrase_file),
                                    "identity-key-file": str(directory / f"identity-{partition}.key"),
                                    "trusted-keys-file": str(directory / "trusted.keys")})
        return call_next(message, context)

    return mod  # type: ignore[return-value]


def drop_partition_3_in_decrypt_of_round_1(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Fault injection: the node of partition 3 uploads in round 1, then fails to decrypt."""
    record = message.content.config_records.get("secagg") if message.has_content() else None
    if (
        context.node_config.get("partition-id") == 3
        and isinstance(record, ConfigRecord)
        and record.get("stage") == "decrypt"
        and message.metadata.group_id == "1"
    ):
        return Message(Error(code=9001, reason="fault injection: partition 3 drops out"), reply_to=message)
    return call_next(message, context)


def test_paillier_fedavg_in_the_simulation_engine_with_a_dropout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the ceremony's files (2-of-4, 2048-bit), the example app with PaillierGrid / paillier_mod
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(EXAMPLE), os.environ.get("PYTHONPATH", "")]))
    for name, value in {"FLWR_HOME": str(tmp_path / "flwr-home"), "FLWR_DISABLE_UPDATE_CHECK": "1",
                        "FLWR_TELEMETRY_ENABLED": "0", "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0"}.items():
        monkeypatch.setenv(name, value)
    ceremony = tmp_path / "ceremony"
    public_path, _ = key_files(ceremony, NODES, 3)
    identity_files(ceremony, NODES)
    (ceremony / "passphrase").write_text(PASSPHRASE + "\n")
    (ceremony / "passphrase").chmod(0o600)  # a secret file: the node refuses a looser one
    client_app = importlib.import_module("secagg_flower_app.client_app")
    server_app = importlib.import_module("secagg_flower_app.server_app")
    audit_dir = tmp_path / "audit"
    audit_dir.mkdir()
    result_path = tmp_path / "result.json"
    server = server_app.make_server_app(
        {"num-server-rounds": 2, "protocol": "paillier", "public-key-file": str(public_path),
         "trusted-keys-file": str(ceremony / "trusted.keys"),  # the server's copy of the public list
         "num-partitions": NODES, "min-nodes": NODES, "result-path": str(result_path)}
    )
    client = client_app.make_client_app([
        key_files_by_partition(ceremony), drop_partition_3_in_decrypt_of_round_1,
        make_paillier_mod(audit=client_app.audit_writer(str(audit_dir))),
    ])
    # Execute
    run_simulation(
        server_app=server,
        client_app=client,
        num_supernodes=NODES,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                        "init_args": {"num_cpus": 2, "include_dashboard": False}},
    )
    # Assert: partition 3 uploaded in round 1, so its update counts although it did not decrypt
    rounds = check_rounds(json.loads(result_path.read_text()), audit_dir)
    assert [r["round"] for r in rounds] == [1, 2] and all(r["protocol"] == "paillier" for r in rounds)
    assert len(rounds[0]["included"]) == NODES and list(rounds[0]["dropped"].values()) == ["decrypt"]
    assert len(rounds[1]["included"]) == NODES and rounds[1]["dropped"] == {}
    assert rounds[1]["accuracy"] > 0.9
