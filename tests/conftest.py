"""Shared pytest configuration: hypothesis profiles, the ``umask`` fixture, and this checkout's
``secagg_bench``.

``default`` keeps the local run fast on a shared 2-core machine; ``ci`` runs more
examples with a fixed derivation so a CI failure is reproducible. Select one with
``HYPOTHESIS_PROFILE=ci pytest``.

``secagg_bench`` (the installed name of ``benchmarks/``) is loaded from this checkout's folder
when the installed one is another worktree's or missing, as tests/benchmarks/conftest.py does for
its tests: the command line's tests outside that folder (``secagg bench --out``'s checks, which
import ``secagg_bench``) then test this checkout's code too, whichever tests run.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

_BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
_installed = importlib.util.find_spec("secagg_bench")
if _installed is None or _installed.origin is None or Path(_installed.origin).resolve().parent != _BENCHMARKS:
    _spec = importlib.util.spec_from_file_location(
        "secagg_bench", _BENCHMARKS / "__init__.py", submodule_search_locations=[str(_BENCHMARKS)]
    )
    assert _spec is not None and _spec.loader is not None
    sys.modules["secagg_bench"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["secagg_bench"])

settings.register_profile("default", max_examples=50, deadline=None)
settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def umask() -> Iterator[None]:
    """Restores the process's umask after a test that sets its own (file-mode tests)."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield
    os.umask(previous)
