"""A masking node refuses a bad share delivery before it charges its DP budget (and trains).

In a DP round the masked-input stage trains, charges one contribution to the node's own budget,
then runs the protocol step, which checks the share delivery the server relayed. A lying server
whose delivery to a node is unusable (too few boxes, a box from a peer the node never accepted,
or boxes that do not open) was refused only after the charge: safe for privacy (nothing left the
node), but the hospital's budget was spent on a round its node then refused. The node now checks
the delivery (everything of that step that needs no input) before it trains or charges; the
charge still precedes the release of the noised input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("flwr")
pytest.importorskip("dp_accounting")

from flwr.app import Message

from secagg import wire
from secagg.dp.accountant import read_state
from secagg.integrations.flower import SecAggGrid
from secagg.integrations.flower._records import read_stage
from secagg.integrations.flower.node_budget import DP_STATE_FILE
from secagg.integrations.flower.protocol import MASKED_INPUT
from secagg.masking.messages import SealedBox, ShareDelivery

from .flower_harness import Audit, FakeGrid
from .test_integrations_flower_clipping_dp import DP, NODES, dp_grid, options
from .test_integrations_flower_node_budget import dp_round
from .test_integrations_flower_split_setup import _replace_payload

pytestmark = pytest.mark.usefixtures("server_identity")

TARGET = 42
Lie = Callable[[ShareDelivery], ShareDelivery]

LIES: dict[str, Lie] = {
    "none": lambda delivery: delivery,
    "boxes that do not open": lambda delivery: dataclasses.replace(
        delivery, boxes=tuple(SealedBox(box.peer, bytes(60)) for box in delivery.boxes)
    ),
    "a box from itself": lambda delivery: dataclasses.replace(
        delivery, boxes=tuple(sorted((SealedBox(delivery.recipient, bytes(60)), *delivery.boxes[:-1]),
                                     key=lambda box: box.peer))
    ),
}


def lying_delivery(grid: FakeGrid, lie: Lie) -> None:
    """The server relays ``lie(delivery)`` instead of TARGET's share delivery."""
    original = grid.send_and_receive

    def send(messages, *, timeout=None):  # type: ignore[no-untyped-def]
        messages = list(messages)
        for message in messages:
            if message.metadata.dst_node_id == TARGET:
                _rewrite(message, lie)
        return original(messages, timeout=timeout)

    grid.send_and_receive = send  # type: ignore[method-assign]


def _rewrite(message: Message, lie: Lie) -> None:
    stage, payload = read_stage(message.content)
    if stage == MASKED_INPUT:
        _replace_payload(message, MASKED_INPUT, wire.encode(lie(wire.decode(payload, ShareDelivery))))


@pytest.mark.parametrize("lie", list(LIES))
def test_a_bad_share_delivery_is_refused_before_the_node_charges_its_budget(tmp_path: Path, lie: str) -> None:
    # Prepare: TARGET keeps its budget in a state file; the server lies in its delivery to TARGET
    # ("none": the honest control, whose contribution is charged)
    audit = Audit()
    grid, _ = dp_grid(tmp_path, audit)
    state_file = tmp_path / "dp-state.json"
    grid.node_configs[TARGET] = {DP_STATE_FILE: str(state_file)}
    lying_delivery(grid, LIES[lie])
    secure = SecAggGrid(grid, options(dp=DP))

    # Execute
    report = dp_round(secure, 1)

    # Assert: the honest delivery is charged once and TARGET's input summed; a lying one is refused
    # (TARGET a dropout of masked-input, with its reason) and the state file records no charge
    if lie == "none":
        assert TARGET in report.included, report.errors
        state = read_state(state_file)
        assert state is not None and state["released"] == 1
        return
    assert report.dropped.get(TARGET) == MASKED_INPUT, (report.dropped, report.errors)
    assert "client" in report.errors[TARGET], report.errors
    state = read_state(state_file)  # opened at setup (0 contributions), charged at masked-input
    assert state is None or state["released"] == 0, f"the node charged its budget for a round it refused: {state}"
    assert TARGET not in {record.node_id for record in audit.records}
    assert set(NODES) - {TARGET} <= {record.node_id for record in audit.records}
