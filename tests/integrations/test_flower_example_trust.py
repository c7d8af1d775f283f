"""The example ServerApp knows the federation's identity keys, so one faulty node costs only itself.

Every active node refuses a setup that holds a key off its own trusted list. A
server that does not know the federation's list sends such a setup whenever a
node with a stray key (misconfigured or rogue) is sampled, and every honest node
refuses it: the round fails for all. The example's ServerApp reads the ceremony's
public ``federation.keys`` (run config ``trusted-keys-file``, else
``$SECAGG_FLOWER_KEY_DIR/federation.keys``), so such a node is left out at
``identify`` and the round goes on; without the list an active run refuses to start.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("flwr")
pytest.importorskip("sklearn")

from flwr.app import Context, Message, RecordDict
from flwr.clientapp.typing import ClientAppCallable

from secagg.errors import ConfigurationError
from secagg.integrations.flower.keys import write_identity_key, write_trusted_keys
from secagg.integrations.flower.protocol import IDENTIFY, SETUP
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.primitives.signing import SigningKey

from .flower_example import (
    example,
    example_on_path,  # noqa: F401  (autouse: the example app on the import path)
    make_keys,
)
from .flower_harness import FakeGrid

HONEST = (4001, 4002, 4003, 4004)
ROGUE = 4005
NODES = (*HONEST, ROGUE)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ceremony of the four honest hospitals (``make-keys.sh``), and a fifth identity on nobody's list."""
    base = tmp_path_factory.mktemp("trust-ceremony")
    result = make_keys(base / "keys", len(HONEST), base)
    assert result.returncode == 0, result.stderr
    write_identity_key(base / "rogue.key", SigningKey.generate(InsecureDeterministicRandom(b"rogue")))
    return base / "keys"


def federation(keys: Path, nodes: tuple[int, ...] = NODES, stale: Path | None = None) -> FakeGrid:
    """The example's ClientApp on ``nodes``: the honest ones with the ceremony's keys (``key-dir``; the
    first with the trusted list ``stale`` instead, if given), and the rogue one with an identity key on
    no list (it even trusts the federation's list, to get as far as it can)."""
    client_app = example("client_app")

    def node_context(node: int) -> ClientAppCallable:
        def mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
            context.node_config.update({"partition-id": nodes.index(node), "num-partitions": len(nodes)})
            if node == ROGUE:
                context.node_config.update({"identity-key-file": str(keys.parent / "rogue.key"),
                                            "trusted-keys-file": str(keys / "federation.keys")})
            elif node == nodes[0] and stale is not None:
                context.node_config.update({"identity-key-file": str(keys / "hospital-0.key"),
                                            "trusted-keys-file": str(stale)})
            else:
                context.node_config["key-dir"] = str(keys)
            return call_next(message, context)

        return mod  # type: ignore[return-value]

    apps = {node: client_app.make_client_app([node_context(node), client_app.node_keys_mod,
                                               client_app.audited_secagg_mod]) for node in nodes}
    return FakeGrid(apps)  # type: ignore[arg-type]


def run_config(**overrides: object) -> dict[str, object]:
    return {"num-server-rounds": 2, "protocol": "secagg", "num-partitions": len(NODES), "min-nodes": len(NODES),
            "stage-timeout": 5.0, **overrides}


def run_server(grid: FakeGrid, config: dict[str, object], tmp_path: Path) -> list[dict[str, object]]:
    result = tmp_path / "result.json"
    server = example("server_app").make_server_app({**config, "result-path": str(result)})
    server(grid, Context(77, 1, {}, RecordDict(), {}))  # type: ignore[arg-type]
    rounds: list[dict[str, object]] = json.loads(result.read_text())["rounds"]
    return rounds


@pytest.mark.parametrize("where", ["run config", "environment"])
def test_a_node_with_a_key_on_no_list_is_left_out_and_every_round_completes(
    keys: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    # Prepare: the ServerApp as simulate.py runs it (run config), or as a SuperLink started with the key dir
    if where == "run config":
        config = run_config(**{"trusted-keys-file": str(keys / "federation.keys")})
    else:
        config = run_config()
        monkeypatch.setenv("SECAGG_FLOWER_KEY_DIR", str(keys))
    # Execute
    rounds = run_server(federation(keys), config, tmp_path)
    # Assert: both rounds aggregate the four honest nodes; the stray node is out at identify, with the reason
    assert len(rounds) == 2
    for secure_round in rounds:
        assert secure_round["aggregate"] is not None, secure_round["errors"]
        assert secure_round["included"] == list(HONEST)
        assert secure_round["dropped"] == {str(ROGUE): IDENTIFY}
        assert "outside the trusted list" in secure_round["errors"][str(ROGUE)]  # type: ignore[index]
    assert f"node {ROGUE} left out in {IDENTIFY}" in capsys.readouterr().out


def test_an_active_run_without_the_federations_keys_refuses_to_start(keys: Path, tmp_path: Path) -> None:
    # Execute / Assert: no trusted-keys-file and no key directory: refused before any round, saying what to set
    with pytest.raises(ConfigurationError) as refused:
        run_server(federation(keys), run_config(), tmp_path)
    for hint in ("trusted-keys-file", "federation.keys", "SECAGG_FLOWER_KEY_DIR", "make-keys.sh"):
        assert hint in str(refused.value)


def test_a_hospital_with_a_stale_list_sits_out_and_the_server_prints_whose_key_it_refused(
    keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: four ceremony nodes; the first one's trusted list predates the fourth hospital's key
    stale = tmp_path / "stale.keys"
    write_trusted_keys(stale, [bytes.fromhex((keys / f"hospital-{i}.key.pub").read_text()) for i in range(3)])
    config = run_config(**{"num-partitions": len(HONEST), "min-nodes": len(HONEST),
                           "trusted-keys-file": str(keys / "federation.keys")})
    # Execute
    rounds = run_server(federation(keys, HONEST, stale), config, tmp_path)
    # Assert: the server keeps the listed fourth node (a refusal is one node's unverifiable word); the
    # stale hospital leaves itself out at setup, and the report and the printout name the refused node
    stale_node, listed = HONEST[0], HONEST[-1]
    for secure_round in rounds:
        assert secure_round["aggregate"] is not None and secure_round["included"] == list(HONEST[1:])
        assert secure_round["dropped"] == {str(stale_node): SETUP}
        assert f"(node {listed}) is not on the federation's trusted list" in secure_round["errors"][str(stale_node)]  # type: ignore[index]
    printed = capsys.readouterr().out
    assert f"node {stale_node} left out in {SETUP}" in printed and f"(node {listed})" in printed
