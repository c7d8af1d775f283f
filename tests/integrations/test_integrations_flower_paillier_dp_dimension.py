"""A Paillier node refuses, before it trains, a DP plan for another dimension than the session's.

As in masking rounds (test_integrations_flower_dp_dimension.py): a DP round's plan names its
dimension d (bound in the setup's ``dp`` field) and the ``PaillierSetup`` its vector length; an
honest server makes them equal (the model's size). A lying one that calibrated the plan for
d + 1 got a setup every node answered: each trained, was charged one contribution of its own
budget, and only then refused to encode (the dimension check came after the charge), so nothing
was sent for the budget spent. The node now checks, before it trains, that the plan's dimension
is the session's vector length, and, after training, that the model has that many values
before anything is charged.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("flwr")
pytest.importorskip("dp_accounting")

from secagg.integrations.flower.protocol import ENCRYPT, PaillierSetup

from .flower_harness import Audit
from .test_integrations_flower_dp_dimension import assert_nothing_sent_or_charged, plan_for_more_values
from .test_integrations_flower_node_budget import dp_round
from .test_integrations_flower_paillier_dp import NODES, dp_grid

pytestmark = pytest.mark.usefixtures("server_identity")


@pytest.mark.slow  # a heavy Flower round: CI runs it in the slow suite, beside the default suite
@pytest.mark.parametrize("extra", [0, 1])
def test_a_dp_plan_for_another_dimension_is_refused_before_training_or_any_charge(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, extra: int
) -> None:
    # Prepare: the server calibrates its plan for the model's d values (0: honest, the bound) or
    # for d + 1 (a lie, one past), and sets up the Paillier session for d
    plan_for_more_values(monkeypatch, extra)
    audit = Audit()
    grid, secure = dp_grid(tmp_path, audit)
    # Execute
    report = dp_round(secure, 1)
    # Assert: the honest round is decrypted; the lie is refused by every node at encrypt, naming
    # both lengths, and no node charged its budget or uploaded
    if extra == 0:
        assert report.skipped_reason is None and report.included == frozenset(NODES), report.errors
        return
    assert report.dropped == dict.fromkeys(NODES, ENCRYPT), report.dropped
    for reason in report.errors.values():
        assert "dimension" in reason and "vector length" in reason and "the model" not in reason, reason
    assert_nothing_sent_or_charged(audit, grid, NODES)


def test_a_model_of_another_size_than_the_dp_plan_is_refused_before_any_charge(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Prepare: the server sets up the plan and the session for d + 1 values (they agree, so the
    # setup passes) and sends the model of d values, whose digest the setup binds
    plan_for_more_values(monkeypatch, 1)
    honest_create = PaillierSetup.create

    def create(*args: object, **named: object) -> PaillierSetup:
        fields = list(args)
        fields[5] = int(fields[5]) + 1  # type: ignore[call-overload]  # vector_length
        return honest_create(*fields, **named)  # type: ignore[arg-type]

    monkeypatch.setattr(PaillierSetup, "create", create)
    audit = Audit()
    grid, secure = dp_grid(tmp_path, audit)
    # Execute
    report = dp_round(secure, 1)
    # Assert: every node refuses at encrypt, after training, before charging its budget
    assert report.dropped == dict.fromkeys(NODES, ENCRYPT), report.dropped
    for reason in report.errors.values():
        assert "the model 17 values" in reason and "before anything is charged" in reason, reason
    assert_nothing_sent_or_charged(audit, grid, NODES)
