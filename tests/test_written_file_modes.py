"""A file the library creates with ``write_regular_file`` (demo and bench outputs, test vectors)
gets the mode the user's umask gives a new file, as ``open(path, "w")`` would: a hospital that
runs with umask 077 does not find its reports readable by every local user. A file it replaces
keeps its own mode."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import secagg._files as files
from secagg._files import write_regular_file
from secagg.errors import ConfigurationError

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")


def _record_temporary_modes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The permission bits of every temporary file the writer creates, recorded as it is created
    (before any data is written to it)."""
    created: list[int] = []
    new_temporary = files._new_temporary

    def recording(folder: str, base: str, *mode: int) -> tuple[int, str]:
        descriptor, temporary = new_temporary(folder, base, *mode)
        created.append(stat.S_IMODE(os.fstat(descriptor).st_mode))
        return descriptor, temporary

    monkeypatch.setattr(files, "_new_temporary", recording)
    return created


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize(("mask", "expected"), [(0o077, 0o600), (0o027, 0o640), (0o022, 0o644), (0o002, 0o664)])
def test_a_new_file_gets_the_mode_the_umask_gives(tmp_path: Path, mask: int, expected: int) -> None:
    # Prepare
    os.umask(mask)
    path = tmp_path / "run.json"
    # Execute
    write_regular_file(path, "report", b"{}")
    # Assert
    assert stat.S_IMODE(path.stat().st_mode) == expected
    assert path.read_bytes() == b"{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]  # no temporary file left


@pytest.mark.usefixtures("umask")
def test_a_replaced_file_keeps_its_own_mode_whatever_the_umask(tmp_path: Path) -> None:
    # Prepare: an existing report, 0640, under a umask that would give a new file 0600
    path = tmp_path / "run.json"
    path.write_bytes(b"old")
    path.chmod(0o640)
    os.umask(0o077)
    # Execute
    write_regular_file(path, "report", b"new")
    # Assert
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.read_bytes() == b"new"


@pytest.mark.usefixtures("umask")
def test_the_temporary_file_is_never_more_open_than_the_file_it_replaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a private report (0600) in a folder others may list, under the common umask 022 (a
    # new file 0644); the mode of the temporary file is recorded as it is created, before the data.
    path = tmp_path / "run.json"
    path.write_bytes(b"old")
    path.chmod(0o600)
    os.umask(0o022)
    created = _record_temporary_modes(monkeypatch)
    # Execute
    write_regular_file(path, "report", b"new")
    # Assert: another local user could not open the temporary file (and read the data written to
    # it through that descriptor later) in the moment before its mode is set
    assert created == [0o600]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == b"new"


@pytest.mark.usefixtures("umask")
def test_a_given_mode_is_the_files_whatever_the_previous_mode_and_the_temporary_is_never_more_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a file others may read, replaced under umask 022 by a writer asked for 0600 (a budget record)
    path = tmp_path / "budget.json"
    path.write_bytes(b"old")
    path.chmod(0o644)
    os.umask(0o022)
    created = _record_temporary_modes(monkeypatch)
    # Execute: the replacement, then a new file
    write_regular_file(path, "state file", b"new", mode=0o600)
    write_regular_file(tmp_path / "new.json", "state file", b"{}", mode=0o600)
    # Assert
    assert created == [0o600, 0o600]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_bytes() == b"new"
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o600


def test_a_folder_sync_failure_is_skipped_unless_the_sync_is_required(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a file system on which a folder cannot be synced
    real = os.fsync

    def fsync(descriptor: int) -> None:
        if stat.S_ISDIR(os.fstat(descriptor).st_mode):
            raise OSError(22, "Invalid argument")
        real(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    # Execute / Assert: an output is written (best effort); a required sync's failure names the folder
    write_regular_file(tmp_path / "run.json", "report", b"{}")
    with pytest.raises(ConfigurationError, match="cannot be synced"):
        write_regular_file(tmp_path / "budget.json", "state file", b"{}", must_sync_folder=True)
    assert (tmp_path / "run.json").read_bytes() == b"{}" and (tmp_path / "budget.json").read_bytes() == b"{}"


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="Linux's list of open descriptors")
@pytest.mark.parametrize("must_sync_folder", [False, True])
def test_a_write_leaves_no_descriptor_open(tmp_path: Path, must_sync_folder: bool) -> None:
    # Prepare: a long-running process (a Flower server) writes its state file once per round
    before = len(os.listdir("/proc/self/fd"))
    # Execute
    for _ in range(3):
        write_regular_file(tmp_path / "budget.json", "state file", b"{}", mode=0o600, must_sync_folder=must_sync_folder)
    # Assert: neither the temporary file's descriptor nor the folder's (opened to sync it) is left open
    assert len(os.listdir("/proc/self/fd")) == before
