"""The DP demo's "plain FedAvg" line is what a hospital gets without DP: the ordinary demo's run on
the same seed (its tuned local step, no noise), so the gap it prints is the whole cost of privacy,
not the cost of the noise at the DP recipe's smaller step."""

from __future__ import annotations

import pytest

from fl_core.demo import run_demo
from fl_core.demo_config import DemoConfig, DemoReport
from fl_core.demo_output import summary_lines

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def dp_report() -> DemoReport:
    return run_demo(DemoConfig(dp_epsilon=3.0))


def test_the_dp_demos_plain_comparison_is_the_ordinary_plain_demo_on_the_same_seed(dp_report: DemoReport) -> None:
    # Prepare: `secagg demo --aggregation plain` on the same seed, data and rounds
    ordinary = run_demo(DemoConfig(aggregation="plain", compare=False))

    # Assert: round by round the same run (97.08% on seed 0; the DP recipe's step gave 96.49%)
    assert dp_report.plain is not None
    assert [r.accuracy for r in dp_report.plain.rounds] == [r.accuracy for r in ordinary.result.rounds]
    assert dp_report.plain_fedavg_accuracy == ordinary.final_accuracy


def test_the_dp_demos_summary_names_its_comparison_as_without_dp(dp_report: DemoReport) -> None:
    # Execute
    lines = summary_lines(dp_report)

    # Assert: the comparison's line says what it is; the gap is this run minus it
    plain = dp_report.plain_fedavg_accuracy
    assert plain is not None
    line = next(line for line in lines if line.startswith("  plain FedAvg (float"))
    gap = 100 * (dp_report.final_accuracy - plain)
    assert line == f"  {'plain FedAvg (float, no DP)':<34} accuracy {plain:7.2%}  ({gap:+.2f} pp)"
