"""Writing what the command line produces (``--json PATH``, ``--out DIR``): no result lost or half-written.

:func:`write_output` writes a regular file (or a path that does not exist yet) atomically with
:func:`secagg._files.write_regular_file`: a temporary file in the same folder, synced, renamed over
the old one; a failed write (a full disk, permission denied) leaves the previous file whole and
raises :class:`~secagg.errors.ConfigurationError` naming the path. A symbolic link is followed: the
file it names is replaced, the link kept. ``/dev/stdout`` is the process's own standard output (in
order after what was printed, and a redirection to a file is appended to, never truncated); another
special file (a named pipe, ``/dev/null``, a link into ``/dev`` or ``/proc``) is written in place,
as a shell redirection would.

:func:`output_problem` is the same decision made before a run: what would stop the write, or None.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Callable

from secagg._files import write_regular_file
from secagg.errors import ConfigurationError

__all__ = ["STDOUT", "atomic_target", "output_problem", "probe_folder", "write_output"]

STDOUT = "/dev/stdout"
"""The path that means the process's standard output."""

_SPECIAL_TREES = ("/dev/", "/proc/")


def atomic_target(path: str | os.PathLike[str]) -> str | None:
    """The file an atomic replacement of ``path`` writes (``path`` itself, or the file a symbolic link
    names), or None for a special file written in place (a pipe, a device, a link into /dev or /proc).
    A folder is returned too: :func:`write_regular_file` refuses it by name."""
    text = os.fspath(path)
    if text == STDOUT:
        return None
    try:
        linked = stat.S_ISLNK(os.lstat(text).st_mode)
    except OSError:  # absent (or unreachable): the atomic write reports what stops it
        return text
    target = os.path.realpath(text) if linked else text
    if linked and target.startswith(_SPECIAL_TREES):
        return None
    try:
        mode = os.stat(target).st_mode
    except OSError:
        return target
    return target if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else None


def probe_folder(folder: str | os.PathLike[str]) -> None:
    """Create and remove a scratch file in ``folder`` (where the atomic write puts its temporary
    file); OSError if that is impossible."""
    with tempfile.TemporaryFile(dir=folder, prefix=".secagg-write-check-"):
        pass


def output_problem(
    path: str | os.PathLike[str], probe: Callable[[str], None] = probe_folder
) -> str | None:
    """Why ``path`` could not be written now (e.g. "permission denied"), or None; ``probe`` creates
    a scratch file in the folder that would take the temporary file."""
    text = os.fspath(path)
    target = atomic_target(text)
    if target is None:
        return None if text == STDOUT or os.access(text, os.W_OK) else "permission denied"
    if os.path.isdir(target):
        return "it is not a regular file (a folder is never written through or replaced; remove it)"
    if os.path.lexists(target) and not os.access(target, os.W_OK):
        return "permission denied (it is read-only)"
    return _folder_problem(os.path.dirname(target) or os.curdir, probe)


def _folder_problem(folder: str, probe: Callable[[str], None]) -> str | None:
    """Why ``folder`` cannot take the temporary file of an atomic write, or None."""
    if not os.path.exists(folder):
        return f"folder {folder} does not exist"
    if not os.path.isdir(folder):
        return f"{folder} is not a directory"
    try:
        probe(folder)
    except OSError as exc:
        return str(exc.strerror or exc)
    return None


def write_output(path: str | os.PathLike[str], what: str, data: bytes) -> None:
    """Write ``data`` to ``path`` (``what`` names it in errors, e.g. "benchmark report"): see the
    module docstring. ConfigurationError naming the path if the write fails."""
    text = os.fspath(path)
    if text == STDOUT:
        sys.stdout.flush()
        sys.stdout.write(data.decode("utf-8"))
        sys.stdout.flush()
        return
    target = atomic_target(text)
    if target is not None:
        write_regular_file(target, what, data)
        return
    try:
        with open(text, "wb") as handle:  # a named pipe waits for its reader, as a shell redirection does
            handle.write(data)
    except OSError as exc:
        raise ConfigurationError(f"cannot write the {what} {text}: {exc.strerror or exc}") from exc
