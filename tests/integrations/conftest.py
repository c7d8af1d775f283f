"""Fixtures shared by the Flower integration tests (``loaded``, ``paillier_keys``, ``example_keys``,
``server_identity``).

Flower is imported inside the fixtures that use it only, so that the other integration tests
(Keras, PyTorch) still collect where Flower (an optional extra) is not installed.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from .paillier_keys import key_files


@pytest.fixture
def server_identity() -> Iterator[None]:
    """Messages are created as in a ServerApp process (Flower's task identity set for the test,
    then restored). The Flower test modules use it with ``pytest.mark.usefixtures``."""
    from .flower_harness import restore_task_identity, set_task_identity  # noqa: PLC0415  (imports Flower)

    previous = set_task_identity()
    yield
    restore_task_identity(previous)


@pytest.fixture
def loaded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The data size of every array ``np.load``ed (Flower's ``Array.numpy``) during the test."""
    from flwr.app import Array  # noqa: PLC0415

    sizes: list[int] = []
    original = Array.numpy

    def spy(self: Array) -> np.ndarray:
        sizes.append(len(self.data))
        return original(self)

    monkeypatch.setattr(Array, "numpy", spy)
    return sizes


@pytest.fixture(scope="module")
def paillier_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A 3-of-4 key: the public-key file and share files 1..4 (dealt once per test module)."""
    return key_files(tmp_path_factory.mktemp("ceremony"), 4, 3)


@pytest.fixture(scope="session")
def example_ceremonies() -> dict[int, Path]:
    """The key directories of the example's ceremonies run so far, by number of hospitals."""
    return {}


@pytest.fixture(scope="module")
def example_ceremony(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, example_ceremonies: dict[int, Path]
) -> Path:
    """The Flower example's key ceremony for the module's ``NODES`` hospitals, run once per session
    for each number of hospitals: no test writes to it (each gets its own copy, ``example_keys``)."""
    from .flower_example import make_keys  # noqa: PLC0415  (imports Flower: only where it is used)

    nodes = int(request.module.NODES)
    if nodes not in example_ceremonies:
        base = tmp_path_factory.mktemp("ceremony")
        result = make_keys(base / "keys", nodes, base)
        assert result.returncode == 0, result.stderr
        example_ceremonies[nodes] = base / "keys"
    return example_ceremonies[nodes]


@pytest.fixture
def example_keys(example_ceremony: Path, tmp_path: Path) -> Path:
    """This test's copy of the ceremony's key directory (the nodes keep their DP budgets there)."""
    return Path(shutil.copytree(example_ceremony, tmp_path / "keys"))
