"""PyTorch DP: a lookup into a recurrent layer's parameter that bypasses torch's Python functions.

:func:`clipped_gradient_sum` gives vmap a recurrent layer's parameters batched (each example its own
expanded view), and torch's batching rule for ``embedding`` on a batched weight flattens the views
into one table of ``rows * num_embeddings`` rows, offsetting each example's indices unchecked: an
index past the table (or a negative one) reads ANOTHER example's row, its gradient landing in that
example's. The check of every lookup (:func:`~secagg.integrations._torch_lookups.checked_lookups`, a
``TorchFunctionMode``) saw calls through torch's Python functions only, so a lookup by a TorchScript
function, by ``torch.ops.aten.embedding`` called directly, or under ``torch._C.DisableTorchFunction``
returned a clipped sum without a word, and one example moved it by twice the clip (measured on the
code before: ``||sum(D) - sum(D minus example 0)|| = 2.0 * clip``). A model with per-example
parameters is now computed one example per vmap call: no tensor holds another example's rows, so such
an index is torch's error, refused by the library, whatever route the lookup takes.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest

from secagg.errors import ConfigurationError

from .torch_recurrent import (
    assert_one_example_moves_the_sum_by_at_most_the_clip,
    assert_the_clipped_sum_is_one_at_a_time_autograd_s,
    lookup,
    outside,
    refusal_leaving_the_model,
    tokens,
    torch,
    torch_dp,
)

F = torch.nn.functional
HIDDEN, FEATURES = 2, 3
TABLE = 4 * HIDDEN  # the rows of an LSTM's input weights (4 gates): the lookup's vocabulary
ROUTES = ["TorchScript", "aten", "DisableTorchFunction"]  # none seen by a TorchFunctionMode


class _Text(torch.nn.Module):  # type: ignore[misc]
    """Token ids looked up in an LSTM's input weights (by ``route``), then the LSTM and a Linear."""

    def __init__(self, route: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.route = route
        self.lstm, self.score = torch.nn.LSTM(FEATURES, HIDDEN, batch_first=True), torch.nn.Linear(HIDDEN, 2)
        self.double()

    def forward(self, x: Any) -> Any:
        embedded = lookup(self.route, self.lstm.weight_ih_l0, x)
        return self.score(self.lstm(embedded)[0][:, -1])


def _tokens() -> tuple[Any, Any]:
    return tokens(TABLE, 6)


OUTSIDE = {**outside(TABLE), "negative, the last row": (5, -1)}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("case", sorted(OUTSIDE))
def test_an_index_outside_the_table_is_refused_whatever_route_the_lookup_takes(case: str, route: str) -> None:
    """Before: every case returned a clipped sum (the first row's index read the second example's row,
    the last row's negative one the fifth example's)."""
    # Prepare: one token of one row outside the table of 8
    row, index = OUTSIDE[case]
    model, (x, y) = _Text(route), _tokens()
    x[row, 1] = index
    # Execute / Assert: a library error, torch's chained; the model as it was
    assert refusal_leaving_the_model(model, x, y).__cause__ is not None


class _Bag(torch.nn.Module):  # type: ignore[misc]
    """The sum of the rows looked up in an LSTM's input weights, scored by a frozen Linear whose bias
    favours class 0; only the looked-up table is trained (the LSTM is there for its parameters)."""

    def __init__(self, route: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.route = route
        self.lstm, self.score = torch.nn.LSTM(FEATURES, HIDDEN), torch.nn.Linear(FEATURES, 2)
        with torch.no_grad():
            self.score.bias.copy_(torch.tensor([2.0, 0.0]))
        for name, parameter in self.named_parameters():
            parameter.requires_grad_(name == "lstm.weight_ih_l0")
        self.double()

    def forward(self, x: Any) -> Any:
        return self.score(lookup(self.route, self.lstm.weight_ih_l0, x).sum(dim=1))


@pytest.mark.parametrize("route", ROUTES)
def test_one_example_moves_the_clipped_sum_by_at_most_the_clip(route: str) -> None:
    """The sensitivity the noise is calibrated to: adding one example to a batch moves the clipped sum
    by at most the clip, or the batch is refused. Before: example 0 (label 1) looked up example 1's rows
    (label 0, the same tokens) past its own table; its gradient landed in example 1's, flipped that
    example's clipped direction, and the sum moved by twice the clip."""
    assert_one_example_moves_the_sum_by_at_most_the_clip(partial(_Bag, route), TABLE)


@pytest.mark.parametrize("route", ROUTES)
def test_in_range_tokens_keep_each_example_s_own_gradient(route: str) -> None:
    """A lookup by any route, in range: the clipped sum (a clip that binds) is one-at-a-time autograd's."""
    assert_the_clipped_sum_is_one_at_a_time_autograd_s(partial(_Text, route), *_tokens())


class _LookingLSTM(torch.nn.LSTM):  # type: ignore[misc]
    """An LSTM of its own class whose forward looks token ids up in its own input weights (by
    ``route``): its forward runs with the per-example views, so the vmap takes one example per call."""

    route = "aten"

    def forward(self, x: Any) -> Any:  # type: ignore[override]
        return super().forward(lookup(self.route, self.weight_ih_l0, x))


class _Own(torch.nn.Module):  # type: ignore[misc]
    def __init__(self, route: str, hooked: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lstm, self.score = _LookingLSTM(FEATURES, HIDDEN, batch_first=True), torch.nn.Linear(HIDDEN, 2)
        self.lstm.route = route
        if hooked:  # a hook on the layer: the kernel's own views are not used either
            self.lstm.register_forward_hook(lambda module, args, output: None)
        self.double()

    def forward(self, x: Any) -> Any:
        return self.score(self.lstm(x)[0][:, -1])


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("case", sorted(OUTSIDE))
def test_a_lookup_inside_a_recurrent_layer_of_its_own_class_is_refused(case: str, route: str) -> None:
    """The layer's own forward sees its per-example views: one example per vmap call, so its views hold
    that example's rows only and torch's embedding checks the index."""
    # Prepare
    row, index = OUTSIDE[case]
    model, (x, y) = _Own(route), _tokens()
    x[row, 1] = index
    # Execute / Assert
    with pytest.raises(ConfigurationError) as refused:
        torch_dp.clipped_gradient_sum(model, F.cross_entropy, x, y, 1.0)
    assert refused.value.__cause__ is not None


@pytest.mark.parametrize("hooked", [False, True], ids=["own class", "own class, hooked"])
@pytest.mark.parametrize("route", ROUTES)
def test_one_example_per_call_keeps_each_example_s_own_gradient(route: str, hooked: bool) -> None:
    assert_the_clipped_sum_is_one_at_a_time_autograd_s(partial(_Own, route, hooked), *_tokens())


def _hook(model: Any, where: str) -> Any:
    """A no-op hook (its handle): a pre-hook on the model's LSTM, or a forward hook on every module."""
    if where == "on the layer":
        return model.lstm.register_forward_pre_hook(lambda module, args: None)
    return torch.nn.modules.module.register_module_forward_hook(lambda module, args, output: None)


@pytest.mark.parametrize("where", ["on the layer", "on every module"])
def test_a_hooked_recurrent_layer_s_views_hold_one_example(where: str) -> None:
    """A forward hook that may read the LSTM's parameters (on it, or on every module): one example per call."""
    from secagg.integrations._torch_recurrent import per_example_layout  # noqa: PLC0415

    # Prepare
    model = _Text("aten")
    params = {name: p.detach() for name, p in model.named_parameters()}
    plain = per_example_layout(torch, model, params, 6)
    handle = _hook(model, where)
    # Execute
    try:
        hooked = per_example_layout(torch, model, params, 6)
    finally:
        handle.remove()
    # Assert
    assert (plain.chunk_size, sorted(plain.views), hooked.chunk_size, dict(hooked.views)) == (
        None, sorted(name for name in params if name.startswith("lstm.")), 1, {},
    )  # fmt: skip
