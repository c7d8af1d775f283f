"""Helpers for tests that hand the library hostile files: a memory ceiling, a call that
must return (not block) and the special files a path may name instead of a regular file."""

from __future__ import annotations

import os
import resource
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def memory_ceiling(extra: int = 1 << 30) -> Iterator[None]:
    """Cap this process's address space at its current size plus ``extra``: a regression
    that allocates a declared size fails fast with MemoryError instead of exhausting the machine."""
    used = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (used + extra, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def outcome_within(call: Callable[[], object], path: Path, seconds: float = 10) -> BaseException | None:
    """What ``call`` raised (None if it returned); AssertionError if it was still blocked after
    ``seconds``. A FIFO at ``path`` is then opened at both ends once so that a blocked open ends."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:  # reported to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    with memory_ceiling():
        thread.start()
        thread.join(seconds)
    blocked = thread.is_alive()
    if blocked and path.is_fifo():  # open both ends once: a blocked open, reading or writing, ends
        reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(seconds)
        os.close(reader)
    assert not blocked, f"blocked on {path}"
    return outcome[0]


SPECIAL_FILES = ("fifo", "directory", "device")


def special_file(kind: str, tmp_path: Path) -> Path:
    """A named pipe, a directory or an endless character device (/dev/zero) at a path."""
    if kind == "device":
        return Path("/dev/zero")
    path = tmp_path / f"{kind}.key"
    if kind == "fifo":
        os.mkfifo(path, 0o600)
    else:
        path.mkdir(mode=0o700)
    return path
