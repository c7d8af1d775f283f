"""The privacy accountant's state file on disk: strict reading, atomic writing, exclusive locking.

- :func:`read_state` reads the file through :func:`secagg._files.read_regular_file` (a regular
  file of at most 64 KiB, not a symlink, owned by this user or root, writable by its owner only)
  and parses strict JSON (no duplicate key, no NaN): :class:`~secagg.errors.DecodeError` otherwise.
- :func:`write_state` writes it through the library's one atomic writer,
  :func:`secagg._files.write_regular_file`, and never leaves a half-written file: a temporary
  file created 0600 in the same folder, written, fsync'd, ``os.replace``'d over the file, the
  folder fsync'd. The file is 0600 whatever the umask or the previous file's mode; a folder that
  cannot be synced is a ConfigurationError (the charge is refused: a record a crash could roll
  back would let released rounds be spent again; raised after the rename, so the accountant
  counts the round as the file does, an over-count); a link, pipe or folder at the path is
  refused, never replaced.
- :func:`locked` holds the file's lock across a read-check-write, so two accountants (two
  objects, two processes) never both charge from one count. On POSIX it is ``fcntl.flock`` of
  the lock file ``.<name>.lock`` next to the state file (the state file itself is replaced on
  every write, so its own lock would not serialise): created 0600, never removed (removing a
  flock file races with its next locker), released by the kernel when its holder exits, even
  by a crash. It is never waited for: a lock held by another accountant, in this process or
  another, raises :class:`~secagg.errors.StateLockedError` at once. Without ``fcntl``
  (Windows) the lock is the *existence* of that file (``O_CREAT | O_EXCL``), removed on
  release: a process that crashes holding it leaves it, and every accountant then refuses the
  state file, naming the lock file, until an operator removes it (refused, never overridden:
  nothing can tell a crashed holder from a slow one).
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from secagg._files import WRITABLE_BY_OWNER_ONLY, read_regular_file, sync_folder, write_regular_file
from secagg._strict_json import strict_loads
from secagg.errors import ConfigurationError, DecodeError, StateLockedError

__all__ = [
    "MAX_STATE_BYTES",
    "STATE_MODE",
    "OutdatedStateError",
    "folder_problem",
    "lock_path",
    "locked",
    "read_state",
    "sync_state_folder",
    "write_state",
]

MAX_STATE_BYTES = 1 << 16
STATE_MODE = 0o600
_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)


class OutdatedStateError(DecodeError):
    """A state file of an earlier format version: well formed, not corrupted; its message says how to
    update it (or to start a new budget), so a caller must not advise restoring it from a backup."""


_NEVER_WAIT = getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


def _import_fcntl() -> ModuleType | None:
    try:
        return importlib.import_module("fcntl")
    except ImportError:  # not POSIX: the exclusive lock file instead
        return None


_FCNTL = _import_fcntl()


def read_state(path: Path) -> dict[str, object] | None:
    """The parsed state file, None if it does not exist."""
    try:
        data = read_regular_file(
            path,
            "accountant's state file",
            MAX_STATE_BYTES,
            forbidden_mode=WRITABLE_BY_OWNER_ONLY,
            advice="make it writable by its owner only (mode 0600)",
            follow_symlinks=False,
            too_large=DecodeError,
        )
    except ConfigurationError as exc:
        if isinstance(exc.__cause__, FileNotFoundError):
            return None
        cause = exc.__cause__
        # A file where a folder of the path should be (ENOTDIR), or a folder that is a loop of links
        # (ELOOP, which is also what a state file that is itself a link gives: then no folder is named).
        problem = None
        if isinstance(cause, NotADirectoryError):
            problem = folder_problem(path, cause)
        elif isinstance(cause, OSError) and cause.errno == errno.ELOOP:
            problem = _unusable_folder(path)
        if problem is not None:
            raise ConfigurationError(
                f"cannot read the accountant's state file {path}: {problem}; nothing was read or written"
            ) from exc
        raise
    try:
        state = strict_loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError, DecodeError) as exc:
        raise DecodeError(f"the accountant's state file {path} is not valid JSON: {exc}") from exc
    if not isinstance(state, dict):
        raise DecodeError(f"the accountant's state file {path} must hold a JSON object")
    return state


def write_state(path: Path, data: bytes) -> None:
    """Replace the state file ``path`` with ``data`` through the library's atomic writer, mode 0600,
    its folder synced or ConfigurationError (module docstring)."""
    write_regular_file(path, "accountant's state file", data, mode=STATE_MODE, must_sync_folder=True)


def sync_state_folder(path: Path) -> None:
    """Sync the state file's folder (what a write whose folder sync failed left undone), or
    ConfigurationError: the next charge is refused before anything is written."""
    try:
        sync_folder(path.parent, must=True)
    except OSError as exc:
        raise ConfigurationError(
            f"the accountant's state file {path}: its folder {path.parent} still cannot be synced "
            f"({exc.strerror or exc}); the round is refused, nothing is charged"
        ) from exc


def lock_path(path: Path) -> Path:
    """The lock file of the state file ``path``: ``.<name>.lock`` in the same directory."""
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the state file's exclusive lock (module docstring); StateLockedError if another holds it,
    ConfigurationError if the lock file cannot be used (a symlink, folder, pipe; no such folder)."""
    lock = lock_path(path)
    fcntl = _FCNTL
    if fcntl is None:
        with _exclusive_file(lock, path):
            yield
        return
    descriptor = _open_lock(lock, path, os.O_RDWR | os.O_CREAT)
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise ConfigurationError(
                f"the lock file {lock} of the accountant's state file {path} is not a regular file"
            )
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise StateLockedError(
                f"the accountant's state file {path} is in use: another accountant holds its lock {lock} "
                f"({_holder(_recorded_holder(descriptor))}); nothing was read or written, retry once it is done"
            ) from exc
        except OSError as exc:  # no lock support here (NFS without a lock daemon: ENOLCK), ...
            raise ConfigurationError(
                f"the accountant's state file {path} cannot be locked ({lock}: {exc.strerror or exc}); nothing was "
                "read or written: keep the state file on a local file system"
            ) from exc
        try:
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)  # whom a refused accountant names
        except OSError as exc:
            raise ConfigurationError(
                f"the lock file {lock} of the accountant's state file {path} cannot be written "
                f"({exc.strerror or exc}); nothing was read or written"
            ) from exc
        yield
    finally:
        os.close(descriptor)  # releases the flock


@contextlib.contextmanager
def _exclusive_file(lock: Path, path: Path) -> Iterator[None]:
    """The lock of platforms without fcntl: the lock file exists while it is held."""
    descriptor = _open_lock(lock, path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        os.write(descriptor, f"{os.getpid()}\n".encode())
    finally:
        os.close(descriptor)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)


def _open_lock(lock: Path, path: Path, flags: int) -> int:
    try:
        return os.open(lock, flags | _NO_FOLLOW | _NEVER_WAIT, STATE_MODE)
    except FileExistsError as exc:  # O_EXCL: held, or left by a crashed holder
        raise StateLockedError(
            f"the accountant's state file {path} is in use: its lock file {lock} exists ({_holder(_peek(lock))}); "
            "another accountant holds it, or a process that crashed left it: remove it once no accountant runs "
            "on this file; nothing was read or written"
        ) from exc
    except OSError as exc:
        if not _exists(lock):  # no lock file: its folder cannot take one (missing, full, read-only, ...)
            raise ConfigurationError(
                f"cannot create the accountant's state file {path}: {folder_problem(path, exc)}; nothing was read "
                "or written"
            ) from exc
        if exc.errno in (errno.EACCES, errno.EPERM):  # a lock file of another user, or of another mode
            raise ConfigurationError(
                f"cannot use the lock file {lock} of the accountant's state file {path}: it exists and this user "
                f"may not open it ({exc.strerror or exc}); run the accountant as the user whose lock it is, or "
                "remove it once no accountant runs on this file; nothing was read or written"
            ) from exc
        # ELOOP: a symlink; EISDIR: a folder
        raise ConfigurationError(
            f"cannot use the lock file {lock} of the accountant's state file {path}: {exc.strerror or exc} "
            "(a link, folder, pipe or device is never used as a lock; remove it)"
        ) from exc


def _exists(lock: Path) -> bool:
    """Whether anything (a file, a link, even a dangling one) stands at ``lock``."""
    try:
        os.lstat(lock)
    except OSError:
        return False
    return True


_FULL = frozenset(code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if code is not None)


def folder_problem(path: Path, exc: OSError) -> str:
    """Why the folder of the state file ``path`` cannot hold it, in true words, after creating or
    opening a file there failed with ``exc``: a folder on the path missing (or a symlink to a missing
    one), a file where a folder should be, a lock file name too long for the file system, a full or
    read-only file system, a folder this user may not write, or one that exists and still refuses
    new files (a pseudo file system such as /proc, whose ENOENT is no missing folder)."""
    return _unusable_folder(path) or _refusing_folder(path, exc)


def _unusable_folder(path: Path) -> str | None:
    """Why a folder on the path of ``path`` is none to use (missing, unreachable, not a folder), or None."""
    for folder in reversed((path.parent, *path.parent.parents)):  # from the root down: the first that fails
        try:
            info = os.stat(folder)
        except FileNotFoundError:
            if os.path.islink(folder):
                return (
                    f"its folder {folder} is a symlink to {os.readlink(folder)}, which does not exist; create it, "
                    "or give a path in an existing folder"
                )
            return f"its folder {folder} does not exist; create it, or give a path in an existing folder"
        except OSError as error:
            if error.errno == errno.ELOOP:
                return (
                    f"its folder {folder} is a loop of symbolic links ({error.strerror or error}: it never "
                    "resolves to a folder); point the link at a folder, or give a path in an existing folder"
                )
            return f"its folder {folder} cannot be reached ({error.strerror or error}); give a path in a usable folder"
        if not stat.S_ISDIR(info.st_mode):
            return (
                f"{folder} is not a folder (a regular file or other non-folder stands where the path needs one); "
                "give a path in a folder"
            )
    return None


def _refusing_folder(path: Path, exc: OSError) -> str:
    """Why the existing folder of ``path`` took no new file, failing with ``exc``."""
    reason, folder = exc.strerror or str(exc), path.parent
    if exc.errno == errno.ENAMETOOLONG:
        return (
            f"the name of its lock file (.<name>.lock, {len(lock_path(path).name)} characters) is too long for the "
            f"file system of its folder {folder} ({reason}); give the state file a shorter name"
        )
    if exc.errno in _FULL:
        return (
            f"its folder {folder} exists but its file system is full, or this user's quota on it is used up "
            f"({reason}); free space there, or give a path on another file system"
        )
    if exc.errno == errno.EROFS:
        return (
            f"its folder {folder} exists but is on a read-only file system ({reason}), which no user may write; "
            "give a path in a folder on a writable file system"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        return (
            f"its folder {folder} exists but cannot hold the file: it is not writable by this user ({reason}); "
            "give a path in a folder this user may write, or let it write this one"
        )
    return (
        f"its folder {folder} exists but cannot hold the file ({reason}: a pseudo file system such as /proc, or a "
        "policy beyond the file modes, takes no new files there); give a path in a folder on a local, writable "
        "file system"
    )


def _peek(lock: Path) -> bytes:
    with contextlib.suppress(OSError):
        descriptor = os.open(lock, os.O_RDONLY | _NO_FOLLOW | _NEVER_WAIT)
        try:
            return os.read(descriptor, 32)
        finally:
            os.close(descriptor)
    return b""


def _recorded_holder(descriptor: int) -> bytes:
    """The lock file's first bytes (the holder's pid), or none if they cannot be read: who holds it
    is only a hint in the refusal, never a reason to raise something else."""
    try:
        return os.pread(descriptor, 32, 0)
    except OSError:
        return b""


def _holder(recorded: bytes) -> str:
    """Who holds the lock, as the lock file records it."""
    text = recorded.decode("ascii", "replace").strip()
    if not text.isdigit():
        return "its holder is unknown"
    return "this process" if int(text) == os.getpid() else f"process {int(text)}"
