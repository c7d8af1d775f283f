"""A full disk at the last step of an atomic write, for the tests of what the command line writes."""

from __future__ import annotations

import errno
import os

import pytest


def disk_full_at(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """os.replace onto a file called ``name`` fails as on a full disk (the last step of an atomic write)."""
    real = os.replace

    def replace(source: str, target: str) -> None:
        if os.path.basename(os.fspath(target)) == name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(source, target)

    monkeypatch.setattr(os, "replace", replace)
