"""Fixtures shared by the Flower integration tests (``loaded``, ``paillier_keys``).

Flower is imported inside ``loaded`` only, so that the other integration tests (Keras,
PyTorch) still collect where Flower (an optional extra) is not installed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from .paillier_keys import key_files


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
