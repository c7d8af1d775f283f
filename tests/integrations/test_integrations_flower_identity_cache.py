"""The server's cache of announced identity keys follows a hospital whose node id changed.

A SuperNode that restarts (or re-registers) may get another Flower node id while keeping its
identity key file. The server remembers each node's announced key across rounds; it refused a
key "another node already holds" even when that other node is gone, so the hospital was left
out at ``identify`` for the rest of the run. Now a key whose holder is not in the round moves to
the node that proved possession for this run and its id; two nodes of one round that show one
key still cost the newcomer its round.
"""

from __future__ import annotations

import pytest
from flwr.app import Array, ConfigRecord, Message, RecordDict

from secagg.integrations.flower import SecAggGrid, SecAggOptions
from secagg.integrations.flower.protocol import IDENTIFY

from .flower_harness import TRUSTED_KEYS, Audit, FakeGrid, identity_files, initial_arrays, make_app
from .test_integrations_flower_malformed import NODES, WEIGHTS, assert_exact_masking_sum

pytestmark = pytest.mark.usefixtures("server_identity")

MOVED = NODES[0]
NEW_ID = 7
"""The hospital of node ``MOVED`` after a restart: another node id, the same identity key file."""


def hospital(node: int, audit: Audit, key_of: int | None = None) -> object:
    key_file, trusted_file = identity_files(node if key_of is None else key_of)
    return make_app(node, WEIGHTS.get(node, 25), audit, identity_key_file=key_file, trusted_keys_file=trusted_file)


def training(server_round: int, nodes: tuple[int, ...]) -> list[Message]:
    """Round ``server_round``'s training messages; each round's model differs, as after a completed
    round (a node sends one contribution per model)."""
    arrays = initial_arrays()
    arrays["b"] = Array(arrays["b"].numpy() + server_round)
    content = RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": server_round})})
    return [Message(content, dst_node_id=node, message_type="train", group_id=str(server_round)) for node in nodes]


def test_a_hospital_back_under_another_node_id_is_identified_again() -> None:
    # Prepare: round 1 with the five nodes; then node MOVED is gone and its hospital is back as node 7
    audit = Audit()
    grid = FakeGrid({node: hospital(node, audit) for node in NODES})
    secure = SecAggGrid(grid, SecAggOptions(trusted_keys=TRUSTED_KEYS))
    assert secure.secure_round(training(1, NODES)) is not None
    del grid.apps[MOVED]
    grid.apps[NEW_ID] = hospital(NEW_ID, audit, key_of=MOVED)
    second = (*NODES[1:], NEW_ID)
    # Execute
    reply = secure.secure_round(training(2, second))
    # Assert: node 7 is identified (the key moved to it) and summed with the others
    report = secure.reports[1]
    assert reply is not None and report.dropped == {}, report.errors
    assert report.included == frozenset(second)
    assert NEW_ID in secure.identities and MOVED not in secure.identities
    assert_exact_masking_sum(report, audit)


def test_two_nodes_of_one_round_with_one_key_cost_the_newcomer_its_round() -> None:
    # Prepare: round 1 with the five nodes; in round 2 node 7 shows node MOVED's key while MOVED is
    # still in the round
    audit = Audit()
    grid = FakeGrid({node: hospital(node, audit) for node in NODES})
    secure = SecAggGrid(grid, SecAggOptions(trusted_keys=TRUSTED_KEYS))
    assert secure.secure_round(training(1, NODES)) is not None
    grid.apps[NEW_ID] = hospital(NEW_ID, audit, key_of=MOVED)
    # Execute
    reply = secure.secure_round(training(2, (*NODES, NEW_ID)))
    # Assert: node 7 is left out at identify with the reason; the five are summed
    report = secure.reports[1]
    assert reply is not None and report.dropped == {NEW_ID: IDENTIFY}, report.dropped
    assert "another node" in report.errors[NEW_ID], report.errors
    assert report.included == frozenset(NODES)
    assert MOVED in secure.identities and NEW_ID not in secure.identities
    assert_exact_masking_sum(report, audit)
