"""Standardiser: a scaler that would turn every feature into NaN, or silently read a negative
standard deviation as zero, is refused when it is built; lists raise the library's error."""

from __future__ import annotations

import numpy as np
import pytest

from fl_core.data import Standardiser
from secagg.errors import ConfigurationError


@pytest.mark.parametrize(
    ("mean", "std", "match"),
    [
        (np.zeros(2), np.array([1.0, np.nan]), "std must be finite"),
        (np.array([np.inf, 0.0]), np.ones(2), "mean must be finite"),
        (np.zeros(2), np.array([1.0, -1.0]), "std must be non-negative, got -1.0 for feature 1"),
        ([0.0, 0.0], np.ones(2), "mean must be a numpy array, got list"),
        (np.zeros(2), [1.0, 1.0], "std must be a numpy array, got list"),
    ],
    ids=["nan-std", "inf-mean", "negative-std", "list-mean", "list-std"],
)
def test_a_scaler_that_cannot_scale_is_refused(mean: object, std: object, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        Standardiser(mean, std)  # type: ignore[arg-type]


def test_apply_refuses_a_list_with_the_librarys_error() -> None:
    with pytest.raises(ConfigurationError, match="features must be a numpy array, got list"):
        Standardiser(np.zeros(2), np.ones(2)).apply([[1.0, 2.0]])  # type: ignore[arg-type]


def test_a_constant_feature_is_still_centred_only() -> None:
    # A zero std (a constant feature) stays allowed: centred, not scaled.
    scaled = Standardiser(np.array([1.0, 0.0]), np.array([0.0, 2.0])).apply(np.array([[3.0, 4.0]]))
    assert scaled.tolist() == [[2.0, 2.0]]
