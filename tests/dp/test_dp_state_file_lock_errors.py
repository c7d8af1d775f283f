"""A state file whose lock cannot be created is refused naming the true cause, the lock or its folder.

The accountant opens the lock file ``.<name>.lock`` (``O_CREAT``) before the state file is
created. Its refusal told every permission error as the folder's (an existing lock this user
may not open was "a read-only or pseudo file system"), and every other error as a lock "link,
folder, pipe or device" to remove, though no lock file exists when the file system is full
(ENOSPC, EDQUOT) or the lock's name is too long for it (ENAMETOOLONG); a read-only file system
(EROFS) was told as a folder "not writable by this user". Each is named as what it is, and
stays the library's ConfigurationError, nothing created.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

pytest.importorskip("dp_accounting")

from secagg.dp import NoisePlan
from secagg.dp._state_file import lock_path

from .state_file_refusal import refusal as _refusal
from .state_file_refusal import small_plan


@pytest.fixture(scope="module")
def plan() -> NoisePlan:
    return small_plan()


def _creating_fails(monkeypatch: pytest.MonkeyPatch, folder: Path, code: int) -> None:
    """Creating a file in ``folder`` fails with ``code``, as the system call answers it."""
    real_open = os.open

    def failing_open(path: object, flags: int, *args: int, **kwargs: object) -> int:
        if os.fspath(path).startswith(str(folder)) and flags & os.O_CREAT:  # type: ignore[call-overload]
            raise OSError(code, os.strerror(code), os.fspath(path))  # type: ignore[call-overload]
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", failing_open)


def test_an_existing_lock_this_user_may_not_open_is_named_not_its_folder(
    plan: NoisePlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the lock file exists (another user's, mode 0600) in a folder this user may write:
    # opening it answers EACCES (root opens through modes, so the call answers as it would)
    path = tmp_path / "budget.json"
    lock = lock_path(path)
    lock.write_bytes(b"4242\n")
    _creating_fails(monkeypatch, tmp_path, errno.EACCES)
    # Execute
    message = _refusal(plan, path)
    # Assert: the lock is named as the problem, never the folder's file system
    assert str(lock) in message and "may not open" in message, message
    assert "read-only" not in message and "cannot hold the file" not in message, message
    assert not path.exists() and lock.read_bytes() == b"4242\n"


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_file_system_is_named_as_full_not_as_a_lock_to_remove(
    plan: NoisePlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    # Prepare: no lock file exists; the file system takes no new file (full, or this user's quota)
    _creating_fails(monkeypatch, tmp_path, code)
    # Execute
    message = _refusal(plan, tmp_path / "budget.json")
    # Assert: named as full, with the folder; no lock to remove, no read-only file system
    assert str(tmp_path) in message and "full" in message, message
    assert "remove it" not in message and "read-only" not in message, message
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_file_system_is_named_so_not_as_this_users_permissions(
    plan: NoisePlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a read-only file system answers EROFS on creating, and access(W_OK) is False for
    # every user there (root too)
    real_access = os.access
    _creating_fails(monkeypatch, tmp_path, errno.EROFS)

    def access(path: object, mode: int, **kwargs: object) -> bool:
        return False if os.fspath(path) == str(tmp_path) else real_access(path, mode, **kwargs)  # type: ignore

    monkeypatch.setattr(os, "access", access)
    # Execute
    message = _refusal(plan, tmp_path / "budget.json")
    # Assert: the file system is read-only; no user may write it, so no "let this user write it"
    assert str(tmp_path) in message and "read-only file system" in message, message
    assert "by this user" not in message and "remove it" not in message, message


def test_a_lock_name_too_long_for_the_file_system_asks_for_a_shorter_name(plan: NoisePlan, tmp_path: Path) -> None:
    # Prepare: a state file name the file system takes (250 characters) whose lock's (".<name>.lock",
    # 256) it does not: ENAMETOOLONG on creating the lock, no lock file exists
    name = "b" * 250
    try:
        (tmp_path / name).write_bytes(b"")
        (tmp_path / name).unlink()
    except OSError:  # pragma: no cover - a file system with shorter names
        pytest.skip("this file system refuses 250-character names")
    # Execute
    message = _refusal(plan, tmp_path / name)
    # Assert: the name is too long, say so and the way on; no lock to remove
    assert "too long" in message and "shorter name" in message, message
    assert "remove it" not in message, message
    assert list(tmp_path.iterdir()) == []


def test_a_symlink_as_the_lock_is_still_named_as_a_lock_to_remove(plan: NoisePlan, tmp_path: Path) -> None:
    # Control: the one case the lock's own words are for (ELOOP under O_NOFOLLOW) keeps them
    path = tmp_path / "budget.json"
    lock = lock_path(path)
    lock.symlink_to(tmp_path / "elsewhere")
    message = _refusal(plan, path)
    assert str(lock) in message and "remove it" in message, message
    assert not (tmp_path / "elsewhere").exists()


def test_a_dangling_symlink_as_the_folder_is_named_as_a_symlink_to_a_missing_folder(
    plan: NoisePlan, tmp_path: Path
) -> None:
    # Prepare: the state file's folder is a symlink whose target does not exist
    folder = tmp_path / "budgets"
    folder.symlink_to(tmp_path / "unmounted")
    # Execute
    message = _refusal(plan, folder / "budget.json")
    # Assert: the folder is named as a symlink and its missing target, nothing created
    assert f"{folder} is a symlink to {tmp_path / 'unmounted'}, which does not exist" in message, message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["budgets"]
