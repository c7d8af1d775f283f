"""Whom the printed DP statement covers: the server only where a secure sum hides single encodings.

Distributed DP splits the noise into one share per hospital, sized so that h honest shares together
carry the calibrated variance. Over a secure sum (secagg, secagg+, paillier) the server sees only
sums holding at least the floor of honest shares, so the statement holds against it and n - h
colluding or dropped hospitals. ``plain-quantized`` has no secure sum: the server reads each
hospital's noised encoding, one share, 1/h of the variance the epsilon is computed for. The line
must not claim the server there (the demo prints it next to "protection: none").
"""

from __future__ import annotations

import pytest

from fl_core.aggregators import make_aggregator
from fl_core.dp import DPAggregator
from secagg.dp import DPConfig


def _aggregator(name: str, honest: int) -> DPAggregator:
    dp = DPConfig(epsilon=3.0, delta=1e-5, rounds=4, l2_clip=1.0, min_honest=honest)
    aggregator = make_aggregator(name, num_clients=5, dp=dp, dimension=6)
    assert isinstance(aggregator, DPAggregator)
    return aggregator


def test_over_plain_quantized_one_encoding_carries_one_share_and_the_line_does_not_claim_the_server() -> None:
    # Prepare: h = 4 (the benchmark's setting): the calibrated variance is that of 4 shares
    aggregator = _aggregator("plain-quantized", 4)
    plan = aggregator.plan
    assert plan.total_variance == plan.honest * plan.variance and plan.honest == 4
    # Execute / Assert: what the server reads of one hospital is one share; the line says so
    text = aggregator.guarantee()
    assert "colluding with the server" not in text
    assert "no secure sum: the server reads each hospital's encoding, 1 of the 4 noise shares" in text
    assert "holds against whoever sees only the aggregates (the models), not the server" in text


@pytest.mark.parametrize("name", ["secagg", "secagg+"])
def test_over_a_secure_sum_the_line_keeps_the_server(name: str) -> None:
    text = _aggregator(name, 2).guarantee()
    assert "holds with up to 3 hospitals colluding with the server or dropped out" in text
    assert "no secure sum" not in text


def test_the_demo_prints_it_next_to_protection_none(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sklearn")
    from secagg.cli import main as cli_main  # noqa: PLC0415

    argv = ["demo", "--aggregation", "plain-quantized", "--dp-epsilon", "3", "--rounds", "1", "--no-progress"]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "protection: none: the server sees every update" in printed
    assert "not the server" in printed and "colluding with the server" not in printed
