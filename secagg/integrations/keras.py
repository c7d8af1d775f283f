"""Keras 3 adapter: model weights as one float64 vector, and secure FedAvg of models.

Keras hands out a model's weights as numpy arrays (``model.get_weights()``,
whatever the backend: torch, JAX or TensorFlow) and takes them back with
``model.set_weights``. Secure aggregation sums vectors. This module converts
between the two, the same way :mod:`secagg.integrations.torch` does for PyTorch:

- :func:`flatten_weights` / :func:`unflatten_weights`: a list of numpy arrays
  (what ``get_weights`` returns; named by position) or a mapping of names to
  arrays to one float64 vector plus a :class:`WeightsLayout` (names, shapes,
  dtypes, offsets), and back (:mod:`secagg.integrations._keras_weights`).
- :func:`flatten_model` / :func:`load_into_model`: the same for a Keras layer or
  model (all its weights or the trainable ones), each weight named by its
  variable path (:mod:`secagg.integrations._keras_names`: Keras's automatic
  names renumbered from zero, explicit names kept), written back in place.
- :func:`aggregate_models`: the weighted mean of the updates (local minus
  global) of several models through any aggregator with the
  :class:`fl_core.aggregators.Aggregator` interface (``plain``,
  ``plain-quantized``, ``secagg``, ``secagg+``, ``paillier``), returned as a new
  list of weights for ``set_weights``.
- :func:`model_digest` / :func:`hospital_update`: the digest of a model (its weight names,
  shapes, dtypes and values) and a hospital's update built from the model it received and
  the one it trained, declaring the received model's digest; the aggregation binds the
  global model's digest and refuses a hospital that trained from another (``result.refused``).
- ``local_weights`` (with ``trainable_only=True``): the batch-norm statistics (``moving_mean``,
  ``moving_variance``) each hospital keeps as its own (FedBN), left out of the binding, their names bound instead
  (:mod:`secagg.integrations._keras_local`; :func:`model_digest` says what it gives up).

Exactness: every value of float16, float32 and float64 and of the narrow float
formats Keras uses through ``ml_dtypes`` (bfloat16, the float8, float6 and
float4 formats; checked against ``ml_dtypes.finfo``) is exactly a float64, so
``unflatten(flatten(w)) == w`` bit for bit, signed zeros and infinities
included; a NaN comes back as a NaN (its payload bits are not kept). Complex
arrays (complex64/128, ml_dtypes' complex32 and bcomplex32) occupy two entries
per element, real then imaginary. Integer and boolean weights (counters, masks, int8-quantized
kernels) are exact up to 2^53 in magnitude; larger values are refused, as are
dtypes a float64 cannot hold (``longdouble``, strings, objects), with a
:class:`~secagg.errors.ConfigurationError` naming the weight. These dtype rules are in
:mod:`secagg.integrations._keras_dtypes`. A model with a ``keras.layers.TorchModuleWrapper``
(torch backend) whose PyTorch module has buffers (persistent or not) or extra state (``get_extra_state``) is refused
by every function that reads a model's weights, naming the layer and which of the two: neither is a
Keras weight, so they would be summed and bound by nobody (:mod:`secagg.integrations._keras_torch`;
for buffers, use the PyTorch adapter; extra state, no tensor, no adapter sums).

Clipping and rounding are the aggregator's, per weight, exactly as for the
PyTorch adapter: each weight is its own segment (:meth:`WeightsLayout.segments`)
with its own clip (discovered securely by default, :mod:`secagg.ranges`)
and its own clipped count in the secure sum; integer and boolean weights are
exact integer segments (an update that is not a whole number within
``+-(2^(bits-1) - 1)`` is refused, never clipped). An
aggregate is converted back to each weight's dtype by numpy's rounding for
floats (ml_dtypes' for the narrow formats), half to even for integers (refused
if out of the dtype's range) and for bool (refused if not finite or outside 0
and 1). A
value a floating dtype cannot hold is refused, never turned into an infinity, a
NaN or the dtype's largest value: beyond its range (more than half a unit in the
last place past the largest finite value), an infinity or NaN the format has no
code for (float8_e4m3fn, the float6 and float4 formats), a negative value for an
unsigned format (float8_e8m0fnu).

Keras is imported only by the functions that take a model
(``pip install -e '.[keras]'`` from the root of a clone); the weight-list functions need only numpy.
Keras 3 with the torch backend: ``KERAS_BACKEND=torch``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from secagg._validate import require_bool
from secagg.errors import ConfigurationError
from secagg.integrations._extras import require
from secagg.integrations._keras_dtypes import EXACT_INTEGER_LIMIT
from secagg.integrations._keras_local import bound_variables, local_names
from secagg.integrations._keras_model import model_variables, named_arrays
from secagg.integrations._keras_names import weight_names
from secagg.integrations._keras_weights import (
    WeightsLayout,
    WeightSpec,
    flatten_named,
    flatten_weights,
    unflatten_weights,
)
from secagg.integrations._layout import require_layout
from secagg.integrations._model_binding import FlatModel, bound_digest, declared_update
from secagg.integrations._ranges import aggregate_flat_models, new_global
from secagg.ranges import RangeDiscovery

if TYPE_CHECKING:
    from fl_core.aggregators.base import AggregationResult, Aggregator, ClientUpdate, DropoutStage

__all__ = [
    "EXACT_INTEGER_LIMIT",
    "ModelAggregation",
    "WeightSpec",
    "WeightsLayout",
    "aggregate_models",
    "flatten_model",
    "flatten_weights",
    "hospital_update",
    "load_into_model",
    "model_digest",
    "named_weights",
    "unflatten_weights",
]

FloatVector = npt.NDArray[np.float64]

LOGGER = logging.getLogger(__name__)
"""Where :func:`aggregate_models` logs, at DEBUG, the full text of a foreign exception that withheld a
hospital (the round's report names only the exception's type)."""


def _keras() -> Any:
    return require("keras", "keras")


def _model_variables(model: Any, trainable_only: bool) -> list[Any]:
    return model_variables(_keras(), model, trainable_only)


def flatten_model(model: Any, *, trainable_only: bool = False) -> tuple[FloatVector, WeightsLayout]:
    """A Keras model's (or layer's) weights as one float64 vector and its layout.

    By default every weight ``model.get_weights()`` returns, in that order
    (trainable and non-trainable, e.g. batch-norm statistics); only the
    trainable ones if ``trainable_only``. The layout names each weight by its
    variable path inside the model (``"dense/kernel"``), and the names are bound:
    a model whose weights come in another order or under other names has another
    layout. Keras's automatic names (``dense_3``, from a process-wide counter) are
    renumbered from zero in weight order, so two instances of one architecture
    agree; explicit layer names are kept (:mod:`secagg.integrations._keras_names`).
    See :func:`flatten_weights` for the dtypes.
    """
    return _flatten_variables(model, _model_variables(model, trainable_only))


def _flatten_variables(model: Any, variables: Sequence[Any]) -> tuple[FloatVector, WeightsLayout]:
    return flatten_named(named_arrays(_keras(), model, variables))


def _frozen(model: Any, trainable_only: bool, local: tuple[str, ...] = ()) -> FlatModel | None:
    """With ``trainable_only``, a Keras model's non-trainable weights (a frozen layer's kernels,
    batch-norm statistics; by their :func:`flatten_model` names) but the ``local`` ones, which shape
    training without being summed, so a round binds them into the digest of the model a hospital
    trained from; None otherwise, and for a weight list or mapping (every array is sent; ``local``
    is refused there: it names a model's weights)."""
    if isinstance(model, np.ndarray | Sequence | Mapping):
        if local:
            raise ConfigurationError(
                "local_weights names a Keras model's weights; a weight list or mapping holds only what is summed"
            )
        return None
    if not trainable_only:
        return None
    return _flatten_variables(model, bound_variables(_keras(), model, local))


def named_weights(model: Any, *, trainable_only: bool = False) -> dict[str, npt.NDArray[Any]]:
    """A Keras model's weights by their :func:`flatten_model` names, in weight order (new arrays).

    For a transport that carries names, e.g. a Flower ``ArrayRecord`` of ``Array``s: the names
    travel with the weights, and ``load_into_model(model, *flatten_weights(received))`` refuses
    weights named or ordered otherwise."""
    vector, layout = flatten_model(model, trainable_only=trainable_only)
    return dict(zip(layout.names, unflatten_weights(vector, layout), strict=True))


def load_into_model(model: Any, vector: npt.ArrayLike, layout: WeightsLayout, *, trainable_only: bool = False) -> None:
    """Write ``vector`` into the weights of ``model`` in place.

    The weights are those of :func:`flatten_model` with the same
    ``trainable_only``; each variable keeps its dtype. A layout from a model (or a
    mapping) must name the model's weights in the model's order (:func:`flatten_model`'s
    names); one from a weight list (:attr:`WeightsLayout.positional`) is written by
    position, as ``set_weights`` does. Raises ConfigurationError, with nothing
    written, if the model has another number of weights or a name, shape or dtype differs.
    """
    targets = _model_variables(model, trainable_only)
    if len(targets) != len(require_layout(layout).specs):
        raise ConfigurationError(f"the model has {len(targets)} weights, the layout {len(layout.specs)}")
    names = weight_names(model, targets)
    positional = isinstance(layout, WeightsLayout) and layout.positional
    for target, name, spec in zip(targets, names, layout.specs, strict=True):
        if not positional and name != spec.name:
            raise ConfigurationError(
                f"weight {spec.name!r}: the model holds {name!r} there (weights named or ordered otherwise)"
            )
        if tuple(int(d) for d in target.shape) != spec.shape or str(target.dtype) != spec.dtype:
            raise ConfigurationError(
                f"weight {spec.name!r}: the model holds {target.dtype} {tuple(target.shape)} "
                f"at that position ({name}), the layout {spec.dtype} {spec.shape}"
            )
    for target, array in zip(targets, unflatten_weights(vector, layout), strict=True):
        target.assign(array)


def _flatten_any(model: Any, trainable_only: bool) -> tuple[FloatVector, WeightsLayout]:
    """A Keras model or layer (:func:`flatten_model`), or a list or mapping of arrays (:func:`flatten_weights`)."""
    require_bool("trainable_only", trainable_only)
    if isinstance(model, np.ndarray | Sequence | Mapping):
        return flatten_weights(model)  # a list or mapping of arrays, or refused there
    return flatten_model(model, trainable_only=trainable_only)


def model_digest(model: Any, *, trainable_only: bool = False, local_weights: Sequence[str] = ()) -> bytes:
    """The 32-byte digest of a Keras model's weights (or of a weight list or mapping): every
    weight's name (its variable path, :func:`flatten_model`; a list's positions), dtype and
    shape, in order, and its values. The digest of the global model a round hands out;
    :func:`aggregate_models` binds it. With ``trainable_only`` the non-trainable weights, not summed,
    are bound after the trainable ones (names, dtypes, shapes, values): they shape every hospital's
    training (a frozen backbone), so two models that differ only there have two digests.

    ``local_weights`` (default none; only with ``trainable_only=True``, only for a model) names
    the batch-norm statistics each hospital keeps as its own, FedBN-style (``"norm/moving_mean"``,
    ``"norm/moving_variance"``: :func:`flatten_model`'s names): their values are left out of the
    digest, their names (sorted) bound into it, so a hospital that keeps another set is refused.
    Names, not a switch such as "every batch norm's statistics": a frozen backbone's own batch norm
    stays bound unless named, and a name that is no non-trainable weight of the model (a typo, a
    trainable weight, which is summed), a non-trainable weight that is no ``BatchNormalization``'s
    ``moving_mean`` or ``moving_variance`` (a frozen kernel stays bound), a name that matches two
    weights, a duplicate or a non-``str`` is refused (ConfigurationError). What it gives up: those
    statistics are never aggregated, each hospital's stay on its machine, the global model's are
    the server's initial ones (meaningless for any hospital's data), and each hospital evaluates
    with its own."""
    local = local_names(local_weights, trainable_only)
    return bound_digest(_flatten_any(model, trainable_only), frozen=_frozen(model, trainable_only, local), local=local)


def hospital_update(
    client_id: int,
    received: Any,
    local: Any,
    *,
    num_samples: int,
    trainable_only: bool = False,
    local_weights: Sequence[str] = (),
) -> ClientUpdate:
    """A hospital's update for an fl_core aggregator: ``local`` (the model it trained) minus
    ``received`` (the global model it trained from), weighted by ``num_samples``, declaring
    ``model_digest(received)``. Aggregated with ``model_digest=model_digest(global_model)``, an
    update from another model is refused with its reason (``result.refused``). ConfigurationError
    naming the client if the two models' layouts differ (names, order, shapes, dtypes). With
    ``trainable_only`` the declared digest binds ``received``'s non-trainable weights too
    (:func:`model_digest`); ``local``'s may differ (batch-norm statistics move in training).
    ``local_weights`` (:func:`model_digest`) leaves the named ones out of that binding: the hospital
    trains from the global trainable weights loaded into its own model, its statistics kept; the
    server passes the same names to :func:`model_digest`, or this hospital is refused."""
    names = local_names(local_weights, trainable_only)
    flat = [_flatten_any(model, trainable_only) for model in (received, local)]
    frozen = _frozen(received, trainable_only, names)
    _frozen(local, trainable_only, names)  # the same names must be the trained model's non-trainable weights
    return declared_update(client_id, flat[0], flat[1], num_samples, frozen=frozen, local_names=names)


@dataclass(frozen=True)
class ModelAggregation:
    """What :func:`aggregate_models` returns.

    Attributes:
        result: the aggregator's result (mean update, included clients, bytes, seconds).
        weights: the new global weights, global + mean update, in the global
            model's dtypes and layout order (``model.set_weights(weights)`` when
            the layout covers every weight); ``None`` if the round was skipped.
        layout: the global model's layout (every model has its shapes and dtypes).
        trainable_only: whether the layout covers only the trainable weights.
        discovery: the range-discovery round's result (its bytes, seconds), or None if none ran.
    """

    result: AggregationResult
    weights: list[npt.NDArray[Any]] | None
    layout: WeightsLayout
    trainable_only: bool = False
    discovery: AggregationResult | None = None

    def load_into(self, model: Any) -> None:
        """Write the new global weights into the Keras ``model`` in place (see
        :func:`load_into_model`); ConfigurationError if the round was skipped."""
        if self.weights is None:
            raise ConfigurationError(f"the round was skipped: {self.result.skipped_reason}")
        vector, _ = flatten_named(list(zip(self.layout.names, self.weights, strict=True)))
        load_into_model(model, vector, self.layout, trainable_only=self.trainable_only)


def aggregate_models(
    global_model: Any,
    local_models: Sequence[Any],
    aggregator: Aggregator,
    *,
    num_samples: Sequence[int],
    rng: np.random.Generator,
    client_ids: Sequence[int] | None = None,
    dropouts: Mapping[int, DropoutStage] | None = None,
    trainable_only: bool = False,
    clips: Mapping[str, float] | None = None,
    discovery: RangeDiscovery | bool | None = None,
    trained_from: Mapping[int, Any] | None = None,
    local_weights: Sequence[str] = (),
) -> ModelAggregation:
    """FedAvg of Keras models through ``aggregator``: global + weighted mean of (local - global).

    Each model is a Keras model (or layer), a list of numpy arrays (what
    ``get_weights`` returns) or a mapping of weight names to arrays; every local
    one must have the global model's layout: the same weight names (a model's
    variable paths, :func:`flatten_model`; a list's positions), shapes and dtypes,
    in the same order, so models and lists are not mixed in one call. Client k's update is its flattened weights
    minus the global ones, weighted by ``num_samples[k]`` (an integer, numpy's included;
    a float or a string is refused, never truncated or parsed); ``client_ids``
    (default 0..m-1) name the clients for ``dropouts`` and in
    ``result.included``; an aggregator that keeps per-hospital residuals (error
    feedback) needs stable ``client_ids`` and refuses the default, which would hand a
    dropped hospital's residual to the next one. ``rng`` is the round's non-secret randomness (the
    aggregator's quantization rounding). With a secure aggregator the party
    running this learns only the mean; in a real deployment each hospital
    computes its own update and only the aggregation runs across machines (see
    docs/integrations.md). A hospital whose weights differ (names, order, shapes,
    dtypes) from the global model's, or from those of its ``trained_from`` copy, is withheld
    with the reason (``result.withheld``); the round goes on without its upload.
    Ranges are per weight, as in :func:`secagg.integrations.torch.aggregate_models`:
    ``clips`` (by weight name) fixes a weight's clip; without it one secure
    range-discovery round picks each weight's clip (``discovery=False``: the aggregator's).
    The round is bound to ``global_model`` as in the PyTorch adapter: every update declares the
    digest of the model it was trained from (``trained_from[k]``, client id -> the weights
    hospital k received, else ``global_model``), the aggregation passes
    ``model_digest(global_model)``, and a hospital that trained from another model is refused
    (``result.refused``) while the round goes on (skipped, with the reason, if too few remain).
    With ``trainable_only`` only the trainable weights are summed, but the digests bind the
    non-trainable ones of the global model and of each ``trained_from`` copy (:func:`model_digest`):
    a hospital that trained on top of another frozen layer is refused; its own batch-norm
    statistics, moved in training, are not compared. ``local_weights`` (:func:`model_digest`: names
    of batch-norm statistics every hospital keeps as its own, FedBN-style) leaves those out of the
    binding too, so a ``trained_from`` copy may hold its own statistics there; :meth:`ModelAggregation.load_into`
    writes only the summed weights, so they stay each hospital's.
    """
    local = local_names(local_weights, trainable_only)
    base, layout, result, found = aggregate_flat_models(
        lambda model: _flatten_any(model, trainable_only), global_model, local_models, aggregator,
        num_samples=num_samples, rng=rng, client_ids=client_ids, dropouts=dropouts, clips=clips, discovery=discovery,
        trained_from=trained_from, logger=LOGGER, frozen=lambda model: _frozen(model, trainable_only, local),
        local=local,
    )
    weights = None if result.mean is None else unflatten_weights(new_global(base, result.mean, layout), layout)
    return ModelAggregation(result, weights, layout, trainable_only, found)
