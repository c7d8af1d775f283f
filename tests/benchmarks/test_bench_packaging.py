"""Packaging: every package under secagg/ and fl_core/ ships, and so do the benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from secagg_bench.report import SCHEMA_ID, load_schema

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")


def _setuptools(root: Path) -> dict[str, Any]:
    config: dict[str, Any] = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    return config["tool"]["setuptools"]


def _packages_on_disk(root: Path, top: str) -> set[str]:
    return {
        ".".join(init.parent.relative_to(root).parts)
        for init in (root / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }


def test_every_package_under_secagg_and_fl_core_is_listed(root: Path) -> None:
    # Prepare
    listed = set(_setuptools(root)["packages"])

    # Execute
    on_disk = _packages_on_disk(root, "secagg") | _packages_on_disk(root, "fl_core")

    # Assert
    assert on_disk - listed == set(), "packages missing from [tool.setuptools] packages in pyproject.toml"
    assert {"secagg", "fl_core", "fl_core.aggregators", "secagg.masking"} <= on_disk


def test_listed_packages_exist(root: Path) -> None:
    # Prepare
    setuptools = _setuptools(root)
    mapping = setuptools.get("package-dir", {})

    # Execute
    missing = [
        name
        for name in setuptools["packages"]
        if not (root / mapping.get(name, name.replace(".", "/")) / "__init__.py").is_file()
    ]

    # Assert
    assert missing == []


def test_benchmarks_ship_as_secagg_bench_with_their_schema(root: Path) -> None:
    # Prepare
    setuptools = _setuptools(root)

    # Execute
    mapping = setuptools["package-dir"]
    data = setuptools["package-data"]["secagg_bench"]

    # Assert
    assert "secagg_bench" in setuptools["packages"]
    assert mapping == {"secagg_bench": "benchmarks"}
    assert any((root / "benchmarks").glob(pattern) for pattern in data)
    assert (root / "benchmarks" / "schemas" / "report.schema.json").is_file()


def test_bench_extra_installs_the_plotting_schema_and_peer_dependencies(root: Path) -> None:
    # Prepare
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))

    # Execute
    requirements = config["project"]["optional-dependencies"]["bench"]
    bench = {requirement.split(">")[0].split("=")[0] for requirement in requirements}

    # Assert
    assert {"matplotlib", "tqdm", "jsonschema", "flwr", "scikit-learn"} <= bench
    # The peer follows the 1.41 and 1.42 series (their secure-aggregation code is identical).
    assert "flwr>=1.41,<1.43" in config["project"]["optional-dependencies"]["bench"]


def test_schema_loads_from_the_package() -> None:
    # Execute
    schema = load_schema()

    # Assert
    assert schema["$id"] == SCHEMA_ID
    assert schema["properties"]["schema"]["const"] == SCHEMA_ID
