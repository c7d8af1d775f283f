"""Writing what the command line produces (``--json PATH``, ``--out DIR``): no result lost or half-written.

:func:`write_output` writes a regular file (or a path that does not exist yet) atomically with
:func:`secagg._files.write_regular_file`: a temporary file in the same folder, synced, renamed over
the old one; a failed write (a full disk, permission denied) leaves the previous file whole and
raises :class:`~secagg.errors.ConfigurationError` naming the path. A symbolic link is followed: the
file it names is replaced, the link kept. ``/dev/stdout`` and ``/dev/fd/1`` are the process's own
standard output, ``/dev/stderr`` and ``/dev/fd/2`` its standard error (:data:`STREAMS`): written
through ``sys.stdout`` / ``sys.stderr``, in order after what was printed, and a redirection to a
file is appended to, never truncated nor replaced; another special file (a named pipe,
``/dev/null``, a link into ``/dev`` or ``/proc``) is written in place, as a shell redirection would.

:func:`output_problem` is the same decision made before a run: what would stop the write, or None.
:func:`check_output` raises it. :func:`write_results` is :func:`write_output` for a tool's results:
if the write fails they are printed on stdout instead, not lost; :func:`run_tool` runs a
``python -m`` tool's ``main`` so that such a failure (any library error) ends it with one line on
stderr and exit code 2, and a Ctrl-C with one line and exit code 130, as ``secagg`` does.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from collections.abc import Callable
from typing import TextIO

from secagg._files import write_regular_file
from secagg.errors import ConfigurationError, SecAggError

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "STDOUT",
    "STREAMS",
    "atomic_target",
    "check_output",
    "output_problem",
    "probe_folder",
    "run_tool",
    "standard_stream",
    "write_output",
    "write_results",
]

STDOUT = "/dev/stdout"
"""The path that means the process's standard output."""

STREAMS = {"/dev/stdout": "stdout", "/dev/fd/1": "stdout", "/dev/stderr": "stderr", "/dev/fd/2": "stderr"}
"""The paths written through the process's own ``sys.stdout`` / ``sys.stderr``: exactly these
names (another name of the same file, such as ``/proc/self/fd/1``, is a symbolic link like any
other: followed to what it names)."""

_SPECIAL_TREES = ("/dev/", "/proc/")

EXIT_ERROR = 2
"""Exit code of a ``python -m`` tool ended by a library error (:func:`run_tool`), as ``secagg``'s."""
EXIT_INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT, what shells report): ``secagg``'s and a ``python -m`` tool's."""
EXIT_BROKEN_PIPE = 141
"""Exit code of a ``python -m`` tool whose stdout's reader went away (``| head``; 128 + SIGPIPE, as
``secagg``'s), while it printed its table or its report to ``/dev/stdout``."""


def standard_stream(path: str | os.PathLike[str]) -> TextIO | None:
    """``sys.stdout`` or ``sys.stderr`` if ``path`` names it (:data:`STREAMS`), else None."""
    name = STREAMS.get(os.fspath(path))
    stream: TextIO | None = None if name is None else getattr(sys, name)
    return stream


def atomic_target(path: str | os.PathLike[str]) -> str | None:
    """The file an atomic replacement of ``path`` writes (``path`` itself, or the file a symbolic link
    names), or None for a special file written in place (a pipe, a device, a link into /dev or /proc).
    A folder is returned too: :func:`write_regular_file` refuses it by name."""
    text = os.fspath(path)
    if text in STREAMS:
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
    if text in STREAMS:
        return None if getattr(sys, STREAMS[text]) is not None else _closed(text)
    target = atomic_target(text)
    if target is None:
        return None if os.access(text, os.W_OK) else "permission denied"
    if os.path.isdir(target):
        return "it is not a regular file (a folder is never written through or replaced; remove it)"
    if os.path.lexists(target):
        try:
            os.stat(target)
        except FileNotFoundError:
            pass  # a link to a file not there yet: the write creates it
        except OSError as exc:  # a loop of links: no file behind it to write
            return str(exc.strerror or exc)
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


def _closed(text: str) -> str:
    """Why a standard stream's path cannot be written when the process has no such stream."""
    return f"the process's standard {'output' if STREAMS[text] == 'stdout' else 'error'} is closed"


def write_output(path: str | os.PathLike[str], what: str, data: bytes) -> None:
    """Write ``data`` to ``path`` (``what`` names it in errors, e.g. "benchmark report"): see the
    module docstring. ConfigurationError naming the path if the write fails (also a standard
    stream that is closed: never written through its path, whose descriptor another file may hold
    by then); BrokenPipeError if stdout's reader went away, which the tools end on quietly."""
    text = os.fspath(path)
    if text in STREAMS:
        stream = standard_stream(text)
        if stream is None:
            raise ConfigurationError(f"cannot write the {what} {text}: {_closed(text)}")
        try:
            if sys.stdout is not None and stream is not sys.stdout:
                with contextlib.suppress(OSError):  # what was printed comes first, when both go to one file
                    sys.stdout.flush()
            stream.write(data.decode("utf-8"))
            stream.flush()
        except BrokenPipeError:
            if stream is sys.stdout:  # stdout's reader went away (`| head`): the tools stop quietly (141)
                raise
            raise ConfigurationError(f"cannot write the {what} {text}: its reader went away (broken pipe)") from None
        except OSError as exc:
            raise ConfigurationError(f"cannot write the {what} {text}: {exc.strerror or exc}") from exc
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


def check_output(path: str | os.PathLike[str], what: str) -> None:
    """Before a run: ConfigurationError naming ``path`` if it could not be written now
    (:func:`output_problem`)."""
    problem = output_problem(path)
    if problem is not None:
        raise ConfigurationError(f"cannot write the {what} {os.fspath(path)}: {problem}")


def write_results(path: str | os.PathLike[str], what: str, document: str) -> None:
    """:func:`write_output` of ``document`` (a tool's results, e.g. its JSON report); if the write
    fails, ``document`` is printed on stdout instead, so that the results are not lost, and the
    ConfigurationError naming the path is raised, saying so."""
    try:
        write_output(path, what, document.encode("utf-8"))
    except ConfigurationError as exc:
        try:
            write_output(STDOUT, what, (document if document.endswith("\n") else f"{document}\n").encode("utf-8"))
        except ConfigurationError as again:  # stdout closed, or its pipe broken, too
            raise ConfigurationError(f"{exc} (nor could it be printed on stdout instead: {again})") from exc
        raise ConfigurationError(f"{exc} (the {what} was printed on stdout instead)") from exc


def run_tool(prog: str, main: Callable[[], int | None]) -> int:
    """Run a ``python -m`` tool's ``main`` (it parses the command line itself); its exit code (None
    is 0). A library error (a ``--json`` that cannot be written, see :func:`write_results`) ends the
    tool with one line on stderr, ``PROG: error: ...``, and :data:`EXIT_ERROR`, not a traceback; a
    Ctrl-C with ``PROG: interrupted`` and :data:`EXIT_INTERRUPTED`, as ``secagg``; a broken pipe on
    stdout while it prints, quietly with :data:`EXIT_BROKEN_PIPE`."""
    try:
        code = main()
    except SecAggError as exc:
        _flush_or_drop_stdout()
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        _flush_or_drop_stdout()
        isatty = getattr(sys.stderr, "isatty", None)  # on a terminal the line starts after the echoed ^C
        print(f"{chr(10) if isatty is not None and isatty() else ''}{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the tool's own output (its table) met a pipe whose reader went away
        _flush_or_drop_stdout()
        return EXIT_BROKEN_PIPE
    return code or 0


def _flush_or_drop_stdout() -> None:
    """Flush stdout; if its pipe broke, point it at /dev/null so that the interpreter's final flush
    cannot fail again (an "Exception ignored" and exit code 120), as ``secagg`` does."""
    if sys.stdout is None:
        return
    try:
        sys.stdout.flush()
    except OSError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
