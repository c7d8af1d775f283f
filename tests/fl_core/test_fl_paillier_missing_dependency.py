"""``make_aggregator("paillier", ...)`` when the Paillier arithmetic cannot be imported (gmpy2 or phe
missing or broken, a wheel that failed to build): the library's ConfigurationError naming the
package and how to install it, with ``dp=`` as without. Both raised Python's bare
ModuleNotFoundError from deep in the import (with ``dp=`` even where the module itself was
missing from the build, which without ``dp=`` was already the library's error)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from fl_core import budget
from fl_core.aggregators import make_aggregator
from secagg.dp import DPConfig
from secagg.errors import ConfigurationError

DP = DPConfig(epsilon=1.0, delta=1e-5, rounds=2, l2_clip=1.0, min_honest=2)
BUILDS: dict[str, dict[str, Any]] = {
    "without dp": {},
    "with dp": {"dp": DP, "dimension": 3},
    "with dp, sized honest": {"dp": DP, "dimension": 3, "size_honest": True},
}


def _raising_import(monkeypatch: pytest.MonkeyPatch, error: ImportError) -> None:
    """Importing fl_core.aggregators.paillier raises ``error`` (as a dependency's loader does)."""
    real: Callable[..., ModuleType] = importlib.import_module

    def import_module(name: str, package: str | None = None) -> ModuleType:
        if name == "fl_core.aggregators.paillier":
            raise error
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", import_module)


def _failing_import(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    """Importing fl_core.aggregators.paillier fails as it does when ``missing`` does not import."""
    _raising_import(monkeypatch, ModuleNotFoundError(f"No module named {missing!r}", name=missing))


@pytest.mark.parametrize("build", sorted(BUILDS))
@pytest.mark.parametrize("missing", ["gmpy2", "phe"])
def test_a_missing_paillier_dependency_is_the_librarys_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, build: str, missing: str
) -> None:
    # Prepare
    _failing_import(monkeypatch, missing)

    # Execute: with dp= as without, refused before any key or accountant exists
    with pytest.raises(ConfigurationError) as refused:
        make_aggregator("paillier", num_clients=5, **BUILDS[build])

    # Verify: the package named, and how to install it (secagg is installed from a clone)
    message = str(refused.value)
    assert f"aggregation 'paillier' needs {missing!r}" in message, message
    assert "pip install -e ." in message, message


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_the_paillier_module_missing_from_the_build_is_refused_alike(
    monkeypatch: pytest.MonkeyPatch, build: str
) -> None:
    # Prepare: a build without fl_core.aggregators.paillier
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: None)
    _failing_import(monkeypatch, "fl_core.aggregators.paillier")

    # Execute / Verify: the message the non-DP path gave already
    with pytest.raises(ConfigurationError, match="aggregation 'paillier' is not available in this build"):
        make_aggregator("paillier", num_clients=5, **BUILDS[build])


def test_an_import_error_inside_the_library_is_not_passed_off_as_a_missing_dependency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: a module of the library itself fails to import (a bug, not an install to fix)
    _failing_import(monkeypatch, "secagg.paillier.nonexistent")

    # Execute / Verify: Python's own error, unchanged
    with pytest.raises(ModuleNotFoundError, match=r"secagg\.paillier\.nonexistent"):
        make_aggregator("paillier", num_clients=5)


BROKEN = {
    # what CPython raises for a gmpy2 whose compiled module is damaged or whose libgmp is gone: an
    # ImportError naming gmpy2, not a ModuleNotFoundError (the package is there and does not load)
    "gmpy2 does not load": (ImportError("/site-packages/gmpy2.cpython-311-x86_64-linux-gnu.so: file too short",
                                        name="gmpy2"), "gmpy2"),
    "gmpy2's libgmp missing": (ImportError("libgmp.so.10: cannot open shared object file: No such file or directory",
                                           name="gmpy2"), "gmpy2"),
    "phe from another version": (ImportError("cannot import name 'powmod' from 'phe.util'", name="phe.util"), "phe"),
}


@pytest.mark.parametrize("build", sorted(BUILDS))
@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_paillier_dependency_that_is_there_but_does_not_import_is_the_librarys_error(
    monkeypatch: pytest.MonkeyPatch, build: str, case: str
) -> None:
    # Prepare: the package is installed but its import fails (docs/paillier.md: "missing or does not import")
    error, package = BROKEN[case]
    _raising_import(monkeypatch, error)

    # Execute
    with pytest.raises(ConfigurationError) as refused:
        make_aggregator("paillier", num_clients=5, **BUILDS[build])

    # Verify: the package named, the loader's own words kept (nothing masked), the cause chained
    message = str(refused.value)
    assert f"aggregation 'paillier' needs {package!r}, which does not import ({error})" in message, message
    assert "pip install -e ." in message, message
    assert refused.value.__cause__ is error


def test_an_import_error_of_unknown_origin_is_not_passed_off_as_a_missing_dependency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: an ImportError that names no module (nothing says which package to install)
    error = ImportError("something went wrong")
    _raising_import(monkeypatch, error)

    # Execute / Verify: Python's own error, unchanged
    with pytest.raises(ImportError, match="something went wrong") as raised:
        make_aggregator("paillier", num_clients=5)
    assert raised.value is error


def test_a_missing_module_that_is_neither_gmpy2_nor_phe_is_not_called_one_of_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: a module one of the dependencies imports in turn is missing
    _failing_import(monkeypatch, "gmpy2_support")

    # Execute
    with pytest.raises(ConfigurationError) as refused:
        make_aggregator("paillier", num_clients=5)

    # Verify: named as what it is, not as one of secagg's own dependencies
    message = str(refused.value)
    assert "aggregation 'paillier' needs 'gmpy2_support'" in message, message
    assert "it is one of secagg's own dependencies" not in message, message
    assert "pip install -e ." in message, message


OTHER_PATHS: dict[str, Callable[[], object]] = {
    # fl_core.budget's public entry points reach the Paillier module before make_aggregator does
    "budget_aggregator": lambda: budget.budget_aggregator("paillier", 8.0, 100, num_clients=5),
    "choose": lambda: budget.choose(8.0, 100, aggregation="paillier", num_clients=5, key_bits=2048),
    "protected_bytes": lambda: budget.protected_bytes(
        "paillier", 16, 64, num_clients=5, max_samples_per_client=8, key_bits=2048
    ),
}


@pytest.mark.parametrize("path", sorted(OTHER_PATHS))
@pytest.mark.parametrize("missing", ["gmpy2", "phe"])
def test_the_byte_budget_with_a_paillier_dependency_missing_is_the_librarys_error(
    monkeypatch: pytest.MonkeyPatch, path: str, missing: str
) -> None:
    # Prepare
    _failing_import(monkeypatch, missing)

    # Execute / Verify: the loader's ConfigurationError, not Python's bare ModuleNotFoundError
    with pytest.raises(ConfigurationError, match=f"aggregation 'paillier' needs {missing!r}"):
        OTHER_PATHS[path]()
