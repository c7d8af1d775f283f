"""What a newcomer meets first on the ``secagg`` command line: every demo option's help states its
default, every argument's help says what it is, and a refusal names the option that caused it
(not one that was never given) and what to do instead."""

from __future__ import annotations

import pytest

from secagg import cli


def _main(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exited:  # argparse's usage errors and --help
        return int(exited.code or 0)


@pytest.mark.parametrize(
    ("option", "default", "next_option"),
    [("--dataset", "breast-cancer", "--partition"), ("--partition", "dirichlet", "--alpha")],
)
def test_demo_help_states_the_default_of_every_choice(
    option: str, default: str, next_option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    code = _main(["demo", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the help

    # Verify: the option's help text, after its choices, names its default
    assert code == 0
    after = out.split("options:", 1)[1].split(f"{option} {{", 1)[1].split(f" {next_option} ", 1)[0]
    assert f"(default: {default})" in after, after


def test_keys_public_help_says_what_its_argument_is(capsys: pytest.CaptureFixture[str]) -> None:
    code = _main(["keys", "public", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 0
    assert "identity key file" in out.split("positional arguments:", 1)[1], out


@pytest.mark.parametrize(
    ("argv", "expected", "unexpected"),
    [
        # --rotate with plain: the reason is plain (floats), not a --dp-epsilon that was never given
        (["--rotate", "--aggregation", "plain"], "argument --rotate: applies to the quantized aggregations, "
         "not --aggregation plain", "--dp-epsilon"),
        (["--rotate", "--dp-epsilon", "1"], "argument --rotate: not with --dp-epsilon", "aggregation plain"),
        (["--dp-epsilon", "1", "--aggregation", "plain"], "use an aggregation other than plain", "but plain"),
    ],
)  # fmt: skip
def test_a_demo_refusal_names_its_own_reason(
    argv: list[str], expected: str, unexpected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute: refused while checking the options, before any work
    code = _main(["demo", "--no-progress", *argv])
    err = capsys.readouterr().err

    # Verify
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith("secagg demo: error: "), err
    assert expected in line and unexpected not in line, line


def test_demo_help_of_hospitals_names_every_aggregation_that_takes_one(capsys: pytest.CaptureFixture[str]) -> None:
    # plain-quantized runs with one hospital as plain does (fl_core.demo_config.MIN_HOSPITALS)
    assert _main(["demo", "--aggregation", "plain-quantized", "--hospitals", "0"]) == 2
    assert "needs at least 1 hospital" in capsys.readouterr().err
    code = _main(["demo", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 0
    hospitals = out.split("options:", 1)[1].split("--hospitals HOSPITALS", 1)[1].split(" --rounds ", 1)[0]
    assert "1 for plain and plain-quantized" in hospitals, hospitals
