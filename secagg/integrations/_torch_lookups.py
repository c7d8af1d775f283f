"""Embedding lookups checked index by index inside the per-sample computation (:func:`checked_lookups`).

:func:`~secagg.integrations._torch_per_example.clipped_gradient_sum` gives a recurrent layer's
parameters to ``torch.func.vmap`` batched: each example its own expanded view. torch's batching rule
for ``embedding`` with a batched weight flattens the views into one table of ``rows * num_embeddings``
rows and offsets each example's indices without checking them, so an index past the table (or a
negative one) reads a row of ANOTHER example's view and its gradient lands in that example's: one
example could move the clipped sum by more than the clip. A lookup into such a parameter is an
Embedding tied to a recurrent layer's weight, or ``F.embedding`` on one in a custom forward. While
the computation runs, every ``F.embedding`` / ``torch.embedding`` first reads the looked-up rows with
``index_select``, whose batching rule checks every index against the example's own table (torch's
error, re-raised by the caller as the library's); the read is discarded, so no value or gradient
changes. Lookups into an unbatched table (every parameter outside a recurrent layer) are checked by
torch's embedding itself; :func:`checked_lookups` is entered only for a model with a recurrent layer.
``embedding_bag`` needs no read: torch checks each example's indices and offsets itself there. A
TorchFunctionMode sees calls made through torch's Python functions only: a lookup that bypasses them
(a TorchScript function, ``torch.ops.aten.embedding`` called directly, one under
``torch._C.DisableTorchFunction``) is not checked here. Such a lookup cannot reach another example's
rows either: :mod:`~secagg.integrations._torch_recurrent` puts the per-example views only where no
lookup runs (a recurrent layer's own kernel), or has vmap take one example per call. This check is
kept in front of that (docs/privacy.md, "PyTorch").
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["checked_lookups"]


def _argument(args: Sequence[Any], kwargs: Mapping[str, Any], position: int, name: str) -> Any:
    return args[position] if len(args) > position else kwargs.get(name)


def _check(torch: Any, indices: Any, weight: Any) -> None:
    """torch's IndexError or RuntimeError unless every index in ``indices`` is a row of ``weight``."""
    if isinstance(indices, torch.Tensor) and isinstance(weight, torch.Tensor) and weight.ndim == 2:
        weight.index_select(0, indices.reshape(-1))  # checked per example; the rows read are discarded


def checked_lookups(torch: Any) -> Any:
    """A ``torch.overrides.TorchFunctionMode`` (a context manager) that checks the indices of every
    ``torch.nn.functional.embedding`` and ``torch.embedding`` call against the table's rows before
    the call runs (nn.Embedding looks up through the former)."""
    mode: Any = importlib.import_module("torch.overrides").TorchFunctionMode
    functional = torch.nn.functional

    class _CheckedLookups(mode):  # type: ignore[misc]
        def __torch_function__(
            self,
            func: Callable[..., Any],
            types: object,
            args: Sequence[Any] = (),
            kwargs: Mapping[str, Any] | None = None,
        ) -> Any:
            kwargs = kwargs or {}
            if func is functional.embedding:
                _check(torch, _argument(args, kwargs, 0, "input"), _argument(args, kwargs, 1, "weight"))
            elif func is torch.embedding:
                _check(torch, _argument(args, kwargs, 1, "indices"), _argument(args, kwargs, 0, "weight"))
            return func(*args, **kwargs)

    return _CheckedLookups()
