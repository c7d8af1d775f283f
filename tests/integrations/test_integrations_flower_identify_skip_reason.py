"""A masking round that too few nodes survive ``identify`` is skipped with a reason that says so.

A newcomer's first Flower simulation ran ``ClientApp(mods=[secagg_mod])`` without identity keys in
the node config: every node was left out at ``identify`` (each node's reason in
``RoundReport.errors`` names the two node-config keys), but the round's ``skipped_reason`` was the
quantization's internal "num_clients and max_weight must be at least 1", which says nothing of
nodes or identities. The reason now counts the nodes left after ``identify`` against the session's
least and points at ``errors``.
"""

from __future__ import annotations

import pytest

pytest.importorskip("flwr")

from secagg.integrations.flower import SecAggGrid, SecAggOptions

from .flower_harness import TRUSTED_KEYS, FakeGrid, make_app
from .test_integrations_flower_limits import run
from .test_integrations_flower_malformed import NODES, WEIGHTS, identity_options

pytestmark = pytest.mark.usefixtures("server_identity")


@pytest.mark.parametrize("with_keys", [0, 1, 2])
def test_a_round_too_few_nodes_survive_identify_names_identify_not_the_quantization(with_keys: int) -> None:
    # Prepare: active masking; only the first `with_keys` nodes have their identity files
    keyed = NODES[:with_keys]
    grid = FakeGrid(
        {node: make_app(node, WEIGHTS[node], **identity_options(node, "active" if node in keyed else "none"))
         for node in NODES}
    )
    secure = SecAggGrid(grid, SecAggOptions(trusted_keys=TRUSTED_KEYS))

    # Execute
    run(secure, rounds=1)

    # Verify: skipped; the nodes without keys dropped at identify, each with its own reason; the
    # round's reason says how many nodes identify left, the least a session needs, and where to look
    (report,) = secure.reports
    assert report.aggregate is None and report.included == frozenset()
    assert {node for node, stage in report.dropped.items() if stage == "identify"} == set(NODES) - set(keyed)
    assert all("identity-key-file" in report.errors[node] for node in set(NODES) - set(keyed))
    reason = report.skipped_reason or ""
    assert "max_weight" not in reason, reason
    assert f"{with_keys} of {len(NODES)} nodes left after identify" in reason, reason
    assert "at least 3" in reason and "errors" in reason, reason


def test_a_round_nodes_left_silently_at_identify_points_where_each_is_recorded() -> None:
    # Prepare: active masking; two keyed nodes, one node without keys (an error reply) and two that
    # never answer identify (a timeout: dropped, with no reason to record in errors)
    keyed, silent = NODES[:2], NODES[3:]
    grid = FakeGrid(
        {node: make_app(node, WEIGHTS[node], **identity_options(node, "active" if node in keyed else "none"))
         for node in NODES},
        silent={(node, "identify") for node in silent},
    )
    secure = SecAggGrid(grid, SecAggOptions(trusted_keys=TRUSTED_KEYS, stage_timeout=0.3, poll_interval=0.05))

    # Execute
    run(secure, rounds=1)

    # Verify: skipped; all three left out dropped at identify, only the one that replied with a reason
    (report,) = secure.reports
    assert report.aggregate is None
    left_out = {node for node, stage in report.dropped.items() if stage == "identify"}
    assert left_out == set(NODES[2:])
    assert set(report.errors) == {NODES[2]}
    reason = report.skipped_reason or ""
    assert "2 of 5 nodes left after identify" in reason, reason
    # the reason does not promise a reason in errors for every node: it names dropped for the silent ones
    assert "each node's reason is in the report's errors" not in reason, reason
    assert "dropped" in reason, reason
