"""What stands at a path a checked reader could not use, in words (:mod:`secagg._files`'s refusals).

A reader whose ``open`` fails, or opens something other than a regular file, names what it met
instead of passing the system's words on alone ("Too many levels of symbolic links" for a file that
is a loop of links, or that is a link where none is followed; "No such file or directory" for a link
that exists but leads nowhere; "No such device or address" for a socket):

- a symbolic link where none is followed (the DP accountant's state file), with its target (read
  with ``readlink``, never looked through: not even ``stat`` follows it);
- a loop of symbolic links, the file itself or a folder on its path (named);
- a dangling link, with the target that does not exist;
- a named pipe, folder, device or socket, by its kind.

:class:`~secagg.errors.SecretFileLinkWarning` is the warning a reader of a *secret* issues for a
file with more than one name (hard links): see :func:`warn_second_names`.

A file's name and a link's target are shown with their unprintable characters escaped (``\\x1b``,
``\\n``, ``\\u202e``, a byte that is not UTF-8 as ``\\udcff``): whoever named the file or made the
link chose them (another user, in a sticky folder such as ``/tmp``), and the message reaches a
terminal and a log (never, from a Flower node, the server: :mod:`secagg.integrations.flower._node`).
"""

from __future__ import annotations

import errno
import os
import shlex
import stat
import sys
import warnings
from pathlib import Path

from secagg.errors import SecretFileLinkWarning

__all__ = ["SecretFileLinkWarning", "not_a_file", "unopenable", "warn_second_names"]


def warn_second_names(name: str, what: str, links: int) -> None:
    """Warn (:class:`SecretFileLinkWarning`) that the secret file ``name`` has ``links`` names."""
    warnings.warn(
        f"the {what} {name} has {links} names (hard links): the secret is also on disk under another name "
        f"(a copy left in a shared or backed-up folder, the temporary name of an interrupted write), which "
        f"deleting {name} does not delete; find the others with `find <its file system's mount point> -xdev "
        f"-samefile {shlex.quote(name)}` and remove those not meant to be there",
        SecretFileLinkWarning,
        stacklevel=_callers_level(),
    )


_PACKAGE = os.path.dirname(__file__) + os.sep


def _callers_level() -> int:
    """The ``stacklevel`` that attributes a warning issued by the function calling this one to the
    first caller outside secagg (as Python 3.12's ``skip_file_prefixes``): the code that asked for
    the read, not a line of the library's, the same for every reader."""
    level, frame = 1, sys._getframe(1)
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        level, frame = level + 1, frame.f_back
    return level


def not_a_file(mode: int) -> str:
    """The words for a file of ``mode`` that is not a regular file, after its name."""
    if stat.S_ISDIR(mode):
        kind = "a folder"
    elif stat.S_ISFIFO(mode):
        kind = "a named pipe"
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = "a device"
    elif stat.S_ISSOCK(mode):
        kind = "a socket"
    else:
        kind = "neither a file nor a folder"
    return f"is not a regular file: it is {kind}; give a file"


def unopenable(path: str | os.PathLike[str], exc: OSError, follow_symlinks: bool) -> str | None:
    """Why ``open`` of ``path`` failed with ``exc``, after the file's name, when what stands there is
    the reason (a link: a loop, dangling, or never followed; a folder on the path that is a loop of
    links; a socket), else None (the system's words say it: a missing file, a permission)."""
    try:
        info = os.lstat(path)
    except OSError as error:
        folder = _looping_folder(Path(os.fspath(path))) if error.errno == errno.ELOOP else None
        if folder is None:
            return None
        return (
            f"cannot be read: its folder {_shown(folder)} is a loop of symbolic links (it never resolves to a "
            "folder); point the link at a folder, or give a path in an existing folder"
        )
    try:
        if stat.S_ISLNK(info.st_mode):
            return _link(path, exc, follow_symlinks)
        return _other(info.st_mode)
    except OSError:  # changed meanwhile: the system's words
        return None


def _other(mode: int) -> str | None:
    """The words for what ``open`` met that is not a regular file (a socket: open's ENXIO), or None (a
    regular file: the system's words say why it could not be opened, whatever its error)."""
    return None if stat.S_ISREG(mode) else not_a_file(mode)


def _link(path: str | os.PathLike[str], exc: OSError, follow_symlinks: bool) -> str | None:
    target = _escaped(os.readlink(path))
    if not follow_symlinks:  # the link only read, never looked through (a loop is a link to its target too)
        return (
            f"is a symbolic link (to {target}), which is never followed for this file (a link in its place could send "
            "its reads and writes to another file); put the file itself at this path"
        )
    if _loops(path):
        return (
            f"is a loop of symbolic links (it leads to {target}, and never to a file); point the link at the file, "
            "or give the file's own path"
        )
    if isinstance(exc, FileNotFoundError):
        return f"is a symbolic link to {target}, which does not exist; create the file there, or point the link at it"
    return _other(os.stat(path).st_mode)


def _loops(path: str | os.PathLike[str]) -> bool:
    try:
        os.stat(path)
    except OSError as error:
        return error.errno == errno.ELOOP
    return False


def _looping_folder(path: Path) -> Path | None:
    """The first folder on the path of ``path`` (from the root down) that is a loop of links, or None."""
    for folder in reversed((path.parent, *path.parent.parents)):
        try:
            os.stat(folder)
        except OSError as error:
            return folder if error.errno == errno.ELOOP else None
    return None


def _shown(path: str | os.PathLike[str]) -> str:
    """``path`` for an error message or a warning, each unprintable character escaped as a link's
    target is (:func:`_escaped`; a NUL byte, which no system call accepts, as ``\\0``): whoever named
    the file or a folder on its path chose the name, and a line break or an escape sequence in it would
    forge a line of the log the message reaches or repaint the terminal. Also :mod:`secagg._files`'
    (which imports this module)."""
    return _escaped(os.fsdecode(path).replace("\0", "\\0"))


def _escaped(text: str) -> str:
    """``text`` (a link's target) with each character that is not printable escaped: a control
    character, a line break, a bidirectional override, a surrogate standing for a byte that is not UTF-8."""
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)
