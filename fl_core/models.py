"""Models in plain numpy: parameters are a list of arrays, gradients too.

A :class:`Model` knows its initial parameters, its mean loss and gradient on a
batch, and its class probabilities. FedAvg never looks inside: it moves
parameters around as one flat vector (:func:`flatten`, :func:`unflatten`).
Any frozen dataclass with these three methods can be trained by :func:`fl_core.fedavg.run_fedavg`:
its kind and its fields (its settings, which shape every hospital's update) are bound into every
round (:func:`fl_core.contribution_binding.model_parameters`), so a model is a frozen dataclass
whose settings are scalar fields (a model that is no dataclass of its own, or a mutable one, is
refused).

Both models here end in a softmax over ``num_classes`` and minimise the mean
cross-entropy plus ``l2 / 2 * ||weights||^2`` (biases are not penalised). Each holds its ``l2`` as
a float with ``-0.0`` made ``0.0``, so that a zero computed another way binds as the same setting.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from secagg._validate import exact_float64, require_int, require_rng
from secagg.errors import ConfigurationError, ConfigurationTypeError

__all__ = [
    "MLP",
    "DPModel",
    "FloatArray",
    "IntArray",
    "LogisticRegression",
    "Model",
    "Params",
    "accuracy",
    "clip_factors",
    "flatten",
    "softmax",
    "softmax_cross_entropy",
    "unflatten",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Params = list[FloatArray]
"""A model's parameters: a list of float64 arrays of fixed shapes."""


class Model(Protocol):
    """What FedAvg needs from a model (a frozen dataclass: its fields are bound, module docstring)."""

    def init(self, rng: np.random.Generator) -> Params:
        """Fresh parameters (``rng`` for random initialisation)."""
        ...

    def loss_and_grad(self, params: Params, x: FloatArray, y: IntArray) -> tuple[float, Params]:
        """Mean loss on the batch ``(x, y)`` and its gradient, shaped like ``params``."""
        ...

    def predict_proba(self, params: Params, x: FloatArray) -> FloatArray:
        """Class probabilities, shape ``(len(x), num_classes)``."""
        ...


class DPModel(Model, Protocol):
    """A model that DP training can use: per-example gradients, clipped and summed in one pass."""

    def per_example_gradients(self, params: Params, x: FloatArray, y: IntArray) -> Params:
        """Each example's loss gradient, shaped like ``params`` with a leading batch axis."""
        ...

    def clipped_gradient_sum(self, params: Params, x: FloatArray, y: IntArray, l2_clip: float) -> Params:
        """The sum over the batch of each example's gradient scaled to L2 norm at most ``l2_clip``."""
        ...


def _exact_float64(index: int, param: object) -> FloatArray:
    """``param`` as a flat float64 array, exactly (:func:`secagg._validate.exact_float64`); ConfigurationError
    naming it when a float64 cannot hold it (integers beyond 2^53, longdouble, complex, strings, objects,
    ragged lists, a tensor numpy cannot read)."""
    try:
        array = np.asarray(param)
    except (ValueError, TypeError, RuntimeError) as exc:  # RuntimeError: a torch tensor that requires grad
        raise ConfigurationError(f"parameter {index}: not a numeric array ({exc})") from None
    who = f"parameter {index}"
    if array.dtype.kind == "c":
        raise ConfigurationError(
            f"{who}: complex values would lose their imaginary part; give the real and imaginary parts "
            "as two real parameters"
        )
    exact = exact_float64(who, array)
    if exact is None:
        raise ConfigurationError(
            f"{who}: dtype {array.dtype} cannot be flattened exactly (floats up to float64, bool or "
            "integers up to 2^53 only)"
        )
    return exact


def _param_list(name: str, params: object) -> list[object]:
    """``params`` (a list, tuple or other iterable of arrays) as a list; ConfigurationTypeError for one
    numpy array (its rows would be read as the parameters), a mapping (its keys), a str or bytes, or a
    value that is not iterable."""
    if isinstance(params, np.ndarray):
        raise ConfigurationTypeError(f"{name} must be a list of arrays, not one numpy array (give [array])")
    if isinstance(params, Mapping):
        raise ConfigurationTypeError(f"{name} must be a list of arrays, not a mapping (it would read the keys)")
    if isinstance(params, (str, bytes, bytearray)):
        raise ConfigurationTypeError(f"{name} must be a list of arrays, got {type(params).__name__}")
    if not isinstance(params, Iterable):
        raise ConfigurationTypeError(f"{name} must be a list of arrays, got {type(params).__name__}")
    try:
        return list(params)
    except TypeError:  # an __iter__ that refuses
        raise ConfigurationTypeError(f"{name} must be a list of arrays, got {type(params).__name__}") from None


def flatten(params: Sequence[FloatArray]) -> FloatArray:
    """All parameters in one float64 vector, in list order, each in C order.

    Exact: float16/32/64, bool and integers up to 2^53 in magnitude; any other parameter
    (a larger integer, longdouble, complex, a string or object array, a ragged list, a tensor
    numpy cannot read) raises ConfigurationError naming its position; ``params`` that is no list
    of arrays (one array, a mapping: give its values as a list, a str) ConfigurationTypeError."""
    given = _param_list("params", params)
    if not given:
        raise ConfigurationError("a model needs at least one parameter array")
    return np.concatenate([_exact_float64(index, p) for index, p in enumerate(given)])


def unflatten(vector: FloatArray, like: Sequence[FloatArray]) -> Params:
    """Split ``vector`` back into float64 arrays shaped like ``like`` (inverse of :func:`flatten`).

    ConfigurationError for a vector that is not a one-dimensional real numeric numpy array of
    the parameters' total size, a ``like`` that is no list of arrays, or an entry that is no numpy array."""
    if not isinstance(vector, np.ndarray):
        raise ConfigurationError(f"vector must be a numpy array, got {type(vector).__name__}")
    if vector.dtype.kind not in "biuf":
        raise ConfigurationError(f"vector must be a real numeric array, got dtype {vector.dtype}")
    shapes: list[FloatArray] = []
    for index, p in enumerate(_param_list("like", like)):
        if not isinstance(p, np.ndarray):
            raise ConfigurationError(f"parameter {index} of like must be a numpy array, got {type(p).__name__}")
        shapes.append(p)
    if not shapes:  # as flatten: np.split would give one piece for no parameter
        raise ConfigurationError("a model needs at least one parameter array")
    sizes = [int(np.prod(p.shape)) for p in shapes]
    if vector.ndim != 1 or vector.shape[0] != sum(sizes):
        raise ConfigurationError(f"vector of shape {vector.shape} does not fit parameters of {sum(sizes)} values")
    pieces = np.split(np.asarray(vector, dtype=np.float64), np.cumsum(sizes)[:-1])
    return [piece.reshape(p.shape).copy() for piece, p in zip(pieces, shapes, strict=True)]


def softmax(logits: FloatArray) -> FloatArray:
    """Row-wise softmax; shifts by the row maximum first so that exp never overflows."""
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities: FloatArray = exp / exp.sum(axis=1, keepdims=True)
    return probabilities


def softmax_cross_entropy(logits: FloatArray, y: IntArray) -> tuple[float, FloatArray]:
    """Mean cross-entropy of ``softmax(logits)`` against labels ``y``, and its
    gradient with respect to the logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_normaliser = np.log(np.exp(shifted).sum(axis=1))
    rows = np.arange(y.shape[0])
    loss = float(np.mean(log_normaliser - shifted[rows, y]))
    gradient = np.exp(shifted - log_normaliser[:, None])
    gradient[rows, y] -= 1.0
    gradient /= y.shape[0]
    return loss, gradient


def _per_example_logit_grads(logits: FloatArray, y: IntArray) -> FloatArray:
    """d(cross-entropy of example i)/d(logits of example i), one row per example (not averaged)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    gradient: FloatArray = np.exp(shifted)
    gradient /= gradient.sum(axis=1, keepdims=True)
    gradient[np.arange(y.shape[0]), y] -= 1.0
    return gradient


def clip_factors(squared_norms: FloatArray, l2_clip: float) -> FloatArray:
    """``min(1, l2_clip / ||g_i||)`` per example: scaling g_i by it bounds its L2 norm by ``l2_clip``."""
    if not (np.isfinite(l2_clip) and l2_clip > 0):
        raise ConfigurationError(f"l2_clip must be a positive number, got {l2_clip}")
    norms = np.sqrt(squared_norms)
    factors: FloatArray = np.minimum(1.0, l2_clip / np.maximum(norms, np.finfo(np.float64).tiny))
    return factors


def _layer_sq_norms(inputs: FloatArray, output_grads: FloatArray) -> FloatArray:
    """Per-example squared norm of a dense layer's gradient ``x_i (outer) g_i`` plus its bias ``g_i``:
    ``(||x_i||^2 + 1) ||g_i||^2`` (the norm of an outer product is the product of the norms)."""
    sq: FloatArray = (np.einsum("ij,ij->i", inputs, inputs) + 1.0) * np.einsum("ij,ij->i", output_grads, output_grads)
    return sq


def _check_dp_model(l2: float) -> None:
    if l2 != 0.0:
        raise ConfigurationError(
            "per-example gradients cover the cross-entropy only: train with DP at l2 = 0 "
            "(an L2 penalty is data-independent and can be applied after the noised step)"
        )


def accuracy(model: Model, params: Params, x: FloatArray, y: IntArray) -> float:
    """Fraction of ``x`` whose most probable class is ``y``."""
    return float(np.mean(model.predict_proba(params, x).argmax(axis=1) == y))


def _check_sizes(num_features: int, num_classes: int, l2: float) -> None:
    require_int("num_features", num_features)
    require_int("num_classes", num_classes)
    if num_features < 1 or num_classes < 2:
        raise ConfigurationError(f"need >= 1 feature and >= 2 classes, got {num_features} and {num_classes}")
    # A real number only: a bool (held as 1.0 or 0.0, unsaid), an array or a str is refused here,
    # not by numpy's TypeError in the check below or in float(l2) (_canonical_l2).
    if isinstance(l2, (bool, np.bool_)) or not isinstance(l2, (int, float, np.integer, np.floating)):
        raise ConfigurationError(f"l2 must be a real number (int or float), got {type(l2).__name__}")
    if not (np.isfinite(l2) and l2 >= 0):
        raise ConfigurationError(f"l2 must be a non-negative number, got {l2}")


def _canonical_l2(model: LogisticRegression | MLP) -> None:
    """Hold ``model.l2`` as a Python float, ``-0.0`` as ``0.0`` (``+ 0.0``): it is bound into every
    round (:func:`fl_core.contribution_binding.model_parameters`, by its IEEE-754 bits and type), and
    an ``l2`` of ``-0.0``, ``0`` or ``np.float64(0)`` trains exactly as ``0.0`` (the penalty and its
    gradient are multiplied by it; a zero's sign never survives the quantization), so hospitals
    holding one or the other must not be refused from each other's session."""
    object.__setattr__(model, "l2", float(model.l2) + 0.0)


@dataclass(frozen=True)
class LogisticRegression:
    """Multinomial logistic regression: ``softmax(x W + b)``.

    Parameters ``[W (num_features x num_classes), b (num_classes)]``, initialised
    to zero (the loss is convex, so no symmetry to break). With two classes this
    is ordinary logistic regression, written with one logit per class.
    """

    num_features: int
    num_classes: int = 2
    l2: float = 0.0

    def __post_init__(self) -> None:
        _check_sizes(self.num_features, self.num_classes, self.l2)
        _canonical_l2(self)

    def init(self, rng: np.random.Generator) -> Params:
        """Zero weights and biases (``rng`` unused, but refused unless a ``numpy.random.Generator``, as
        at every ``rng``: ConfigurationTypeError)."""
        require_rng("rng", rng)
        return [np.zeros((self.num_features, self.num_classes)), np.zeros(self.num_classes)]

    def loss_and_grad(self, params: Params, x: FloatArray, y: IntArray) -> tuple[float, Params]:
        """Mean cross-entropy (+ L2 on W) and its gradient."""
        weights, bias = params
        loss, d_logits = softmax_cross_entropy(x @ weights + bias, y)
        loss += 0.5 * self.l2 * float(np.sum(weights * weights))
        return loss, [x.T @ d_logits + self.l2 * weights, d_logits.sum(axis=0)]

    def per_example_gradients(self, params: Params, x: FloatArray, y: IntArray) -> Params:
        """Each example's cross-entropy gradient, shaped like ``params`` with a leading batch axis."""
        _check_dp_model(self.l2)
        weights, bias = params
        d_logits = _per_example_logit_grads(x @ weights + bias, y)
        return [x[:, :, None] * d_logits[:, None, :], d_logits]

    def clipped_gradient_sum(self, params: Params, x: FloatArray, y: IntArray, l2_clip: float) -> Params:
        """``sum_i min(1, l2_clip / ||g_i||) g_i`` over the batch, without materialising any g_i.

        g_i is example i's cross-entropy gradient over all parameters (a rank-one weight
        gradient and a bias gradient, so ``||g_i||^2 = (||x_i||^2 + 1) ||d_i||^2``): one matrix
        product, no loop over examples. Each clipped term has L2 norm at most ``l2_clip``.
        """
        _check_dp_model(self.l2)
        weights, bias = params
        d_logits = _per_example_logit_grads(x @ weights + bias, y)
        scaled = d_logits * clip_factors(_layer_sq_norms(x, d_logits), l2_clip)[:, None]
        return [x.T @ scaled, scaled.sum(axis=0)]

    def predict_proba(self, params: Params, x: FloatArray) -> FloatArray:
        """``softmax(x W + b)``."""
        weights, bias = params
        return softmax(x @ weights + bias)


@dataclass(frozen=True)
class MLP:
    """One hidden tanh layer and a softmax output: ``softmax(tanh(x W1 + b1) W2 + b2)``.

    Parameters ``[W1, b1, W2, b2]``; weights start Glorot-uniform, biases at zero.
    """

    num_features: int
    num_classes: int
    hidden: int = 32
    l2: float = 0.0

    def __post_init__(self) -> None:
        _check_sizes(self.num_features, self.num_classes, self.l2)
        _canonical_l2(self)
        if require_int("hidden", self.hidden) < 1:
            raise ConfigurationError(f"hidden must be at least 1, got {self.hidden}")

    def init(self, rng: np.random.Generator) -> Params:
        """Glorot-uniform weights drawn from ``rng`` (a ``numpy.random.Generator``, ConfigurationTypeError
        otherwise), zero biases."""
        require_rng("rng", rng)

        def glorot(fan_in: int, fan_out: int) -> FloatArray:
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            return rng.uniform(-limit, limit, size=(fan_in, fan_out))

        return [
            glorot(self.num_features, self.hidden),
            np.zeros(self.hidden),
            glorot(self.hidden, self.num_classes),
            np.zeros(self.num_classes),
        ]

    def loss_and_grad(self, params: Params, x: FloatArray, y: IntArray) -> tuple[float, Params]:
        """Mean cross-entropy (+ L2 on W1, W2) and its gradient by backpropagation."""
        w1, b1, w2, b2 = params
        hidden = np.tanh(x @ w1 + b1)
        loss, d_logits = softmax_cross_entropy(hidden @ w2 + b2, y)
        loss += 0.5 * self.l2 * float(np.sum(w1 * w1) + np.sum(w2 * w2))
        d_hidden = (d_logits @ w2.T) * (1.0 - hidden * hidden)
        return loss, [
            x.T @ d_hidden + self.l2 * w1,
            d_hidden.sum(axis=0),
            hidden.T @ d_logits + self.l2 * w2,
            d_logits.sum(axis=0),
        ]

    def _per_example_backward(self, params: Params, x: FloatArray, y: IntArray) -> tuple[FloatArray, ...]:
        _check_dp_model(self.l2)
        w1, b1, w2, b2 = params
        hidden = np.tanh(x @ w1 + b1)
        d_logits = _per_example_logit_grads(hidden @ w2 + b2, y)
        d_hidden = (d_logits @ w2.T) * (1.0 - hidden * hidden)
        return hidden, d_logits, d_hidden

    def per_example_gradients(self, params: Params, x: FloatArray, y: IntArray) -> Params:
        """Each example's cross-entropy gradient, shaped like ``params`` with a leading batch axis."""
        hidden, d_logits, d_hidden = self._per_example_backward(params, x, y)
        return [x[:, :, None] * d_hidden[:, None, :], d_hidden, hidden[:, :, None] * d_logits[:, None, :], d_logits]

    def clipped_gradient_sum(self, params: Params, x: FloatArray, y: IntArray, l2_clip: float) -> Params:
        """``sum_i min(1, l2_clip / ||g_i||) g_i`` over the batch, without materialising any g_i.

        Both layers' per-example gradients are outer products plus biases, so
        ``||g_i||^2 = (||x_i||^2 + 1) ||dh_i||^2 + (||h_i||^2 + 1) ||dz_i||^2``; the clipped sum
        is then two matrix products weighted by the clip factors (no loop over examples).
        """
        hidden, d_logits, d_hidden = self._per_example_backward(params, x, y)
        squared = _layer_sq_norms(x, d_hidden) + _layer_sq_norms(hidden, d_logits)
        factors = clip_factors(squared, l2_clip)[:, None]
        d_hidden = d_hidden * factors
        d_logits = d_logits * factors
        return [x.T @ d_hidden, d_hidden.sum(axis=0), hidden.T @ d_logits, d_logits.sum(axis=0)]

    def predict_proba(self, params: Params, x: FloatArray) -> FloatArray:
        """Softmax of the output layer."""
        w1, b1, w2, b2 = params
        return softmax(np.tanh(x @ w1 + b1) @ w2 + b2)
