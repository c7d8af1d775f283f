"""A masking node whose DP budget is spent refuses the next DP setup before its train handler runs.

The node checks its budget twice: at setup (:func:`~secagg.integrations.flower.node_budget.check_node_budget`),
before anything, and at the charge, after training, before the noised input leaves. The charge
alone keeps the budget, but a lying server whose own accountant charges nothing would then have
the node train on its patients' data, round after round, for nothing it may send. This pins the
first check: with it removed the handler runs in the refused round.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("dp_accounting")

from secagg.dp import SeededRandomSource
from secagg.integrations.flower import NodePolicy, SecAggGrid
from secagg.integrations.flower.dp import DPRounds

from .flower_harness import FakeGrid
from .test_integrations_flower_clipping_dp import DP, NODES, app, options, per_example_clipped_delta
from .test_integrations_flower_node_budget import REFUSED, REPEATS, contributed, dp_round, refused_by_all

pytestmark = pytest.mark.usefixtures("server_identity")

REPEAT = NodePolicy(allow_semi_honest=True, **REPEATS)  # type: ignore[arg-type]
"""Every round sends one model: the nodes opt out of the one-sum rule by name (the budget is under test)."""


def test_a_spent_budget_refuses_the_setup_before_the_train_handler_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the server's accountant charges nothing; the plan declares 2 rounds; every call of
    # a node's training is counted
    monkeypatch.setattr(DPRounds, "charge", lambda self, server_round, num_nodes: None)
    trained: list[int] = []

    def counted(node: int, name: str, array: np.ndarray) -> np.ndarray:
        trained.append(node)
        return per_example_clipped_delta(node, name, array)

    apps = {
        node: app(node, counted, noise_source=SeededRandomSource(node.to_bytes(32, "big")), policy=REPEAT)
        for node in NODES
    }  # fmt: skip
    secure = SecAggGrid(FakeGrid(apps, dp_state_dir=tmp_path), options(dp=DP))
    first = [dp_round(secure, server_round) for server_round in (1, 2)]
    before = len(trained)
    # Execute: a third DP round, past the plan's two
    third = dp_round(secure, 3)
    # Assert: two contributions, then every node refuses, naming its budget, without training
    assert all(contributed(report, NODES) for report in first), [r.errors for r in first]
    assert refused_by_all(third, NODES, REFUSED), third.errors
    assert before > 0 and len(trained) == before
