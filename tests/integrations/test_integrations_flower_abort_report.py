"""A masking round that aborts reports its rejected nodes in the same fields as a completed round.

A node whose reply the protocol rejects is, in a completed round, a dropout of that stage
(``RoundReport.dropped``) with the protocol's reason (``RoundReport.errors``). When the rejection
(with silent nodes) leaves too few for the session, the aborting step returned no state, and
before this the report's ``dropped`` and ``errors`` said nothing of that step's rejected node: it
was named only inside the free text of ``skipped_reason``. Now an aborted round fills ``dropped``
and ``errors`` for it exactly as a completed round does, and ``skipped_reason`` stays a short
summary that points there instead of repeating every reason.
"""

from __future__ import annotations

import pytest

pytest.importorskip("flwr")

from flwr.serverapp.strategy import FedAvg

from secagg.errors import ThresholdError
from secagg.integrations.flower._records import stage_content
from secagg.integrations.flower.protocol import CONSISTENCY_CHECK, MASKED_INPUT, SETUP, SHARE_KEYS, UNMASK
from secagg.integrations.flower.server import _skip_reason
from secagg.masking.server_state import SUMMARY_IDS

from .flower_harness import initial_arrays
from .test_integrations_flower_malformed import FAULTY, NODES, masking_round, replace_reply

pytestmark = pytest.mark.usefixtures("server_identity")

# The protocol message each stage's reply carries: a rejection's reason starts with it.
EXPECTED = {
    SETUP: "AdvertiseKeys: ",
    SHARE_KEYS: "EncryptedShares: ",
    MASKED_INPUT: "MaskedInput: ",
    CONSISTENCY_CHECK: "ConsistencySignature: ",
    UNMASK: "UnmaskResponse: ",
}
GARBAGE = b"SA\x01\x01\x03garbage"  # well-formed records, a payload the protocol's decoder rejects


@pytest.mark.parametrize(
    ("mode", "stage"),
    [(mode, stage) for mode in ("semi-honest", "active") for stage in EXPECTED
     if mode == "active" or stage != CONSISTENCY_CHECK],
)
def test_a_reply_rejected_in_the_aborting_stage_is_in_dropped_and_errors(mode: str, stage: str) -> None:
    # Prepare: node 42 (FAULTY) sends a payload the protocol rejects in `stage`, and three other
    # nodes go silent there: one node is left, fewer than any threshold, so the session aborts
    silent = [node for node in NODES if node != FAULTY][:3]
    grid, secure, _ = masking_round(mode, stage_timeout=0.3, poll_interval=0.05)  # silent nodes: no long wait
    grid.silent.update((node, stage) for node in silent)
    replace_reply(grid, FAULTY, stage, stage_content(stage, GARBAGE))
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)

    # Execute
    strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=1)

    # Assert: skipped; node 42 is a dropout of `stage` with the protocol's reason, as in a completed
    # round, the silent nodes are dropouts of `stage` without one; the summary stays short
    report = secure.reports[0]
    assert report.aggregate is None and report.skipped_reason is not None
    assert report.dropped == dict.fromkeys([*silent, FAULTY], stage), (report.dropped, report.skipped_reason)
    assert set(report.errors) == {FAULTY}, report.errors
    assert report.errors[FAULTY].startswith(EXPECTED[stage]), report.errors
    assert report.errors[FAULTY] not in report.skipped_reason, report.skipped_reason
    assert "see dropped and errors" in report.skipped_reason, report.skipped_reason


def test_a_reply_rejected_before_the_aborting_stage_keeps_its_stage_and_reason() -> None:
    # Prepare: node 42's share-keys reply is rejected (the round goes on with four), then three
    # other nodes go silent at masked-input: one is left
    silent = [node for node in NODES if node != FAULTY][:3]
    grid, secure, _ = masking_round(stage_timeout=0.3, poll_interval=0.05)
    grid.silent.update((node, MASKED_INPUT) for node in silent)
    replace_reply(grid, FAULTY, SHARE_KEYS, stage_content(SHARE_KEYS, GARBAGE))

    # Execute
    FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3).start(
        grid=secure, initial_arrays=initial_arrays(), num_rounds=1
    )

    # Assert
    report = secure.reports[0]
    assert report.skipped_reason is not None
    assert report.dropped == {FAULTY: SHARE_KEYS, **dict.fromkeys(silent, MASKED_INPUT)}, report.dropped
    assert set(report.errors) == {FAULTY} and report.errors[FAULTY].startswith("EncryptedShares: "), report.errors


@pytest.mark.parametrize("lost", [SUMMARY_IDS, SUMMARY_IDS + 1])
def test_the_skip_reason_names_at_most_ten_dropped_nodes_and_ten_protocol_ids(lost: int) -> None:
    # Prepare: a round of lost + 3 nodes (ids 100, 101, ...), the first `lost` (10 or 11) silent at setup
    node_ids = tuple(range(100, 100 + lost + 3))
    dropped = dict.fromkeys(node_ids[:lost], SETUP)

    # Execute
    reason = _skip_reason(ThresholdError("server: only 3 clients remain"), dropped, node_ids)

    # Assert: ten named in each list, then the rest counted (the report's fields hold them all)
    named = ", ".join(f"{node} at {SETUP}" for node in node_ids[:SUMMARY_IDS])
    more = "" if lost == SUMMARY_IDS else " and 1 more"
    assert f"nodes that dropped: {named}{more};" in reason, reason
    ids = ", ".join(map(str, node_ids[:SUMMARY_IDS]))
    assert f"(protocol ids 1..{len(node_ids)} are nodes [{ids} and {len(node_ids) - SUMMARY_IDS} more])" in reason
