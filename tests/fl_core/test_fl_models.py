"""Models: analytic gradients match finite differences; flatten/unflatten round-trip."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fl_core.models import MLP, LogisticRegression, Model, accuracy, flatten, softmax, unflatten
from secagg.errors import ConfigurationError


def numerical_gradient(model: Model, params: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Central differences of the loss along every flattened coordinate."""
    vector = flatten(params)
    gradient = np.empty_like(vector)
    eps = 1e-6
    for i in range(vector.shape[0]):
        step = np.zeros_like(vector)
        step[i] = eps
        plus, _ = model.loss_and_grad(unflatten(vector + step, params), x, y)
        minus, _ = model.loss_and_grad(unflatten(vector - step, params), x, y)
        gradient[i] = (plus - minus) / (2 * eps)
    return gradient


@pytest.mark.parametrize(
    "model",
    [
        LogisticRegression(4, 2),
        LogisticRegression(4, 3, l2=0.1),
        MLP(4, 3, hidden=5),
        MLP(4, 2, hidden=3, l2=0.05),
    ],
    ids=["logreg", "logreg-3class-l2", "mlp", "mlp-l2"],
)
def test_gradient_matches_finite_differences(model: LogisticRegression | MLP) -> None:
    # Prepare: random parameters (not the zero init, so every path is exercised) and a batch.
    rng = np.random.default_rng(1)
    params = [rng.normal(scale=0.5, size=p.shape) for p in model.init(rng)]
    x = rng.normal(size=(7, 4))
    y = rng.integers(0, model.num_classes, size=7)
    # Execute
    _, analytic = model.loss_and_grad(params, x, y)
    numeric = numerical_gradient(model, params, x, y)
    # Assert
    np.testing.assert_allclose(flatten(analytic), numeric, rtol=1e-5, atol=1e-7)


@settings(max_examples=50, deadline=None)
@given(shapes=st.lists(st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple), min_size=1, max_size=5))
def test_flatten_unflatten_round_trip(shapes: list[tuple[int, ...]]) -> None:
    # Prepare
    rng = np.random.default_rng(len(shapes))
    params = [rng.normal(size=shape) for shape in shapes]
    # Execute
    vector = flatten(params)
    restored = unflatten(vector, params)
    # Assert: same shapes, same values, and the vector is the concatenation in order.
    assert vector.shape == (sum(p.size for p in params),)
    assert [r.shape for r in restored] == [p.shape for p in params]
    for original, back in zip(params, restored, strict=True):
        np.testing.assert_array_equal(original, back)
    np.testing.assert_array_equal(vector[: params[0].size], params[0].ravel())


def test_unflatten_refuses_wrong_length() -> None:
    params = [np.zeros((2, 3)), np.zeros(3)]
    with pytest.raises(ConfigurationError, match="does not fit"):
        unflatten(np.zeros(8), params)


def test_softmax_is_stable_for_large_logits() -> None:
    probabilities = softmax(np.array([[1000.0, 0.0], [-1000.0, 1000.0]]))
    assert np.all(np.isfinite(probabilities))
    np.testing.assert_allclose(probabilities, [[1.0, 0.0], [0.0, 1.0]])


def test_models_refuse_bad_sizes() -> None:
    with pytest.raises(ConfigurationError):
        LogisticRegression(0, 2)
    with pytest.raises(ConfigurationError):
        MLP(3, 1)
    with pytest.raises(ConfigurationError):
        MLP(3, 2, hidden=0)


def test_mlp_init_is_seeded_and_nonzero() -> None:
    model = MLP(5, 3, hidden=4)
    first = model.init(np.random.default_rng(7))
    again = model.init(np.random.default_rng(7))
    assert np.any(first[0] != 0)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)


def test_accuracy_counts_argmax_hits() -> None:
    model = LogisticRegression(1, 2)
    params = [np.array([[-1.0, 1.0]]), np.zeros(2)]  # class 1 iff x > 0
    x = np.array([[-2.0], [3.0], [1.0], [-1.0]])
    assert accuracy(model, params, x, np.array([0, 1, 0, 0])) == 0.75
