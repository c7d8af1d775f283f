"""Per-example clipped gradients of a PyTorch model by ``torch.func`` (:func:`clipped_gradient_sum`).

Split from :mod:`secagg.integrations.torch_dp`, which re-exports :func:`clipped_gradient_sum`:
the checks of what can be computed per example (layers that mix a batch's examples, random draws
inside the forward pass), of the loss and the batch, and the ``vmap(grad(...))`` computation.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from secagg._validate import require_finite
from secagg.errors import ConfigurationError, ConfigurationTypeError
from secagg.integrations._extras import require
from secagg.integrations._torch_dp_model import _trainable_parameters
from secagg.integrations._torch_lookups import checked_lookups
from secagg.integrations._torch_one_example import (
    check_one_example,
    per_sample_failure,
    refuse_without_values,
    require_loss_of_parameters,
    require_scalar_loss,
)
from secagg.integrations._torch_recurrent import kernel_views, per_example_gradients, per_example_layout

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module

__all__ = [
    "FloatVector",
    "LossFn",
    "clipped_gradient_sum",
    "refuse_batch_mixing",
    "require_batch",
    "require_loss",
    "torch_module",
]

FloatVector = npt.NDArray[np.float64]
LossFn = Callable[["Tensor", "Tensor"], "Tensor"]


def torch_module() -> Any:
    """The ``torch`` module, imported on first use (ConfigurationError naming the extra if missing)."""
    require("torch", "torch")
    return importlib.import_module("torch")


def refuse_batch_mixing(model: Module) -> None:
    """ConfigurationError naming a BatchNorm layer in training mode: it normalises with the
    batch's statistics, so no example has a gradient of its own to clip; or a dropout module of
    p > 0 (or a MultiheadAttention of dropout > 0) in training mode: ``torch.func.vmap`` refuses
    its random draw (every hospital's gradient computation would raise); or an RReLU, in either
    mode: vmap has no rule for its kernel; or an InstanceNorm tracking running statistics in
    training mode: vmap refuses its in-place update of them; or an Embedding or EmbeddingBag with
    ``max_norm``, in either mode: it rescales the looked-up rows of its weight in place, so the
    computation would rewrite the model it is computed at."""
    torch = torch_module()
    batch_norm = torch.nn.modules.batchnorm._BatchNorm
    instance_norm = torch.nn.modules.instancenorm._InstanceNorm
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.RReLU):
            slope = (module.lower + module.upper) / 2  # what RReLU computes in eval mode
            raise ConfigurationError(
                f"module {name!r} (RReLU) cannot be computed per example: torch.func.vmap has no rule for it, in "
                f"training or eval mode; in eval mode it is LeakyReLU(negative_slope={slope}): use that "
                "(docs/privacy.md, \"PyTorch\")"
            )
        dropout = module.p if isinstance(module, torch.nn.modules.dropout._DropoutNd) else None
        if isinstance(module, torch.nn.MultiheadAttention):
            dropout = module.dropout  # a float setting of its own, drawn inside its forward
        if dropout is not None and module.training and dropout > 0:
            raise ConfigurationError(
                f"module {name!r} ({type(module).__name__}) is in training mode: per-sample gradients "
                "(torch.func.vmap) take no random draw, so no hospital's gradient could be computed; "
                "put the model in eval mode (model.eval()) for DP rounds, on every side "
                "(docs/privacy.md, \"PyTorch\")"
            )
        if isinstance(module, batch_norm) and module.training:
            raise ConfigurationError(
                f"module {name!r} ({type(module).__name__}) is in training mode: it normalises with the batch's "
                "statistics, which mixes the examples, so there is no per-example gradient to clip; "
                "use GroupNorm or LayerNorm (docs/privacy.md, \"PyTorch\")"
            )
        if isinstance(module, torch.nn.Embedding | torch.nn.EmbeddingBag) and module.max_norm is not None:
            raise ConfigurationError(
                f"module {name!r} ({type(module).__name__}) has max_norm={module.max_norm}: it rescales the rows it "
                "looks up in place, inside its forward pass, so computing the per-sample gradients would rewrite "
                "the model they are computed at; build it with max_norm=None (docs/privacy.md, \"PyTorch\")"
            )
        if isinstance(module, instance_norm) and module.training and module.track_running_stats:
            raise ConfigurationError(
                f"module {name!r} ({type(module).__name__}) tracks running statistics in training mode: it updates "
                "them in place from the batch, which per-sample gradients (torch.func.vmap) cannot; build it with "
                "track_running_stats=False, or put the model in eval mode (model.eval()) on every side "
                "(docs/privacy.md, \"PyTorch\")"
            )


_Saved = list[tuple[dict[str, Any], dict[str, tuple[Any, list[Any] | dict[Any, Any] | None]]]]


def _plain_attributes(model: Module) -> _Saved:
    """Each module's attribute dict, and each attribute in it (a list's items too: an RNN updates
    its list of weights in place; a dict's entries, but for torch's own dicts of the module's
    parameters, buffers, submodules and hooks), for :func:`_restore`."""
    machinery = frozenset(vars(torch_module().nn.Module()))  # a bare module's own: functional_call's to restore

    def items(key: str, item: Any) -> list[Any] | dict[Any, Any] | None:
        if type(item) is list:
            return list(item)
        return dict(item) if type(item) is dict and key not in machinery else None

    return [
        (state, {key: (item, items(key, item)) for key, item in state.items()})
        for state in (vars(module) for module in model.modules())
    ]


def _restore(saved: _Saved) -> None:
    """Put back every module's plain attributes as :func:`_plain_attributes` saw them.

    The forward pass runs inside ``torch.func.vmap``, and a module that sets a plain attribute while
    it runs (an RNN's list of its weights, an old-style ``weight_norm`` or ``spectral_norm``'s
    ``weight``, a module keeping its last output, as an attribute or in a list or dict it holds) would
    keep a tensor from inside vmap, which torch cannot read: the next
    :func:`~secagg.integrations._torch_dp_model.dp_model_digest` of the model (the next hospital's,
    the next round's) would refuse it. ``functional_call`` restores the parameters and buffers
    themselves."""
    for state, before in saved:
        for key in [key for key in state if key not in before]:
            del state[key]
        for key, (item, items) in before.items():
            if isinstance(items, list):
                item[:] = items  # the same list object, its items as they were
            elif isinstance(items, dict):
                item.clear()  # the same dict object, its entries as they were
                item.update(items)
            state[key] = item


def _bytes(torch: Any, tensor: Tensor) -> Tensor:
    """``tensor``'s bytes, as one uint8 tensor (a contiguous copy of a strided tensor first)."""
    flat: Tensor = tensor.reshape(-1).contiguous().view(torch.uint8)
    return flat


def _put_back(torch: Any, params: Mapping[str, Tensor], values: Mapping[str, Tensor]) -> list[str]:
    """The names of the tensors in ``params`` whose bits differ from ``values``', each written back to
    its value there. Bits, not values: ``-0.0`` written over ``0.0`` is equal by value but another
    model to the round's digest (and to ``1 / w``); a NaN left as it was is unchanged by its bits too."""
    written = []
    with torch.no_grad():
        for name, tensor in params.items():
            value = values[name]
            if not torch.equal(_bytes(torch, tensor), _bytes(torch, value)):
                tensor.copy_(value)
                written.append(name)
    return written


def _untrained(model: Module, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The model's frozen parameters (those not in ``params``) and its buffers, detached, by name."""
    frozen = {name: p.detach() for name, p in model.named_parameters() if name not in params}
    return frozen | {name: b.detach() for name, b in model.named_buffers()}


def _trainable(model: Module) -> dict[str, Tensor]:
    return {name: p.detach() for name, p in _trainable_parameters(model)}


def require_loss(loss_fn: object) -> None:
    """ConfigurationTypeError for a loss that is not callable (vmap would raise Python's TypeError)."""
    if not callable(loss_fn):
        raise ConfigurationTypeError(
            f"loss_fn must be a function of (output, target) returning a scalar, got {type(loss_fn).__name__}"
        )


def require_batch(torch: Any, inputs: object, targets: object) -> int:
    """The batch size of ``inputs`` and ``targets``; ConfigurationError unless both are tensors with a
    batch dimension of one size (one target per example)."""
    for name, tensor in (("inputs", inputs), ("targets", targets)):
        if not isinstance(tensor, torch.Tensor) or tensor.ndim == 0:
            raise ConfigurationError(
                f"{name} must be a torch.Tensor with a batch dimension, got {type(tensor).__name__}"
            )
    rows = int(inputs.shape[0])  # type: ignore[attr-defined]
    if rows != int(targets.shape[0]):  # type: ignore[attr-defined]
        # No counts in the text: it can be a withheld hospital's reason, and its row count is its own.
        raise ConfigurationError("inputs and targets have different batch sizes: one target per example")
    return rows


def clipped_gradient_sum(
    model: Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor, l2_clip: float
) -> FloatVector:
    """``sum_i min(1, l2_clip / ||g_i||) g_i`` over the batch as one float64 vector.

    g_i is example i's gradient of ``loss_fn(model(x_i), y_i)`` over the trainable
    parameters (in ``named_parameters`` order, each flattened), computed for the whole
    batch at once with ``torch.func.vmap(grad(...))``: no Python loop over examples, but for a
    model whose recurrent layer is not torch's own as torch runs it (a subclass, a hook on it), which
    vmap takes one example per call (:mod:`~secagg.integrations._torch_recurrent`).
    ``loss_fn`` gets a batch of one and must return a scalar.

    Refused with a ConfigurationError before anything is computed: a model on the meta device (no
    values). When the vmap raises a foreign error, the model and the loss run once on the batch's
    first example (:func:`~secagg.integrations._torch_one_example.check_one_example`, on copies, the
    model put back as it was) to name it: inputs the forward pass cannot take (another width than
    the first layer's, integer features for a float model) or targets the loss cannot take (another
    dtype or shape) are refused naming which failed and the example's shapes and dtypes, torch's
    error chained; a loss returning anything but a scalar float tensor (``reduction='none'``)
    naming what it returned, or one that does not depend on the trainable parameters (a detached
    output). A foreign error the first example does not meet (a label out of range at a later row, a
    token id outside an embedding's table: every lookup reads a table holding one example's rows only,
    where torch's embedding checks every index, by whatever route it goes,
    :func:`~secagg.integrations._torch_recurrent.per_example_layout`) is a ConfigurationError
    chained from the vmap's. A computation that succeeds
    runs no dry run: no copy of the parameters for it, forward hooks run by the vmap only.
    The model's parameters, buffers and attributes are as they were after every refusal.
    """
    if require_finite("l2_clip", l2_clip) <= 0:
        raise ConfigurationError(f"l2_clip must be a positive number, got {l2_clip}")
    require_loss(loss_fn)
    torch = torch_module()
    func = importlib.import_module("torch.func")
    params = _trainable(model)
    require_batch(torch, inputs, targets)
    if not params:
        raise ConfigurationError("the model has no trainable parameters")
    refuse_batch_mixing(model)
    refuse_without_values(model)
    if inputs.shape[0] == 0:
        return np.zeros(sum(int(p.numel()) for p in params.values()))
    buffers = {name: b.detach() for name, b in model.named_buffers()}

    # A recurrent layer's parameters reach its kernel batched, each example its own view (expanded: no
    # copy): the backward pass of torch's recurrent kernels (GRU, RNN, the cells, a float64 LSTM)
    # accumulates a parameter's gradient in place into a tensor of the parameter's shape, which vmap
    # cannot do with one gradient per example (torch's "output with shape [1, 4] doesn't match the
    # broadcast shape [5, 1, 4]"). Every other use of a parameter gets one shared, unbatched tensor
    # (torch's own per-sample-gradient recipe): torch's embedding rule for a batched weight flattens the
    # views into one table and offsets each example's indices without checking them, so an index
    # outside the table read a row of ANOTHER example's view, by whatever route the lookup went (a tied
    # Embedding, F.embedding, a TorchScript function, torch.ops.aten.embedding); on one shared table
    # torch's embedding checks every index (an IndexError, refused below). Where the views exist, and
    # what it costs, is _torch_recurrent's (the kernel's own views, or one example per vmap call).
    layout = per_example_layout(torch, model, params, rows := int(inputs.shape[0]))
    views: dict[str, Tensor] = {}

    def loss_of_one(
        parameters: Mapping[str, Tensor], viewed: Mapping[str, Tensor], x: Tensor, y: Tensor
    ) -> Tensor:
        views.update(viewed)  # what the recurrent kernels run with, in this call (kernel_views); same keys
        output = func.functional_call(model, (dict(parameters), buffers), (x.unsqueeze(0),))
        loss: Tensor = loss_fn(output, y.unsqueeze(0))
        require_scalar_loss(torch, loss)  # grad of an integer loss gives zero gradients without a word
        require_loss_of_parameters(loss)  # so does grad of a loss of a detached output
        return loss

    # One copy of the trainable parameters per call, kept on purpose: the layout is the parameters' own memory
    # (detached and expanded views), so a forward pass that writes into a parameter in place writes into
    # the caller's model. Only a copy taken before finds such a write (a `.data` write outside torch.func
    # moves no version counter) and puts the parameter back, after the computation and after the dry run
    # below; it is one model's size, against the batch's per-example gradients (rows times that) below.
    saved, values = _plain_attributes(model), {name: p.clone() for name, p in params.items()}
    # The first example as it was (one row, copied): the forward pass inside vmap may write into its input.
    first = inputs[:1].clone(), targets[:1].clone()
    failure: tuple[ConfigurationError, Exception] | None = None
    try:
        with (
            checked_lookups(torch) if layout.per_example else contextlib.nullcontext(),
            kernel_views(model, layout, views),
        ):
            per_sample = per_example_gradients(torch, *func.vmap(
                func.grad(loss_of_one, argnums=(0, 1)), in_dims=(dict(layout.dims), 0, 0, 0),
                chunk_size=layout.chunk_size,
            )(dict(layout.shared), dict(layout.views), inputs, targets))  # fmt: skip
    except Exception as exc:
        refusal = per_sample_failure(exc)
        if refusal is None:
            raise  # the library's own error, or the computing party's MemoryError
        failure = refusal, exc
    finally:
        _restore(saved)
        written = _put_back(torch, params, values)
    if failure is not None:
        # Only now the dry run (on copies of the first example, the parameters and the buffers, the model
        # put back as it was): it names a failure of the forward pass or of the loss on the first example.
        # Outside torch.func, a forward pass can write through a reference it kept to a parameter or a buffer,
        # and into a frozen parameter (not among the copies it runs on): a running statistic updated from the
        # first example's values. Those are copied here, on this failure path only, and put back with the rest.
        untrained = _untrained(model, params)
        kept = {name: tensor.clone() for name, tensor in untrained.items()}
        try:
            check_one_example(torch, func, model, loss_fn, params, buffers, *first)
        finally:
            _restore(saved)
            _put_back(torch, params, values)
            _put_back(torch, untrained, kept)
        raise failure[0] from failure[1]
    if written:
        raise ConfigurationError(
            f"the forward pass wrote into parameter {written[0]!r} (an in-place update inside forward: a clamp, a "
            "renormalisation): its gradients would not be at the model given; it was put back as it was. Keep "
            "forward free of writes into the parameters"
        )
    return _clipped_sum(torch, [per_sample[name].reshape(rows, -1) for name in params], l2_clip)


def _clipped_sum(torch: Any, per_sample: list[Tensor], l2_clip: float) -> FloatVector:
    """``sum_i min(1, l2_clip / ||g_i||) g_i`` of the rows g_i of the parameters' per-example gradients
    (each ``rows x values``, in parameter order) side by side, in float64; ConfigurationError for a
    NaN or infinite one."""
    flat = torch.cat(per_sample, dim=1)
    # detach: a tensor outside the parameters that requires grad (a plain attribute) leaves its history here
    flat = flat.detach().to(torch.float64)
    if not bool(torch.isfinite(flat).all()):
        raise ConfigurationError("a per-sample gradient is NaN or infinite (check the inputs and the loss)")
    factors = torch.clamp(l2_clip / flat.norm(dim=1).clamp_min(torch.finfo(torch.float64).tiny), max=1.0)
    summed: FloatVector = (flat * factors[:, None]).sum(dim=0).numpy()
    return summed
