"""What the Flower example's tests share: the example app on the import path, and its key ceremony.

``example_on_path`` (autouse where imported) puts ``examples/flower`` on ``sys.path`` with no
``$SECAGG_FLOWER_KEY_DIR`` inherited from the caller's environment; :func:`example` imports one of
the app's modules; :func:`make_keys` runs ``examples/flower/make-keys.sh`` with this checkout's
``secagg`` command.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from .flower_harness import restore_task_identity, set_task_identity

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "flower"
MAKE_KEYS = EXAMPLE / "make-keys.sh"


@pytest.fixture(autouse=True)
def example_on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.delenv("SECAGG_FLOWER_KEY_DIR", raising=False)
    previous = set_task_identity()
    yield
    restore_task_identity(previous)


def example(module: str) -> ModuleType:
    """A module of the example app (importable once the fixture puts it on the path)."""
    return importlib.import_module(f"secagg_flower_app.{module}")


def make_keys(directory: Path, nodes: int, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run the example's key ceremony with this checkout's ``secagg`` command on the PATH."""
    shims = tmp_path / "bin"
    shims.mkdir(exist_ok=True)
    shim = shims / "secagg"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m secagg.cli "$@"\n')
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{shims}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p)}
    return subprocess.run(["sh", str(MAKE_KEYS), str(directory), str(nodes)], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
