"""A state file whose folder cannot hold it is refused with true words.

The lock file is created first, next to the state file, and every failure to create it was
told as "its folder does not exist" (ENOENT: a missing folder, but also /proc, which exists
and refuses new files) or as a lock "link, folder, pipe or device" to remove (EACCES: a folder
this user cannot write; ENOTDIR: a regular file where the folder should be). Each is now named
as what it is, with the path, and nothing is created.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

pytest.importorskip("dp_accounting")

from secagg.dp import NoisePlan, PrivacyAccountant
from secagg.dp._state_file import locked
from secagg.errors import ConfigurationError

from .state_file_refusal import refusal as _refusal
from .state_file_refusal import small_plan


@pytest.fixture(scope="module")
def plan() -> NoisePlan:
    return small_plan()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes a read-only folder")
def test_a_read_only_folder_is_named_as_not_writable(plan: NoisePlan, tmp_path: Path) -> None:
    # Prepare: an existing folder this user may not write
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        # Execute
        message = _refusal(plan, folder / "budget.json")
        # Assert: the folder is named as existing but not writable, never as missing or as a lock to remove
        assert str(folder) in message and "not writable" in message, message
        assert "does not exist" not in message and "remove it" not in message, message
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(stat.S_IRWXU)


def test_a_regular_file_where_the_folder_should_be_is_named_as_such(plan: NoisePlan, tmp_path: Path) -> None:
    # Prepare: the state file's "folder" is a regular file
    parent = tmp_path / "notes.txt"
    parent.write_bytes(b"not a folder")
    # Execute
    message = _refusal(plan, parent / "budget.json")
    # Assert: named as a file, not a folder; never as missing or as a lock to remove; left as it is
    assert str(parent) in message and "not a folder" in message, message
    assert "does not exist" not in message and "remove it" not in message, message
    assert parent.read_bytes() == b"not a folder"


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="no /proc pseudo file system here")
def test_a_folder_on_a_pseudo_file_system_is_named_as_unable_to_hold_files(plan: NoisePlan) -> None:
    # Prepare: /proc exists, and refuses new files (ENOENT under O_CREAT)
    path = Path("/proc") / "secagg-budget.json"
    # Execute
    message = _refusal(plan, path)
    # Assert: the folder exists, and is named as one that cannot hold the file
    assert "/proc" in message and "cannot hold" in message, message
    assert "does not exist" not in message, message


def test_a_missing_folder_is_still_named_as_missing(plan: NoisePlan, tmp_path: Path) -> None:
    # Control: the one case whose words were true keeps them
    message = _refusal(plan, tmp_path / "no-such-folder" / "budget.json")
    assert "no-such-folder" in message and "does not exist" in message, message


def test_a_folder_refusing_new_files_for_this_user_is_named_as_not_writable(
    plan: NoisePlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the read-only folder as a non-root user meets it (root writes through modes, so the
    # system calls answer as they would: EACCES on creating the lock, no write access to the folder)
    folder = tmp_path / "read-only"
    folder.mkdir()
    real_open, real_access = os.open, os.access

    def refusing_open(path: object, flags: int, *args: int, **kwargs: object) -> int:
        if os.fspath(path).startswith(str(folder)) and flags & os.O_CREAT:  # type: ignore[call-overload]
            raise PermissionError(13, "Permission denied", os.fspath(path))  # type: ignore[call-overload]
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    def access(path: object, mode: int, **kwargs: object) -> bool:
        return False if os.fspath(path) == str(folder) else real_access(path, mode, **kwargs)  # type: ignore

    monkeypatch.setattr(os, "open", refusing_open)
    monkeypatch.setattr(os, "access", access)
    # Execute
    message = _refusal(plan, folder / "budget.json")
    # Assert
    assert str(folder) in message and "not writable" in message, message
    assert "does not exist" not in message and "remove it" not in message, message
    assert list(folder.iterdir()) == []


def test_a_folder_that_is_a_loop_of_symlinks_is_named_as_such_when_read(plan: NoisePlan, tmp_path: Path) -> None:
    # Prepare: the state file's folder is a loop of symbolic links (a -> b -> a)
    folder, other = tmp_path / "a", tmp_path / "b"
    folder.symlink_to(other)
    other.symlink_to(folder)
    # Execute: refused where the state file is read (before any lock file is tried)
    message = _refusal(plan, folder / "budget.json")
    # Assert: the folder named, and what it is; not the bare system error on the state file alone
    assert f"its folder {folder} is a loop of symbolic links" in message, message
    assert "nothing was read or written" in message, message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_a_state_file_folder_loop_is_named_as_such_when_a_lock_is_created(tmp_path: Path) -> None:
    # Prepare: the same loop, met by the write side (the lock file, created first)
    folder, other = tmp_path / "a", tmp_path / "b"
    folder.symlink_to(other)
    other.symlink_to(folder)
    # Execute
    with pytest.raises(ConfigurationError) as refusal, locked(folder / "budget.json"):
        pass
    # Assert: the same words as the read side
    assert f"its folder {folder} is a loop of symbolic links" in str(refusal.value), refusal.value


def test_a_state_file_that_is_a_loop_of_symlinks_is_named_as_a_link(plan: NoisePlan, tmp_path: Path) -> None:
    # Prepare: the state file's path is itself one of two links naming each other
    path, other = tmp_path / "budget.json", tmp_path / "other.json"
    path.symlink_to(other)
    other.symlink_to(path)
    # Execute
    message = _refusal(plan, path)
    # Assert: the file named as a link to its target, which is never followed for the state file (not even
    # to tell a loop), in place of the system's bare "Too many levels of symbolic links"; nothing created
    assert f"{path} is a symbolic link (to {other})" in message, message
    assert "never followed" in message and "Too many levels" not in message, message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["budget.json", "other.json"]


@pytest.mark.parametrize("dangling", [False, True], ids=["to a file", "dangling"])
def test_a_state_file_that_is_a_symlink_is_named_as_a_link_never_followed(
    dangling: bool, plan: NoisePlan, tmp_path: Path
) -> None:
    # Prepare: a link where the state file belongs, to a state file or to nothing (O_NOFOLLOW: ELOOP either way)
    target = tmp_path / "real.json"
    if not dangling:
        PrivacyAccountant(plan, target)
    path = tmp_path / "budget.json"
    path.symlink_to(target)
    # Execute
    message = _refusal(plan, path)
    # Assert: named as a link to its target, not as "too many levels of symbolic links"
    assert f"{path} is a symbolic link (to {target})" in message and "never followed" in message, message
    assert "Too many levels" not in message and "loop" not in message, message


def test_a_state_file_links_target_is_shown_escaped(plan: NoisePlan, tmp_path: Path) -> None:
    # Prepare: a link where the state file belongs, to a name holding a terminal escape and a newline
    path = tmp_path / "budget.json"
    os.symlink("real\x1b[2J\nbudget.json", path)
    # Execute
    message = _refusal(plan, path)
    # Assert: the target shown with its control characters escaped
    assert f"{path} is a symbolic link (to real\\x1b[2J\\nbudget.json)" in message, message
    assert "\x1b" not in message and "\n" not in message, repr(message)


@pytest.mark.parametrize("loop", [False, True], ids=["to a file", "a loop"])
def test_a_link_in_the_state_files_place_is_never_followed_not_even_to_describe_it(
    loop: bool, plan: NoisePlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a link where the state file belongs (to a state file, or one of two links naming each
    # other); every os.stat that follows links through the state file's own path recorded
    path, target = tmp_path / "budget.json", tmp_path / "real.json"
    if loop:
        target.symlink_to(path)
    else:
        PrivacyAccountant(plan, target)
    path.symlink_to(target)
    followed: list[str] = []
    real_stat = os.stat

    def recording_stat(name: object, *args: object, **kwargs: object) -> os.stat_result:
        if kwargs.get("follow_symlinks", True) and os.fspath(name) == str(path):  # type: ignore[call-overload]
            followed.append(str(name))
        return real_stat(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", recording_stat)
    # Execute
    message = _refusal(plan, path)
    # Assert: refused, naming the link and its target, without looking through it (a link another user
    # planted could lead to a hung network mount or an automount point): the link is only read
    assert f"{path} is a symbolic link (to {target})" in message and "never followed" in message, message
    assert followed == []
