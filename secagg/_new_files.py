"""Creating a file that must not exist yet: the one writer of key files.

:func:`write_new_file` writes key shares, private keys, identity keys, passphrase files and the
ceremony's public files beside them: mode 0600 from its creation, into a folder every reader would
accept (:func:`secagg._files.check_folders`), its data synced before its name exists, never over an
existing file or link. Reading, and replacing a file that may exist, are :mod:`secagg._files`'.
"""

from __future__ import annotations

import contextlib
import errno
import os

from secagg import _files
from secagg.errors import ConfigurationError

__all__ = ["write_new_file"]


def write_new_file(path: str | os.PathLike[str], what: str, data: bytes, *, mode: int = 0o600) -> None:
    """Create the file ``path`` holding ``data``, ``mode`` (0600: a secret) whatever the umask (``what``
    names it in errors). ConfigurationError, nothing written, if anything is at ``path`` (a file, a link: never
    overwritten nor followed) or a folder on its path is one every reader refuses
    (:func:`secagg._files.check_folders`).

    ``data`` goes to a new temporary file beside ``path`` (``O_EXCL``, created ``mode`` less the umask),
    synced, then hard-linked to ``path`` (failing if anything took the name meanwhile), the folder
    synced: ``path`` appears only holding the whole, synced data, so a crash never leaves an empty or
    partial key under its name. Without hard links (the file system's) the file is created at ``path``
    (``O_EXCL``) and synced. A failed write or sync, or an interrupt, removes what this call created.
    """
    path = _files._checked_path(path, what)
    name, text = _files._shown(path), os.fspath(path)
    folder = os.path.dirname(text) or os.curdir
    try:
        if os.path.lexists(text):
            raise ConfigurationError(f"refusing to overwrite {name}")
        with contextlib.suppress(FileNotFoundError):  # the file is not there yet (nor, maybe, its folder)
            _files.check_folders(path, what)
        descriptor, temporary = _files._new_temporary(folder, os.path.basename(text), mode)
    except ConfigurationError:
        raise
    except (OSError, ValueError) as exc:  # ValueError: a path holding a NUL byte
        missing = f" (its folder {_files._shown(folder)} does not exist)" if isinstance(exc, FileNotFoundError) else ""
        raise ConfigurationError(f"cannot create {name}: {getattr(exc, 'strerror', None) or exc}{missing}") from exc
    created = [temporary]
    try:
        _write_synced(descriptor, data, mode)
        try:
            os.link(temporary, text)  # fails if anything took the name meanwhile
        except OSError as exc:
            if isinstance(exc, FileExistsError) or exc.errno not in _NO_HARD_LINKS:
                raise
            # A file system without hard links: the file is created at its name (O_EXCL), then written.
            descriptor = os.open(text, _NEW_FILE_FLAGS, mode)
            created.append(text)
            _write_synced(descriptor, data, mode)
        else:
            created.append(text)
        with contextlib.suppress(OSError):
            os.unlink(temporary)
    except BaseException as exc:  # a full disk, an I/O error, an interrupt: no partial file is left behind
        for leftover in created:
            with contextlib.suppress(OSError):
                os.unlink(leftover)
        if isinstance(exc, FileExistsError):
            raise ConfigurationError(f"refusing to overwrite {name}") from None
        if isinstance(exc, OSError):
            raise ConfigurationError(f"cannot write {name}: {exc.strerror or exc}") from exc
        raise
    _files.sync_folder(folder)  # the new name durable too


_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_NO_HARD_LINKS = frozenset(
    getattr(errno, name) for name in ("EPERM", "ENOTSUP", "EOPNOTSUPP", "EXDEV", "EMLINK") if hasattr(errno, name)
)


def _write_synced(descriptor: int, data: bytes, mode: int) -> None:
    """Give the new file open as ``descriptor`` ``mode`` exactly (it was created so less the umask:
    never more open, but a umask taking the owner's read bit would leave a key its owner cannot read
    back), write ``data`` to it, sync it and close it."""
    with os.fdopen(descriptor, "wb") as handle:
        if hasattr(os, "fchmod"):  # not on Windows before Python 3.13 (where no mode is checked)
            os.fchmod(descriptor, mode)
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
