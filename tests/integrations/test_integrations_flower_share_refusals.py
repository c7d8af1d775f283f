"""A node's refusal of a relayed share box is in the round's report, whether the round completes or aborts.

The server relays one corrupted share box to one node. The node refuses that sender's box for
itself and goes on (docs/spec.md 12.8), so the round completes with every node. Before, the
report then said nothing of the refusal. Now ``RoundReport.share_refusals`` names the pair
(receiving node, sending node) with the reason, as the receiving node's claim, unproven. A round
that aborts at ``unmask`` reported the refusals only inside ``skipped_reason``, in protocol ids;
its ``share_refusals`` now names them by node as in a completed round, and ``skipped_reason`` only
counts them (and names the pairs in protocol ids) instead of repeating each claim's sentence.
"""

from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("flwr")

from flwr.serverapp.strategy import FedAvg

from secagg import wire
from secagg.integrations.flower._records import read_stage
from secagg.integrations.flower.protocol import MASKED_INPUT, UNMASK
from secagg.masking.messages import SealedBox, ShareDelivery

from .flower_harness import FakeGrid, initial_arrays
from .test_integrations_flower_malformed import FAULTY, NODES, assert_exact_masking_sum, masking_round
from .test_integrations_flower_split_setup import _replace_payload

pytestmark = pytest.mark.usefixtures("server_identity")


def corrupt_one_box(grid: FakeGrid, receiver: int, sender: int) -> None:
    """The server flips one bit of ``sender``'s box in ``receiver``'s share delivery."""
    original = grid.send_and_receive
    protocol_id = sorted(NODES).index(sender) + 1

    def send(messages, *, timeout=None):  # type: ignore[no-untyped-def]
        messages = list(messages)
        for message in messages:
            stage, payload = read_stage(message.content)
            if message.metadata.dst_node_id == receiver and stage == MASKED_INPUT:
                delivery = wire.decode(payload, ShareDelivery)
                boxes = tuple(
                    SealedBox(b.peer, b.sealed[:20] + bytes([b.sealed[20] ^ 1]) + b.sealed[21:])
                    if b.peer == protocol_id else b
                    for b in delivery.boxes
                )
                _replace_payload(message, MASKED_INPUT, wire.encode(dataclasses.replace(delivery, boxes=boxes)))
        return original(messages, timeout=timeout)

    grid.send_and_receive = send  # type: ignore[method-assign]


@pytest.mark.parametrize("mode", ["semi-honest", "active"])
def test_a_refused_share_box_is_named_in_the_report_of_a_completed_round(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: the server corrupts node 9_999_999_999's box to node 42 (FAULTY)
    sender = 9_999_999_999
    grid, secure, audit = masking_round(mode)
    corrupt_one_box(grid, FAULTY, sender)
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)

    # Execute
    strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=1)

    # Assert: every node summed exactly, nobody dropped; the report names 42's claim about the sender
    report = secure.reports[0]
    assert report.skipped_reason is None and report.dropped == {} and report.errors == {}, report.errors
    assert report.included == frozenset(NODES)
    assert_exact_masking_sum(report, audit)
    assert list(report.share_refusals) == [(FAULTY, sender)]
    reason = report.share_refusals[(FAULTY, sender)]
    assert f"node {FAULTY} says it refused node {sender}'s share box" in reason, reason
    assert "unproven" in reason, reason
    # The log has one line for the round's claims, with the pair, not the claim's sentence
    lines = [r.getMessage() for r in caplog.records if "refusal claim" in r.getMessage()]
    assert len(lines) == 1 and f"1 share-box refusal claim ({FAULTY} of {sender}:" in lines[0], lines
    assert "says it refused" not in lines[0], lines


def test_an_honest_round_reports_no_refusal() -> None:
    _, secure, _ = masking_round()
    FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3).start(
        grid=secure, initial_arrays=initial_arrays(), num_rounds=1
    )
    assert secure.reports[0].share_refusals == {}


@pytest.mark.parametrize("mode", ["semi-honest", "active"])
def test_a_refused_share_box_is_named_by_node_in_the_report_of_an_aborted_round(mode: str) -> None:
    # Prepare: the server corrupts the sender's box to node 42 (FAULTY), and two other nodes go
    # silent at unmask: the sender's self-mask seed then has fewer shares than the threshold
    sender = 9_999_999_999
    silent = [node for node in NODES if node not in (FAULTY, sender)][:2]
    grid, secure, _ = masking_round(mode, stage_timeout=0.3, poll_interval=0.05)  # silent nodes: no long wait
    grid.silent.update((node, UNMASK) for node in silent)
    corrupt_one_box(grid, FAULTY, sender)
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)

    # Execute
    strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=1)

    # Assert: the round is skipped; its report names 42's claim about the sender by node id
    report = secure.reports[0]
    assert report.skipped_reason is not None
    assert "1 share-box refusal claim (see share_refusals)" in report.skipped_reason, report.skipped_reason
    assert "says it refused" not in report.skipped_reason, report.skipped_reason  # the sentence is in share_refusals
    assert report.dropped == dict.fromkeys(silent, UNMASK), report.dropped
    assert list(report.share_refusals) == [(FAULTY, sender)], report.share_refusals
    reason = report.share_refusals[(FAULTY, sender)]
    assert f"node {FAULTY} says it refused node {sender}'s share box" in reason, reason
    assert "unproven" in reason, reason
