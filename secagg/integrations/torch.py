"""PyTorch adapter: models and state dicts as one float64 vector, and secure FedAvg of models.

Secure aggregation sums vectors; a PyTorch model is a set of named tensors of
various shapes and dtypes. This module converts between the two (the flat conversion is in
:mod:`secagg.integrations._torch_flat`, re-exported here):

- :func:`flatten_state_dict` / :func:`unflatten_state_dict`: any mapping of
  names to tensors (a ``state_dict``) to one float64 numpy vector plus a
  :class:`FlatLayout` (names, shapes, dtypes, offsets), and back.
- :func:`flatten_model` / :func:`load_into_model`: the same for a module's
  parameters, buffers optional, written back in place.
- :func:`aggregate_models`: the weighted mean of the updates (local minus
  global) of several models through any aggregator with the
  :class:`fl_core.aggregators.Aggregator` interface (``plain``, ``secagg``,
  ``secagg+``, ``paillier``), returned as a new state dict.
- :func:`model_digest` / :func:`hospital_update`: the digest of a model (its state-dict
  keys, shapes, dtypes and values, and a module's non-persistent buffers) and a hospital's
  update built from the model it received and the one it trained, declaring the received
  model's digest; the aggregation binds the global model's digest and refuses a hospital that
  trained from another (``result.refused``).

What a module holds outside its state dict is bound or refused, never skipped
(:mod:`secagg.integrations._torch_tensors`; docs/integrations.md, "What a module holds outside
its state dict"): non-persistent buffers bound, extra state refused; plain attributes are its
code's settings, left to the integrator as the training is (``dp_model_digest`` binds them).

Exactness: every value of every floating dtype PyTorch supports on CPU
(float64, float32, float16, bfloat16, the float8 formats and the packed
``float4_e2m1fn_x2``) is exactly representable as a float64, so
``unflatten(flatten(t)) == t`` bit for bit, signed zeros and infinities
included; a NaN comes back as a NaN (its payload bits are not kept). Complex
tensors (complex32/64/128) occupy two entries per element, real then
imaginary (a lazily conjugated tensor, ``t.conj()``, gives its conjugate's
values). Integer and boolean buffers (``num_batches_tracked``, masks) are
exact up to 2^53 in magnitude; larger values are refused.

Order: tensors in the mapping's (or ``named_parameters``'s) order, each in C
order; a packed ``float4_e2m1fn_x2`` byte gives its low nibble first. A tied (shared)
tensor (``lin2.weight = lin1.weight``), which a state dict lists under each of its names,
is one tensor to the model functions (``flatten_model``, ``model_digest``,
``hospital_update``, ``aggregate_models``): read once, under its first name
(:mod:`secagg.integrations._torch_ties`); ``flatten_state_dict`` keeps every entry. PyTorch
is imported on first use (``pip install -e '.[torch]'`` from the root of a clone).

The flat conversion (:class:`TensorSpec`, :class:`FlatLayout`, the flatten and load functions) lives
in :mod:`secagg.integrations._torch_flat` and is re-exported here; this module binds and aggregates.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence, ValuesView
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from secagg._validate import require_bool
from secagg.errors import ConfigurationError, ConfigurationTypeError
from secagg.integrations._extras import require
from secagg.integrations._model_binding import FlatModel, bound_digest, declared_update
from secagg.integrations._ranges import aggregate_flat_models, new_global
from secagg.integrations._torch_dtypes import EXACT_INTEGER_LIMIT
from secagg.integrations._torch_flat import (
    FlatLayout,
    TensorSpec,
    flatten_model,
    flatten_state_dict,
    load_into_model,
    unflatten_state_dict,
)
from secagg.integrations._torch_tensors import hidden_buffers, named, readable_tensors, tensors_of
from secagg.integrations._torch_ties import ties
from secagg.ranges import RangeDiscovery

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module

    from fl_core.aggregators.base import AggregationResult, Aggregator, ClientUpdate, DropoutStage

__all__ = [
    "EXACT_INTEGER_LIMIT",
    "FlatLayout",
    "ModelAggregation",
    "TensorSpec",
    "aggregate_models",
    "flatten_model",
    "flatten_state_dict",
    "hospital_update",
    "load_into_model",
    "model_digest",
    "unflatten_state_dict",
]

LOGGER = logging.getLogger(__name__)
"""Where :func:`aggregate_models` logs, at DEBUG, the full text of a foreign exception that withheld a
hospital (the round's report names only the exception's type)."""


def _torch() -> Any:
    return require("torch", "torch")


def model_digest(model: Module | Mapping[str, Tensor], *, buffers: bool = True) -> bytes:
    """The 32-byte digest of a module's state dict (its parameters only if ``buffers=False``) or of a
    state dict (a module's digest is its state dict's): every tensor's key, dtype and shape, in order, and its values
    (:func:`secagg.integrations._model_binding.layout_digest` of :func:`flatten_state_dict`); a tied
    (shared) tensor once, under its first key (its other keys carry no values of their own).
    A module's non-persistent buffers (in no state dict; with ``buffers=False`` too) are bound after
    them, by full name, dtype, shape and values
    (:func:`~secagg.integrations._model_binding.bound_digest`): a module without any has its state
    dict's digest, one with some another. ConfigurationError for a module with extra state
    (``get_extra_state``) and for a tensor without values (the meta device).
    The digest of the global model a round hands out; :func:`aggregate_models` binds it."""
    return bound_digest(flatten_state_dict(tensors_of(model, require_bool("buffers", buffers))), _hidden(model))


def _hidden(model: Module | Mapping[str, Tensor]) -> FlatModel:
    """A module's non-persistent buffers flattened (:func:`hidden_buffers`; empty for a state dict)."""
    try:
        return flatten_state_dict(hidden_buffers(model))
    except ConfigurationError as exc:
        raise ConfigurationError(f"a non-persistent buffer: {exc}") from None


def hospital_update(
    client_id: int,
    received: Module | Mapping[str, Tensor],
    local: Module | Mapping[str, Tensor],
    *,
    num_samples: int,
    buffers: bool = True,
) -> ClientUpdate:
    """A hospital's update for an fl_core aggregator: ``local`` (the model it trained) minus
    ``received`` (the global model it trained from), weighted by ``num_samples``, declaring
    ``model_digest(received)`` (buffers included unless ``buffers=False``, as in
    :func:`model_digest` and :func:`aggregate_models`). Aggregated with ``model_digest=model_digest(global_model)``, an
    update from another model is refused with its reason (``result.refused``). ConfigurationError
    naming the client if the two models' tensors differ (names, order, shapes, dtypes), or if their
    non-persistent buffers do (names, dtypes, shapes or values: never trained nor summed)."""
    require_bool("buffers", buffers)
    flat = [flatten_state_dict(tensors_of(model, buffers)) for model in (received, local)]
    return declared_update(client_id, flat[0], flat[1], num_samples, hidden=(_hidden(received), _hidden(local)))


@dataclass(frozen=True)
class ModelAggregation:
    """What :func:`aggregate_models` returns.

    Attributes:
        result: the aggregator's result (mean update, included clients, bytes, seconds).
        state_dict: the new global tensors, global + mean update, in the
            global model's dtypes; ``None`` if the round was skipped.
        layout: the layout shared by every model's vector.
        discovery: the range-discovery round's result (its bytes and seconds; its mean
            is the summed histogram over the contributors), or None if none ran.
    """

    result: AggregationResult
    state_dict: dict[str, Tensor] | None
    layout: FlatLayout
    discovery: AggregationResult | None = None

    def load_into(self, model: Module) -> None:
        """Write the new global tensors into ``model`` in place (:func:`load_into_model`, whose
        refusals leave the model untouched); ConfigurationError if skipped, and, with the model
        untouched, if ``model`` holds a tensor the round did not aggregate (a parameter, or a buffer
        of a round that summed buffers: it would keep its old value in the new global model)."""
        if self.state_dict is None:
            raise ConfigurationError(f"the round was skipped: {self.result.skipped_reason}")
        names = {spec.name for spec in self.layout.specs}
        readable_tensors(model, buffers=True)  # a module the adapter cannot read, refused as load_into_model does
        if names != set(tensors_of(model, False)):  # not a parameters-only round: every tensor is the round's
            extra = [name for name in tensors_of(model, True) if name not in names]
            if extra:
                raise ConfigurationError(
                    f"tensor {extra[0]!r} of the model is not in the round's layout: the round did not aggregate it, "
                    "so it would keep its old value in the new global model; load into the model the round aggregated"
                )
        vector, layout = flatten_state_dict(self.state_dict)
        load_into_model(model, vector, layout)


def _hospital_models(models: Iterable[Module | Mapping[str, Tensor]]) -> Sequence[Module | Mapping[str, Tensor]]:
    """The hospitals' models in order: a sequence (or a one-dimensional array) as given, a
    ``torch.nn.ModuleList`` or a dict's values as a list; ConfigurationTypeError saying what to
    pass for anything else: a set or a generator (no order to pair with ``num_samples``), a dict
    (it iterates its keys), a Sequential (one model, whose layers are not hospitals)."""
    if isinstance(models, _torch().nn.ModuleList | ValuesView):
        return list(models)
    if isinstance(models, Sequence | np.ndarray) and not isinstance(models, str | bytes):
        return models  # type: ignore[return-value]  # checked by aggregate_flat_models
    raise ConfigurationTypeError(
        "local_models must hold one model per hospital, in the order of num_samples: a list, a tuple or a "
        f"torch.nn.ModuleList (or a dict's .values()), got {type(models).__name__}: the call is "
        "aggregate_models(global_model, local_models, aggregator, num_samples=..., rng=...)"
    )


def aggregate_models(
    global_model: Module | Mapping[str, Tensor],
    local_models: Sequence[Module | Mapping[str, Tensor]] | Iterable[Module],
    aggregator: Aggregator,
    *,
    num_samples: Sequence[int],
    rng: np.random.Generator,
    client_ids: Sequence[int] | None = None,
    dropouts: Mapping[int, DropoutStage] | None = None,
    buffers: bool = True,
    clips: Mapping[str, float] | None = None,
    discovery: RangeDiscovery | bool | None = None,
    trained_from: Mapping[int, Module | Mapping[str, Tensor]] | None = None,
) -> ModelAggregation:
    """FedAvg of torch models through ``aggregator``: global + weighted mean of (local - global).

    Each local model (a module or a state dict) must have the global model's
    tensor names, shapes and dtypes; ``local_models`` is a list, a tuple, a
    ``torch.nn.ModuleList`` or a dict's ``.values()``, one model per hospital in the order of
    ``num_samples`` (a set, a generator, a dict or a Sequential is refused, saying so).
    A module's tensors are its state dict's, in its order
    (parameters and persistent buffers: BatchNorm's running statistics and
    ``num_batches_tracked``), so a module and its state dict mix in one round;
    ``buffers=False`` aggregates the parameters only and leaves the buffers out of the result.
    A tied (shared) tensor is one tensor: read, averaged and quantized once, under its first name
    (the layout's), and in ``state_dict`` one tensor under each of the global model's names for it;
    a hospital whose copies of it are separate tensors (a state dict cloned apart) has one tensor
    more than the global model and is withheld naming it.
    Client k's update is its flattened tensors minus the global ones, weighted by ``num_samples[k]``; ``client_ids``
    (default 0..m-1) name the clients for ``dropouts`` and in
    ``result.included``; an aggregator that keeps per-hospital residuals (error
    feedback) needs stable ``client_ids`` and refuses the default, which would hand a
    dropped hospital's residual to the next one. ``rng`` is the round's non-secret randomness (the
    aggregator's quantization rounding). With a secure aggregator the party
    running this learns only the mean; in a real deployment each hospital
    computes its own update and only the aggregation runs across machines (see
    docs/integrations.md). A hospital whose tensors differ (names, order, shapes,
    dtypes) from the global model's, or from those of its ``trained_from`` copy, is withheld
    with the reason (``result.withheld``); the round goes on without its upload. So is one whose
    model holds other non-persistent buffers than the copy it trained from (named), or has extra
    state (``get_extra_state``, refused: no tensor); the global model's non-persistent buffers are
    bound into the round's digest (:func:`model_digest`).

    Ranges are per tensor: each tensor is its own segment (:meth:`FlatLayout.segments`)
    with its own clip and its own clipped count, reported in ``result.clipping``. The
    clip of a tensor is ``clips[name]`` if given; without ``clips`` (``discovery=None``,
    the default) one secure range-discovery round first sums a magnitude histogram per
    tensor and each tensor gets the smallest power-of-two clip covering all its
    coordinates (:mod:`secagg.ranges`; only the federation-wide histogram is revealed).
    ``discovery=False`` uses the aggregator's clip (adaptive by default) instead;
    ``True`` or a :class:`~secagg.ranges.RangeDiscovery` discovers the tensors
    ``clips`` leaves open. Integer
    buffers (``num_batches_tracked``) are exact integer segments: their update must
    be a whole number within ``+-(2^(bits-1) - 1)``, or that hospital is withheld; the new
    global value (global + the exact weighted mean) is rounded half to even into the dtype.

    The round is bound to ``global_model``: every update declares the digest of the model its
    hospital trained from (:func:`hospital_update`), ``trained_from[k]`` if given (client id ->
    module or state dict: the copy hospital k received, stale or substituted), else
    ``global_model``, and the aggregation (range discovery included) passes
    ``model_digest(global_model)``: a hospital that trained from another model is refused, with
    its reason in ``result.refused``, and the round goes on without it (or is skipped, with the
    reason, if too few remain).
    """
    require_bool("buffers", buffers)
    base, layout, result, found = aggregate_flat_models(
        lambda model: flatten_state_dict(tensors_of(model, buffers)), global_model, _hospital_models(local_models),
        aggregator,
        num_samples=num_samples, rng=rng, client_ids=client_ids, dropouts=dropouts, clips=clips, discovery=discovery,
        trained_from=trained_from, logger=LOGGER, hidden=_hidden,
    )
    state = None
    if result.mean is not None:
        tensors = unflatten_state_dict(new_global(base, result.mean, layout), layout)
        # A tied tensor is one tensor under each of the global model's names, as in its state dict.
        state = {name: tensors[first] for name, first in ties(named(global_model, buffers)).items()}
    return ModelAggregation(result=result, state_dict=state, layout=layout, discovery=found)
