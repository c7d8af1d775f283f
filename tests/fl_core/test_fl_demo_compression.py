"""The demo's byte budget: what it sends, what it costs in accuracy, and the budgets it refuses."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from fl_core.demo import DemoConfig, run_demo
from secagg.cli import main as cli_main
from secagg.errors import ConfigurationError

needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="needs the examples extra")


@needs_sklearn
def test_a_budget_of_one_byte_per_parameter_is_kept_and_its_cost_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run.json"
    code = cli_main(
        ["demo", "--bytes-per-parameter", "1", "--rounds", "3", "--aggregation", "secagg", "--no-progress",
         "--json", str(out)]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert (
        "compression: budget 1 bytes/parameter -> 8 bits in Z_(2^23), rotated (blocks of 2), "
        "18 of 62 coordinates per round (29.0%)"
    ) in printed
    assert "protected update per hospital per round: 58 bytes = 0.935 bytes/parameter" in printed
    report = json.loads(out.read_text(encoding="utf-8"))
    compression = report["compression"]
    accuracy, uncompressed = report["final_accuracy"], compression["uncompressed_accuracy"]
    gap = f"accuracy {accuracy:.2%} vs {uncompressed:.2%} uncompressed ({100 * (accuracy - uncompressed):+.2f} pp;"
    assert gap in printed
    assert compression["protected_bytes_per_parameter"] <= 1.0
    assert compression["uncompressed_protected_bytes"] == 4 * 64
    assert compression["choice"] | {"fraction": None, "protected_bytes_per_parameter": None} == {
        "bytes_per_parameter": 1.0, "dimension": 62, "bits": 8, "ring_bits": 23, "rotate": True, "block": 2,
        "count": 18, "fraction": None, "protected_bytes": 58, "protected_bytes_per_parameter": None,
    }  # fmt: skip
    assert report["configuration"]["bytes_per_parameter"] == 1.0
    # The whole round, protocol messages included, costs less than uncompressed (1,319 bytes a round in active
    # mode, the default) but more than the masked vector; the summary reports it beside the protected update.
    sent = [r["bytes_per_client"] for r in report["rounds"]]
    assert all(58 < b < 1319 for b in sent)
    assert f"all messages: {sum(sent) / len(sent):,.0f} bytes" in printed


@needs_sklearn
def test_a_budget_that_cannot_be_met_is_refused_before_training(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(["demo", "--bytes-per-parameter", "0.1", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 2
    assert "--bytes-per-parameter 0.1 cannot be met with secagg+" in captured.err
    assert "even one coordinate at 8 bits in Z_(2^23)" in captured.err
    assert "9 bytes, 0.145 bytes per parameter of this 62-parameter model" in captured.err
    assert "accuracy, loss" not in captured.out  # refused before the first round (its legend)
    with pytest.raises(ConfigurationError, match=r"bytes_per_parameter 0\.1 cannot be met"):
        run_demo(DemoConfig(bytes_per_parameter=0.1, compare=False, rounds=1))


def test_budget_options_are_checked_when_given(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main(["demo", "--bytes-per-parameter", "0", "--no-progress"])
    assert exited.value.code == 2
    assert "argument --bytes-per-parameter: must be in (0, 1e+06], got 0" in capsys.readouterr().err
    with pytest.raises(ConfigurationError, match="not both"):
        DemoConfig(bytes_per_parameter=1.0, sparsity=0.5)
    with pytest.raises(ConfigurationError, match="fraction"):
        DemoConfig(sparsity=1.5)


@needs_sklearn
def test_compressed_secure_and_in_the_clear_runs_end_in_the_same_model() -> None:
    runs = [
        run_demo(DemoConfig(aggregation=name, rounds=3, compare=False, sparsity=0.3))
        for name in ("secagg+", "plain-quantized")
    ]
    for a, b in zip(runs[0].result.params, runs[1].result.params, strict=True):
        assert (a == b).all()


@needs_sklearn
def test_rotated_secure_and_in_the_clear_runs_end_in_the_same_model() -> None:
    runs = [
        run_demo(DemoConfig(aggregation=name, rounds=3, compare=False, rotate=True, bits=6, clipping="fixed"))
        for name in ("secagg", "plain-quantized")
    ]
    for a, b in zip(runs[0].result.params, runs[1].result.params, strict=True):
        assert (a == b).all()
    assert runs[0].result.final_accuracy > 0.9


def test_rotate_is_refused_with_dp_and_without_quantization(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["demo", "--rotate", "--dp-epsilon", "3", "--no-progress"]) == 2
    assert "argument --rotate" in capsys.readouterr().err
    with pytest.raises(ConfigurationError, match="--rotate"):
        DemoConfig(aggregation="plain", rotate=True)


@pytest.mark.parametrize(
    ("extra", "named"),
    [(["--bits", "16"], "--bits"), (["--rotate"], "--rotate"), (["--ring-bits", "smallest"], "--ring-bits"),
     (["--dp-epsilon", "3"], "--dp-epsilon"), (["--aggregation", "plain"], "--aggregation plain")],
)  # fmt: skip
def test_a_budget_picks_bits_ring_and_rotation_so_they_are_refused_beside_it(
    extra: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["demo", "--bytes-per-parameter", "1", *extra, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "argument --bytes-per-parameter: picks the bits, ring and rotation" in err and f"not with {named}" in err


@pytest.mark.parametrize(
    "options",
    [{"bits": 8}, {"rotate": True}, {"ring": "smallest"}, {"dp_epsilon": 3.0}, {"aggregation": "plain"}],
)
def test_demo_config_refuses_the_same_combinations(options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match="--bytes-per-parameter picks the bits, ring and rotation"):
        DemoConfig(bytes_per_parameter=1.0, **options)  # type: ignore[arg-type]


@needs_sklearn
def test_a_budget_paillier_cannot_meet_is_refused_before_the_key_ceremony() -> None:
    pytest.importorskip("gmpy2")
    with pytest.raises(ConfigurationError, match=r"--bytes-per-parameter 1 cannot be met with paillier: .*768 bytes"):
        run_demo(
            DemoConfig(aggregation="paillier", bytes_per_parameter=1.0, compare=False, rounds=1),
            option="--bytes-per-parameter",
        )
