"""Fixtures of the benchmark tests.

``secagg_bench`` is the installed name of the ``benchmarks/`` folder. A checkout
whose editable install predates that mapping cannot import it, and one whose
editable install points at another worktree imports that worktree's; the tests
then load the package from the folder itself, under the same name, so they test
the same code the CLI runs. :func:`cli_env` gives a subprocess the same view.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_from_checkout() -> None:
    spec = importlib.util.spec_from_file_location(
        "secagg_bench", ROOT / "benchmarks" / "__init__.py", submodule_search_locations=[str(ROOT / "benchmarks")]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["secagg_bench"] = module
    spec.loader.exec_module(module)


def _installed_elsewhere() -> bool:
    """No ``secagg_bench``, or one that is not this checkout's folder (an editable install of
    another worktree): the tests must run this checkout's code."""
    spec = importlib.util.find_spec("secagg_bench")
    if spec is None or spec.origin is None:
        return True
    return Path(spec.origin).resolve().parent != (ROOT / "benchmarks").resolve()


if _installed_elsewhere():
    _load_from_checkout()


@pytest.fixture
def root() -> Path:
    """The repository root."""
    return ROOT


@pytest.fixture
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for ``python -m secagg.cli`` in a subprocess that runs this checkout:
    ``secagg_bench`` resolves to ``benchmarks/`` through a symlink ahead on PYTHONPATH."""
    shim = tmp_path_factory.mktemp("shim")
    (shim / "secagg_bench").symlink_to(ROOT / "benchmarks", target_is_directory=True)
    path = os.pathsep.join([str(shim), str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}
