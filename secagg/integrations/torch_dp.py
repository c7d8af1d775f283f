"""PyTorch with distributed DP: per-sample gradients by ``torch.func``, noised inside the secure sum.

A DP round for a PyTorch model, the same as fl_core's (:mod:`fl_core.dp_training`):

1. each hospital Poisson-samples its patients (:func:`secagg.dp.poisson_mask`, from a secret
   :class:`~secagg.dp.RandomSource`: the OS CSPRNG unless a test seeds one) and computes
   :func:`clipped_gradient_sum`: every sampled patient's loss gradient at the global
   model, clipped to L2 norm ``l2_clip`` over all trainable parameters, summed;
2. the float sum goes to a DP aggregator (``make_aggregator(name, dp=DPConfig(...),
   dimension=...)``), which adds the hospital's share of exact discrete Gaussian noise to
   its integer encoding before the secure sum (:func:`fl_core.dp.noised_encoding`);
3. :func:`apply_dp_step` applies ``w <- w - learning_rate * noised_sum / denominator`` with
   the public denominator (the expected batch size of the hospitals in the sum:
   ``q * sum`` of their declared sizes, :func:`fl_core.dp_training.public_denominator`; a
   hospital that dropped out adds no patient and is not counted).

:func:`run_dp_round` does the three for a list of hospitals. The round is bound to the global
model: each hospital's update (:func:`dp_update`) declares the digest of the model its
contribution was computed at (:func:`dp_model_digest`: the model's
:func:`secagg.integrations.torch.model_digest`, buffers included, the names of its trainable
parameters, which lay the contribution out, every module's class, settings (``extra_repr`` and its
plain attributes), non-persistent buffers, hooks and training mode, which shape its forward pass, and the
loss's declared name, ``loss_name=``, when
given), and the aggregator is given the global model's; a hospital that computed at another model
(a stale copy, one that trains another set of parameters, one in another mode) is refused before
the round is charged, so it is neither counted among the contributors nor in the denominator.

**Why torch.func and not Opacus.** Per-sample gradients come from ``torch.func``
(``functional_call`` + ``vmap`` + ``grad``), which ships with PyTorch (>= 2.0): no extra
dependency, any model whose forward pass works on one example, and the gradients come
back as plain tensors we clip and sum ourselves. Opacus would bring its own optimizer,
noise and accountant; here the noise must be integer, split across hospitals and added
inside the secure sum, and the budget kept by :class:`secagg.dp.PrivacyAccountant`, so
only its per-sample gradient part would be used, and that is what ``torch.func`` gives.
A recurrent layer's kernel (LSTM, GRU, RNN and their cells), whose backward pass accumulates a
parameter's gradient in place, gets each example its own (expanded, not copied) view of the layer's
parameters, and nothing else does: a lookup into such a parameter, by any route, reads one example's
rows only (:mod:`~secagg.integrations._torch_recurrent`). Limits: layers that mix examples in a
batch (BatchNorm in training mode) have no per-sample gradient; use GroupNorm/LayerNorm, as with
Opacus. Nor can ``vmap`` update running statistics in place (an InstanceNorm with
``track_running_stats=True`` in training mode) or draw randomness (a dropout of p > 0 in
training mode, an RReLU): such a model is refused up front (docs/privacy.md, "PyTorch").

PyTorch is imported on first use (``pip install -e '.[torch]'``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from secagg._validate import require_finite, require_int, require_mapping, require_rng
from secagg.dp.poisson import poisson_mask
from secagg.dp.sampler import MAX_SAMPLES
from secagg.errors import ConfigurationError, SecAggError
from secagg.integrations._foreign import foreign_reason
from secagg.integrations._layout import check_cast
from secagg.integrations._torch_dp_arguments import (
    check_step,
    declared_sizes_of,
    hospital_triples,
    positive_denominator,
)
from secagg.integrations._torch_dp_model import _trainable_parameters, dp_model_digest
from secagg.integrations._torch_dtypes import top_of_range
from secagg.integrations._torch_one_example import LossNotScalarError, refuse_without_values
from secagg.integrations._torch_per_example import (
    FloatVector,
    LossFn,
    clipped_gradient_sum,
    refuse_batch_mixing,
    require_batch,
    require_loss,
    torch_module,
)
from secagg.integrations._torch_tensors import readable_tensors, write_into
from secagg.integrations._torch_ties import refuse_shared_memory
from secagg.integrations.torch import TensorSpec

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module

    from fl_core.aggregators.base import AggregationResult, Aggregator, ClientUpdate, DropoutStage
    from fl_core.dp import DPAggregator
    from secagg.dp import DPConfig, RandomSource

__all__ = [
    "LossNotScalarError",
    "apply_dp_step",
    "clipped_gradient_sum",
    "dp_contribution",
    "dp_model_digest",
    "dp_update",
    "run_dp_round",
]

LOGGER = logging.getLogger(__name__)
"""Where :func:`run_dp_round` logs, at DEBUG, the full text of a foreign exception that withheld a
hospital (the round's report names only the stage and the exception's type)."""


def dp_contribution(
    model: Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor, dp: DPConfig, source: RandomSource | None = None
) -> FloatVector:
    """A hospital's float contribution: the clipped gradient sum over its Poisson sample, drawn from
    ``source`` (:func:`secagg.dp.poisson_mask`: the OS CSPRNG when None; a numpy Generator is refused,
    the amplification bound being for a sample nobody but the hospital can predict)."""
    torch = torch_module()
    mask = torch.from_numpy(poisson_mask(require_batch(torch, inputs, targets), dp.sampling_rate, source))
    return clipped_gradient_sum(model, loss_fn, inputs[mask], targets[mask], dp.l2_clip)


def dp_update(
    client_id: int,
    model: Module,
    loss_fn: LossFn,
    inputs: Tensor,
    targets: Tensor,
    dp: DPConfig,
    source: RandomSource | None = None,
    *,
    loss_name: str | None = None,
) -> ClientUpdate:
    """A hospital's update for a DP aggregator: :func:`dp_contribution` at ``model`` (the global
    model it received; its Poisson sample from ``source``, the OS CSPRNG when None), weighted by its
    batch size (at least 1), declaring :func:`dp_model_digest` of ``model`` (with ``loss_name``, the
    name the round declares for ``loss_fn``, if given) and ``dp.digest()``; aggregated with the
    global model's ``dp_model_digest`` (with the round's ``loss_name``), an update computed at
    another model (or one training another set of parameters, in another mode, or declaring another
    loss), or under another DP configuration than the aggregator's (another clip or sampling rate
    than the noise is sized for), is refused (``result.refused``)."""
    return _staged_update(client_id, model, loss_fn, inputs, targets, dp, source, [], loss_name)[0]


_SAMPLE, _COPY, _GRADIENTS = (
    "drawing its Poisson sample", "reading its copy of the model", "the per-sample gradient computation",
)  # fmt: skip
_SOURCE = "reading the sample's random source"
"""The stage in which only the random source can fail (its rows counted and checked before): in
:func:`run_dp_round` the aggregator's noise source, the caller's own, so its failure is raised."""


def _staged_update(
    client_id: int,
    model: Module,
    loss_fn: LossFn,
    inputs: Tensor,
    targets: Tensor,
    dp: DPConfig,
    source: RandomSource | None,
    stage: list[str],
    loss_name: str | None = None,
) -> tuple[ClientUpdate, int]:
    """:func:`dp_update`, appending to ``stage`` each stage as it starts (its sample, its copy's
    digest, its gradients), so that a failure can be named by the stage it ended; with the number
    of rows sampled (0: the loss never ran)."""
    from fl_core.aggregators.base import ClientUpdate  # noqa: PLC0415 (fl_core is optional here)

    stage.append(_SAMPLE)
    rows = require_int("num_rows", require_batch(torch_module(), inputs, targets), 0, MAX_SAMPLES)  # its data
    stage.append(_SOURCE)
    drawn = poisson_mask(rows, dp.sampling_rate, source)
    stage.append(_SAMPLE)
    mask = torch_module().from_numpy(drawn)
    sampled = inputs[mask], targets[mask]
    stage.append(_COPY)
    refuse_without_values(model)  # a copy on the meta device: its digest cannot be read either
    digest = dp_model_digest(model, loss_name=loss_name)
    stage.append(_GRADIENTS)
    contribution = clipped_gradient_sum(model, loss_fn, *sampled, dp.l2_clip)
    samples = max(1, int(inputs.shape[0]))
    update = ClientUpdate(client_id, contribution, samples, model_digest=digest, dp_digest=dp.digest())
    return update, int(sampled[0].shape[0])


def _withheld_reason(client: object, stage: list[str], exc: Exception) -> str:
    """Why a hospital's contribution cannot be computed, in the library's words: a library error's
    own text (a refusal of its data by the model or the loss names the example's shapes and dtypes,
    never torch's text: the torch error it is chained from is logged at DEBUG on :data:`LOGGER`); for a
    foreign exception, the stage that failed and the exception's type only (its text can carry the
    hospital's tensor shapes and values), the text logged at DEBUG on :data:`LOGGER`
    (:func:`~secagg.integrations._foreign.foreign_reason`)."""
    if isinstance(exc, SecAggError):
        cause = exc.__cause__
        if cause is not None and not isinstance(cause, SecAggError):
            LOGGER.debug("hospital %s: %s", client, exc, exc_info=cause)
        return f"its contribution cannot be computed: {exc}"
    where = stage[-1] if stage else "computing it"
    return f"its contribution cannot be computed: {foreign_reason(where, exc, logger=LOGGER, hospital=client)}"


def apply_dp_step(model: Module, noised_sum: FloatVector, denominator: float, learning_rate: float) -> None:
    """``w <- w - learning_rate * noised_sum / denominator`` on the trainable parameters, in place.

    Raises ConfigurationError, with every parameter untouched, for a module the model digest refuses to
    read (extra state, a tensor on the meta device: :func:`~secagg.integrations.torch.load_into_model`'s
    check), a non-finite learning rate or sum, a
    denominator that is not a positive finite number, a sum of another length, a step a parameter's dtype cannot hold
    (a finite weight would become an infinity, a NaN or its dtype's largest value), or a parameter whose
    elements share memory (an expanded view) or that shares memory with another (as
    :func:`~secagg.integrations.torch.load_into_model`). An inference parameter (a model built under
    ``torch.inference_mode()``) is written inside inference mode, the only place torch allows it."""
    torch = torch_module()
    readable_tensors(model, buffers=True)  # what the digest refuses to read (extra state, meta tensors): never written
    params = _trainable_parameters(model)
    refuse_shared_memory(dict(params))  # before any write: torch would refuse one partway, or write one over another
    total = sum(int(p.numel()) for _, p in params)
    if not isinstance(noised_sum, np.ndarray) or noised_sum.dtype.kind != "f":
        raise ConfigurationError(f"the noised sum must be a float numpy array, got {type(noised_sum).__name__}")
    if noised_sum.ndim != 1 or noised_sum.shape[0] != total:
        raise ConfigurationError(f"the noised sum has shape {noised_sum.shape}, the model {total} parameters")
    if not np.isfinite(noised_sum).all():
        raise ConfigurationError("the noised sum contains NaN or infinite values")
    factor = require_finite("learning_rate", learning_rate) / positive_denominator(denominator)
    step = torch.from_numpy(noised_sum.astype(np.float64) * factor)
    updated = []
    offset = 0
    with torch.no_grad():
        for name, p in params:
            delta = step[offset : offset + p.numel()].reshape(p.shape).to(p.dtype)
            new = p - delta
            wanted = (p.to(torch.float64) - delta.to(torch.float64)).reshape(-1).numpy()
            got = new.to(torch.float64).reshape(-1).numpy()
            spec = TensorSpec(name, tuple(p.shape), str(p.dtype).removeprefix("torch."), 0, int(p.numel()))
            if (np.isfinite(p.detach().to(torch.float64).reshape(-1).numpy()) & ~np.isfinite(got)).any():
                raise ConfigurationError(f"parameter {name!r}: the step does not fit {spec.dtype}, it overflows")
            check_cast(spec, wanted, got, *top_of_range(torch, p.dtype))
            updated.append((p, new))
            offset += p.numel()
        for p, new in updated:
            write_into(torch, p, new)


def _contributions(
    hospitals: Sequence[tuple[int, Tensor, Tensor]],
    model: Module,
    given: Mapping[int, Module],
    loss_fn: LossFn,
    aggregator: DPAggregator,
    loss_name: str | None,
    digest: bytes,
) -> tuple[list[ClientUpdate], list[tuple[int, str]]]:
    """:func:`run_dp_round`'s contributions, one per hospital (a stand-in of zeros, never sent, for
    each withheld one), and the withheld hospitals with their reasons.

    Raises what is the caller's own: a MemoryError, a failure of the noise source, and a
    :class:`LossNotScalarError` when the loss returned a scalar at no hospital (a hospital whose
    data or copy alone makes it return none is withheld, as any other of its failures)."""
    from fl_core.aggregators.base import ClientUpdate  # noqa: PLC0415 (fl_core is optional here)

    updates, withheld, not_scalar = [], [], []
    scalar_seen = False  # some hospital's loss returned a scalar: one returning none is that hospital's
    for client, x, y in hospitals:
        stage: list[str] = []
        try:  # a contribution that cannot be computed (its copy or data raise) is this hospital's alone
            copy = given.get(client, model)
            source = aggregator.quantizer.noise_source  # the sample is a secret, as the noise is
            update, sampled = _staged_update(client, copy, loss_fn, x, y, aggregator.config, source, stage, loss_name)
            updates.append(update)
            scalar_seen = scalar_seen or sampled > 0
            continue
        except MemoryError:
            raise  # the aggregating party's own resources, not this hospital's fault
        except Exception as exc:  # a library or foreign error from its copy or data is its alone
            if stage[-1:] == [_SOURCE]:
                raise  # the noise source every sample and the noise are drawn from: the caller's own
            if isinstance(exc, LossNotScalarError):
                not_scalar.append(exc)  # its data's or copy's, unless no hospital's loss returns a scalar
            reason = _withheld_reason(client, stage, exc)
        withheld.append((client, reason))
        updates.append(ClientUpdate(client, np.zeros(aggregator.plan.dimension), 1, model_digest=digest))
    if not_scalar and not scalar_seen:
        raise not_scalar[0]  # the caller's own loss_fn: it returned a scalar at no hospital
    return updates, withheld


def run_dp_round(
    model: Module,
    hospitals: Sequence[tuple[int, Tensor, Tensor]],
    loss_fn: LossFn,
    aggregator: Aggregator,
    *,
    learning_rate: float,
    denominator: float | None = None,
    declared_sizes: Mapping[int, int] | None = None,
    rng: np.random.Generator,
    dropouts: Mapping[int, DropoutStage] | None = None,
    trained_from: Mapping[int, Module] | None = None,
    loss_name: str | None = None,
) -> AggregationResult:
    """One DP round over ``hospitals`` (``(id, inputs, targets)`` each) through a DP aggregator.

    Every hospital's contribution is computed at the current (global) ``model``; the
    aggregator noises and sums them; the model takes the step if the round was released
    (a round refused by the budget, or with fewer than h contributors, leaves it unchanged).
    Each hospital's Poisson sample is drawn from the DP aggregator's noise source
    (``make_aggregator(..., noise_source=...)``: the OS CSPRNG unless a test seeds one), a secret
    as the noise is: the amplification by sampling holds only for a sample nobody but the hospital
    can predict (docs/privacy.md). ``rng`` drives the aggregator's stochastic rounding only.

    The step divides by a public denominator, given as exactly one of: ``declared_sizes``
    (hospital id -> declared number of patients, public): ``q * sum`` over the hospitals
    the released sum includes (:func:`fl_core.dp_training.public_denominator`), so a hospital
    that drops out is not counted; or ``denominator``, a fixed number the caller computed
    (right only when every hospital is in the sum). A learning rate that is not finite, a
    denominator that is not a positive finite number, or a declared size of 0 for a hospital of the
    round, is refused (ConfigurationError) before any contribution is computed and before the round
    is charged; so are an ``rng`` that is no ``numpy.random.Generator`` (a legacy ``RandomState``:
    ConfigurationTypeError, as at every ``rng``), ``hospitals`` that are not a list of
    ``(id, inputs, targets)`` triples and a
    ``loss_fn`` that is not callable (ConfigurationTypeError), and a ``model`` with a layer
    per-sample gradients cannot go through (BatchNorm, an InstanceNorm tracking running statistics
    or a dropout of p > 0, in training mode; an RReLU: ConfigurationError naming it), a ``model`` on
    the meta device, and a ``loss_fn`` that returns no scalar float tensor on a batch of one at every
    hospital it runs for (:class:`LossNotScalarError`, raised after the contributions are computed, the
    round uncharged). What the loss returns can depend on a hospital's data or copy (complex features
    through a model that keeps its input's dtype), so while it returns a scalar at some hospital, a
    hospital at which it returns none is withheld with that reason, as for any failure of its own.

    The round binds ``model``'s :func:`dp_model_digest` (buffers, the trainable parameters' names,
    every module's class, settings (``extra_repr`` and plain attributes), non-persistent buffers,
    hooks and mode, torch's global module hooks, and ``loss_name`` when given, the name declared
    for ``loss_fn``): every hospital's update declares the digest of the model it computed at
    (:func:`dp_update`), ``trained_from[id]`` if given (the copy that hospital holds, e.g. a stale
    one, or one whose trainable parameters are others), else ``model``. A hospital that computed at
    another model is refused with its reason (``result.refused``) before the round is charged:
    it is not a contributor, and not counted in the denominator. So is, withheld with the reason
    (``result.withheld``), a hospital whose contribution cannot be computed: its copy or its data
    raise, a library error (its text: inputs or targets the model or the loss cannot take, found on the
    first example when the per-sample computation fails, are one naming the example's shapes and dtypes,
    :func:`clipped_gradient_sum`) or a foreign exception, named by the stage that failed
    (drawing its Poisson sample, reading its copy of the model, the per-sample gradient
    computation) and its type only: a foreign text (torch's) can carry the hospital's tensor shapes
    and values, so it is logged at DEBUG (:data:`LOGGER`) and never reported. A round that leaves
    fewer than h contributors is skipped, uncharged. ``MemoryError``, ``KeyboardInterrupt`` and
    ``SystemExit`` still end the call, and so do a ``model`` whose digest cannot be computed and a
    noise source that fails while a sample is drawn from it (the caller's own, as when it draws the
    noise: a source returning fewer bytes than asked is a ConfigurationError).
    """
    from fl_core.aggregators.base import DropoutStage, with_withheld  # noqa: PLC0415
    from fl_core.dp import DPAggregator  # noqa: PLC0415 (fl_core is optional here)
    from fl_core.dp_training import public_denominator  # noqa: PLC0415

    if not isinstance(aggregator, DPAggregator):
        raise ConfigurationError("run_dp_round needs a DP aggregator: make_aggregator(name, dp=..., dimension=...)")
    require_rng("rng", rng)  # the aggregator's check, made before any sample or gradient is computed
    check_step(learning_rate, denominator, declared_sizes)
    hospitals = hospital_triples(hospitals)
    require_loss(loss_fn)  # the caller's own: not callable, every hospital would be withheld alike
    trainable = sum(int(p.numel()) for _, p in _trainable_parameters(model))  # refuses a non-module
    refuse_batch_mixing(model)  # the caller's own global model: every hospital would fail alike
    if trainable != aggregator.plan.dimension:
        raise ConfigurationError(
            f"the DP aggregator was set up with dimension={aggregator.plan.dimension}, but the model has "
            f"{trainable} trainable parameter values (those with requires_grad): "
            f"make_aggregator(..., dimension={trainable})"
        )
    if declared_sizes is not None:
        sizes = declared_sizes_of(hospitals, declared_sizes)
    given = {} if trained_from is None else dict(require_mapping("trained_from", trained_from))
    outside = sorted(set(given) - {client for client, _, _ in hospitals}, key=repr)
    if outside:
        raise ConfigurationError(f"trained_from names hospital {outside[0]!r}, which is not in the round")
    refuse_without_values(model)  # the caller's own global model on the meta device: nothing to compute at
    digest = dp_model_digest(model, loss_name=loss_name)  # the caller's own global model: its failure raises
    stages = dict(require_mapping("dropouts", dropouts) if dropouts is not None else {})
    updates, withheld = _contributions(hospitals, model, given, loss_fn, aggregator, loss_name, digest)
    for client, _ in withheld:  # withheld at UPLOAD before the round is charged (DPAggregator counts uploaders)
        stages[client] = min(stages.get(client, DropoutStage.UPLOAD), DropoutStage.UPLOAD)
    result = aggregator.aggregate(updates, stages if withheld else dropouts, rng=rng, model_digest=digest)
    result = with_withheld(result, withheld)
    if result.mean is not None:
        if declared_sizes is not None:
            # Dropped hospitals add no patient: count the included ones only (fl_core.dp_training).
            denominator = public_denominator([sizes[c] for c in sorted(result.included)], aggregator.config)
        assert denominator is not None
        apply_dp_step(model, result.mean, denominator, learning_rate)
    return result
