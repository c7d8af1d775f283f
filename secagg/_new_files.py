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
from typing import BinaryIO

from secagg import _files
from secagg._file_kinds import _shown
from secagg.errors import ConfigurationError

__all__ = ["write_new_file"]

_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
# What link() fails with on a file system without hard links: EPERM (Linux's vfat and exfat, which
# have no link operation: Linux's link(2), "EPERM The filesystem containing oldpath and newpath does
# not support the creation of hard links"; VMware's HGFS and VirtualBox's vboxsf shared folders:
# vmware/open-vm-tools#675, rbenv/ruby-build#264), ENOTSUP/EOPNOTSUPP (exFAT on macOS, errno 45:
# s3fs-fuse/s3fs-fuse#1633; Docker Desktop's osxfs: docker/for-mac#5036; OpenBSD's link(2): "The file
# system containing the file named by name1 does not support links"), ENOSYS (a FUSE file system that
# does not implement link, as sshfs without its server's hard-link extension), EMLINK (a file system
# of one link per file: Plan 9's APE link() always fails so), EXDEV (the two names are in one folder:
# a file system that calls them two devices has no usable link), EINVAL (Interix/SFU's link(2): "the
# file resides on a device that does not support the link(2) operation", its FAT volumes). Falling
# back is safe whatever the cause: the file is then created at its name with O_EXCL, never through a
# link, and a real failure fails that too. Not EEXIST: the name taken meanwhile, refused. Not EIO
# (Docker Desktop's gRPC-FUSE on FAT, docker/for-mac#5036): a failing disk's too. Any other failure is
# the write's.
_NO_HARD_LINKS = frozenset(
    getattr(errno, name)
    for name in ("EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS", "EXDEV", "EMLINK", "EINVAL")
    if hasattr(errno, name)
)


def write_new_file(path: str | os.PathLike[str], what: str, data: bytes, *, mode: int = 0o600) -> None:
    """Create the file ``path`` holding ``data``, ``mode`` (0600: a secret) whatever the umask (``what``
    names it in errors). ConfigurationError, nothing written, if anything is at ``path`` (a file, a link:
    never overwritten nor followed) or a folder on its path is one every reader refuses
    (:func:`secagg._files.check_folders`), checked before anything is created and again once the temporary
    file exists (a folder made by someone else in between, in a sticky folder such as ``/tmp``, is refused
    before the data is written).

    ``data`` goes to a new temporary file beside ``path`` (``.`` + the name's first 48 characters + ``.``
    + 16 random hex digits, ``O_EXCL``, never through a link, created ``mode`` less the umask), synced,
    then hard-linked to ``path`` (failing if anything took the name meanwhile), the temporary name
    removed and the folder synced: ``path`` appears only holding the whole, synced data, so a crash never
    leaves an empty or partial key under its name (a crash before the temporary name is removed may leave
    it, a copy of the secret, to delete). Without hard links (the file system's: link() fails with one
    of ``_NO_HARD_LINKS``) the file is created at ``path`` (``O_EXCL``, never through a link) and then
    written and synced: there a crash during the write can leave a partial file under the name. A failed
    write or sync, or an interrupt, removes what this call created; a name this call created that cannot
    be removed (a second name of the secret) fails the write (ConfigurationError naming it: delete it).
    """
    path = _files._checked_path(path, what)
    name, text = _shown(path), os.fspath(path)
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
        missing = f" (its folder {_shown(folder)} does not exist)" if isinstance(exc, FileNotFoundError) else ""
        raise ConfigurationError(f"cannot create {name}: {getattr(exc, 'strerror', None) or exc}{missing}") from exc
    created = [temporary]
    try:
        with os.fdopen(descriptor, "wb") as handle:
            # Every folder again, now that each exists (the check above skips those still missing):
            # one another user made since, theirs, gets no key.
            _files.check_folders(temporary, what, shown=name)
            _write_synced(handle, descriptor, data, mode)
        _link_or_create(temporary, text, data, mode, created)
        os.unlink(temporary)  # never left as a second name of the secret: its failure fails the write
        created.remove(temporary)
    except BaseException as exc:  # a full disk, an I/O error, an interrupt: no partial file is left behind
        left = _remove(created)
        if isinstance(exc, ConfigurationError) and not left:
            raise
        if isinstance(exc, (ConfigurationError, OSError)):
            raise _refusal(exc, name, left) from (None if isinstance(exc, FileExistsError) else exc)
        raise
    _files.sync_folder(folder)  # the new name durable too


def _link_or_create(temporary: str, path: str, data: bytes, mode: int, created: list[str]) -> None:
    """Give the synced temporary file holding ``data`` the name ``path``: hard-linked (FileExistsError if
    anything took the name meanwhile) or, on a file system without hard links (link() fails with one of
    ``_NO_HARD_LINKS``), created at ``path`` (``O_EXCL``, never through a link), then written and synced.
    ``path`` is appended to ``created`` once it exists (the answer journal's writer passes a list it
    never removes from)."""
    try:
        os.link(temporary, path)
    except OSError as exc:
        if isinstance(exc, FileExistsError) or exc.errno not in _NO_HARD_LINKS:
            raise
        descriptor = os.open(path, _NEW_FILE_FLAGS, mode)
        created.append(path)
        with os.fdopen(descriptor, "wb") as handle:
            _write_synced(handle, descriptor, data, mode)
    else:
        created.append(path)


def _remove(created: list[str]) -> list[str]:
    """Remove the names in ``created``; those that could not be removed."""
    left = []
    for leftover in created:
        try:
            os.unlink(leftover)
        except FileNotFoundError:
            pass
        except OSError:
            left.append(leftover)
    return left


def _refusal(exc: ConfigurationError | OSError, name: str, left: list[str]) -> ConfigurationError:
    """The ConfigurationError for ``exc``, naming what could not be removed (``left``)."""
    note = ""
    if left:
        shown = ", ".join(_shown(leftover) for leftover in left)
        note = f"; {shown}, written by this call, could not be removed (a copy of the secret): delete it"
    if isinstance(exc, ConfigurationError):
        return ConfigurationError(f"{exc}{note}")
    if isinstance(exc, FileExistsError):
        return ConfigurationError(f"refusing to overwrite {name}{note}")
    return ConfigurationError(f"cannot write {name}: {exc.strerror or exc}{note}")


def _write_synced(handle: BinaryIO, descriptor: int, data: bytes, mode: int) -> None:
    """Give the new file open as ``handle`` (on ``descriptor``) ``mode`` exactly (it was created so less the umask:
    never more open, but a umask taking the owner's read bit would leave a key its owner cannot read
    back), write ``data`` to it and sync it."""
    if hasattr(os, "fchmod"):  # not on Windows before Python 3.13 (where no mode is checked)
        os.fchmod(descriptor, mode)
    handle.write(data)
    handle.flush()
    os.fsync(descriptor)
