"""A masking node refuses, at setup, a DP plan for another dimension than the session's vectors.

A DP round's plan names its dimension d (bound in the setup's ``dp`` field) and the masking
record its vector length; an honest server makes them equal (the model's size). A lying one
that calibrated the plan for d + 1 got a setup every node answered: each trained, was charged
one contribution of its own budget, and only then refused to encode (the dimension check came
after the charge), so nothing was sent for the budget spent. The node now checks, at setup,
that the plan's dimension is the session's vector length, and, at training, that the model has
that many values before anything is charged.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

pytest.importorskip("flwr")
pytest.importorskip("dp_accounting")

from secagg.integrations.flower import SecAggGrid, SecAggOptions
from secagg.integrations.flower.dp import DPRounds
from secagg.integrations.flower.protocol import MASKED_INPUT, SETUP

from .flower_harness import Audit, FakeGrid, budget_charged
from .test_integrations_flower_clipping_dp import DP, NODES, dp_grid, options
from .test_integrations_flower_node_budget import dp_round

pytestmark = pytest.mark.usefixtures("server_identity")


def plan_for_more_values(monkeypatch: pytest.MonkeyPatch, extra: int) -> None:
    """The server calibrates every DP plan for ``extra`` more values than the model has."""
    honest = DPRounds.plan_round

    def plan_round(self: DPRounds, num_nodes: int, dimension: int, *rest: object) -> object:
        return honest(self, num_nodes, dimension + extra, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(DPRounds, "plan_round", plan_round)


def assert_nothing_sent_or_charged(audit: Audit, grid: FakeGrid, nodes: Iterable[int]) -> None:
    """No node's contribution reached the sum and none of ``nodes`` charged its budget (its state file)."""
    assert audit.records == []
    assert all(not budget_charged(grid, node) for node in nodes)


@pytest.mark.parametrize("extra", [0, 1])
def test_a_dp_plan_for_another_dimension_is_refused_at_setup_before_any_charge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: int
) -> None:
    # Prepare: the server calibrates its plan for the model's d values (0: honest, the bound) or
    # for d + 1 (a lie, one past), and sets up the masking session for d
    plan_for_more_values(monkeypatch, extra)
    audit = Audit()
    grid, _ = dp_grid(tmp_path, audit)
    secure = SecAggGrid(grid, options(dp=DP))
    # Execute
    report = dp_round(secure, 1)
    # Assert: the honest round is summed; the lie is refused by every node at setup, naming both
    # lengths, and no node charged its budget or trained
    if extra == 0:
        assert report.skipped_reason is None and report.included == frozenset(NODES), report.errors
        return
    assert report.dropped == dict.fromkeys(NODES, SETUP), report.dropped
    for reason in report.errors.values():
        assert "dimension" in reason and "vector length" in reason, reason
    assert_nothing_sent_or_charged(audit, grid, NODES)


def test_a_model_of_another_size_than_the_dp_plan_is_refused_before_any_charge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: the server sets up the plan and the masking session for d + 1 values (they agree,
    # so the setup passes) and sends the model of d values, whose digest the setup binds
    plan_for_more_values(monkeypatch, 1)
    honest_masking = SecAggOptions.masking

    def masking(self: SecAggOptions, num_nodes: int, vector_length: int, *rest: object, **named: object) -> object:
        return honest_masking(self, num_nodes, vector_length + 1, *rest, **named)  # type: ignore[arg-type]

    monkeypatch.setattr(SecAggOptions, "masking", masking)
    audit = Audit()
    grid, _ = dp_grid(tmp_path, audit)
    secure = SecAggGrid(grid, options(dp=DP))
    # Execute
    report = dp_round(secure, 1)
    # Assert: every node refuses at masked-input, after training, before charging its budget
    assert report.dropped == dict.fromkeys(NODES, MASKED_INPUT), report.dropped
    for reason in report.errors.values():
        assert "the model 17 values" in reason and "before anything is charged" in reason, reason
    assert_nothing_sent_or_charged(audit, grid, NODES)
