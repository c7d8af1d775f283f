"""The standard output of a ``secagg`` command (:mod:`secagg.cli`): what fails to be written is one line.

:class:`GuardedStdout` stands in for ``sys.stdout`` while a command runs: a write or flush that
fails (stdout on a full disk, an I/O error) raises :class:`StdoutWriteError`, the library's
ConfigurationError naming the standard output, instead of an OSError traceback; one whose reader
went away (``secagg ... | head -1``) raises :class:`StdoutBrokenPipeError`, the BrokenPipeError
``secagg`` ends on quietly (exit 141): another broken pipe (one of the work's own) is its failure,
never taken for stdout's. Text the stream's encoding cannot show is written with backslash
escapes, as stderr writes it. :func:`drop_stdout` then points stdout's descriptor at /dev/null, so
that the interpreter's final flush cannot fail again.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, TextIO

from secagg.errors import ConfigurationError

__all__ = ["GuardedStdout", "StdoutBrokenPipeError", "StdoutWriteError", "drop_stdout"]


class StdoutWriteError(ConfigurationError):
    """What a command printed could not be written to the standard output (a full disk)."""


class StdoutBrokenPipeError(BrokenPipeError):
    """The standard output's reader went away (``| head -1``): what ``secagg`` ends on with exit 141."""


class GuardedStdout:
    """``sys.stdout`` while a command runs: a write or flush that fails (stdout on a full disk, an
    I/O error) raises the library's ConfigurationError naming the standard output, one line and
    exit status 2 as any failed output, instead of an OSError traceback; text its encoding cannot
    show (a file name that is not UTF-8, PYTHONIOENCODING=ascii) is written with backslash escapes,
    as stderr writes it. A broken pipe is a :class:`StdoutBrokenPipeError` (a BrokenPipeError: exit
    status 141); everything else is the stream's own."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            try:
                return self._stream.write(text)
            except UnicodeEncodeError:  # a path stdout's encoding cannot show: escaped, as stderr shows it
                encoding = getattr(self._stream, "encoding", None) or "utf-8"
                return self._stream.write(text.encode(encoding, "backslashreplace").decode(encoding))
        except BrokenPipeError as exc:
            raise StdoutBrokenPipeError(exc.errno, exc.strerror) from exc
        except OSError as exc:
            raise StdoutWriteError(f"cannot write to the standard output: {exc.strerror or exc}") from exc

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError as exc:
            raise StdoutBrokenPipeError(exc.errno, exc.strerror) from exc
        except OSError as exc:
            raise StdoutWriteError(f"cannot write to the standard output: {exc.strerror or exc}") from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def drop_stdout() -> None:
    """Point stdout's descriptor at /dev/null, so that the interpreter's final flush of what could
    not be written cannot fail again ("Exception ignored" and exit code 120); nothing if it has none."""
    with contextlib.suppress(OSError, ValueError, AttributeError):  # a stream without a descriptor
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
