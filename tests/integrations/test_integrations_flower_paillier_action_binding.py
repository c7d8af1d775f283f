"""The message type of a Paillier round's messages is bound: it picks the node's train handler.

Flower routes a ``train.<action>`` message to the ClientApp's ``@app.train("<action>")`` handler,
so the message type shapes a node's upload as much as its training config does. A lying
coordinator that sent one node its ``encrypt`` message as ``train.zero`` (a handler that sends
back the model unchanged, or any other the app registers) and the rest as ``train`` got that
node's upload, from another handler, summed with the others' unseen. Later, the type entered
the session id, so that upload was dropped, but only after the node had trained (and, in a DP
round, charged its own budget): the setup named no type. Now:

- the ``PaillierSetup`` names the round's message type (``message_type``, bound into its
  descriptor, the session id, unless it is plain ``train``), and a node sent the setup in a
  message of another type refuses it before it trains or charges anything;
- a node refuses a ``decrypt`` message whose type is not its ``encrypt`` message's;
- an honest round of any one action runs as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message, RecordDict

from secagg.integrations.flower import NodePolicy, PaillierGrid, PaillierOptions
from secagg.integrations.flower.keys import read_public_key
from secagg.integrations.flower.protocol import DECRYPT, ENCRYPT

from .flower_harness import TRUSTED_KEYS, Audit, FakeGrid, initial_arrays, stage_of
from .test_integrations_flower_action_binding import ZERO, retype, with_zero_action
from .test_integrations_flower_paillier import NODES, WEIGHTS, keys, paillier_apps

pytestmark = pytest.mark.usefixtures("server_identity")

__all__ = ["keys"]  # the fixture, used by name

FAULTY = 42

BOTH = NodePolicy(train_message_types=("train", ZERO))
"""Nodes that train for both types, train.zero by name (the binding tests: the node would run either)."""



def two_action_grid(
    keys: tuple[Path, list[Path]], ran: list[int], policy: NodePolicy = BOTH
) -> tuple[FakeGrid, PaillierGrid, Audit]:
    public_path, shares = keys
    audit = Audit()
    apps = {node: with_zero_action(app, ran, node, WEIGHTS[node])  # type: ignore[arg-type]
            for node, app in paillier_apps(shares, audit, policy=policy).items()}  # fmt: skip
    grid = FakeGrid(apps)
    secure = PaillierGrid(grid, PaillierOptions(trusted_keys=TRUSTED_KEYS, public_key=read_public_key(public_path)))
    return grid, secure, audit


def instructions(message_type: str) -> list[Message]:
    content = RecordDict({"arrays": initial_arrays(), "config": ConfigRecord({"server-round": 1})})
    return [Message(content, dst_node_id=node, message_type=message_type, group_id="1") for node in NODES]


def assert_exact_sum(report: object, audit: Audit, included: Iterable[int]) -> None:
    encodings = audit.of_round(report.server_round)  # type: ignore[attr-defined]
    plain = np.sum([encodings[node].encoded for node in included], axis=0)
    assert np.array_equal(report.aggregate, plain)  # type: ignore[attr-defined]


def test_a_setup_sent_as_another_train_action_than_the_rounds_is_refused_before_training(
    keys: tuple[Path, list[Path]],
) -> None:
    # Prepare: every node has a second train handler; the coordinator sends node 42's encrypt
    # message as train.zero, the others' as train (the round's type, which the setup names)
    ran: list[int] = []
    grid, secure, audit = two_action_grid(keys, ran)
    retype(grid, lambda m: m.metadata.dst_node_id == FAULTY and stage_of(m) == ENCRYPT)
    # Execute
    reply = secure.secure_round(instructions("train"))
    # Assert: node 42 refuses the setup at encrypt, naming both types, before it trains (its
    # train.zero handler never ran) or uploads; the other three are summed exactly
    (report,) = secure.reports
    assert reply is not None and report.skipped_reason is None, report.errors
    assert report.dropped == {FAULTY: ENCRYPT}, report.dropped
    reason = report.errors[FAULTY]
    assert "message type" in reason and "'train.zero'" in reason and "'train'" in reason, reason
    assert ran == [] and FAULTY not in audit.of_round(report.server_round)
    assert report.included == frozenset(NODES) - {FAULTY}
    assert_exact_sum(report, audit, sorted(report.included))


def test_a_decrypt_message_of_another_type_than_the_nodes_encrypt_is_refused(keys: tuple[Path, list[Path]]) -> None:
    # Prepare: the coordinator sends node 42's decrypt message (only) as train.zero
    ran: list[int] = []
    grid, secure, audit = two_action_grid(keys, ran)
    retype(grid, lambda m: m.metadata.dst_node_id == FAULTY and stage_of(m) == DECRYPT)
    # Execute
    reply = secure.secure_round(instructions("train"))
    # Assert: node 42 refuses to decrypt, naming the type; its upload still counts and the other
    # three key-share holders decrypt the sum of all four
    (report,) = secure.reports
    assert reply is not None and report.skipped_reason is None, report.errors
    assert report.dropped == {FAULTY: DECRYPT}, report.dropped
    assert "message type" in report.errors[FAULTY], report.errors[FAULTY]
    assert report.included == frozenset(NODES) and ran == []
    assert_exact_sum(report, audit, NODES)


def test_an_honest_paillier_round_of_one_action_runs_that_handler_on_every_node(
    keys: tuple[Path, list[Path]],
) -> None:
    # Prepare: the strategy's messages are all train.zero
    ran: list[int] = []
    _, secure, _ = two_action_grid(keys, ran)
    # Execute
    reply = secure.secure_round(instructions(ZERO))
    # Assert: every node ran train.zero and is summed
    (report,) = secure.reports
    assert reply is not None and report.skipped_reason is None, report.errors
    assert report.included == frozenset(NODES) and sorted(ran) == sorted(NODES)
    assert report.weight_total == sum(WEIGHTS.values())


def test_a_paillier_round_of_another_train_action_is_refused_by_the_default_policy(
    keys: tuple[Path, list[Path]],
) -> None:
    # Prepare: every node registers train.zero too, but its policy names only plain train (the
    # default); the coordinator sends the round as train.zero, its setup naming train.zero
    ran: list[int] = []
    _, secure, audit = two_action_grid(keys, ran, NodePolicy())
    # Execute
    reply = secure.secure_round(instructions(ZERO))
    # Assert: every node refuses at encrypt, naming its policy field and the type, before training
    (report,) = secure.reports
    assert reply is None and report.skipped_reason is not None
    assert report.dropped == dict.fromkeys(NODES, ENCRYPT), report.dropped
    assert all("train_message_types" in report.errors[n] and f"{ZERO!r}" in report.errors[n] for n in NODES)
    assert ran == [] and not audit.of_round(report.server_round)
