"""Fixtures of the benchmark tests.

``secagg_bench`` is the installed name of the ``benchmarks/`` folder. A checkout
whose editable install predates that mapping cannot import it; the tests then
load the package from the folder itself, under the same name, so they test
the same code the CLI runs.
"""

from __future__ import annotations

import importlib.util
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


if importlib.util.find_spec("secagg_bench") is None:
    _load_from_checkout()


@pytest.fixture
def root() -> Path:
    """The repository root."""
    return ROOT
