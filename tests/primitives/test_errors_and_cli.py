"""The exception hierarchy (secagg.errors) and the command line (secagg.cli)."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

import secagg
from secagg import cli, errors, keys_command


def test_every_error_subclasses_secagg_error() -> None:
    # Prepare
    classes = [getattr(errors, name) for name in errors.__all__]

    # Execute
    non_subclasses = [cls.__name__ for cls in classes if not issubclass(cls, errors.SecAggError)]

    # Assert
    assert non_subclasses == []
    assert issubclass(errors.SecAggError, Exception)
    assert len(classes) == 15


def test_configuration_errors_are_also_value_and_type_errors() -> None:
    # Python convention: a bad value is a ValueError, a wrong type a TypeError.
    assert issubclass(errors.ConfigurationError, ValueError)
    assert issubclass(errors.ConfigurationTypeError, errors.ConfigurationError)
    assert issubclass(errors.ConfigurationTypeError, TypeError)


def test_every_exception_class_in_the_module_is_exported() -> None:
    # Execute
    defined = {name for name, obj in vars(errors).items() if inspect.isclass(obj) and issubclass(obj, BaseException)}

    # Assert
    assert defined == set(errors.__all__)


@pytest.mark.parametrize(
    ("child", "parent"),
    [
        (errors.ReplayError, errors.ProtocolError),
        (errors.UnsafeRequestError, errors.ProtocolError),
        (errors.ThresholdError, errors.ProtocolError),
    ],
)
def test_protocol_errors_are_grouped(child: type, parent: type) -> None:
    # Assert
    assert issubclass(child, parent)


def test_package_reexports_the_errors() -> None:
    # Assert
    for name in errors.__all__:
        assert getattr(secagg, name) is getattr(errors, name)


def test_cli_version(capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    out = capsys.readouterr().out

    # Assert
    assert exited.value.code == 0
    assert out.strip() == f"secagg {secagg.__version__}"


def test_cli_help_lists_the_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    out = capsys.readouterr().out

    # Assert
    assert exited.value.code == 0
    assert out.startswith("usage: secagg")
    for command in ("demo", "bench", "vectors"):
        assert command in out


def test_cli_without_a_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    code = cli.main([])
    out = capsys.readouterr().out

    # Assert
    assert code == 0
    assert "usage: secagg" in out


def test_cli_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    with pytest.raises(SystemExit) as exited:
        cli.main(["no-such-command"])

    # Assert
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


# --- the command line as a person uses it (issue 14, item 4) ---------------------------------


def _refusal(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """Run ``argv``, which must be refused as a usage error before its handler runs; its stderr."""
    real_import = importlib.import_module

    def no_work(name: str, *args: object) -> object:
        if name in ("fl_core.demo", "secagg_bench.runner"):
            raise AssertionError(f"{name} imported: the options were not checked up front")
        return real_import(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib, "import_module", no_work)
    try:
        code = cli.main(argv)
    except SystemExit as exited:
        code = exited.code  # type: ignore[assignment]
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["demo", "--seed", "-5"], "argument --seed: must be in 0..4,294,967,295, got -5"),
        (["demo", "--rounds", "99999999999999999999"], "argument --rounds: must be in 1..10,000"),
        (["demo", "--rounds", "0"], "argument --rounds: must be in 1..10,000, got 0"),
        (["demo", "--rounds", "many"], "argument --rounds: expected a whole number"),
        (["demo", "--alpha", "nan"], "argument --alpha: must be in (0, 1e+06]"),
        (["demo", "--dropout", "1"], "argument --dropout: must be in [0, 1)"),
        (["demo", "--dropout", "0.5"], "argument --dropout: --aggregation secagg+ in active mode (the default) is "
         "sized for below 0.5"),
        (["demo", "--dropout", "0.9", "--masking-mode", "semi-honest"],
         "argument --dropout: --aggregation secagg+ is sized for at most 0.85"),
        (["demo", "--masking-mode", "semi-honest", "--aggregation", "paillier"],
         "argument --masking-mode semi-honest: applies to --aggregation secagg and secagg+ only"),
        # Naming the default explicitly is no different: active mode protects nothing in plain or Paillier.
        (["demo", "--masking-mode", "active", "--aggregation", "plain"],
         "argument --masking-mode active: applies to --aggregation secagg and secagg+ only"),
        (["demo", "--masking-mode", "active", "--aggregation", "paillier"],
         "argument --masking-mode active: applies to --aggregation secagg and secagg+ only"),
        (["demo", "--hospitals", "0"], "argument --hospitals: --aggregation secagg+ needs at least 3 hospitals"),
        (["demo", "--hospitals", "2", "--aggregation", "secagg"], "--aggregation secagg needs at least 3 hospitals"),
        (["demo", "--hospitals", "2", "--aggregation", "paillier"], "--aggregation paillier needs at least 3"),
        (["demo", "--hospitals", "0", "--aggregation", "plain"], "--aggregation plain needs at least 1 hospital,"),
        (["demo", "--hospitals", "101"], "argument --hospitals: must be at most 100, got 101"),
        (["demo", "--insecure-small-key"], "argument --insecure-small-key: applies to --aggregation paillier only"),
        (["demo", "--colluders", "1"], "argument --colluders: applies to --aggregation paillier only"),
        (["demo", "--aggregation", "paillier", "--colluders", "4"],
         "argument --colluders: --hospitals 5 protect against at most 3"),
        (["demo", "--aggregation", "paillier", "--colluders", "-1"], "argument --colluders: must be in 0..100"),
        (["demo", "--aggregation", "plain", "--bits", "8"],
         "argument --bits: applies to the quantized aggregations, not --aggregation plain"),
        (["demo", "--aggregation", "plain", "--ring-bits", "smallest"],
         "argument --ring-bits: applies to the quantized aggregations, not --aggregation plain"),
        (["demo", "--aggregation", "plain", "--ring-bits", "word"],
         "argument --ring-bits: applies to the quantized aggregations, not --aggregation plain"),
        (["demo", "--dp-epsilon", "1", "--ring-bits", "word"], "argument --ring-bits: not with --dp-epsilon (its"),
        (["demo", "--aggregation", "plain", "--max-samples-per-client", "64"],
         "argument --max-samples-per-client: applies to the quantized aggregations, not --aggregation plain"),
        (["demo", "--aggregation", "plain", "--clipping", "fixed"],
         "argument --clipping: applies to the quantized aggregations, not --aggregation plain"),
        (["demo", "--dp-epsilon", "1", "--bits", "8"], "argument --bits: not with --dp-epsilon (its setting"),
        (["demo", "--dp-epsilon", "1", "--max-samples-per-client", "64", "--ring-bits", "64"],
         "argument --ring-bits: not with --dp-epsilon (its setting"),
        (["demo", "--dp-epsilon", "1", "--clipping", "fixed"], "argument --clipping: not with --dp-epsilon (its"),
        (["demo", "--dp-delta", "1e-6"], "argument --dp-delta: applies with --dp-epsilon only"),
        (["demo", "--ring-bits", "8"], "argument --ring-bits: Z_(2^8) could overflow: 5 hospitals x 4096 samples "
         "(--max-samples-per-client) x 32767 (--bits 16) exceeds 127; the smallest safe ring is 31"),
        (["demo", "--ring-bits", "40", "--bits", "30", "--aggregation", "paillier"],
         "argument --ring-bits: Z_(2^40) could overflow"),
        (["demo", "--bits", "53"], "argument --bits: Z_(2^64) could overflow: 5 hospitals x 4096 samples "
         "(--max-samples-per-client) x 4503599627370495 (--bits 53)"),
        (["demo", "--bits", "53", "--ring-bits", "smallest"], "argument --bits: Z_(2^64) could overflow"),
        (["demo", "--dp-scaling", "public-ranges"], "argument --dp-scaling: applies with --dp-epsilon only"),
        (["demo", "--partition", "iid", "--alpha", "0.01"], "argument --alpha: applies to --partition dirichlet only"),
        (["bench", "masking", "--clients", "2"], "argument --clients: must be in 3..65,536, got 2"),
        (["bench", "masking", "--dropout", "-0.1"], "argument --dropout: must be in [0, 1)"),
        (["bench", "fedavg", "--rounds", "1"], "argument --rounds: must be in 2..10,000"),
        (["bench", "paillier", "--seed", "-5"], "argument --seed: must be in 0..4,294,967,295"),
        (["bench", "paillier", "--key-bits", "2049"], "argument --key-bits: a key size must be even, got 2049"),
        (["bench", "paillier", "--clients", "3", "--threshold", "4"], "argument --threshold: must be at most"),
        (["bench", "paillier", "--clients", "3", "10", "--threshold", "3"],
         "argument --threshold: must be at least 6 for --clients 10 (2t > l"),
    ],
)
def test_every_option_is_checked_up_front_and_named_as_typed(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Execute
    err = _refusal(argv, capsys, monkeypatch)

    # Assert: the option as typed, never the internal name, and the usage of the subcommand.
    assert expected in err
    assert f"usage: secagg {argv[0]}" in err
    for internal in ("dropout_fraction", "patience", "num_clients", "corrupt +"):
        assert internal not in err


def test_unwritable_outputs_are_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a regular file where a folder would have to be (unwritable even for root).
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")

    # Execute
    demo_json = _refusal(["demo", "--json", str(blocker / "run.json")], capsys, monkeypatch)
    missing = _refusal(["demo", "--json", str(tmp_path / "no" / "run.json")], capsys, monkeypatch)
    folder = _refusal(["demo", "--json", str(tmp_path)], capsys, monkeypatch)
    bench_out = _refusal(["bench", "masking", "--out", str(blocker / "a" / "b")], capsys, monkeypatch)
    bench_json = _refusal(["bench", "masking", "--json", str(blocker / "m.json")], capsys, monkeypatch)

    # Assert
    assert f"argument --json: cannot write {blocker / 'run.json'}: {blocker} is not a directory" in demo_json
    assert f"folder {tmp_path / 'no'} does not exist" in missing
    assert f"argument --json: {tmp_path} is a directory" in folder
    assert f"argument --out: cannot create {blocker / 'a' / 'b'}: {blocker} is not a directory" in bench_out
    assert "argument --json: cannot write" in bench_json
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing created, no scratch file left


def test_writable_outputs_pass_and_leave_nothing_behind(tmp_path: Path) -> None:
    # Execute
    args = cli.build_parser().parse_args(
        ["bench", "masking", "--out", str(tmp_path / "new" / "dir"), "--json", str(tmp_path / "m.json")]
    )

    # Assert
    assert args.out == str(tmp_path / "new" / "dir") and args.json == str(tmp_path / "m.json")
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_prints_one_line_and_exits_130(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a subcommand interrupted while it works.
    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(keys_command, "main", interrupted)

    # Execute
    code = cli.main(["keys", "new", str(tmp_path / "id.key")])
    captured = capsys.readouterr()

    # Assert
    assert code == cli.EXIT_INTERRUPTED == 130
    assert captured.err == "secagg: interrupted\n"
    assert captured.out == ""


def test_the_documented_maximum_rounds_is_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    with pytest.raises(SystemExit):
        cli.main(["demo", "--help"])
    out = " ".join(capsys.readouterr().out.split())

    # Assert
    assert f"1..{cli.MAX_ROUNDS:,}" in out
    assert "at least 3 for the secure aggregations, 1 for plain" in out
