"""fl_core.flatten / unflatten: exact or refused, with the library's own error.

A user's own loop flattens its model with ``fl_core.flatten`` before ``ClientUpdate``; a
parameter a float64 cannot hold exactly (an int64 counter beyond 2^53, a longdouble, a
complex array) must be refused naming it, never rounded or cut to its real part, and a
value that is no numeric array (strings, objects, a ragged list) raises ConfigurationError,
not numpy's ValueError.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fl_core.models import flatten, unflatten
from secagg.errors import ConfigurationError


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ([np.zeros(2), np.array([2**60 + 1])], "parameter 1: integers beyond 2\\^53"),
        ([np.array([-(2**53) - 1])], "parameter 0: integers beyond 2\\^53"),
        pytest.param(
            [np.array([1.0], dtype=np.longdouble)],
            "parameter 0: dtype",
            marks=pytest.mark.skipif(np.dtype(np.longdouble).itemsize <= 8, reason="longdouble is float64 here"),
        ),
        ([np.array([1 + 2j])], "parameter 0: complex"),
        ([np.array(["a"])], "parameter 0: dtype"),
        ([np.array([None])], "parameter 0: dtype"),
        ([[1.0, [2.0]]], "parameter 0: not a numeric array"),
        ({"kernel": np.zeros(2)}, "a list of arrays, not a mapping"),
    ],
    ids=["int-beyond-2^53", "negative-int-beyond-2^53", "longdouble", "complex", "str", "object", "ragged", "mapping"],
)
def test_flatten_refuses_what_float64_cannot_hold(params: object, match: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ComplexWarning is no refusal
        with pytest.raises(ConfigurationError, match=match):
            flatten(params)  # type: ignore[arg-type]


def test_flatten_keeps_every_exact_dtype() -> None:
    # Prepare: every dtype a float64 holds exactly, integers at the 2^53 bound included.
    params = [
        np.array([1.5], np.float16),
        np.array([0.1], np.float32),
        np.array([True, False]),
        np.array([2**53, -(2**53)], np.int64),
        np.array([7], np.uint8),
    ]
    # Execute
    vector = flatten(params)
    # Assert
    assert vector.dtype == np.float64
    assert vector.tolist() == [1.5, float(np.float32(0.1)), 1.0, 0.0, 2.0**53, -(2.0**53), 7.0]


@pytest.mark.parametrize(
    ("vector", "like", "match"),
    [
        ([0.0, 0.0], [np.zeros(2)], "vector must be a numpy array"),
        (np.array(["a", "b"]), [np.zeros(2)], "vector must be a real numeric array"),
        (np.zeros(2), [[0.0, 0.0]], "parameter 0 of like must be a numpy array"),
    ],
    ids=["list-vector", "str-vector", "list-like"],
)
def test_unflatten_refuses_non_arrays(vector: object, like: object, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        unflatten(vector, like)  # type: ignore[arg-type]


class _RefusesNumpy:
    """Stands for a tensor that cannot become a numpy array (a torch parameter that requires grad
    raises RuntimeError from ``__array__``)."""

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        raise RuntimeError("Can't call numpy() on Tensor that requires grad")


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (np.zeros((2, 3)), "a list of arrays, not one numpy array"),
        (np.zeros(3), "a list of arrays, not one numpy array"),
        (5, "a list of arrays, got int"),
        ("weights", "a list of arrays, got str"),
        ([_RefusesNumpy()], "parameter 0: not a numeric array"),
    ],
    ids=["2d-array", "1d-array", "int", "str", "array-conversion-fails"],
)
def test_flatten_refuses_a_non_list_with_the_librarys_error(params: object, match: str) -> None:
    # Execute / Assert: not numpy's ValueError (an array's truth value), a TypeError or a RuntimeError
    with pytest.raises(ConfigurationError, match=match):
        flatten(params)  # type: ignore[arg-type]


def test_flatten_still_takes_a_tuple_and_a_generator() -> None:
    arrays = [np.zeros(2), np.ones(1)]
    assert flatten(tuple(arrays)).tolist() == [0.0, 0.0, 1.0]
    assert flatten(a for a in arrays).tolist() == [0.0, 0.0, 1.0]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("like", "match"),
    [
        (None, "like must be a list of arrays, got NoneType"),
        (5, "like must be a list of arrays, got int"),
        (np.zeros(2), "like must be a list of arrays, not one numpy array"),
        ([], "at least one parameter array"),
    ],
    ids=["none", "int", "array", "empty"],
)
def test_unflatten_refuses_a_like_that_is_no_list(like: object, match: str) -> None:
    # Execute / Assert: not a TypeError from iterating it
    with pytest.raises(ConfigurationError, match=match):
        unflatten(np.zeros(2), like)  # type: ignore[arg-type]
