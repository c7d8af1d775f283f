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


@pytest.mark.parametrize(
    ("mean", "std", "match"),
    [
        (np.array(["a", "b"]), np.ones(2), "Standardiser mean: dtype <U1"),
        (np.array([None, None]), np.ones(2), "Standardiser mean: dtype object"),
        (np.zeros(2), np.array([1.0, 2.0], dtype=object), "Standardiser std: dtype object"),
        (np.array([1 + 1j, 0.0]), np.ones(2), "Standardiser mean: dtype complex128"),
        (np.array([2**53 + 1, 0]), np.ones(2), "Standardiser mean: integers beyond 2\\^53"),
    ],
    ids=["str-mean", "none-mean", "object-std", "complex-mean", "int-beyond-2^53"],
)
def test_a_scaler_a_float64_cannot_hold_is_refused(mean: object, std: object, match: str) -> None:
    # Execute / Assert: str and object raised numpy's TypeError (isfinite); a complex mean made every
    # feature complex, and bind_scaling bound its real part only; 2^53 + 1 was bound as 2^53
    with pytest.raises(ConfigurationError, match=match):
        Standardiser(mean, std)  # type: ignore[arg-type]


def test_a_scaler_of_integers_or_float32_is_held_as_the_float64_it_binds() -> None:
    # Prepare / Execute
    scaler = Standardiser(np.array([1, 2]), np.array([0.5, 4.0], dtype=np.float32))
    # Assert: what apply uses is exactly what bind_scaling binds (float64)
    assert scaler.mean.dtype == np.float64 and scaler.std.dtype == np.float64
    assert scaler.mean.tolist() == [1.0, 2.0] and scaler.std.tolist() == [0.5, 4.0]


@pytest.mark.parametrize(
    ("features", "match"),
    [
        (np.array([["x", "y"]]), "features must be real numbers, got dtype <U1"),
        (np.array([[1 + 1j, 0.0]]), "features must be real numbers, got dtype complex128"),
    ],
    ids=["str", "complex"],
)
def test_apply_refuses_features_that_are_no_real_numbers(features: np.ndarray, match: str) -> None:
    # Execute / Assert: str raised numpy's UFuncTypeError; complex came back complex
    with pytest.raises(ConfigurationError, match=match):
        Standardiser(np.zeros(2), np.ones(2)).apply(features)
