"""A Paillier node sent a DP round's setup as another train action than the round's refuses it
before it trains or charges its own budget.

A DP round's upload costs the node one contribution of its own budget (charged after training,
before the upload leaves). The round's message type enters the session id, so an upload a
lying coordinator had made under another handler (its ``encrypt`` message retyped
``train.zero``) was dropped by the server: the node had trained and was charged for an upload
that could only be dropped. The ``PaillierSetup`` now names the round's message type, and the
node compares it with the type of the message it was sent first.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("flwr")
pytest.importorskip("dp_accounting")

from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict

from secagg.integrations.flower.node_budget import BUDGET_KEY
from secagg.integrations.flower.protocol import ENCRYPT

from .flower_harness import Audit, stage_of
from .test_integrations_flower_action_binding import ZERO, retype
from .test_integrations_flower_clipping_dp import per_example_clipped_delta
from .test_integrations_flower_node_budget import dp_round
from .test_integrations_flower_paillier_dp import NODES, dp_grid

pytestmark = pytest.mark.usefixtures("server_identity")

FAULTY = 42


def test_a_dp_setup_sent_as_another_train_action_is_refused_before_training_or_any_charge(tmp_path: Path) -> None:
    # Prepare: node 42 has a second train handler (train.zero, the same DP training), and the
    # coordinator sends its encrypt message as train.zero, the others' as train
    audit = Audit()
    grid, secure = dp_grid(tmp_path, audit)
    ran: list[int] = []

    @grid.apps[FAULTY].train("zero")
    def zero(message: Message, context: Context) -> Message:
        ran.append(FAULTY)
        arrays = message.content["arrays"]
        updated = {name: Array((a.numpy() + per_example_clipped_delta(FAULTY, name, a.numpy())).astype(a.numpy().dtype))
                   for name, a in arrays.items()}  # fmt: skip
        metrics = MetricRecord({"num-examples": 20})
        return Message(RecordDict({"arrays": ArrayRecord(updated), "metrics": metrics}), reply_to=message)

    retype(grid, lambda m: m.metadata.dst_node_id == FAULTY and stage_of(m) == ENCRYPT)
    # Execute
    report = dp_round(secure, 1)
    # Assert: node 42 refuses at encrypt, naming both types; it never trained, charged its budget
    # or uploaded; the four others are decrypted
    assert report.dropped == {FAULTY: ENCRYPT}, report.dropped
    reason = report.errors[FAULTY]
    assert "message type" in reason and f"{ZERO!r}" in reason and "'train'" in reason, reason
    assert ran == [] and BUDGET_KEY not in grid.states[FAULTY]
    assert FAULTY not in audit.of_round(1)
    assert report.skipped_reason is None and report.included == frozenset(NODES) - {FAULTY}, report.errors
