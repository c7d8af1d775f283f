"""The exception hierarchy (secagg.errors) and the command line (secagg.cli)."""

from __future__ import annotations

import inspect

import pytest

import secagg
from secagg import cli, errors


def test_every_error_subclasses_secagg_error() -> None:
    # Prepare
    classes = [getattr(errors, name) for name in errors.__all__]

    # Execute
    non_subclasses = [cls.__name__ for cls in classes if not issubclass(cls, errors.SecAggError)]

    # Assert
    assert non_subclasses == []
    assert issubclass(errors.SecAggError, Exception)
    assert len(classes) == 11


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
