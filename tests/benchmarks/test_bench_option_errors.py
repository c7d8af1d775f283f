"""``secagg bench``: every bad option value is a usage error (exit 2, the suite's usage) naming the
option as typed and what it accepts, found before any work; never a library error mid-run.

Each case only takes the refusal path: the runner (which measures) must not even be imported.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
from secagg_bench import compression as compression_suite

from secagg import cli
from secagg.paillier import benchmark as paillier_benchmark
from tests.primitives.test_errors_and_cli import _refusal  # the one usage-error runner


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        # Non-ASCII digits: Python's int() and float() read them; an option must not.
        (["bench", "masking", "--dim", "\u0661\u0660"], "argument --dim: expected a whole number in ASCII digits"),
        (["bench", "masking", "--dropout", "\uff10.5"], "argument --dropout: expected a number in ASCII digits"),
        (["bench", "dropouts", "--clients", "\uff13"], "argument --clients: expected a whole number in ASCII"),
        (["demo", "--rounds", "\u0967\u0966"], "argument --rounds: expected a whole number in ASCII digits"),
        # The issue's example: no SecAgg+ graph at n = 3, whatever the dropout.
        (["bench", "masking", "--clients", "3", "--dropout", "0.99"],
         "argument --clients: SecAgg+ (the harary graph) cannot be sized for 3 clients at any --dropout; "
         "accepted: --clients 4 or more, or --graph complete"),
        (["bench", "masking", "--clients", "3"], "argument --clients: SecAgg+ (the harary graph) cannot be sized"),
        (["bench", "masking", "--clients", "20", "--dropout", "0.99"],
         "argument --dropout: 0.99 at --clients 20 on the harary graph: SecAgg+ cannot be sized for that many "
         "dropouts (5% corrupt clients, 2^-40 security, 2^-20 failure); accepted there: 0 to 0.85 (at most 17 "
         "of the 20 clients drop)"),
        (["bench", "masking", "--clients", "3", "--graph", "complete", "--dropout", "0.5"],
         "argument --dropout: 0.5 at --clients 3 on the complete graph: it drops round(0.5 x 3) = 2 clients, and "
         "t = 2 of the 3 must answer; accepted there: 0 to 0.3333 (at most 1 of the 3 clients drop)"),
        (["bench", "masking", "--quick", "--dropout", "0.95"], "argument --dropout: 0.95 at --clients 20 on the"),
        (["bench", "scaling", "--clients", "3", "--dropout", "0.5"],
         "argument --clients: SecAgg+ (the harary graph) cannot be sized for 3 clients at any --dropout; "
         "accepted: --clients 4 or more"),
        (["bench", "scaling", "--clients", "10", "--dropout", "0.6", "--max-complete", "10"],
         "argument --dropout: 0.6 at --clients 10 on the complete graph"),
        (["bench", "peers", "--clients", "3"], "argument --clients: SecAgg+ (the harary graph) cannot be sized"),
        (["bench", "peers", "--clients", "20", "--dropout", "0.9"], "argument --dropout: 0.9 at --clients 20"),
        # Paillier: what the library refuses mid-run, refused while parsing.
        (["bench", "paillier", "--key-bits", "1024"], "argument --key-bits: must be in 2048..8,192, got 1024"),
        (["bench", "paillier", "--clients", "257"], "argument --clients: must be in 2..256, got 257"),
        (["bench", "paillier", "--quick", "--threshold", "3"],
         "argument --threshold: must be at least 6 for --clients 10 (2t > l"),
        (["bench", "paillier", "--quick", "--threshold", "6"], "argument --threshold: must be at most --clients (3)"),
        # A byte budget the demo refuses once it has built the model, refused before any run.
        (["bench", "compression", "--dataset", "breast-cancer", "--bytes-per-parameter", "0.0001"],
         "argument --bytes-per-parameter: --bytes-per-parameter 0.0001 cannot be met with secagg+: even one "
         "coordinate at 8 bits"),
        # More hospitals than the demo's random label-skew split can give rows to at a seed of the run.
        (["bench", "fedavg", "--hospitals", "30", "--dataset", "breast-cancer"],
         "argument --hospitals: the demo's Dirichlet label-skew split of breast-cancer cannot give each of 30 "
         "hospitals its rows at seed 0 (it gives up after 100 draws); accepted there for every seed of this run: "
         "3..23"),
        (["bench", "dp", "--hospitals", "24", "--seeds", "1"],
         "argument --hospitals: the demo's Dirichlet label-skew split of breast-cancer cannot give each of 24"),
        # A budget no noise meets: the demo's own calibration refuses it, before any run.
        (["bench", "dp", "--epsilon", "0.001", "--seeds", "1"],
         "argument --epsilon: --epsilon 0.001 on breast-cancer through plain-quantized at --rounds 20 --hospitals 5: "
         "no noise variance (up to 2^60) meets it; accepted there: 0.0036 to 21"),
        # A budget so large that its refusal residual exceeds a tenth of delta (docs/privacy.md).
        (["bench", "dp", "--epsilon", "1000", "--seeds", "1"],
         "argument --epsilon: --epsilon 1000 on breast-cancer through plain-quantized at --rounds 20 --hospitals 5: "
         "its refusal residual, (1 + e^epsilon) x 2^-64 per noised coordinate, exceeds a tenth of delta; "
         "accepted there: 0.0036 to 21"),
    ],
)
def test_bench_option_errors_name_the_option_and_what_it_accepts(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Execute
    err = _refusal(argv, capsys, monkeypatch)

    # Assert: the option as typed and the subcommand's usage; no internal names.
    assert expected in err
    assert f"usage: secagg {argv[0]}" in err
    for internal in ("dropout_fraction", "num_clients", "corrupt +", "num_parties"):
        assert internal not in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--clients", "1000"], "argument --clients: must be in 2..256, got 1000"),
        (["--key-bits", "1024"], "argument --key-bits: must be in 2048..8,192, got 1024"),
        (["--dim", "0"], "argument --dim: must be in 1..100,000,000, got 0"),
        (["--value-bits", "\uff11\uff16"], "argument --value-bits: expected a whole number in ASCII digits"),
        (["--workers", "-1"], "argument --workers: must be in 0..1,024, got -1"),
        (["--threshold", "1"], "argument --threshold: must be in 2..256, got 1"),
        (["--naive-sample", "0"], "argument --naive-sample: must be in 1..100,000,000, got 0"),
        (["--seed", "-1"], "argument --seed: must be in 0..4,294,967,295, got -1"),
        (["--ceremony-repeats", "-1"], "argument --ceremony-repeats: must be in 0..1,000, got -1"),
        (["--key-bits", "2049"], "argument --key-bits: a key size must be even, got 2049"),
        (["--clients", "3", "--threshold", "4"], "argument --threshold: must be at most --clients (3), got 4"),
        (["--clients", "10", "--threshold", "5"], "argument --threshold: must be at least 6 for --clients 10"),
    ],
)
def test_the_paillier_module_command_line_checks_its_numbers(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: ``python -m secagg.paillier.benchmark ARGV``; main (the measurement) must not run
    monkeypatch.setattr(sys, "argv", ["python -m secagg.paillier.benchmark", *argv])
    monkeypatch.setattr(paillier_benchmark, "main", lambda args: pytest.fail("the benchmark ran"))

    # Execute
    with pytest.raises(SystemExit) as exited:
        paillier_benchmark._run_from_command_line()

    # Assert
    assert exited.value.code == 2
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "masking", "--clients", "4", "--dropout", "0.25"],
        ["bench", "masking", "--clients", "3", "--graph", "complete", "--dropout", "0.3"],
        ["bench", "masking", "--quick"],
        ["bench", "scaling", "--quick"],
        ["bench", "peers", "--quick"],
        ["bench", "paillier", "--quick"],
        ["bench", "compression", "--quick"],
        ["bench", "fedavg", "--quick"],
        ["bench", "dp", "--quick"],
        ["bench", "dp", "--dataset", "digits", "--hospitals", "100", "--seeds", "1"],
        ["bench", "compression", "--dataset", "digits", "--bytes-per-parameter", "0.5"],
        ["bench", "paillier", "--clients", "10", "11", "--threshold", "6"],
    ],
)
def test_feasible_options_pass_the_check(argv: list[str]) -> None:
    # Prepare: the check alone, not the handler (the measurement)
    args = cli.build_parser().parse_args(argv)

    # Execute
    problem = args.check(args)

    # Assert
    assert problem is None


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--clients", "3", "--dim", "64"], "argument --clients: SecAgg+ (the harary graph) cannot be sized for 3"),
        (["--clients", "20", "--dropout", "0.95", "--dim", "64"], "argument --dropout: 0.95 at --clients 20 on the"),
        (["--blocks", "3", "--dim", "64"], "argument --blocks: rotation block must be a power of two"),
        (["--bits", "\uff16"], "argument --bits: expected a whole number in ASCII digits"),
        (["--bits", "65"], "argument --bits: must be in 1..64, got 65"),
        (["--repeats", "0"], "argument --repeats: must be in 1..1,000, got 0"),
        (["--dim", "nan"], "argument --dim: expected a whole number, got 'nan'"),
    ],
)
def test_the_compression_module_command_line_refuses_before_any_work(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: ``python -m secagg_bench.compression ARGV``; the measurement must not run
    monkeypatch.setattr(compression_suite, "rotation_vs_masking", lambda *a: pytest.fail("the benchmark ran"))

    # Execute
    with pytest.raises(SystemExit) as exited:
        compression_suite.main(argv)

    # Assert
    assert exited.value.code == 2
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize(
    ("module", "argv", "expected"),
    [
        ("dp_sampler", ["--size", "0"], "argument --size: must be in 1..100,000,000, got 0"),
        ("dp_sampler", ["--repeats", "\uff15"], "argument --repeats: expected a whole number in ASCII digits"),
        ("dp_recipe_probe", ["--rounds", "0"], "argument --rounds: must be in 1..10,000, got 0"),
        ("dp_recipe_probe", ["--epsilon", "nan"], "argument --epsilon: must be in (0, 1000], got nan"),
        ("dp_recipe_probe", ["--ceiling", "-1"], "argument --ceiling: must be in (0, 1e+06], got -1"),
        ("dp_schedule_probe", ["--powers", "inf"], "argument --powers: must be in [-100, 100], got inf"),
        ("dp_schedule_probe", ["--seeds", "-1"], "argument --seeds: must be in 0..4,294,967,295, got -1"),
        ("dp_schedule_probe", ["--replicates", "0"], "argument --replicates: must be in 1..1,000, got 0"),
    ],
)
def test_the_dp_probes_check_their_numbers(
    module: str, argv: list[str], expected: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: ``python -m secagg_bench.MODULE ARGV``
    monkeypatch.setattr(sys, "argv", [module, *argv])

    # Execute: refused while parsing, before any run
    with pytest.raises(SystemExit) as exited:
        importlib.import_module(f"secagg_bench.{module}").main()

    # Assert
    assert exited.value.code == 2
    assert expected in capsys.readouterr().err


def test_the_issue_example_in_a_real_process(cli_env: dict[str, str]) -> None:
    # Execute: as a person types it, in a process of its own
    done = subprocess.run(
        [sys.executable, "-m", "secagg", "bench", "masking", "--clients", "20", "--dropout", "0.99"],
        capture_output=True, text=True, env=cli_env, timeout=60, check=False,
    )  # fmt: skip

    # Assert
    assert done.returncode == 2
    assert "argument --dropout:" in done.stderr
    assert "usage: secagg bench masking" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
