"""A hospital's own ceiling on the federation size: ``NodePolicy.max_nodes``.

A node refuses a round whose setup names more nodes than its policy's ``max_nodes``
(default 1024; None: the wire format's 65536), checked on the setup's node list before
any other check, and refuses unread a setup larger than an honest one of ``max_nodes``
nodes with every parameter field full. At the bound the round runs; one past it, that
node is the round's dropout with the reason, and the others' sum is exact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flwr.app import Context, Message, MessageType, RecordDict

from secagg.errors import ConfigurationError
from secagg.integrations.flower import (
    NodePolicy,
    PaillierGrid,
    PaillierOptions,
    SecAggGrid,
    SecAggOptions,
    make_paillier_mod,
    make_secagg_mod,
)
from secagg.integrations.flower._limits import (
    PAILLIER_SETUP_LIMIT,
    ROUND_SETUP_LIMIT,
    paillier_setup_limit,
    round_setup_limit,
)
from secagg.integrations.flower._records import stage_content
from secagg.integrations.flower.keys import read_public_key
from secagg.integrations.flower.policy import DEFAULT_MAX_NODES
from secagg.integrations.flower.protocol import ENCRYPT, SETUP

from .flower_harness import (
    TRUSTED_KEYS,
    Audit,
    FakeGrid,
    identity_files,
    make_app,
    transported,
)
from .paillier_keys import PASSPHRASE
from .test_integrations_flower_limits import run
from .test_integrations_flower_malformed import (
    FAULTY,
    NODES,
    PAILLIER_NODES,
    WEIGHTS,
    assert_exact_masking_sum,
)

pytestmark = pytest.mark.usefixtures("server_identity")


def test_the_policy_validates_max_nodes() -> None:
    # Execute / Assert: the default, the wire maximum by name, the bound at min_nodes
    assert NodePolicy().max_nodes == DEFAULT_MAX_NODES == 1024
    assert NodePolicy(max_nodes=None).max_nodes is None
    assert NodePolicy(min_nodes=5, max_nodes=5).max_nodes == 5
    for bad in (4, True, 1 << 17, 5.0):
        with pytest.raises(ConfigurationError, match="max_nodes"):
            NodePolicy(min_nodes=5, max_nodes=bad)  # type: ignore[arg-type]


def masking_grid(faulty_max: int) -> tuple[FakeGrid, SecAggGrid, Audit]:
    """A semi-honest round of the 5 NODES; node 42's policy accepts at most ``faulty_max`` nodes,
    the others' exactly 5."""
    audit = Audit()
    apps = {
        node: make_app(node, WEIGHTS[node], audit, policy=NodePolicy(
            allow_semi_honest=True, max_nodes=faulty_max if node == FAULTY else len(NODES)))
        for node in NODES
    }
    grid = FakeGrid(apps)  # type: ignore[arg-type]
    return grid, SecAggGrid(grid, SecAggOptions(mode="semi-honest", protocol="secagg")), audit


@pytest.mark.parametrize("faulty_max", [5, 4])
def test_a_masking_node_refuses_a_round_above_its_max_nodes(faulty_max: int) -> None:
    # Prepare: at the bound (5 of 5) and one past it (5 nodes, 42 accepts 4)
    _, secure, audit = masking_grid(faulty_max)
    # Execute
    run(secure)
    # Assert
    report = secure.reports[0]
    assert report.skipped_reason is None, report.skipped_reason
    if faulty_max == len(NODES):
        assert report.dropped == {} and report.included == frozenset(NODES), report.errors
    else:
        assert report.dropped == {FAULTY: SETUP}, (report.dropped, report.errors)
        assert "round of 5 nodes, this node accepts at most 4" in report.errors[FAULTY], report.errors
        assert report.included == frozenset(NODES) - {FAULTY}
    assert_exact_masking_sum(report, audit)


@pytest.mark.parametrize("faulty_max", [4, 3])
def test_a_paillier_node_refuses_a_round_above_its_max_nodes(
    faulty_max: int, paillier_keys: tuple[Path, list[Path]]
) -> None:
    # Prepare: 4 nodes; node 42 accepts at most 4 (the bound) or 3 (one past)
    public_path, shares = paillier_keys
    audit = Audit()
    apps = {
        node: make_app(node, WEIGHTS[node], audit, paillier=True, key_share_file=share, passphrase=PASSPHRASE,
                       policy=NodePolicy(max_nodes=faulty_max if node == FAULTY else len(PAILLIER_NODES)))
        for node, share in zip(PAILLIER_NODES, shares, strict=True)
    }
    grid = FakeGrid(apps)  # type: ignore[arg-type]
    secure = PaillierGrid(grid, PaillierOptions(trusted_keys=TRUSTED_KEYS, public_key=read_public_key(public_path)))
    # Execute
    run(secure)
    # Assert: one past, 42 is that round's dropout at encrypt; the 3 others' uploads decrypt (3-of-4 key)
    report = secure.reports[0]
    assert report.skipped_reason is None, report.skipped_reason
    if faulty_max == len(PAILLIER_NODES):
        assert report.dropped == {} and report.included == frozenset(PAILLIER_NODES), report.errors
    else:
        assert report.dropped == {FAULTY: ENCRYPT}, (report.dropped, report.errors)
        assert "round of 4 nodes, this node accepts at most 3" in report.errors[FAULTY], report.errors
        assert report.included == frozenset(PAILLIER_NODES) - {FAULTY}
    plain = np.sum([a.encoded for n, a in audit.of_round(1).items() if n in report.included], axis=0)
    assert report.aggregate is not None and np.array_equal(report.aggregate, plain)


def test_max_nodes_is_checked_before_the_other_setup_checks() -> None:
    # Prepare: a 5-node setup that does not even name node 42 (refused anyway), to a node accepting 4
    grid, secure, _ = masking_grid(4)
    captured: list[Message] = []
    original = grid.send_and_receive

    def send(messages, *, timeout=None):  # type: ignore[no-untyped-def]
        messages = list(messages)
        captured.extend(m for m in messages if m.metadata.dst_node_id == FAULTY)
        return original(messages, timeout=timeout)

    grid.send_and_receive = send  # type: ignore[method-assign]
    run(secure)
    setup = captured[0]
    mod = make_secagg_mod(policy=NodePolicy(allow_semi_honest=True, max_nodes=4))
    # Execute: delivered to node 7, which the setup does not name
    message = Message(setup.content, dst_node_id=7, message_type=MessageType.TRAIN)
    reply = mod(transported(message), Context(77, 7, {}, RecordDict(), {}), lambda m, c: m)  # type: ignore[arg-type,return-value]
    # Assert: the ceiling is the reason given, not the node list's membership
    assert reply.has_error() and "this node accepts at most 4" in reply.error.reason, reply.error.reason


@pytest.mark.parametrize("max_nodes", [8, None, "default"])
@pytest.mark.parametrize("mod_name", ["masking", "paillier"])
def test_a_node_refuses_unread_a_setup_above_an_honest_one_of_its_max_nodes(
    mod_name: str, max_nodes: int | str | None, paillier_keys: tuple[Path, list[Path]], loaded: list[int]
) -> None:
    # Prepare: a setup payload one byte past the largest honest setup of max_nodes nodes
    node = PAILLIER_NODES[0]
    key_file, trusted_file = identity_files(node)
    policy = NodePolicy() if max_nodes == "default" else NodePolicy(max_nodes=max_nodes)  # type: ignore[arg-type]
    ceiling = DEFAULT_MAX_NODES if max_nodes == "default" else max_nodes
    if mod_name == "masking":
        mod = make_secagg_mod(policy=policy, identity_key_file=key_file, trusted_keys_file=trusted_file)
        stage, limit = SETUP, ROUND_SETUP_LIMIT if ceiling is None else round_setup_limit(ceiling)  # type: ignore[arg-type]
    else:
        mod = make_paillier_mod(key_share_file=paillier_keys[1][0], passphrase=PASSPHRASE, policy=policy,
                                identity_key_file=key_file, trusted_keys_file=trusted_file)
        stage = ENCRYPT
        limit = PAILLIER_SETUP_LIMIT if ceiling is None else paillier_setup_limit(ceiling)  # type: ignore[arg-type]
    message = Message(stage_content(stage, b"SA" + bytes(limit - 1)), dst_node_id=node,
                      message_type=MessageType.TRAIN)
    # Execute
    reply = mod(transported(message), Context(77, node, {}, RecordDict(), {}), lambda m, c: m)  # type: ignore[arg-type,return-value]
    # Assert: refused by its size, never loaded
    assert not loaded or max(loaded) < limit, "the oversized setup was loaded"
    assert reply.has_error() and reply.error.reason.startswith(f"secagg: node {node}:"), reply.error.reason
    assert f"exceeds the {limit} bytes an honest" in reply.error.reason, reply.error.reason


def test_the_setup_limits_shrink_with_max_nodes() -> None:
    # Assert: 40 bytes a node (id and identity key) in a masking setup, 40 in a Paillier one
    assert round_setup_limit(1025) - round_setup_limit(1024) == 40
    assert paillier_setup_limit(1025) - paillier_setup_limit(1024) == 40
    assert round_setup_limit(DEFAULT_MAX_NODES) < ROUND_SETUP_LIMIT - 2_500_000
    assert paillier_setup_limit(DEFAULT_MAX_NODES) < PAILLIER_SETUP_LIMIT - 1_200_000
