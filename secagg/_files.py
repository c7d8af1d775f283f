"""Reading a file whose path a user or a configuration supplied: the one safe way.

:func:`read_regular_file` opens the path without blocking (``O_NONBLOCK``: a named pipe
opens at once instead of waiting for a writer; ``O_NOCTTY``: a terminal never becomes
the controlling one), checks *on the opened descriptor* that it is a regular file of at
most ``max_bytes`` whose mode grants group and others nothing forbidden, then reads at
most ``max_bytes + 1`` bytes from that same descriptor. A named pipe, a directory or a
device (``/dev/zero``, ``/dev/stdin``) is refused, as is a file that grows past the limit
while it is read. Every refusal is a :class:`~secagg.errors.ConfigurationError` naming
the file (or ``too_large`` for the size, where an oversized file is a content error) and
what stands there instead (:mod:`secagg._file_kinds`: a pipe, folder, device or socket, a
loop of symbolic links, a link to nothing, a link where none is followed), not the system's
bare words. A secret (``forbidden_mode`` taking group and others' read bits) with a second
name (a hard link) is read with a :class:`SecretFileLinkWarning`.

A file with a ``forbidden_mode`` (a secret, or a file whose content decides whom to
trust) must also belong to the process's user or to root, as ssh requires of its key
and authorized-keys files: another user's file, whatever its mode, is theirs to read
and to rewrite. Symbolic links are followed unless
``follow_symlinks`` is false: the checks apply to the file actually opened, whatever link
led to it (deployments such as Kubernetes secret volumes deliver key files through links).
A path that is not a ``str`` or an ``os.PathLike`` of ``str`` (an ``int``, which ``os.open``
would take for an open file descriptor; bytes) is a :class:`~secagg.errors.ConfigurationTypeError`.

:func:`write_regular_file` replaces a file atomically (a temporary file in the same folder,
synced, renamed over it): a write that fails leaves the previous file whole. It is the library's
one atomic writer: command-line outputs, vector files and the DP accountant's state file.

Key files, which must not exist yet, are created by :func:`secagg._new_files.write_new_file`.

On a system that is not POSIX (Windows) no mode, owner or folder is checked, reading or writing:
there a key file is as private as the folder's access-control list makes it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import tempfile

from secagg._file_kinds import SecretFileLinkWarning, _shown, not_a_file, unopenable, warn_second_names
from secagg.errors import ConfigurationError, ConfigurationTypeError, SecAggError

__all__ = [
    "PRIVATE",
    "WRITABLE_BY_OWNER_ONLY",
    "SecretFileLinkWarning",
    "check_folders",
    "read_regular_file",
    "sync_folder",
    "write_regular_file",
]

PRIVATE = stat.S_IRWXG | stat.S_IRWXO
"""Forbidden mode bits of a secret: group and others may not access it at all (0600)."""
WRITABLE_BY_OWNER_ONLY = stat.S_IWGRP | stat.S_IWOTH
"""Forbidden mode bits of an integrity-sensitive file: group and others may not write it."""

_NEVER_WAIT = getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


def read_regular_file(
    path: str | os.PathLike[str],
    what: str,
    max_bytes: int,
    *,
    forbidden_mode: int = 0,
    advice: str = "chmod 600 it",
    follow_symlinks: bool = True,
    too_large: type[SecAggError] = ConfigurationError,
) -> bytes:
    """The bytes of the regular file ``path`` (``what`` names it in errors, e.g. "identity key file").

    ``forbidden_mode``: mode bits the file may not have (:data:`PRIVATE`,
    :data:`WRITABLE_BY_OWNER_ONLY`; checked on POSIX), ``advice`` what to do about them.
    FileNotFoundError is passed through as a ConfigurationError whose cause it is.
    """
    name = _shown(_checked_path(path, what))
    flags = os.O_RDONLY | _NEVER_WAIT | (0 if follow_symlinks else getattr(os, "O_NOFOLLOW", 0))
    try:
        descriptor = os.open(path, flags)
    except (OSError, ValueError) as exc:  # ValueError: a path holding a NUL byte
        described = unopenable(path, exc, follow_symlinks) if isinstance(exc, OSError) else None
        if described is not None:
            raise ConfigurationError(f"the {what} {name} {described}") from exc
        raise ConfigurationError(f"cannot read the {what} {name}: {getattr(exc, 'strerror', None) or exc}") from exc
    try:
        _check_opened(descriptor, name, what, max_bytes, forbidden_mode, advice, too_large)
        if forbidden_mode:
            check_folders(path, what)
        os.set_blocking(descriptor, True)
        data = _read_at_most(descriptor, max_bytes + 1)
    except OSError as exc:
        raise ConfigurationError(f"cannot read the {what} {name}: {exc.strerror or exc}") from exc
    finally:
        os.close(descriptor)
    if len(data) > max_bytes:
        raise too_large(f"the {what} {name} is larger than {max_bytes} bytes")
    return data


def _checked_path(path: object, what: str) -> str | os.PathLike[str]:
    """``path`` if it names a file as a ``str`` or an ``os.PathLike`` of ``str`` (an ``int`` would be
    opened as a file descriptor; bytes are no configured path); ConfigurationTypeError otherwise."""
    if isinstance(path, (str, os.PathLike)) and isinstance(os.fspath(path), str):
        if os.fspath(path) == "":  # e.g. a config's default `key-file = ""` passed on as it stands
            raise ConfigurationError(f"no {what} given (an empty path): set the path of the {what}")
        return path
    raise ConfigurationTypeError(f"the {what}'s path must be a str or os.PathLike file path, got {type(path).__name__}")


def _check_opened(
    descriptor: int, name: str, what: str, max_bytes: int, forbidden: int, advice: str, too_large: type[SecAggError]
) -> None:
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode):
        raise ConfigurationError(f"the {what} {name} {not_a_file(info.st_mode)}")
    mode, secret = stat.S_IMODE(info.st_mode), bool(forbidden & (stat.S_IRGRP | stat.S_IROTH))
    if os.name == "posix" and mode & forbidden:
        access = "accessible to" if secret else "writable by"
        raise ConfigurationError(f"the {what} {name} is {access} group or others (mode {mode:04o}); {advice}")
    if os.name == "posix" and forbidden and info.st_uid not in (os.geteuid(), 0):
        raise ConfigurationError(
            f"the {what} {name} belongs to user {info.st_uid}, not to this process's user ({os.geteuid()}) "
            "or root: its owner can read it and replace it; chown it to the user that runs secagg"
        )
    if info.st_size > max_bytes:
        raise too_large(f"the {what} {name} is larger than {max_bytes} bytes ({info.st_size} bytes)")
    if secret and info.st_nlink > 1:
        warn_second_names(name, what, info.st_nlink)


_MAX_LINKS = 40  # as Linux's MAXSYMLINKS: more links followed in one lookup is a loop (ELOOP)


def check_folders(path: str | os.PathLike[str], what: str, *, shown: str | None = None) -> None:
    """Refuse (ConfigurationError naming the folder and the fix) a file whose path goes through a
    folder that someone else may change, as ssh's StrictModes does for ``authorized_keys``: whoever
    may write a folder on the path can rename the file (or a folder under it) away and put their own
    in its place, whatever the file's own mode. Checked on POSIX for every folder the lookup of
    ``path`` goes through, from ``/`` down, links followed as ``open`` follows them (the folder
    holding a link and the folders of its target alike):

    - a folder must belong to this process's user or to root;
    - group and others may not write it, unless it is sticky (``/tmp``'s mode 1777): there only an
      entry's owner may rename or remove it, so the entry met in it (a folder, a link, the file)
      must itself belong to the user or to root.

    ``shown``: the name the errors give the file (``path`` by default).
    """
    if os.name != "posix":
        return
    euid, name, hops = os.geteuid(), _shown(path) if shown is None else shown, 0
    text = os.fspath(path)
    pending = list(reversed(text.split("/")))
    current = "/" if text.startswith("/") else os.getcwd()  # getcwd: the folder's real path
    if not text.startswith("/"):  # the working folder's own chain comes first
        pending.extend(reversed(current.split("/")))
        current = "/"
    folder = os.stat(current)
    _check_folder(current, folder, euid, name, what)
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":  # ``current`` is a real path (links resolved): its parent is the lookup's
            current = os.path.dirname(current)
            folder = os.stat(current)
            continue
        entry = os.path.join(current, part)
        info = os.lstat(entry)
        if folder.st_mode & stat.S_ISVTX and folder.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            _check_owner(entry, info, euid, name, what, "it is in a sticky folder others may write, where ")
        if stat.S_ISLNK(info.st_mode):
            hops += 1
            if hops > _MAX_LINKS:
                raise ConfigurationError(f"cannot read the {what} {name}: too many levels of symbolic links")
            target = os.readlink(entry)
            pending.extend(reversed(target.split("/")))
            if target.startswith("/"):
                current, folder = "/", os.stat("/")
            continue
        if not pending or not stat.S_ISDIR(info.st_mode):
            return  # the file itself: its mode and owner are checked on the opened descriptor
        current, folder = entry, info
        _check_folder(current, folder, euid, name, what)


def _check_folder(folder: str, info: os.stat_result, euid: int, name: str, what: str) -> None:
    _check_owner(folder, info, euid, name, what, "")
    mode = stat.S_IMODE(info.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
        raise ConfigurationError(
            f"the {what} {name} is in the folder {_shown(folder)} (mode {mode:04o}), which group or others may "
            f"write: they could put another file in its place; make the folder writable by its owner only: "
            f"chmod go-w {_shown(folder)}"
        )


def _check_owner(entry: str, info: os.stat_result, euid: int, name: str, what: str, where: str) -> None:
    if info.st_uid not in (euid, 0):
        kind = "folder" if stat.S_ISDIR(info.st_mode) else "link" if stat.S_ISLNK(info.st_mode) else "entry"
        raise ConfigurationError(
            f"the {what} {name} is reached through the {kind} {_shown(entry)}, which belongs to user {info.st_uid}, "
            f"not to this process's user ({euid}) or root: {where}its owner can put another file in its place; "
            f"chown it to the user that runs secagg (or to root)"
        )


def _read_at_most(descriptor: int, limit: int) -> bytes:
    chunks, total = [], 0
    while total < limit:
        chunk = os.read(descriptor, min(limit - total, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def write_regular_file(
    path: str | os.PathLike[str], what: str, data: bytes, *, mode: int | None = None, must_sync_folder: bool = False
) -> None:
    """Create or replace the regular file ``path`` with ``data``, atomically: a failed write
    (a full disk) leaves the previous file whole.

    ``data`` goes to a temporary file in the same folder, which is synced and then renamed over
    ``path`` (``os.replace``), the folder synced last; the file keeps the previous one's permission
    bits, or has mode 0666 less the umask when created (as ``open`` gives a new file). ``mode``
    gives it exactly those permission bits instead, whatever the umask or the previous file's mode
    (the temporary file is created with them: never more open). The folder sync is best effort
    (some file systems cannot sync a folder) unless ``must_sync_folder``: then its failure is a
    ConfigurationError too (raised after the rename: the new file is in place but may not survive
    a crash), for a record whose rollback by a crash matters (the DP accountant's). A symbolic
    link, named pipe, device or folder at ``path`` is refused, never written through nor replaced (a
    link planted in a shared folder would
    redirect a write to the user's own files): ConfigurationError naming the file, as for any
    failure, after which no temporary file is left.
    """
    path = _checked_path(path, what)
    name = _shown(path)
    try:
        previous = _existing_mode(path, what)
        mode = previous if mode is None else mode
        folder = os.path.dirname(os.fspath(path)) or os.curdir
        # Created no more open than the file it replaces (0666 less the umask for a new one): the mode
        # is set exactly below, but a descriptor opened in between would outlive a narrower chmod.
        base = os.path.basename(os.fspath(path))
        descriptor, temporary = _new_temporary(folder, base, 0o666 if mode is None else mode)
    except ConfigurationError:  # _existing_mode's refusal names the file already (it is a ValueError too)
        raise
    except (OSError, ValueError) as exc:  # ValueError: a path holding a NUL byte
        raise ConfigurationError(f"cannot write the {what} {name}: {getattr(exc, 'strerror', None) or exc}") from exc
    try:
        try:
            if mode is not None:  # a new file has the umask's mode, as open() gives it
                os.fchmod(descriptor, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view) :]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise ConfigurationError(f"cannot write the {what} {name}: {exc.strerror or exc}") from exc
        raise
    if not must_sync_folder:
        sync_folder(folder)
        return
    try:
        _sync(folder)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot write the {what} {name}: its folder {_shown(folder)} cannot be synced ({exc.strerror or exc}); "
            "the new file is in place but may not survive a crash"
        ) from exc


def _new_temporary(folder: str, base: str, mode: int = 0o666) -> tuple[int, str]:
    """A new file of an unpredictable name beside ``base`` in ``folder`` (``O_EXCL``, never through a
    link), open for writing, created with ``mode`` less the umask (0666: as any new file); its descriptor and path."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(tempfile.TMP_MAX):
        # The name's first 48 characters: a name near the file system's limit (255 bytes) leaves room
        temporary = os.path.join(folder, f".{base[:48]}.{secrets.token_hex(8)}")
        try:
            return os.open(temporary, flags, mode), temporary
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no unused temporary name in {folder}")


def _existing_mode(path: str | os.PathLike[str], what: str) -> int | None:
    """The permission bits of the regular file at ``path``, None if there is none; ConfigurationError
    if a link, pipe, device or folder is there, or a file this process may not write."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigurationError(
            f"cannot write the {what} {_shown(path)}: it is not a regular file (a link, pipe, device or folder is "
            "never written through or replaced; remove it)"
        )
    if not os.access(path, os.W_OK):  # what opening it for writing refused before it was replaced
        raise ConfigurationError(f"cannot write the {what} {_shown(path)}: permission denied (it is read-only)")
    return stat.S_IMODE(info.st_mode)


def sync_folder(folder: str | os.PathLike[str], *, must: bool = False) -> None:
    """Make a file created or renamed in ``folder`` durable (best effort: some file systems cannot
    sync a folder; with ``must``, the OSError of a sync that fails is raised)."""
    if must:
        _sync(folder)
        return
    with contextlib.suppress(OSError):
        _sync(folder)


def _sync(folder: str | os.PathLike[str]) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
