"""The ``secagg`` command line given paths a hospital's IT (or an attacker preparing a folder)
may hand it: an empty path, a dangling symbolic link or a loop of links, a name too long, a stale
or others-writable ``.pub``, a ``--out`` folder holding the user's own files (stdout:
tests/test_cli_stdout.py).

Each is refused with one line and a nonzero exit status, never a traceback, and never taken
for another path than the one given (an empty ``DIR`` is no "current folder").
"""

from __future__ import annotations

import importlib
import os
import stat
from pathlib import Path
from typing import BinaryIO

import pytest

from secagg import _new_files, cli, keys_command
from secagg.errors import ConfigurationError
from secagg.vectors import generate_directory


def _main(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exited:  # argparse's usage errors
        return int(exited.code or 0)


def _no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail if a subcommand's work starts (its module is imported lazily by its handler)."""
    real_import = importlib.import_module

    def guarded(name: str, *args: object) -> object:
        if name in ("fl_core.demo", "secagg_bench.runner", "secagg.vectors.command"):
            raise AssertionError(f"{name} imported: the path was not checked up front")
        return real_import(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib, "import_module", guarded)


# --- an empty path is no folder (an unset shell variable: `--out "$DIR"`) ----------------------


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["vectors", "verify", ""], "argument directory"),
        (["vectors", "generate", ""], "argument directory"),
        (["bench", "masking", "--out", ""], "argument --out"),
        (["demo", "--json", ""], "argument --json"),
        (["keys", "new", ""], "argument path"),
        (["keys", "trust", "", "ab" * 32, "cd" * 32], "argument out"),
    ],
)
def test_an_empty_folder_path_is_a_usage_error_not_the_current_or_committed_folder(
    argv: list[str], option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: run where a folder's files would land if "" were taken for "."
    monkeypatch.chdir(tmp_path)
    _no_work(monkeypatch)

    # Execute
    code = _main(argv)
    err = capsys.readouterr().err

    # Assert: refused by name before any work; nothing written into the current folder
    assert code == 2, err
    assert f"{option}: an empty path" in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


# --- a dangling symbolic link where a folder is to be created ----------------------------------


@pytest.mark.parametrize("below", [False, True])
@pytest.mark.parametrize("command", [["vectors", "generate"], ["bench", "masking", "--out"]])
def test_a_dangling_link_where_a_folder_goes_is_refused_up_front(
    command: list[str], below: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Prepare: a link to nothing, as the folder itself or as its parent (mkdir cannot create either)
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "missing" / "target")
    folder = link / "sub" if below else link
    _no_work(monkeypatch)

    # Execute
    code = _main([*command, str(folder)])
    err = capsys.readouterr().err

    # Assert: one usage line naming the link; nothing created, no traceback
    assert code == 2, err
    assert f"{link} is a symbolic link to nothing" in err
    assert "Traceback" not in err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]


def test_generate_directory_reports_a_folder_it_cannot_create_with_the_librarys_error(tmp_path: Path) -> None:
    # Prepare: the library call (no command-line check before it), into a dangling link
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "missing")

    # Execute / Assert: ConfigurationError naming the folder, not FileExistsError
    with pytest.raises(ConfigurationError, match="cannot create the vector folder"):
        generate_directory(link, suites=())


# --- keys new: a stale .pub never ends up beside a new identity --------------------------------


@pytest.mark.parametrize("stale", ["file", "folder", "link"])
def test_keys_new_refuses_a_stale_pub_and_writes_nothing(
    stale: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: an older public key left where the new one's .pub goes (or a folder, or a link)
    key = tmp_path / "hospital.key"
    pub = tmp_path / "hospital.key.pub"
    if stale == "file":
        pub.write_text("ab" * 32 + "\n", encoding="ascii")
    elif stale == "folder":
        pub.mkdir()
    else:
        pub.symlink_to(tmp_path / "elsewhere.pub")

    # Execute
    code = _main(["keys", "new", str(key)])
    err = capsys.readouterr().err

    # Assert: refused before the identity is written; the old .pub untouched
    assert code == 2, err
    assert f"{pub} already exists" in err and "nothing written" in err
    assert not key.exists()
    if stale == "file":
        assert pub.read_text(encoding="ascii") == "ab" * 32 + "\n"


def test_keys_new_removes_the_identity_when_its_pub_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: the .pub appears between the check and its creation (a race, a full disk alike)
    key = tmp_path / "hospital.key"
    real_write = keys_command.write_identity_key

    def then_pub_appears(path: str, identity: object) -> None:
        real_write(path, identity)  # type: ignore[arg-type]
        Path(f"{path}.pub").write_text("planted\n", encoding="ascii")

    monkeypatch.setattr(keys_command, "write_identity_key", then_pub_appears)

    # Execute
    code = _main(["keys", "new", str(key)])
    err = capsys.readouterr().err

    # Assert: no identity without its own public key beside it
    assert code == 2, err
    assert "nothing written" in err
    assert not key.exists()
    assert (tmp_path / "hospital.key.pub").read_text(encoding="ascii") == "planted\n"


def test_keys_new_on_a_full_disk_leaves_neither_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: the identity fits, the .pub's data cannot be written (its temporary file is created)
    key = tmp_path / "hospital.key"
    real_write = _new_files._write_synced

    def full_disk(handle: BinaryIO, descriptor: int, data: bytes, mode: int) -> None:
        if mode == 0o644:  # the .pub (the identity is 0600)
            raise OSError(28, "No space left on device")
        real_write(handle, descriptor, data, mode)

    monkeypatch.setattr(_new_files, "_write_synced", full_disk)

    # Execute
    code = _main(["keys", "new", str(key)])
    err = capsys.readouterr().err

    # Assert: one line, and no identity left without its public key (nor an empty .pub, nor its
    # temporary file)
    assert code == 2, err
    assert "No space left on device; nothing written" in err
    assert list(tmp_path.iterdir()) == []


def test_keys_new_makes_both_files_durable_before_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: record what each fsync synced (a crash after the command returned must not leave an
    # empty .pub beside a durable identity: the hospital sends the .pub)
    synced: list[str] = []
    real = os.fsync

    def fsync(descriptor: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    key = tmp_path / "hospital.key"

    # Execute
    assert _main(["keys", "new", str(key)]) == 0, capsys.readouterr().err

    # Assert: the identity, then the .pub (each's data synced under a temporary name, before it
    # gets its own), then their folder, last
    assert synced[0].startswith(f"{tmp_path}/.hospital.key.") and str(tmp_path) in synced[1:]
    pub = [index for index, name in enumerate(synced) if name.startswith(f"{tmp_path}/.hospital.key.pub.")]
    assert len(pub) == 1 and 0 < pub[0] < len(synced) - 1
    assert synced[-1] == str(tmp_path)


def test_keys_new_never_gives_the_pub_its_name_before_its_data_is_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: at every fsync of the public key's data, note whether the .pub's final name exists
    # already (a crash before that sync would leave an empty or partial .pub under its name, which
    # the hospital sends to the federation)
    key = tmp_path / "hospital.key"
    pub = tmp_path / "hospital.key.pub"
    named_before_synced: list[bool] = []
    real = os.fsync

    def fsync(descriptor: int) -> None:
        info = os.fstat(descriptor)
        if stat.S_ISREG(info.st_mode) and info.st_mode & 0o044:  # the .pub's data (the identity is 0600)
            named_before_synced.append(os.path.lexists(pub))
        real(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)

    # Execute
    assert _main(["keys", "new", str(key)]) == 0, capsys.readouterr().err

    # Assert: the public key's data was synced once, before the .pub had its name; the .pub whole
    assert named_before_synced == [False]
    assert len(pub.read_text(encoding="ascii")) == 65


# --- a folder name longer than the file system takes -------------------------------------------


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["vectors", "verify"], "argument directory"),
        (["vectors", "generate"], "argument directory"),
        (["bench", "masking", "--out"], "argument --out"),
        (["bench", "masking", "--out", "sub"], "argument --out"),
    ],
)
def test_a_folder_name_too_long_is_a_usage_error_not_a_traceback(
    argv: list[str], option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a name past NAME_MAX (255 bytes on the usual file systems), as the folder or its parent
    monkeypatch.chdir(tmp_path)
    _no_work(monkeypatch)
    name = "a" * 300
    path = f"{name}/{argv[-1]}" if argv[-1] == "sub" else name
    argv = [*argv[:-1], path] if argv[-1] == "sub" else [*argv, path]

    # Execute
    code = _main(argv)
    err = capsys.readouterr().err

    # Assert: the option named, the system's reason given; nothing created
    assert code == 2, err
    assert f"{option}: " in err and "File name too long" in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


# --- a --json path that is a loop of links ------------------------------------------------------


def test_a_json_path_that_is_a_loop_of_links_is_refused_for_what_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: two links naming each other (no file can be written through them)
    (tmp_path / "a.json").symlink_to(tmp_path / "b.json")
    (tmp_path / "b.json").symlink_to(tmp_path / "a.json")
    _no_work(monkeypatch)

    # Execute
    code = _main(["demo", "--json", str(tmp_path / "a.json")])
    err = capsys.readouterr().err

    # Assert: the reason, not "permission denied (it is read-only)"
    assert code == 2, err
    assert "Too many levels of symbolic links" in err
    assert "read-only" not in err


# --- bench --out DIR: the user's own files in DIR are neither replaced nor read as reports ------


@pytest.mark.parametrize(
    ("files", "refused"),
    [
        ({"summary.md": "# Ward rota\n\nmy notes\n"}, "summary.md"),  # replaced by the run's summary
        ({"dp.json": "{not json"}, "dp.json"),  # read into the summary: a traceback after the run
        ({"dp.json": '{"patients": 3}'}, "dp.json"),
        ({"dropouts.json": '{"patients": 3}'}, "dropouts.json"),  # replaced by the run's report
        ({"dropouts.csv": "ward,beds\n"}, "dropouts.csv"),  # replaced, with no report of the suite beside it
        ({"summary.md": "x" * (1 << 20)}, "summary.md"),
        ({"dropouts_completion.png": "my ward chart"}, "dropouts_completion.png"),  # replaced by the run's plot
        ({"dropouts.partial.jsonl": "ward,beds\n"}, "dropouts.partial.jsonl"),  # truncated, then removed
    ],
)
def test_bench_out_refuses_a_folder_holding_files_it_did_not_write(
    files: dict[str, str], refused: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Prepare: the user's folder, holding a file where the run writes or reads one of its own
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    _no_work(monkeypatch)

    # Execute
    code = _main(["bench", "dropouts", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    every = _main(["bench", "all", "--quick", "--out", str(tmp_path)])  # every suite's names
    err_every = capsys.readouterr().err

    # Assert: refused by name before any work; the user's files as they were
    assert code == 2, err
    assert f"argument --out: {tmp_path / refused} was not written by secagg bench" in err
    assert "Traceback" not in err
    assert every == 2 and f"argument --out: {tmp_path / refused} was not written by secagg bench" in err_every
    for name, text in files.items():
        assert (tmp_path / name).read_text(encoding="utf-8") == text


def test_bench_out_takes_a_folder_of_earlier_runs_and_of_unrelated_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: an earlier run into the folder (the smallest grid: about a second), and a file of the
    # user's the run never touches
    quick = ["bench", "dropouts", "--clients", "3", "--dim", "1", "--no-progress", "--out", str(tmp_path)]
    (tmp_path / "notes.txt").write_text("kept\n", encoding="utf-8")
    assert _main(quick) == 0, capsys.readouterr().err
    assert {"summary.md", "dropouts.json", "dropouts.csv"} <= {path.name for path in tmp_path.iterdir()}
    args = cli.build_parser().parse_args(quick)

    # Execute / Assert: nothing to refuse (a second run supersedes the first), the user's file kept
    assert args.check(args) is None
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "kept\n"


# --- keys trust: a .pub others may rewrite decides whom the federation trusts ------------------


@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666])
def test_keys_trust_refuses_a_pub_others_may_write(
    mode: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: two hospitals' public keys, one of which group or others may rewrite (their own key
    # swapped in before the list is built would be trusted by every node)
    a, b = tmp_path / "a.key", tmp_path / "b.key"
    assert _main(["keys", "new", str(a)]) == 0 and _main(["keys", "new", str(b)]) == 0
    Path(f"{b}.pub").chmod(mode)
    capsys.readouterr()
    out = tmp_path / "federation.keys"

    # Execute
    code = _main(["keys", "trust", str(out), f"{a}.pub", f"{b}.pub"])
    err = capsys.readouterr().err

    # Assert: refused as the nodes refuse such a trusted list; nothing written
    assert code == 2, err
    assert f"{b}.pub is writable by group or others" in err
    assert not out.exists()


def test_keys_new_writes_a_pub_others_may_read_but_not_write_whatever_the_umask(tmp_path: Path) -> None:
    # Prepare: a umask that leaves new files group-writable (user private groups: 002)
    old = os.umask(0o002)
    try:
        # Execute
        assert _main(["keys", "new", str(tmp_path / "a.key")]) == 0
    finally:
        os.umask(old)

    # Assert: the .pub is public (0644), and `keys trust` takes it
    assert stat.S_IMODE((tmp_path / "a.key.pub").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "a.key").stat().st_mode) == 0o600


def test_bench_json_refuses_a_partial_results_path_holding_a_file_it_did_not_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: with --json PATH (no --out) the rows go to PATH.partial.jsonl as they come (the file
    # truncated first, removed at the end); the user's own file is there
    partial = tmp_path / "results.json.partial.jsonl"
    partial.write_text("ward,beds\n", encoding="utf-8")
    _no_work(monkeypatch)

    # Execute
    code = _main(["bench", "dropouts", "--json", str(tmp_path / "results.json")])
    err = capsys.readouterr().err

    # Assert: refused by name before any work; the user's file as it was
    assert code == 2, err
    assert f"argument --json: {partial} was not written by secagg bench" in err
    assert partial.read_text(encoding="utf-8") == "ward,beds\n"
