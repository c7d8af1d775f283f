"""A node whose own DP budget file no longer reads costs only itself.

The node refuses the round before it trains or sends anything, charging nothing and leaving the
file as it is; its reply's reason, in the round's report, names the file and what its operator
does (restore it from its backup) in the node's own log, while the reply the server gets carries
only the failure's code, never the path; the other nodes' round goes on and is charged to their
files.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

pytest.importorskip("flwr")
pytest.importorskip("dp_accounting")

from secagg.integrations.flower import NodePolicy, SecAggGrid

from .flower_harness import Audit
from .test_integrations_flower_clipping_dp import DP, NODES, dp_grid, options
from .test_integrations_flower_node_budget import REPEATS, dp_round

pytestmark = pytest.mark.usefixtures("server_identity")


def test_a_nodes_corrupted_budget_file_costs_only_that_node(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Prepare: one DP round contributed by every node, each charged to its own file; then one
    # node's file is corrupted (truncated) before the next round
    audit = Audit()
    # (every round sends one model: the nodes opt out of the one-sum rule by name)
    grid, _ = dp_grid(tmp_path, audit, policy=NodePolicy(allow_semi_honest=True, **REPEATS))  # type: ignore[arg-type]
    secure = SecAggGrid(grid, options(dp=DP))
    first = dp_round(secure, 1)
    assert first.skipped_reason is None and first.included == frozenset(NODES), first.errors
    target = NODES[2]
    path = grid.budget_file(target)
    assert path is not None
    path.write_bytes(path.read_bytes()[:40])
    corrupted = path.read_bytes()
    others = [node for node in NODES if node != target]
    # Execute
    with caplog.at_level(logging.ERROR, logger="secagg.flower"):
        report = dp_round(secure, 2)
    # Assert: the node's log names its file and the way on, its reply only the code; it charged
    # nothing and did not contribute; the others' round went on, each charged once more
    reason = report.errors.get(target, "")
    assert "local configuration error (this node's DP budget)" in reason, report.errors
    assert str(path) not in reason and path.name not in reason, report.errors
    logged = caplog.text
    assert str(path) in logged and "backup" in logged and "nothing was charged" in logged, logged
    assert path.read_bytes() == corrupted and target not in audit.of_round(2)
    assert report.skipped_reason is None and report.included == frozenset(others), report.errors
    for node in others:
        budget = grid.budget_file(node)
        assert budget is not None and json.loads(budget.read_text())["released"] == 2
