"""What :func:`~secagg.integrations._torch_per_example.clipped_gradient_sum` checks around its
per-example computation: a model with values to compute at (before it), the loss's value (inside it),
and, when it fails, the model and the loss run on the batch's first example to name the failure.

**One dry run, not a check per mistake.** What a model takes is its forward pass's to say (an
Embedding takes integer features, a Linear float ones of its width, a custom forward anything), and
what a loss takes is the loss's: a list of special cases (the first Linear's ``in_features``, a float
dtype for the inputs) would refuse good models and miss every other mistake. So when the per-sample computation raises a
foreign error, the model and the loss run once on the first example (copied before that computation
ran), outside ``torch.func.vmap`` and on copies of the parameters and the buffers (the model keeps its
values; its forward hooks run once more, on that failure path only: a computation that succeeds runs
no dry run and copies no parameter for one), and a failure there is re-raised as a ConfigurationError
naming which of the two failed and on what: the example's shapes and dtypes, the model's parameters' dtypes
and devices and its first layer; torch's error is chained (``raise ... from``), so the caller's
traceback shows it, but the library's text never carries it: in :func:`~secagg.integrations.torch_dp.run_dp_round`
the text is a withheld hospital's reason, reported to the server, and torch's text can carry the
hospital's values. A loss that returns anything but a scalar float tensor is refused naming what it
returned (:class:`LossNotScalarError`, :func:`require_scalar_loss`: checked inside the per-sample
computation too, where ``grad`` of an integer loss would give zero gradients without a word). A failure
the first example does not meet (a label out of the loss's range at a later row, an operation vmap
cannot batch) is re-raised the same way (:func:`per_sample_failure`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from secagg.errors import ConfigurationError, SecAggError

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module

__all__ = [
    "LossNotScalarError",
    "check_one_example",
    "per_sample_failure",
    "refuse_without_values",
    "require_loss_of_parameters",
    "require_scalar_loss",
]

_LONGEST_LAYER = 160
"""The most characters of the first layer's description a refusal quotes."""


class LossNotScalarError(ConfigurationError):
    """``loss_fn`` returned something other than a scalar float tensor on a batch of one, or one that
    does not depend on the trainable parameters (:func:`require_loss_of_parameters`). Usually
    the caller's loss (``reduction='none'``), but what it returns can depend on a hospital's data
    or copy (complex features through a model that keeps its input's dtype), so
    :func:`~secagg.integrations.torch_dp.run_dp_round` withholds such a hospital and raises this
    for the round, uncharged, only when no hospital's loss returned a scalar."""


def refuse_without_values(model: Module) -> None:
    """ConfigurationError naming a parameter or buffer of ``model`` on the meta device: it has a shape
    but no values, so there are no gradients to compute at (torch fails only once the whole batch's
    per-sample gradients are computed, and the model's digest cannot be read)."""
    for kind, named in (("parameter", model.named_parameters()), ("buffer", model.named_buffers())):
        for name, tensor in named:
            if tensor.is_meta:
                raise ConfigurationError(
                    f"{kind} {name!r} is on the meta device: it has a shape but no values, so there are no "
                    "gradients to compute at; materialise the model first (model.to_empty(device='cpu'), then "
                    "model.load_state_dict(...)) (docs/privacy.md, \"PyTorch\")"
                )


def _described(value: object) -> str:
    """A tensor's shape and dtype (no values), or the type of anything else."""
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is None or dtype is None:
        return f"a {type(value).__name__}"
    return f"shape {tuple(shape)}, {dtype}"


def _first_layer(model: Module) -> str:
    """The first module (in ``named_modules`` order) holding parameters of its own, as torch prints
    it (its class and settings): where the inputs go first in a sequential model."""
    for name, module in model.named_modules():
        if next(iter(module.parameters(recurse=False)), None) is not None:
            try:
                settings = module.extra_repr()
            except Exception:  # a module's own text is only a hint here
                settings = "..."
            layer = f"{type(module).__name__}({settings})"
            if len(layer) > _LONGEST_LAYER:
                layer = layer[: _LONGEST_LAYER - 4] + "...)"
            return f"its first layer {name!r} is {layer}" if name else f"it is {layer}"
    return "it has no layer with parameters"


def _model_side(model: Module, params: Mapping[str, Tensor]) -> str:
    dtypes = sorted({str(p.dtype) for p in params.values()})
    devices = sorted({str(p.device) for p in params.values()})
    return f"the model's parameters are {'/'.join(dtypes)} on {'/'.join(devices)}, {_first_layer(model)}"


def _foreign(exc: Exception) -> bool:
    """An exception the dry run re-raises as the library's: not the library's own (kept as it is),
    not a MemoryError (the computing party's resources, not the data's fault)."""
    return not isinstance(exc, SecAggError | MemoryError)


def check_one_example(
    torch: Any,
    func: Any,
    model: Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    params: Mapping[str, Tensor],
    buffers: Mapping[str, Tensor],
    inputs: Tensor,
    targets: Tensor,
) -> None:
    """Run ``model`` and ``loss_fn`` on the batch's first example (a batch of one, as the
    per-example computation does), on copies of ``params`` and ``buffers``.

    Raises ConfigurationError, chained from the foreign error, when the forward pass or the loss
    fails (naming which, with the example's shapes and dtypes and the model's side), and
    :class:`LossNotScalarError` when the loss returns anything but a 0-dimensional float tensor."""
    # Copies, not views: a forward pass (or loss) that writes into its input in place would otherwise
    # write into the first example before the per-sample computation reads it.
    x, y = inputs[:1].clone(), targets[:1].clone()
    copies = ({n: p.clone() for n, p in params.items()}, {n: b.clone() for n, b in buffers.items()})
    try:
        output = func.functional_call(model, copies, (x,))
    except Exception as exc:
        if not _foreign(exc):
            raise
        raise ConfigurationError(
            f"the model's forward pass raised {type(exc).__name__} on the batch's first example (inputs of "
            f"{_described(x)}; {_model_side(model, params)}): check the inputs' shape, dtype and range against the "
            "model's; torch's error is chained"
        ) from exc
    try:
        loss = loss_fn(output, y)
    except Exception as exc:
        if not _foreign(exc):
            raise
        raise ConfigurationError(
            f"loss_fn raised {type(exc).__name__} on the batch's first example (the model's output of "
            f"{_described(output)}, a target of {_described(y)}): check the targets' shape, dtype and values "
            "against the loss's; its error is chained"
        ) from exc
    require_scalar_loss(torch, loss)


def require_scalar_loss(torch: Any, loss: object) -> None:
    """:class:`LossNotScalarError` naming what ``loss`` is unless it is a 0-dimensional float tensor: what
    the loss returned on a batch of one, in the dry run or inside the per-sample computation (where
    ``torch.func.grad`` of an integer tensor gives zero gradients without a word)."""
    if not isinstance(loss, torch.Tensor):
        returned = f"a {type(loss).__name__}"
    elif loss.ndim != 0:
        returned = f"a tensor of shape {tuple(loss.shape)}"
    elif not loss.is_floating_point():
        returned = f"a {loss.dtype} tensor"
    else:
        return
    raise LossNotScalarError(
        f"loss_fn returned {returned} on a batch of one example; it must return a scalar, a 0-dimensional "
        "float tensor, to be differentiated per example (a mean or a sum: reduction='mean' or 'sum', not 'none')"
    )


def require_loss_of_parameters(loss: Tensor) -> None:
    """:class:`LossNotScalarError` unless ``loss`` (a scalar float tensor, inside the per-sample
    computation's ``torch.func.grad``) depends on the trainable parameters: ``grad`` of a loss computed
    from a detached output (``output.detach()``, ``output.data``) or of a constant is zero for every
    parameter, without a word, and the example would be summed as a zero gradient. So is ``grad`` of a
    tensor made outside that ``grad`` (a ``Parameter`` of the loss's own, a loss computed before and
    closed over): it requires grad and may have a ``grad_fn``, but of no parameter ``grad`` differentiates
    by. Inside ``grad``, an operation on such a tensor gives one that does not require grad (``grad``
    lifts it as a constant), so the check reads ``requires_grad`` of a view of the loss, not of the loss:
    it holds exactly for a loss that ``grad`` tracks, a function of the parameters it differentiates by."""
    if not loss.view_as(loss).requires_grad:
        raise LossNotScalarError(
            "loss_fn returned a scalar that does not depend on the model's trainable parameters (computed from a "
            "detached output, output.detach() or output.data, or a constant, or computed before): its gradient "
            "would be zero for every example; compute the loss from the model's output as it is"
        )


def per_sample_failure(exc: Exception) -> ConfigurationError | None:
    """The ConfigurationError to raise, ``from exc``, for a foreign ``exc`` from the vmap over the
    whole batch (None for the library's own errors and a MemoryError, raised as they are)."""
    if not _foreign(exc):
        return None
    return ConfigurationError(
        f"the per-sample gradient computation (torch.func.vmap over grad) raised {type(exc).__name__}, though "
        "the model and the loss run on the batch's first example: a value at another row the model or the "
        "loss cannot take (a label out of the loss's range), or an operation vmap cannot batch (a random draw, "
        ".item(), a branch on a tensor's value, an in-place write into a buffer); torch's error is chained"
    )
