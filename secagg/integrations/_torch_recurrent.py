"""Where a recurrent layer's per-example parameters exist during the per-sample computation
(:func:`per_example_layout`, :func:`kernel_views`).

The backward pass of torch's recurrent kernels accumulates a parameter's gradient in place into a
tensor of the parameter's shape, which ``torch.func.vmap`` cannot do with one gradient per example:
a recurrent layer's parameters must reach its kernel batched, each example its own expanded view.
But torch's batching rule for ``embedding`` on a batched weight flattens the views into one table of
``rows * num_embeddings`` rows and offsets each example's indices unchecked: a lookup into such a
view with an index past the table (or a negative one) reads ANOTHER example's row, its gradient
landing in that example's, so one example could move the clipped sum by twice the clip. A check of
the lookup calls (:mod:`~secagg.integrations._torch_lookups`) cannot see them all (a TorchScript
function, ``torch.ops.aten.embedding`` called directly, a lookup under
``torch._C.DisableTorchFunction``), so the isolation is where the views exist, two layouts:

- **The kernel's own views** (``complete``): when every recurrent layer is torch's own (``LSTM``,
  ``GRU``, ``RNN``, their cells; not a subclass, no forward or pre-forward hook on it, no global
  forward hook, no ``forward`` of its own), every parameter goes to ``functional_call`` shared (one
  unbatched tensor, as every other parameter), and the per-example views are put into the layer only
  while torch's forward of the layer runs (:func:`kernel_views`), which looks nothing up. Any other
  code (a tied ``Embedding``, a custom ``forward``, a TorchScript function, a hook) sees the shared
  parameter, where torch's embedding checks every index. A parameter's per-example gradient is the
  sum of the gradients of both (the shared one is zero unless something outside the kernel used it:
  then the view's is taken as it is, bit for bit). One vmap call for the batch, as before.
- **One example per call** (otherwise): the views go to ``functional_call`` as before, and vmap takes
  one example per call (``chunk_size=1``), so the views it flattens hold one example's rows only, and
  torch's embedding checks every index whatever route the lookup takes; several times slower
  (docs/privacy.md, "PyTorch", gives the figures).
"""

from __future__ import annotations

import contextlib
import importlib
import weakref
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module

__all__ = ["Layout", "kernel_views", "per_example_gradients", "per_example_layout"]

_OWN_RECURRENT = ("LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell")


@dataclass(frozen=True)
class Layout:
    """How :func:`~secagg.integrations._torch_per_example.clipped_gradient_sum` gives vmap the
    parameters: ``shared`` (by name, with ``dims`` their in_dims for vmap) to ``functional_call``,
    ``views`` (batched, in_dims 0) to the recurrent layers' kernels only (``kernels``: each layer with
    its (local name, parameter name) pairs), and the vmap's ``chunk_size``; ``caches``: the recurrent
    layers that keep a list of their weights (``RNNBase``'s ``_flat_weights``), kept in step with the
    tensors ``functional_call`` and the kernels put in their parameters' places (:func:`kernel_views`)."""

    shared: Mapping[str, Tensor]
    dims: Mapping[str, int | None]
    views: Mapping[str, Tensor]
    kernels: tuple[tuple[Module, tuple[tuple[str, str], ...]], ...]
    chunk_size: int | None
    caches: tuple[Module, ...] = ()

    @property
    def per_example(self) -> bool:
        """Some parameter has per-example views (the model has a trainable recurrent layer)."""
        return bool(self.views) or self.chunk_size is not None


def _own_kernel(torch: Any, module: Module) -> bool:
    """``module`` is one of torch's recurrent layers as torch runs it: its own class, no forward of its
    own, no hook around its forward."""
    own = tuple(getattr(torch.nn, name) for name in _OWN_RECURRENT)
    hooked = module._forward_hooks or module._forward_pre_hooks
    return type(module) in own and "forward" not in vars(module) and not hooked


def _global_forward_hooks() -> bool:
    """A forward hook or pre-hook registered for every module (``register_module_forward_hook``)."""
    hooks = importlib.import_module("torch.nn.modules.module")
    return bool(getattr(hooks, "_global_forward_hooks", None) or getattr(hooks, "_global_forward_pre_hooks", None))


def per_example_layout(torch: Any, model: Module, params: Mapping[str, Tensor], rows: int) -> Layout:
    """The :class:`Layout` for ``params`` (the trainable parameters by name) and a batch of ``rows``."""
    recurrent_types = (torch.nn.RNNBase, torch.nn.RNNCellBase)
    recurrent = [m for m in model.modules() if isinstance(m, recurrent_types)]
    key = {id(p): name for name, p in model.named_parameters() if name in params}  # params are detached copies' names
    held = {key[id(p)] for m in recurrent for p in m.parameters() if id(p) in key}
    expanded = {name: p.unsqueeze(0).expand(rows, *p.shape) for name, p in params.items() if name in held}
    caches = tuple(m for m in recurrent if isinstance(m, torch.nn.RNNBase) and "_flat_weights_names" in vars(m))
    if all(_own_kernel(torch, m) for m in recurrent) and not _global_forward_hooks():
        kernels = tuple(
            (m, tuple((local, key[id(p)]) for local, p in m._parameters.items() if p is not None and id(p) in key))
            for m in recurrent
        )
        return Layout(dict(params), dict.fromkeys(params), expanded, kernels, None, caches)
    shared = {name: expanded.get(name, p) for name, p in params.items()}
    dims = {name: 0 if name in held else None for name in params}
    return Layout(shared, dims, {}, (), 1 if held else None, caches)


def _swapping(
    module: Module, entries: tuple[tuple[str, str], ...], views: Mapping[str, Tensor]
) -> Callable[..., Any]:
    """torch's forward of ``module``, run with the per-example ``views`` in its parameters' places
    (as ``functional_call`` puts a tensor there) and the tensors it had put back after, with every
    plain attribute the forward set put back, and an RNN's ``_flat_weights`` then made the tensors back
    in its parameters' places (:func:`_refresh`): torch's forward leaves in that list the weights it
    ran with, which would hand the views to any later reader of it (a lookup by
    ``torch.ops.aten.embedding`` into ``_flat_weights[0]`` read another example's row)."""
    forward = type(module).forward
    slots: dict[str, Any] = module._parameters  # where functional_call puts its tensors too
    state: dict[str, Any] = vars(module)

    def run(*args: Any, **kwargs: Any) -> Any:
        before = [(local, slots[local]) for local, _ in entries]
        attributes = {key: (item, list(item) if type(item) is list else None) for key, item in state.items()}
        try:
            for local, name in entries:
                slots[local] = views[name]
            return forward(module, *args, **kwargs)
        finally:
            for local, tensor in before:
                slots[local] = tensor
            _put_attributes_back(state, attributes)
            if "_flat_weights_names" in state:  # an RNN, not a cell: no list of weights
                _refresh(module)

    return run


def _put_attributes_back(state: dict[str, Any], attributes: Mapping[str, tuple[Any, list[Any] | None]]) -> None:
    """``state`` (a module's attribute dict) as ``attributes`` held it: each attribute the same object
    (a list with its items as they were), none added."""
    for key in [key for key in state if key not in attributes]:
        del state[key]
    for key, (item, items) in attributes.items():
        if items is not None:
            item[:] = items
        state[key] = item


def _refresh(module: Module) -> None:
    """An RNN's ``_flat_weights`` (and the weak references torch checks them by) made the tensors now in
    its parameters' places, as torch's ``_init_flat_weights`` makes them (without its cuDNN step)."""
    flat = [getattr(module, name) if hasattr(module, name) else None for name in vars(module)["_flat_weights_names"]]
    vars(module)["_flat_weights"] = flat
    vars(module)["_flat_weight_refs"] = [None if w is None else weakref.ref(w) for w in flat]


@contextlib.contextmanager
def kernel_views(model: Module, layout: Layout, views: MutableMapping[str, Tensor]) -> Iterator[None]:
    """While it is entered, each of ``layout.kernels``' layers runs torch's forward with the tensors in
    ``views`` (filled by the per-sample function on each call) in its parameters' places, and each
    call of ``model`` first refreshes ``layout.caches``' lists of weights: ``functional_call`` puts its
    tensors into a layer's parameters but not into its ``_flat_weights``, which only the layer's own
    forward updates, so a kernel run on that list before (``torch._VF.lstm`` on it, in the model's
    forward or a subclass's) ran with the model's own parameters, their gradients silently zero."""
    for module, entries in layout.kernels:
        vars(module)["forward"] = _swapping(module, entries, views)

    def refresh(*_: Any) -> None:
        for module in layout.caches:
            _refresh(module)

    handle = model.register_forward_pre_hook(refresh, prepend=True)
    try:
        yield
    finally:
        handle.remove()
        for module, _ in layout.kernels:
            vars(module).pop("forward", None)


def per_example_gradients(torch: Any, shared: Mapping[str, Tensor], viewed: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Each parameter's per-example gradient: the shared tensor's, plus the views' where a parameter
    has one (the view's as it is, bit for bit, where the shared one is zero: used by the kernel only)."""
    return {name: g if name not in viewed else _both(torch, g, viewed[name]) for name, g in shared.items()}


def _both(torch: Any, shared: Tensor, viewed: Tensor) -> Tensor:
    if not bool(shared.any()):
        return viewed  # the parameter was used by its recurrent layers only: their gradient as it is
    summed: Tensor = torch.where(shared == 0, viewed, viewed + shared)
    return summed
