"""The demo: the JSON it writes, its accuracy acceptance, dropouts, and its refusals."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from fl_core.demo import DemoConfig, run_demo
from secagg.cli import main as cli_main

HAS_PAILLIER = importlib.util.find_spec("fl_core.aggregators.paillier") is not None
needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="needs the examples extra")


@needs_sklearn
def test_demo_cli_writes_the_documented_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare
    out = tmp_path / "run.json"
    # Execute: a short run through the real command line.
    code = cli_main(["demo", "--rounds", "2", "--hospitals", "4", "--no-progress", "--json", str(out)])
    # Assert
    assert code == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    for key in ("final_accuracy", "plain_fedavg_accuracy", "centralized_accuracy", "rounds", "configuration"):
        assert key in report
    assert len(report["rounds"]) == 2
    for entry in report["rounds"]:
        assert {"accuracy", "loss", "aggregation_s", "bytes_per_client", "clients_included"} <= set(entry)
        assert entry["clients_included"] == [1, 2, 3, 4]
        assert entry["bytes_per_client"] > 0
    assert report["configuration"]["aggregation"] == "secagg+"
    assert report["configuration"]["hospitals"] == 4
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "Summary" in printed and "centralized" in printed


# Acceptance: breast cancer, 5 hospitals, Dirichlet(0.5): >= 95% and within 2 pp of centralised.
ACCEPTANCE = [
    pytest.param("plain", id="plain"),
    pytest.param("secagg+", id="secagg+"),
    pytest.param("secagg", id="secagg"),
    pytest.param(
        "paillier",
        marks=[pytest.mark.slow, pytest.mark.skipif(not HAS_PAILLIER, reason="no Paillier aggregator")],
        id="paillier",
    ),
]


@needs_sklearn
@pytest.mark.parametrize("aggregation", ACCEPTANCE)
def test_breast_cancer_accuracy_acceptance(aggregation: str) -> None:
    # Execute: the demo's defaults (breast-cancer, 5 hospitals, Dirichlet alpha 0.5, 20 rounds).
    report = run_demo(DemoConfig(aggregation=aggregation))
    # Assert
    assert report.centralized_accuracy is not None and report.plain_fedavg_accuracy is not None
    assert report.final_accuracy >= 0.95
    assert report.final_accuracy >= report.centralized_accuracy - 0.02
    assert all(r.skipped_reason is None for r in report.result.rounds)


@needs_sklearn
def test_dropout_rounds_complete_with_survivors_or_skip_and_still_converge() -> None:
    # Execute: secagg on 5 hospitals tolerates one dropout; at 20% some rounds fall short.
    report = run_demo(DemoConfig(aggregation="secagg", dropout=0.2, compare=False))
    # Assert
    rounds = report.result.rounds
    skipped = [r for r in rounds if r.skipped_reason is not None]
    survivors = [r for r in rounds if r.skipped_reason is None and len(r.included) < len(r.sampled)]
    assert skipped and survivors
    for r in skipped:
        previous = rounds[r.round - 2].loss if r.round > 1 else report.result.initial_loss
        assert r.loss == previous  # the model stayed unchanged
    assert report.final_accuracy >= 0.95


@needs_sklearn
def test_digits_mlp_reaches_the_centralised_model() -> None:
    report = run_demo(DemoConfig(aggregation="secagg+", dataset="digits"))
    assert report.centralized_accuracy is not None
    assert report.final_accuracy >= report.centralized_accuracy - 0.03


@needs_sklearn
def test_secure_demo_is_within_quantization_error_of_plain_fedavg() -> None:
    # The plain FedAvg comparison runs float aggregation; the secure run differs from it
    # only by quantization, so their accuracies agree closely.
    report = run_demo(DemoConfig(aggregation="secagg", rounds=5))
    assert report.plain_fedavg_accuracy is not None
    assert abs(report.final_accuracy - report.plain_fedavg_accuracy) <= 0.01


def test_demo_names_the_examples_extra_when_scikit_learn_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: make scikit-learn look absent.
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real_find_spec(name, *a)
    )
    # Execute
    code = cli_main(["demo", "--no-progress"])
    # Assert
    assert code == 2
    assert "pip install -e '.[examples]' from the root of a secagg clone" in capsys.readouterr().err


@needs_sklearn
def test_demo_refuses_unsafe_or_meaningless_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["demo", "--hospitals", "2", "--aggregation", "secagg", "--no-progress"]) == 2
    assert "at least 3 hospitals" in capsys.readouterr().err
    assert cli_main(["demo", "--insecure-small-key", "--no-progress"]) == 2
    assert "paillier only" in capsys.readouterr().err


def test_demo_picks_the_64_bit_ring_only_when_32_bits_could_overflow() -> None:
    assert DemoConfig(hospitals=16).ring_bits == 32
    assert DemoConfig(hospitals=17).ring_bits == 64
    assert DemoConfig(hospitals=17).as_dict()["ring_bits"] == 64
