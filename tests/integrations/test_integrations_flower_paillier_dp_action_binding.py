"""A Paillier node sent a DP round's setup as another train action than the round's refuses it
before it trains or charges its own budget.

A DP round's upload costs the node one contribution of its own budget (charged after training,
before the upload leaves). The round's message type enters the session id, so an upload a
lying coordinator had made under another handler (its ``encrypt`` message retyped
``train.zero``) was dropped by the server: the node had trained and was charged for an upload
that could only be dropped. The ``PaillierSetup`` now names the round's message type, and the
node compares it with the type of the message it was sent first. The field is the coordinator's
word: one that named the other type in the setup too got the node charged. Now the node's own
``NodePolicy.train_message_types`` (default: plain ``train`` only) names the types it trains for,
checked before it trains or charges anything; a node that accepts another type by name is back to
that limit for it (docs/integrations.md; the last test).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("dp_accounting")

from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict

from secagg import wire
from secagg.integrations.flower import NodePolicy
from secagg.integrations.flower._records import PAYLOAD_RECORD, read_stage
from secagg.integrations.flower.protocol import ENCRYPT, PaillierSetup

from .flower_harness import Audit, budget_charged, stage_of
from .test_integrations_flower_action_binding import ZERO, retype
from .test_integrations_flower_clipping_dp import per_example_clipped_delta
from .test_integrations_flower_node_budget import dp_round
from .test_integrations_flower_paillier_dp import NODES, dp_grid

pytestmark = pytest.mark.usefixtures("server_identity")

FAULTY = 42


def second_dp_handler(grid: Any) -> list[int]:
    """Give node 42 a second train handler, ``train.zero`` (the same DP training); the list it
    returns records each time that handler runs."""
    ran: list[int] = []

    @grid.apps[FAULTY].train("zero")
    def zero(message: Message, context: Context) -> Message:
        ran.append(FAULTY)
        arrays = message.content["arrays"]
        updated = {name: Array((a.numpy() + per_example_clipped_delta(FAULTY, name, a.numpy())).astype(a.numpy().dtype))
                   for name, a in arrays.items()}  # fmt: skip
        metrics = MetricRecord({"num-examples": 20})
        return Message(RecordDict({"arrays": ArrayRecord(updated), "metrics": metrics}), reply_to=message)

    return ran


def test_a_dp_setup_sent_as_another_train_action_is_refused_before_training_or_any_charge(tmp_path: Path) -> None:
    # Prepare: node 42 has a second train handler (train.zero, the same DP training), and the
    # coordinator sends its encrypt message as train.zero, the others' as train
    audit = Audit()
    grid, secure = dp_grid(tmp_path, audit)
    ran = second_dp_handler(grid)

    retype(grid, lambda m: m.metadata.dst_node_id == FAULTY and stage_of(m) == ENCRYPT)
    # Execute
    report = dp_round(secure, 1)
    # Assert: node 42 refuses at encrypt, naming both types; it never trained, charged its budget
    # or uploaded; the four others are decrypted
    assert report.dropped == {FAULTY: ENCRYPT}, report.dropped
    reason = report.errors[FAULTY]
    assert "message type" in reason and f"{ZERO!r}" in reason and "'train'" in reason, reason
    assert ran == [] and not budget_charged(grid, FAULTY)
    assert FAULTY not in audit.of_round(1)
    assert report.skipped_reason is None and report.included == frozenset(NODES) - {FAULTY}, report.errors


def lie_in_the_setup_too(grid: Any) -> None:
    """A lying coordinator: node 42's encrypt message goes out as train.zero, and the setup in it
    names train.zero too (PaillierSetup.message_type is its word, like every setup field)."""
    original = grid.push_messages

    def push(messages: Iterable[Message]) -> Iterable[str]:
        batch = list(messages)
        for message in batch:
            if message.metadata.dst_node_id == FAULTY and stage_of(message) == ENCRYPT:
                message.metadata.__dict__["_message_type"] = ZERO
                setup = wire.decode(read_stage(message.content)[1], PaillierSetup)
                lied = wire.encode(dataclasses.replace(setup, message_type=ZERO.encode()))
                message.content[PAYLOAD_RECORD] = ArrayRecord({"payload": Array(np.frombuffer(lied, dtype=np.uint8))})
        return original(batch)

    grid.push_messages = push


@pytest.mark.slow  # a heavy Flower round: CI runs it in the slow suite, beside the default suite
def test_a_coordinator_naming_another_type_in_the_setup_too_is_refused_by_the_default_policy(
    tmp_path: Path,
) -> None:
    # Prepare: node 42 has a second train handler (train.zero); the lying coordinator sends its
    # encrypt message as train.zero with a setup naming train.zero. Its policy is the default one
    # for train types: plain train only.
    audit = Audit()
    grid, secure = dp_grid(tmp_path, audit)
    ran = second_dp_handler(grid)
    lie_in_the_setup_too(grid)
    # Execute
    report = dp_round(secure, 1)
    # Assert: node 42 refuses at encrypt, naming its policy field, before it trains or charges its
    # budget; the four others are decrypted
    assert report.dropped == {FAULTY: ENCRYPT}, report.dropped
    reason = report.errors[FAULTY]
    assert "train_message_types" in reason and f"{ZERO!r}" in reason, reason
    assert ran == [] and not budget_charged(grid, FAULTY)
    assert FAULTY not in audit.of_round(1)
    assert report.skipped_reason is None and report.included == frozenset(NODES) - {FAULTY}, report.errors


@pytest.mark.slow  # a heavy Flower round: CI runs it in the slow suite, beside the default suite
def test_the_limit_a_node_that_accepts_the_other_type_by_name_is_charged_when_the_setup_names_it(
    tmp_path: Path,
) -> None:
    # Prepare: as above, but every node's policy accepts train.zero by name. docs/integrations.md
    # states this limit: a Paillier round has no stage before training where nodes compare setups.
    audit = Audit()
    policy = NodePolicy(min_colluders=0, train_message_types=("train", ZERO))
    grid, secure = dp_grid(tmp_path, audit, policy)
    ran = second_dp_handler(grid)
    lie_in_the_setup_too(grid)
    # Execute
    report = dp_round(secure, 1)
    # Assert: node 42 ran the other handler and was charged; its upload, in another session, was
    # dropped by the server, and the four others are decrypted without it
    assert ran == [FAULTY] and budget_charged(grid, FAULTY)
    assert report.dropped == {FAULTY: ENCRYPT} and "another session" in report.errors[FAULTY], report.errors
    assert report.skipped_reason is None and report.included == frozenset(NODES) - {FAULTY}
