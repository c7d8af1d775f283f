"""Issue 12's attack over Flower: a server that splits the setup between nodes never gets one node's update.

The reported attack: every node but the target receives clip = 1e300 (or
``local-epochs = 0``, a learning rate of 0), so their contributions are zeros
and the "aggregate" is the target's update. Every message here goes through
Flower's own serialisation (FakeGrid); the server-side grid is honest code and
the lie is injected between it and the nodes, as a compromised coordinator
would.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp.strategy import FedAvg

from secagg import wire
from secagg.integrations.flower import NodePolicy, PaillierGrid, PaillierOptions, SecAggGrid, SecAggOptions
from secagg.integrations.flower._records import PAYLOAD_RECORD, read_stage, stage_content
from secagg.integrations.flower.keys import read_public_key
from secagg.integrations.flower.protocol import ENCRYPT, MASKED_INPUT, SETUP, PaillierSetup, RoundSetup

from .flower_harness import (
    TRUSTED_KEYS,
    Audit,
    FakeGrid,
    initial_arrays,
    make_app,
)
from .paillier_keys import PASSPHRASE, key_files

NODES = (1_000_000_007, 2**63 + 11, 42, 9_999_999_999, 2**64 - 1)
WEIGHTS = dict(zip(NODES, (30, 55, 12, 80, 41), strict=True))
TARGET = NODES[0]
Rewrite = Callable[[Message], None]


pytestmark = pytest.mark.usefixtures("server_identity")


def _huge_clip() -> int:
    return int.from_bytes(struct.pack(">d", 1e300), "big")


def lying_server(grid: FakeGrid, rewrite: Rewrite) -> None:
    """Apply ``rewrite`` to every message the honest grid sends to a node other than the target."""
    original = grid.send_and_receive

    def send(messages, *, timeout=None):  # type: ignore[no-untyped-def]
        messages = list(messages)
        for message in messages:
            if message.metadata.dst_node_id != TARGET:
                rewrite(message)
        return original(messages, timeout=timeout)

    grid.send_and_receive = send  # type: ignore[method-assign]


def _replace_payload(message: Message, stage: str, payload: bytes) -> None:
    content = RecordDict({k: v for k, v in message.content.items() if k != PAYLOAD_RECORD})
    message.content = stage_content(stage, payload, content)


def split_masking_clip(rebind: bool) -> Rewrite:
    """Others get clip 1e300; with ``rebind`` the lie is consistent (their record binds the new setup)."""

    def rewrite(message: Message) -> None:
        stage, payload = read_stage(message.content)
        if stage != SETUP:
            return
        setup = wire.decode(payload, RoundSetup)
        split = dataclasses.replace(setup, clip_bits=_huge_clip())
        if rebind:
            config = dataclasses.replace(split.masking_config, descriptor=split.descriptor(77).digest())
            split = dataclasses.replace(split, masking=config.record())
        _replace_payload(message, SETUP, wire.encode(split))

    return rewrite


def split_training_config(message: Message) -> None:
    """Others are told to train zero local epochs with a learning rate of 0."""
    config = message.content.config_records.get("config")
    if config is not None:
        message.content["config"] = ConfigRecord({**dict(config.items()), "lr": 0.0, "local-epochs": 0})


def run_round(secure: SecAggGrid | PaillierGrid) -> None:
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)
    strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=1,
                   train_config=ConfigRecord({"lr": 0.1, "local-epochs": 1}))


@pytest.mark.parametrize("rebind", [False, True], ids=["record-left", "record-rebound"])
def test_a_split_clip_over_flower_never_yields_the_targets_update(rebind: bool) -> None:
    # Prepare
    audit = Audit()
    grid = FakeGrid({node: make_app(node, WEIGHTS[node], audit) for node in NODES})
    secure = SecAggGrid(grid, SecAggOptions(mode="semi-honest", protocol="secagg", stage_timeout=5.0))
    lying_server(grid, split_masking_clip(rebind))
    # Execute
    run_round(secure)
    # Assert: the others refused the setup (record left) or were in another session (rebound);
    # either way the round never aggregates the target with them
    report = secure.reports[0]
    assert report.skipped_reason is not None and report.aggregate is None
    if not rebind:
        assert all("binds another setup" in report.errors[node] for node in NODES[1:])


def test_a_split_training_config_over_flower_is_refused_by_the_nodes() -> None:
    # Prepare: the setup is honest; the training content others receive says lr = 0, 0 epochs
    audit = Audit()
    grid = FakeGrid({node: make_app(node, WEIGHTS[node], audit) for node in NODES})
    secure = SecAggGrid(grid, SecAggOptions(mode="semi-honest", protocol="secagg", stage_timeout=5.0))

    def rewrite(message: Message) -> None:
        stage, _ = read_stage(message.content)
        if stage == MASKED_INPUT:
            split_training_config(message)

    lying_server(grid, rewrite)
    # Execute
    run_round(secure)
    # Assert: every other node refused to train on it; no aggregate
    report = secure.reports[0]
    assert report.skipped_reason is not None and report.aggregate is None
    assert all("training configuration" in report.errors[node] for node in NODES[1:])
    assert [record.node_id for record in audit.records] == [TARGET] or not audit.records


def test_a_split_clip_in_a_paillier_round_never_yields_the_targets_update(tmp_path: Path) -> None:
    # Prepare: a 2-of-5 key; the others' PaillierSetup says clip 1e300
    public_path, shares = key_files(tmp_path / "ceremony", len(NODES), 3)
    apps = {node: make_app(node, WEIGHTS[node], paillier=True, key_share_file=share, passphrase=PASSPHRASE,
                           policy=NodePolicy(min_colluders=0))  # the 3-of-5 key (c = 0): by name
            for node, share in zip(NODES, shares, strict=True)}
    grid = FakeGrid(apps)
    options = PaillierOptions(public_key=read_public_key(public_path), stage_timeout=5.0, trusted_keys=TRUSTED_KEYS,
                              colluders=0)  # a 3-of-5 key, below the default 4-of-5: by name
    secure = PaillierGrid(grid, options)

    def rewrite(message: Message) -> None:
        stage, payload = read_stage(message.content)
        if stage == ENCRYPT:
            setup = wire.decode(payload, PaillierSetup)
            _replace_payload(message, ENCRYPT, wire.encode(dataclasses.replace(setup, clip_bits=_huge_clip())))

    lying_server(grid, rewrite)
    # Execute
    run_round(secure)
    # Assert: the others' uploads are for another session; the target is never decrypted with fewer
    report = secure.reports[0]
    assert report.aggregate is None and report.skipped_reason is not None
    assert all("another session" in report.errors[node] for node in NODES[1:])
