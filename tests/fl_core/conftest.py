"""Shared fixtures for the fl_core tests: small synthetic federations (no scikit-learn)."""

from __future__ import annotations

import numpy as np
import pytest

from fl_core.data import ClientData


def synthetic_clients(
    sizes: tuple[int, ...] = (40, 25, 60, 15, 35), num_features: int = 6, seed: int = 0
) -> tuple[list[ClientData], np.ndarray, np.ndarray]:
    """Two Gaussian classes (Bayes accuracy about 98%), one client per size, plus a test set."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=num_features)
    direction *= 2.0 / np.linalg.norm(direction)  # classes 4 standard deviations apart

    def draw(count: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 2, size=count)
        features = rng.normal(size=(count, num_features)) + np.outer(2 * labels - 1, direction)
        return features, labels.astype(np.int64)

    clients = [ClientData(client, *draw(size)) for client, size in enumerate(sizes)]
    test_features, test_labels = draw(200)
    return clients, test_features, test_labels


@pytest.fixture
def federation() -> tuple[list[ClientData], np.ndarray, np.ndarray]:
    """Five clients of unequal sizes and a 200-row test set."""
    return synthetic_clients()
