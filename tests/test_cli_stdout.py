"""The ``secagg`` command line's standard output closed (``>&-``), on a full disk, or with an
encoding that cannot show a path: one line and a nonzero exit status, or the text escaped, never
a traceback (:mod:`secagg._cli_stdout`)."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest
from secagg_bench import runner

from secagg import cli, keys_command
from secagg.integrations.flower.keys import read_identity_key


def _main(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exited:  # argparse's usage errors
        return int(exited.code or 0)


# --- stdout closed (`>&-`) or failing (a full disk) --------------------------------------------


def test_keys_public_with_stdout_closed_is_an_error_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: an identity; stdout closed as `secagg keys public KEY >&-` leaves it (sys.stdout None)
    key = tmp_path / "hospital.key"
    assert _main(["keys", "new", str(key)]) == 0
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdout", None)

    # Execute
    code = cli.main(["keys", "public", str(key)])
    err = capsys.readouterr().err

    # Assert: the key it exists to print was not printed: said so, nonzero
    assert code == 2, err
    assert err == "secagg: error: cannot write to the standard output: it is closed\n"


def test_a_command_whose_stdout_closed_still_does_its_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    monkeypatch.setattr(sys, "stdout", None)
    key = tmp_path / "hospital.key"

    # Execute: the files are the work; what it prints is lost, as the user asked
    code = cli.main(["keys", "new", str(key)])

    # Assert
    assert code == 0, capsys.readouterr().err
    assert read_identity_key(key).public.hex() == (tmp_path / "hospital.key.pub").read_text().strip()


class _FullDisk:
    """A stdout on a full disk (`> /dev/full`): every write fails with ENOSPC."""

    def write(self, text: str) -> int:
        raise OSError(28, "No space left on device")

    def flush(self) -> None:
        raise OSError(28, "No space left on device")


@pytest.mark.parametrize("argv", [["keys", "public", "KEY"], ["--help"], ["--version"]])
def test_stdout_on_a_full_disk_is_one_line_and_exit_2(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: what a command prints, and what argparse prints for it
    key = tmp_path / "hospital.key"
    assert _main(["keys", "new", str(key)]) == 0
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdout", _FullDisk())

    # Execute
    code = cli.main([str(key) if arg == "KEY" else arg for arg in argv])
    err = capsys.readouterr().err

    # Assert
    assert code == 2, err
    assert err == "secagg: error: cannot write to the standard output: No space left on device\n"


# --- a path stdout's encoding cannot show -------------------------------------------------------


@pytest.mark.parametrize(("encoding", "name", "shown"), [("ascii", "caf\u00e9", "caf\\xe9"),
                                                        ("utf-8", "x\udcff", "x\\udcff")])
def test_a_path_stdout_cannot_encode_is_printed_escaped_not_a_traceback(
    encoding: str, name: str, shown: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Prepare: a strict stdout (PYTHONIOENCODING=ascii, or utf-8 with a file name that is not UTF-8,
    # which Python holds as a lone surrogate)
    buffer = io.BytesIO()
    stdout = io.TextIOWrapper(buffer, encoding=encoding, errors="strict")
    monkeypatch.setattr(sys, "stdout", stdout)
    key = os.path.join(str(tmp_path), name)

    # Execute
    code = cli.main(["keys", "new", key])
    stdout.flush()

    # Assert: the work done and said, the name escaped as stderr escapes it
    assert code == 0, capsys.readouterr().err
    assert os.path.exists(key) and os.path.exists(key + ".pub")
    assert shown in buffer.getvalue().decode(encoding)


# --- bench all: stdout failing is the command's end, not each suite's failure -----------------


class _ClosedPipe(_FullDisk):
    """A stdout piped into a reader that went away (`| head -1`): every write fails with EPIPE."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("stdout", [_ClosedPipe(), _FullDisk()])
def test_bench_all_ends_at_a_failing_stdout_instead_of_failing_every_suite(
    stdout: _FullDisk, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: the first suite's first row printed on stdout meets a pipe closed early
    # (`secagg bench all | head -1`) or a full disk
    ran: list[str] = []

    def run_suite(suite: str, args: object, partial: object = None) -> object:
        ran.append(suite)
        print(f"{suite}  mode=active  n=3", flush=True)  # as each row is printed when it comes
        raise AssertionError("the row was printed")

    monkeypatch.setattr(runner, "run_suite", run_suite)
    monkeypatch.setattr(cli, "_quiet_broken_pipe", lambda: cli.EXIT_BROKEN_PIPE)  # the test's stdout kept
    monkeypatch.setattr(sys, "stdout", stdout)

    # Execute
    code = _main(["bench", "all", "--quick", "--no-progress"])
    err = capsys.readouterr().err

    # Assert: the command ends there, as the README says (141, or 2 with one line); no other suite
    # runs to meet the same stdout, none is reported failed for it
    assert ran == ["masking"], err
    closed = isinstance(stdout, _ClosedPipe)
    assert code == (cli.EXIT_BROKEN_PIPE if closed else 2), err
    assert "failed" not in err
    full = "secagg: error: cannot write to the standard output: No space left on device\n"
    assert err == ("" if closed else full)


def test_a_broken_pipe_that_is_not_stdouts_is_not_taken_for_a_reader_gone_from_stdout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: the command's work writes to a pipe of its own whose reader went away (a worker
    # process that died): its failure, not `secagg ... | head` closing stdout
    def work(args: object) -> int:
        read, write = os.pipe()
        os.close(read)
        try:
            os.write(write, b"x")
        finally:
            os.close(write)
        return 0

    monkeypatch.setattr(keys_command, "main", work)
    monkeypatch.setattr(cli, "_quiet_broken_pipe", lambda: cli.EXIT_BROKEN_PIPE)  # the test's stdout kept

    # Execute / Assert: the error surfaces (a traceback, exit 1, as any unexpected error), never
    # exit 141 with nothing said
    with pytest.raises(BrokenPipeError):
        cli.main(["keys", "public", "KEY"])
