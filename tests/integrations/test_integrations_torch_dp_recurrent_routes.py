"""PyTorch DP: every way a model's forward can reach a recurrent layer's computation or parameters.

For torch's own recurrent classes, :mod:`~secagg.integrations._torch_recurrent` shares every parameter
and swaps the per-example views into the layer only while torch's forward of it runs. A model can
reach the layer's computation without that swap (``torch.nn.LSTM.forward`` called directly,
``torch._VF.lstm`` on the layer's weights), use its weights elsewhere (a tied ``Linear``), call it twice
or from two parents, or read what the layer keeps after its forward (its ``_flat_weights`` list). Each
must give the clipped sum one-at-a-time autograd gives, or be refused; and no lookup may read the
per-example views, where torch's ``embedding`` offsets indices into another example's rows unchecked.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import pytest

from secagg.errors import ConfigurationError

from .torch_recurrent import (
    assert_one_example_moves_the_sum_by_at_most_the_clip,
    assert_the_clipped_sum_is_one_at_a_time_autograd_s,
    lookup,
    looped,
    refusal_leaving_the_model,
    tokens,
    torch,
    torch_dp,
)

F = torch.nn.functional
nn = torch.nn
HIDDEN, FEATURES = 3, 4
TABLE = 4 * HIDDEN  # the rows of an LSTM's input weights (4 gates): the lookup's vocabulary
ROUTES = ["TorchScript", "aten", "DisableTorchFunction", "F.embedding"]


# --- a lookup into what the layer keeps after its forward -------------------------------------------


class _Cached(nn.Module):  # type: ignore[misc]
    """Runs its LSTM once (on a zero probe), then looks token ids up in the LSTM's ``_flat_weights``
    (the input weights as the LSTM's last forward ran with them) by ``route``, then the LSTM again."""

    def __init__(self, route: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.route = route
        self.lstm, self.score = nn.LSTM(FEATURES, HIDDEN, batch_first=True), nn.Linear(HIDDEN, 2)
        self.double()

    def forward(self, x: Any) -> Any:
        self.lstm(torch.zeros(1, 1, FEATURES, dtype=torch.float64))
        embedded = lookup(self.route, self.lstm._flat_weights[0], x)
        return self.score(self.lstm(embedded)[0][:, -1])


def _tokens() -> tuple[Any, Any]:
    return tokens(TABLE, 5)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("row", "index"), [(2, TABLE), (2, -1), (0, TABLE), (4, -1)])
def test_a_lookup_into_the_layer_s_cached_weights_is_refused(route: str, row: int, index: int) -> None:
    """Before: the LSTM's ``_flat_weights`` kept the per-example views after its forward, and a lookup
    there by ``torch.ops.aten.embedding``, a TorchScript function or under DisableTorchFunction read
    another example's row: a clipped sum, without a word."""
    # Prepare
    model, (x, y) = _Cached(route), _tokens()
    x[row, 1] = index
    # Execute / Assert: the model as it was
    refused = refusal_leaving_the_model(model, x, y)
    assert "index" in str(refused.__cause__).lower()  # torch's index check, not another refusal
    assert all(w is p for w, p in zip(model.lstm._flat_weights, model.lstm.parameters(), strict=True))
    assert "forward" not in vars(model.lstm) and not model._forward_pre_hooks  # the swap undone
    assert all(type(p) is nn.Parameter for p in model.lstm._parameters.values())


class _CachedBag(nn.Module):  # type: ignore[misc]
    """The sum of the rows looked up in the LSTM's cached input weights, scored by a frozen Linear whose
    bias favours class 0; only the LSTM is trained (all of it: a float64 LSTM with a frozen bias is
    refused), and only its input weights reach the loss."""

    def __init__(self, route: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.route = route
        self.lstm, self.score = nn.LSTM(FEATURES, HIDDEN), nn.Linear(FEATURES, 2)
        with torch.no_grad():
            self.score.bias.copy_(torch.tensor([2.0, 0.0]))
        for name, parameter in self.named_parameters():
            parameter.requires_grad_(name.startswith("lstm."))
        self.double()

    def forward(self, x: Any) -> Any:
        self.lstm(torch.zeros(1, 1, FEATURES, dtype=torch.float64))
        return self.score(lookup(self.route, self.lstm._flat_weights[0], x).sum(dim=1))


@pytest.mark.parametrize("route", ROUTES)
def test_one_example_moves_the_clipped_sum_by_at_most_the_clip_through_the_cached_weights(route: str) -> None:
    """Before (aten, TorchScript, DisableTorchFunction): example 0 looked up example 1's rows past its own
    table, and adding it moved the clipped sum by twice the clip."""
    assert_one_example_moves_the_sum_by_at_most_the_clip(partial(_CachedBag, route), TABLE)


@pytest.mark.parametrize("route", ROUTES)
def test_in_range_lookups_into_the_cached_weights_keep_each_example_s_gradient(route: str) -> None:
    assert_the_clipped_sum_is_one_at_a_time_autograd_s(partial(_Cached, route), *_tokens())


# --- the layer's computation without its forward: torch._VF on its weights ----------------------------


def _vf_lstm(x: Any, weights: Any) -> Any:
    """torch's LSTM kernel on ``weights`` (one layer, batch first), as ``nn.LSTM.forward`` calls it."""
    h0 = torch.zeros(1, x.shape[0], HIDDEN, dtype=x.dtype)
    return torch._VF.lstm(x, (h0, h0), weights, True, 1, 0.0, False, False, True)


class _KernelOnCache(nn.Module):  # type: ignore[misc]
    """The LSTM kernel on the layer's ``_flat_weights`` before the layer ever ran in this forward."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lstm, self.score = nn.LSTM(FEATURES, HIDDEN, batch_first=True), nn.Linear(HIDDEN, 2)

    def forward(self, x: Any) -> Any:
        return self.score(_vf_lstm(x, self.lstm._flat_weights)[0][:, -1])


class _CacheLSTM(nn.LSTM):  # type: ignore[misc]
    """An LSTM of its own class whose forward runs the kernel on its ``_flat_weights`` as they are."""

    def forward(self, x: Any) -> Any:  # type: ignore[override]
        return _vf_lstm(x, self._flat_weights)


class _OwnCache(nn.Module):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lstm, self.score = _CacheLSTM(FEATURES, HIDDEN, batch_first=True), nn.Linear(HIDDEN, 2)

    def forward(self, x: Any) -> Any:
        return self.score(self.lstm(x)[0][:, -1])


@pytest.mark.parametrize("model", [_KernelOnCache, _OwnCache], ids=["in the parent's forward", "in a subclass's"])
def test_the_kernel_on_the_layer_s_cached_weights_keeps_each_example_s_gradient(model: Any) -> None:
    """Before: ``functional_call`` puts its tensors into the layer's parameters but not into its
    ``_flat_weights`` (which only the layer's forward updates), so a kernel run on that list before the
    layer's forward ran with the model's own parameters: their per-example gradients were zero, without
    a word (float32: a float64 LSTM's is refused)."""
    # Prepare: float32, where torch's LSTM kernel takes one shared weight under vmap
    torch.manual_seed(1)
    x, y = torch.randn(5, 6, FEATURES), torch.randint(0, 2, (5,))
    # Execute
    summed = torch_dp.clipped_gradient_sum(model(), F.cross_entropy, x, y, 0.05)
    # Assert
    np.testing.assert_allclose(summed, looped(model(), x, y, 0.05), rtol=1e-4, atol=1e-7)


# --- every other route to the layer: one-at-a-time autograd's sum, or refused --------------------------


class _Routes(nn.Module):  # type: ignore[misc]
    """A recurrent layer reached by ``route`` (see :data:`SOUND`), then a Linear."""

    def __init__(self, route: str, kind: str = "LSTM") -> None:
        super().__init__()
        torch.manual_seed(0)
        self.route, self.kind = route, kind
        layer = getattr(nn, kind)
        self.rnn = layer(FEATURES, HIDDEN) if kind.endswith("Cell") else layer(FEATURES, HIDDEN, batch_first=True)
        self.score, self.proj = nn.Linear(HIDDEN, 2), nn.Linear(HIDDEN, FEATURES)
        self.inner = nn.ModuleList([nn.Module(), nn.Module()])  # two parents of one layer
        self.inner[0].rnn = self.inner[1].rnn = self.rnn
        if route == "tied to a Linear":
            self.tie = nn.Linear(HIDDEN, 4 * HIDDEN, bias=False)
            self.tie.weight = self.rnn.weight_hh_l0
        if route == "parametrized":
            torch.nn.utils.parametrize.register_parametrization(self.rnn, "weight_hh_l0", _Double())

    def _layer(self, x: Any) -> Any:
        if self.kind.endswith("Cell"):
            h = None
            step = getattr(nn, self.kind).forward if self.route == "forward called directly" else nn.Module.__call__
            for t in range(x.shape[1]):
                h = step(self.rnn, x[:, t], h)
            return (h[0] if isinstance(h, tuple) else h).unsqueeze(1)
        if self.route == "forward called directly":
            return getattr(nn, self.kind).forward(self.rnn, x)[0]
        if self.route == "torch._VF on its weights":
            return _vf_lstm(x, [w for ws in self.rnn.all_weights for w in ws])[0]
        if self.route == "hooked inside forward" and not self.rnn._forward_pre_hooks:
            self.rnn.register_forward_pre_hook(lambda module, args: None)
        return self.rnn(x)[0]

    def forward(self, x: Any) -> Any:
        h = self._layer(x)
        if self.route == "called twice, by two parents":
            h = self.inner[1].rnn(self.proj(self.inner[0].rnn(x)[0]))[0]
        if self.route == "tied to a Linear":
            h = h + self.tie(h)[..., :HIDDEN]
        return self.score(h[:, -1])


class _Double(nn.Module):  # type: ignore[misc]
    def forward(self, w: Any) -> Any:
        return 2 * w


SOUND = {  # route: the layers it is run with
    "forward called directly": ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell"],
    "torch._VF on its weights": ["LSTM"],
    "tied to a Linear": ["LSTM"],
    "called twice, by two parents": ["LSTM", "GRU"],
    "parametrized": ["LSTM"],
    "hooked inside forward": ["LSTM", "GRU"],
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(("route", "kind"), [(r, k) for r, kinds in SOUND.items() for k in kinds])
def test_every_route_to_the_layer_gives_one_at_a_time_autograd_s_sum_or_is_refused(
    route: str, kind: str, dtype: Any
) -> None:
    """Found sound on review (no change): without the swap (the forward called as a function, the
    kernel on the layer's weights) the layer runs on the shared parameters, where vmap gives each
    example's gradient (a float32 LSTM) or torch refuses the in-place accumulation (GRU, RNN, the
    cells, a float64 LSTM), never a gradient silently zero."""
    # Prepare
    torch.manual_seed(1)
    x, y = torch.randn(5, 6, FEATURES, dtype=dtype), torch.randint(0, 2, (5,))
    model = _Routes(route, kind).to(dtype)
    expected = looped(_Routes(route, kind).to(dtype), x, y, 0.05)
    # Execute
    try:
        summed = torch_dp.clipped_gradient_sum(model, F.cross_entropy, x, y, 0.05)
    except ConfigurationError as refused:
        assert "broadcast shape" in str(refused.__cause__)  # torch's in-place rule, named
        assert (route, kind, dtype) != ("tied to a Linear", "LSTM", torch.float32)  # computable: no refusal
        return
    # Assert
    tolerance = {"rtol": 1e-4, "atol": 1e-7} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-13}
    np.testing.assert_allclose(summed, expected, **tolerance)
