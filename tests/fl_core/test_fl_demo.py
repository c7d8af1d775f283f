"""The demo: the JSON it writes, its accuracy acceptance, dropouts, and its refusals."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import re
import sys
import warnings
from pathlib import Path

import pytest

from fl_core import demo
from fl_core.demo import DemoConfig, run_demo
from secagg import cli
from secagg.cli import main as cli_main
from secagg.errors import ConfigurationError
from secagg.segments import ClippingWarning

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
    # Paillier with the demo's --insecure-small-key (1024 bits, not 3072): the key size does not
    # enter the result (the same final parameters bit for bit, every round's accuracy the same),
    # only the time (about 10 s instead of minutes: two 3072-bit ceremonies and their proofs).
    small_key = aggregation == "paillier"
    with pytest.warns(UserWarning, match="NOT secure") if small_key else contextlib.nullcontext():
        report = run_demo(DemoConfig(aggregation=aggregation, insecure_small_key=small_key))
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


def test_demo_and_command_line_agree_on_the_fewest_hospitals() -> None:
    # Assert: one rule, stated in both places (the command line does not import fl_core).
    assert demo.MIN_HOSPITALS == cli.MIN_HOSPITALS
    for aggregation, fewest in demo.MIN_HOSPITALS.items():
        with pytest.raises(ConfigurationError, match=f"at least {fewest} hospital"):
            DemoConfig(aggregation=aggregation, hospitals=fewest - 1)
        DemoConfig(aggregation=aggregation, hospitals=fewest)


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@needs_sklearn
def test_demo_prints_a_legend_for_its_columns_and_pp(capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    code = cli_main(["demo", "--rounds", "2", "--hospitals", "4", "--aggregation", "secagg", "--no-progress"])
    out = capsys.readouterr().out

    # Assert: every column of the table is explained before it, and which way pp points.
    assert code == 0
    legend, table = out.split("round  accuracy", 1)
    for column in ("accuracy, loss:", "agg s:", "bytes/hosp:", "in/sampled:"):
        assert column in legend
    assert "pp = percentage points, this run minus the comparison: negative means this run is less accurate" in table


@needs_sklearn
def test_demo_progress_stays_out_of_redirected_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    # Execute: progress not switched off, but stderr is not a terminal (captured).
    code = cli_main(["demo", "--rounds", "2", "--hospitals", "4", "--aggregation", "plain"])
    captured = capsys.readouterr()

    # Assert
    assert code == 0
    assert captured.err == ""
    assert "\r" not in captured.out and "FedAvg rounds" not in captured.out


@needs_sklearn
def test_demo_reports_clipping_in_its_rows_not_as_raw_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    # Execute: a run whose adaptive clip clips above 1% in some rounds (seed 0, budget 1 byte/parameter)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        code = cli_main(["demo", "--rounds", "5", "--bytes-per-parameter", "1", "--no-progress"])
    captured = capsys.readouterr()

    # Assert: the rows say how much was clipped; no library warning repeats it on stderr
    assert code == 0
    assert "clipped " in captured.out
    assert not [w for w in seen if issubclass(w.category, ClippingWarning)]
    assert captured.err == ""


def _stop_before_training(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace run_demo by a stub that refuses at once; returns what stderr received before."""
    seen: list[str] = []

    def stub(config: DemoConfig, **callbacks: object) -> None:
        seen.append(sys.stderr.getvalue())
        raise ConfigurationError("stopped by the test")

    monkeypatch.setattr(demo, "run_demo", stub)
    return seen


@needs_sklearn
@pytest.mark.skipif(not HAS_PAILLIER, reason="no Paillier aggregator")
def test_demo_announces_the_paillier_key_ceremony_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    monkeypatch.setattr(sys, "stderr", _Terminal())
    seen = _stop_before_training(monkeypatch)

    # Execute
    code = cli_main(["demo", "--aggregation", "paillier", "--no-progress"])

    # Assert: said before the ceremony (which runs inside run_demo), with its size and a duration.
    assert code == 2
    assert len(seen) == 1
    assert re.search(r"generating two keys of 3072 bits .*\(about \d+ s", seen[0])


@needs_sklearn
@pytest.mark.skipif(not HAS_PAILLIER, reason="no Paillier aggregator")
def test_demo_status_lines_stay_out_of_redirected_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    seen = _stop_before_training(monkeypatch)

    # Execute
    cli_main(["demo", "--aggregation", "paillier", "--insecure-small-key"])

    # Assert: only the insecure-key warning, no status line.
    assert "generating" not in seen[0] and "WARNING" in seen[0]


@needs_sklearn
def test_demo_draws_its_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tqdm")
    # Prepare
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)

    # Execute
    code = cli_main(["demo", "--rounds", "2", "--hospitals", "3", "--aggregation", "plain"])

    # Assert: the bar, and the comparison step announced.
    assert code == 0
    assert "FedAvg rounds" in terminal.getvalue()
    assert "for comparison..." in terminal.getvalue()


@needs_sklearn
def test_demo_with_dp_prints_the_guarantee_and_the_budget_spent(capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    code = cli_main(["demo", "--dp-epsilon", "3", "--rounds", "3", "--aggregation", "secagg", "--no-progress"])
    out = capsys.readouterr().out

    # Assert
    assert code == 0
    assert "differential privacy: epsilon 3, delta 1e-05 per patient over 3 rounds" in out
    assert "(3, 1e-05)-differential privacy per patient over one noised feature-moments release and 3 training" in out
    # h = min(n - 1, floor): secagg at 5 hospitals unmasks sums of t = 4 inputs, c = 2 of them colluders'.
    assert "sized for 2 honest ones (at most secagg's floor" in out
    assert "holds with up to 3 hospitals colluding with the server or dropped out" in out
    assert "delta includes the encodings' refusal residual" in out
    spent = float(out.split("spent epsilon = ")[1].split()[0])
    assert 0 < spent <= 3.0


def test_demo_dp_refuses_plain_aggregation(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["demo", "--dp-epsilon", "1", "--aggregation", "plain", "--no-progress"]) == 2
    assert "--dp-epsilon" in capsys.readouterr().err
    with pytest.raises(ConfigurationError, match="plain"):
        DemoConfig(aggregation="plain", dp_epsilon=1.0)


def test_the_command_line_refuses_exactly_the_rings_that_could_overflow() -> None:
    # Setup: hospitals x bits x ring x weight bound, from comfortable to far past Z_(2^64).
    for hospitals in (1, 5, 17, 100):
        for bits in (2, 16, 30, 45, 53):
            for ring in ("8", "16", "31", "32", "40", "64", "word", "smallest"):
                for weight in (1, 4096, 1 << 30):
                    argv = ["demo", "--aggregation", "plain-quantized", "--hospitals", str(hospitals), "--bits",
                            str(bits), "--ring-bits", ring, "--max-samples-per-client", str(weight)]  # fmt: skip
                    # Execute: the command line's check, and the configuration it stands for.
                    problem = cli._check_demo(cli.build_parser().parse_args(argv))
                    try:
                        DemoConfig(aggregation="plain-quantized", hospitals=hospitals, bits=bits, ring=ring,
                                   max_samples_per_client=weight)  # fmt: skip
                        builds = True
                    except ConfigurationError:
                        builds = False
                    # Assert: refused up front exactly when the library refuses, naming an option.
                    assert (problem is None) == builds, (argv, problem)
                    assert problem is None or problem.startswith(("argument --ring-bits: ", "argument --bits: "))


@needs_sklearn
@pytest.mark.parametrize("extra", [[], ["--dp-epsilon", "3"]])
def test_a_hospital_above_the_sample_bound_is_refused_after_the_split_naming_the_option(
    extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute: 5 hospitals share 398 training rows, so one holds more than 60.
    code = cli_main(["demo", "--max-samples-per-client", "60", "--rounds", "1", "--no-progress", *extra])
    # Assert: a configuration error naming the option as typed and the hospital, before any round.
    captured = capsys.readouterr()
    assert code == 2
    assert "--max-samples-per-client 60" in captured.err and "training rows" in captured.err
    assert "round" not in captured.out.split("\n", 2)[-1]


@needs_sklearn
def test_an_epsilon_no_noise_can_meet_is_refused_naming_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    # Execute: no noise variance up to 2^60 gives epsilon 1e-4 over the run.
    code = cli_main(["demo", "--dp-epsilon", "0.0001", "--rounds", "2", "--no-progress"])
    # Assert: a configuration error that names the options the calibration followed, before any round.
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "--dp-epsilon 0.0001 (--dp-delta 1e-05, --rounds 2, --hospitals 5)" in err


@pytest.mark.parametrize("options", [{"seed": -1}, {"rounds": 2.5}, {"hospitals": True}, {"hospitals": 5.0}])
def test_demo_config_refuses_a_seed_or_count_that_is_not_a_whole_number_in_range(options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        DemoConfig(**options)  # type: ignore[arg-type]


@needs_sklearn
@pytest.mark.parametrize("aggregation", ["plain", "plain-quantized"])
def test_an_unprotected_demo_names_its_own_aggregation_as_unprotected(aggregation: str) -> None:
    # Execute: the protection line of the two aggregations with no secure sum.
    report = run_demo(DemoConfig(aggregation=aggregation, rounds=1, hospitals=3))

    # Assert: it says the server sees every update and names the aggregation that ran, not another.
    assert report.guarantee.startswith("none: the server sees every update")
    assert f"({aggregation}:" in report.guarantee
    # and what that aggregation sends in the clear: its float updates, or the secure sums' quantization
    sends = {"plain": "float updates, no secure sum", "plain-quantized": "the secure sums' quantization"}
    assert sends[aggregation] in report.guarantee
