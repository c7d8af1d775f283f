"""The example Flower app over a real deployment: one SuperLink, four SuperNodes, on 127.0.0.1.

Two runs, each on its own deployment: masking (SecAgg) and threshold Paillier.

Starts ``flower-superlink`` and four ``flower-supernode`` processes (insecure
mode, loopback only, FLWR_HOME in a temporary directory, no update check or
telemetry), runs two secure FedAvg rounds of ``examples/flower`` with
``flwr run`` (masking in active mode, the example's default, with the keys of
the example's key ceremony, ``make-keys.sh``), and checks each round's server-side aggregate against the plain
sum of the nodes' own quantized updates. Node 3 drops out in the middle of
round 1 (after sharing its keys, before uploading its masked update); in round
2 it takes part again. Every process this test starts is stopped in a
``finally`` block, process group by process group, and the test asserts that
none survives. The Paillier run starts with the key ceremony: each node gets
its sealed key share and a passphrase file through its node config, the
ServerApp the public key through the run config; node 3 uploads in round 1
and then fails in the decrypt stage, and its update still counts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flwr")
pytest.importorskip("sklearn")

from .flower_checks import check_rounds
from .flower_example import make_keys
from .paillier_keys import PASSPHRASE, identity_files, key_files

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flower"
BIN = Path(sys.executable).parent
NODES = 4
DROPPING_PARTITION = 3
DEADLINE_S = 300.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Deployment:
    """The processes of one loopback deployment, and their logs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "flwr-home"
        self.home.mkdir()
        self.logs = root / "logs"
        self.logs.mkdir()
        self.port = free_port()
        self.env = {
            **os.environ,
            "FLWR_HOME": str(self.home),
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "FLWR_TELEMETRY_ENABLED": "0",
            "PYTHONUNBUFFERED": "1",
            # The SuperLink and SuperNodes spawn Flower's helper commands by name.
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        (self.home / "config.toml").write_text(
            f'[superlink]\ndefault = "test"\n\n[superlink.test]\naddress = "127.0.0.1:{self.port}"\ninsecure = true\n'
        )

    def start(self, name: str, args: list[str]) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        # A session of its own: the process and the helpers it spawns form one group to stop.
        self.processes[name] = subprocess.Popen(
            [str(BIN / args[0]), *args[1:]], stdout=log, stderr=subprocess.STDOUT, env=self.env,
            start_new_session=True, cwd=self.root,
        )
        log.close()

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def flwr(self, *args: str) -> dict[str, Any]:
        result = subprocess.run(
            [str(BIN / "flwr"), *args, "--format", "json"], capture_output=True, text=True, env=self.env,
            cwd=self.root, timeout=120, check=False,
        )
        try:
            return dict(json.loads(result.stdout))
        except json.JSONDecodeError as exc:
            raise AssertionError(f"flwr {args}: {result.stdout}\n{result.stderr}") from exc

    def wait_for(self, what: str, condition: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise AssertionError(f"{name} exited with {process.returncode} while waiting for {what}")
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}")

    def healthy(self) -> bool:
        with suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as reply:
            return bool(reply.status == 200)
        return False

    def stop(self) -> None:
        """SIGTERM the nodes' groups and wait, then the SuperLink's (nodes retry forever
        without it); SIGKILL whatever is left, including detached helpers found by FLWR_HOME."""
        nodes = [name for name in self.processes if name != "superlink"]
        for group in (nodes, ["superlink"]):
            for name in group:
                self._signal_group(name, signal.SIGTERM)
            deadline = time.monotonic() + 10
            for name in group:
                process = self.processes.get(name)
                if process is not None:
                    with suppress(subprocess.TimeoutExpired):
                        process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for name in self.processes:
            self._signal_group(name, signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):
                self.processes[name].wait(timeout=5)
        for pid in self.survivors():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while self.survivors() and time.monotonic() < deadline:
            time.sleep(0.1)

    def _signal_group(self, name: str, sig: signal.Signals) -> None:
        process = self.processes.get(name)
        if process is None:
            return
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)

    def survivors(self) -> list[int]:
        """Processes still running with this deployment's FLWR_HOME (helpers included)."""
        marker = f"FLWR_HOME={self.home}".encode()
        alive = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with suppress(OSError):
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    alive.append(int(entry.name))
        return alive


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    running = Deployment(tmp_path)
    try:
        yield running
    finally:
        running.stop()
        leftover = running.survivors()
        for name in running.processes:
            print(f"--- {name} log (tail) ---\n{running.log(name)[-3000:]}")
        assert leftover == [], f"processes survived the deployment: {leftover}"


def start_federation(deployment: Deployment, node_configs: list[str]) -> Path:
    """A SuperLink, then one SuperNode per node config; returns a copy of the example app."""
    app_dir = deployment.root / "app"
    shutil.copytree(EXAMPLE, app_dir, ignore=shutil.ignore_patterns("__pycache__"))
    deployment.start(
        "superlink",
        ["flower-superlink", "--insecure", "--host", "127.0.0.1", "--port", str(deployment.port),
         "--disable-runtime-dependency-installation"],
    )
    deployment.wait_for("the SuperLink's health endpoint", deployment.healthy, 60)
    for partition, config in enumerate(node_configs):
        deployment.start(
            f"node-{partition}",
            ["flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{deployment.port}",
             "--port", str(free_port()), "--node-config", config],
        )
    for partition in range(len(node_configs)):
        deployment.wait_for(
            f"node {partition} to register", lambda p=partition: "SuperNode ID:" in deployment.log(f"node-{p}"), 60
        )
    return app_dir


def run_app(deployment: Deployment, app_dir: Path, run_config: str) -> None:
    """``flwr run`` the app; poll until the run finishes; assert it completed."""
    submitted = deployment.flwr("run", str(app_dir), "test", "--run-config", run_config)
    assert submitted.get("success"), submitted
    run_id = str(submitted["run-id"])
    status: dict[str, Any] = {}

    def finished() -> bool:
        nonlocal status
        listing = deployment.flwr("ls", "test", "--run-id", run_id)
        runs = listing.get("runs", [])
        status = runs[0] if runs else {}
        return str(status.get("status", "")).startswith("finished")

    deployment.wait_for(f"run {run_id} to finish", finished, DEADLINE_S)
    assert status["status"] == "finished:completed", (status, deployment.flwr("log", run_id, "test", "--show"))


def test_secure_fedavg_over_real_superlink_and_supernodes_with_a_dropout(deployment: Deployment) -> None:
    started = time.monotonic()
    # Prepare: a SuperLink, then four SuperNodes (node 3 drops out in round 1's masked-input stage)
    # (active mode, the example's default: the example's key ceremony; each node names the key directory)
    keys = deployment.root / "keys"
    ceremony = make_keys(keys, NODES, deployment.root)
    assert ceremony.returncode == 0, ceremony.stderr
    audit_dir = deployment.root / "audit"
    audit_dir.mkdir()
    configs = []
    for partition in range(NODES):
        config = f'partition-id={partition} num-partitions={NODES} audit-dir="{audit_dir}" key-dir="{keys}"'
        if partition == DROPPING_PARTITION:
            config += ' drop-stage="masked-input" drop-round=1'
        configs.append(config)
    app_dir = start_federation(deployment, configs)
    result_path = deployment.root / "result.json"
    run_config = (f'num-server-rounds=2 protocol="secagg" stage-timeout=30.0 min-nodes=3 result-path="{result_path}" '
                  f'trusted-keys-file="{keys / "federation.keys"}"')  # the server's copy of the public list
    # Execute: `flwr run` submits the app; poll until the run finishes
    run_app(deployment, app_dir, run_config)
    # Assert: two rounds, node 3 out of round 1 only, aggregates equal the plain sums
    rounds = check_rounds(json.loads(result_path.read_text()), audit_dir)
    assert [r["round"] for r in rounds] == [1, 2]
    node_ids = rounds[0]["node_ids"]
    assert len(node_ids) == NODES == len(rounds[0]["included"]) + 1
    dropped = [int(node) for node in rounds[0]["dropped"]]
    assert len(dropped) == 1 and rounds[0]["dropped"][str(dropped[0])] == "masked-input"
    assert "fault injection" in rounds[0]["errors"][str(dropped[0])]
    assert sorted(rounds[1]["included"]) == sorted(node_ids) and rounds[1]["dropped"] == {}
    assert rounds[1]["accuracy"] > 0.9
    seconds = ", ".join(f"{r['seconds']:.1f}" for r in rounds)
    print(f"deployment test wall time: {time.monotonic() - started:.1f} s; secure rounds took {seconds} s")


def test_paillier_fedavg_over_real_superlink_and_supernodes_with_a_dropout(deployment: Deployment) -> None:
    started = time.monotonic()
    # Prepare: the key ceremony before the federation starts (a 2-of-4, 2048-bit key): each node
    # gets its sealed share and passphrase file, the server the public key only. Node 3 uploads
    # in round 1 and then fails to decrypt.
    ceremony = deployment.root / "ceremony"
    public_path, shares = key_files(ceremony, NODES, 3)
    identities, trusted, _ = identity_files(ceremony, NODES)
    passphrase = ceremony / "passphrase"
    passphrase.write_text(PASSPHRASE + "\n")
    passphrase.chmod(0o600)  # a secret file: the node refuses a looser one
    audit_dir = deployment.root / "audit"
    audit_dir.mkdir()
    configs = []
    for partition in range(NODES):
        config = (f'partition-id={partition} num-partitions={NODES} audit-dir="{audit_dir}" '
                  f'key-share-file="{shares[partition]}" key-share-passphrase-file="{passphrase}" '
                  f'identity-key-file="{identities[partition]}" trusted-keys-file="{trusted}"')
        if partition == DROPPING_PARTITION:
            config += ' drop-stage="decrypt" drop-round=1'
        configs.append(config)
    app_dir = start_federation(deployment, configs)
    result_path = deployment.root / "result.json"
    run_config = (f'num-server-rounds=2 protocol="paillier" public-key-file="{public_path}" stage-timeout=30.0 '
                  f'min-nodes=3 result-path="{result_path}" trusted-keys-file="{trusted}"')
    # Execute
    run_app(deployment, app_dir, run_config)
    # Assert: the decrypted sums equal the plain int64 sums of the nodes' own encodings; node 3's
    # round-1 update counts (it uploaded) although it did not decrypt
    rounds = check_rounds(json.loads(result_path.read_text()), audit_dir)
    assert [r["round"] for r in rounds] == [1, 2] and all(r["protocol"] == "paillier" for r in rounds)
    assert len(rounds[0]["included"]) == NODES and list(rounds[0]["dropped"].values()) == ["decrypt"]
    assert len(rounds[1]["included"]) == NODES and rounds[1]["dropped"] == {}
    assert rounds[1]["accuracy"] > 0.9
    seconds = ", ".join(f"{r['seconds']:.1f}" for r in rounds)
    print(f"paillier deployment test wall time: {time.monotonic() - started:.1f} s; rounds took {seconds} s")
