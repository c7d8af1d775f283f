"""The DP demo's "plain FedAvg" line is what a hospital gets without DP: the ordinary demo's run on
the same seed (its tuned local step, no noise), so the gap it prints is the whole cost of privacy,
not the cost of the noise at the DP recipe's smaller step."""

from __future__ import annotations

import dataclasses

import pytest

from fl_core.demo import _comparison_fedavg, run_demo
from fl_core.demo_config import DemoConfig, DemoReport
from fl_core.demo_output import summary_lines
from fl_core.dp_presets import DP_TRAINING

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


@pytest.mark.parametrize("dataset", ["breast-cancer", "digits"])
def test_the_comparison_runs_the_ordinary_demos_hyper_parameters_whatever_the_dp_recipe(
    dataset: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a DP recipe with a server step of its own (adam, momentum), as a preset may have
    recipe = dataclasses.replace(DP_TRAINING[dataset], server_optimizer="adam", server_momentum=0.9)
    monkeypatch.setitem(DP_TRAINING, dataset, recipe)
    config = DemoConfig(dataset=dataset, dp_epsilon=3.0)
    assert (config.fedavg().server_optimizer, config.fedavg().server_momentum) == ("adam", 0.9)

    # Execute / Assert: the comparison is the same demo without DP, nothing of the recipe kept
    assert _comparison_fedavg(config) == dataclasses.replace(config, dp_epsilon=None).fedavg()


def test_a_run_without_dp_names_its_comparison_plain_fedavg() -> None:
    # Execute: a secure run without DP, compared with plain FedAvg
    report = run_demo(DemoConfig(aggregation="secagg", rounds=2))
    lines = summary_lines(report)

    # Assert: no "no DP" in the label of a run that has none
    plain = report.plain_fedavg_accuracy
    assert plain is not None
    line = next(line for line in lines if line.startswith("  plain FedAvg (float"))
    gap = 100 * (report.final_accuracy - plain)
    assert line == f"  {'plain FedAvg (float)':<34} accuracy {plain:7.2%}  ({gap:+.2f} pp)"
