"""PyTorch DP: what a module holds outside its state dict and its ``extra_repr`` is bound too.

A DP contribution is the clipped per-sample gradient sum at the global model's tensors, and the
forward pass that gives it reads more than the state dict: a ``MultiheadAttention``'s
``num_heads`` (its ``extra_repr`` is empty, and its parameters have the same shapes for any
number of heads), a ``TransformerEncoderLayer``'s ``norm_first`` and ``activation`` (plain
attributes, the activation a function), a non-persistent buffer (a mask, a scale: not in the
state dict) and a custom module's plain attributes. ``dp_model_digest`` bound none of them, so a
hospital whose copy differed only there computed other gradients under the same digest and was
summed with the others. Each is now bound (the module's attributes by value, a tensor's by its
dtype, shape and values, a function by its qualified name); the hospital is refused as one of
another model and the round goes on for the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from fl_core.aggregators import make_aggregator
from secagg.dp import DPConfig, SeededRandomSource

torch = pytest.importorskip("torch")
torch_dp = pytest.importorskip("secagg.integrations.torch_dp")
torch_adapter = pytest.importorskip("secagg.integrations.torch")

HOSPITALS = (1, 2, 3, 4)
DP = DPConfig(epsilon=8.0, delta=1e-5, rounds=4, l2_clip=1.0, min_honest=2)
WIDTH = 4


class _Attend(torch.nn.Module):
    """Self-attention over a short sequence, mean-pooled."""

    def __init__(self, heads: int = 1) -> None:
        super().__init__()
        self.attention = torch.nn.MultiheadAttention(WIDTH, heads, batch_first=True)

    def forward(self, x: Any) -> Any:
        return self.attention(x, x, x, need_weights=False)[0].mean(dim=1)


class _Encode(torch.nn.Module):
    """One transformer encoder layer (no dropout), mean-pooled."""

    def __init__(self, **settings: Any) -> None:
        super().__init__()
        self.layer = torch.nn.TransformerEncoderLayer(WIDTH, 2, 8, dropout=0.0, batch_first=True, **settings)

    def forward(self, x: Any) -> Any:
        return self.layer(x).mean(dim=1)


class _Scaled(torch.nn.Module):
    """A linear layer whose output is scaled by a non-persistent buffer, a plain tensor and a float."""

    def __init__(self, buffer: float = 1.0, tensor: float = 1.0, factor: float = 1.0) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(WIDTH, WIDTH)
        self.register_buffer("scale", torch.tensor(buffer, dtype=torch.float64), persistent=False)
        self.mask = torch.full((WIDTH,), tensor, dtype=torch.float64)  # a plain attribute, not a buffer
        self.factor = factor

    def forward(self, x: Any) -> Any:
        return (self.linear(x) * self.scale * self.mask * self.factor).mean(dim=1)


def _built(make: Callable[[], Any]) -> Any:
    torch.manual_seed(0)
    return make().double()


def _split_round(make: Callable[[], Any], other: Callable[[], Any]) -> Any:
    """A DP round at ``make()``'s model; hospital 1 computes at ``other()`` given the global model's
    state dict (so its state dict's digest is the global model's)."""
    model = _built(make)
    copy = _built(other)
    copy.load_state_dict(model.state_dict())
    assert torch_adapter.model_digest(copy.state_dict()) == torch_adapter.model_digest(model.state_dict())
    dimension = sum(p.numel() for p in model.parameters() if p.requires_grad)
    aggregator = make_aggregator(
        "plain-quantized", num_clients=len(HOSPITALS), dp=DP, dimension=dimension, max_samples_per_client=64,
        noise_source=SeededRandomSource(bytes(32)),
    )  # fmt: skip
    rng = np.random.default_rng(3)
    sample = SeededRandomSource(bytes(32))
    updates = [
        torch_dp.dp_update(
            h, copy if h == 1 else model, torch.nn.functional.mse_loss,
            torch.from_numpy(rng.normal(size=(6, 3, WIDTH))), torch.from_numpy(rng.normal(size=(6, WIDTH))), DP, sample,
        )
        for h in HOSPITALS
    ]
    return aggregator.aggregate(updates, rng=np.random.default_rng(0), model_digest=torch_dp.dp_model_digest(model))


class _Unregistered(torch.nn.Module):
    """A layer kept in a plain list (a common slip for ModuleList): not a submodule, so neither in the
    state dict nor trained, but run in the forward pass with the values it holds."""

    def __init__(self, shift: float = 0.0) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(WIDTH, WIDTH)
        self.extra = [torch.nn.Linear(WIDTH, WIDTH).double()]
        with torch.no_grad():
            self.extra[0].weight.fill_(0.1)
            self.extra[0].bias.fill_(shift)

    def forward(self, x: Any) -> Any:
        return self.extra[0](self.linear(x)).mean(dim=1)


SPLITS = {
    "attention-heads": (_Attend, lambda: _Attend(heads=2)),
    "encoder-norm-first": (_Encode, lambda: _Encode(norm_first=True)),
    "encoder-activation-function": (_Encode, lambda: _Encode(activation="gelu")),
    "non-persistent-buffer": (_Scaled, lambda: _Scaled(buffer=100.0)),
    "plain-tensor-attribute": (_Scaled, lambda: _Scaled(tensor=100.0)),
    "plain-float-attribute": (_Scaled, lambda: _Scaled(factor=100.0)),
    "unregistered-layer": (_Unregistered, lambda: _Unregistered(shift=1.0)),
}


@pytest.mark.parametrize("split", list(SPLITS))
def test_a_hospital_whose_module_state_outside_the_state_dict_differs_is_refused_not_summed(split: str) -> None:
    make, other = SPLITS[split]
    result = _split_round(make, other)
    # Hospital 1 alone is refused, with the reason; the round goes on without its gradients
    assert [client for client, _ in result.refused] == [1], result.refused
    assert "another model" in result.refused[0][1]
    assert result.mean is not None and result.included == frozenset(HOSPITALS[1:])


@pytest.mark.parametrize(
    "make", [_Attend, _Encode, _Scaled, _Unregistered], ids=["attention", "encoder", "scaled", "unregistered"]
)
def test_hospitals_whose_copies_are_built_alike_are_all_included(make: Callable[[], Any]) -> None:
    # The control: a separate instance built by the same code, loaded with the global state dict
    result = _split_round(make, make)
    assert result.refused == () and result.included == frozenset(HOSPITALS)


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.nn.LSTM(3, 4, batch_first=True),
        lambda: torch.nn.Conv2d(2, 3, 3, padding="same"),
        lambda: torch.nn.Embedding(10, 4, padding_idx=0),
        lambda: torch.nn.Transformer(8, 2, 1, 1, 16, dropout=0.0),
        lambda: torch.nn.Sequential(torch.nn.GroupNorm(2, 4), torch.nn.LayerNorm(4), torch.nn.GELU("tanh")),
    ],
    ids=["lstm", "conv", "embedding", "transformer", "norms"],
)
def test_two_instances_of_a_builtin_module_have_one_digest(make: Callable[[], Any]) -> None:
    # Nothing a module holds differs between two instances built alike (no address, no cache)
    first, second = _built(make), _built(make)
    second.load_state_dict(first.state_dict())
    assert torch_dp.dp_model_digest(first) == torch_dp.dp_model_digest(second)


# A hook runs inside the forward pass (functional_call runs a module's hooks): one that changes an
# output, left on one hospital's copy, changes every per-sample gradient at the same tensors.


def _halve_output(module: Any, inputs: Any, output: Any) -> Any:
    return output * 0.5


def _scale_input(module: Any, inputs: Any) -> Any:
    return (inputs[0] * 3.0,)


def _hooked(forward: Any = None, pre: Any = None) -> Callable[[], Any]:
    def make() -> Any:
        model = _Scaled()
        if forward is not None:
            model.linear.register_forward_hook(forward)
        if pre is not None:
            model.linear.register_forward_pre_hook(pre)
        return model

    return make


@pytest.mark.parametrize(
    ("make", "other"),
    [
        pytest.param(_Scaled, _hooked(forward=_halve_output), id="a-forward-hook-on-one-copy"),
        pytest.param(_Scaled, _hooked(pre=_scale_input), id="a-forward-pre-hook-on-one-copy"),
        pytest.param(_hooked(forward=_halve_output), _hooked(pre=_scale_input), id="another-hook"),
    ],
)
def test_a_hospital_whose_copy_runs_other_hooks_is_refused_not_summed(make: Any, other: Any) -> None:
    result = _split_round(make, other)
    assert [client for client, _ in result.refused] == [1], result.refused
    assert result.mean is not None and result.included == frozenset(HOSPITALS[1:])


def test_hospitals_whose_copies_run_the_same_hooks_are_all_included() -> None:
    # The control: the hook registered on every copy, the global model's included
    make = _hooked(forward=_halve_output, pre=_scale_input)
    result = _split_round(make, make)
    assert result.refused == () and result.included == frozenset(HOSPITALS)


def test_a_global_module_hook_is_bound_while_registered() -> None:
    # torch's process-wide hooks run in every module's forward pass, so in a hospital's process too
    model = _built(_Scaled)
    before = torch_dp.dp_model_digest(model)
    handle = torch.nn.modules.module.register_module_forward_hook(_halve_output)
    try:
        hooked = torch_dp.dp_model_digest(model)
    finally:
        handle.remove()
    assert hooked != before and torch_dp.dp_model_digest(model) == before


def test_a_model_holding_a_tensor_that_requires_grad_outside_its_parameters_is_summed() -> None:
    """Such a tensor (a plain attribute, a layer kept in a plain list) is a constant of the
    per-sample gradients, but the gradients carried its autograd history and the library's own
    ``.numpy()`` raised torch's RuntimeError in every hospital; the sum is the one without it."""
    # Prepare: the same model twice, its plain tensor requiring grad or not
    torch.manual_seed(0)
    plain = _Scaled().double()
    tracked = _Scaled().double()
    tracked.load_state_dict(plain.state_dict())
    tracked.mask = plain.mask.clone().requires_grad_(True)
    rng = np.random.default_rng(5)
    inputs, targets = torch.from_numpy(rng.normal(size=(6, 3, WIDTH))), torch.from_numpy(rng.normal(size=(6, WIDTH)))
    # Execute
    summed = torch_dp.clipped_gradient_sum(tracked, torch.nn.functional.mse_loss, inputs, targets, 1.0)
    # Assert
    expected = torch_dp.clipped_gradient_sum(plain, torch.nn.functional.mse_loss, inputs, targets, 1.0)
    np.testing.assert_array_equal(summed, expected)


class _KeepsItsOutput(torch.nn.Module):  # type: ignore[misc]
    """A Linear layer that keeps its last output as a plain attribute (for a plot, say)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear, self.last = torch.nn.Linear(WIDTH, 2), None

    def forward(self, x: Any) -> Any:
        self.last = self.linear(x)
        return self.last


class _KeepsItsOutputInADict(torch.nn.Module):  # type: ignore[misc]
    """A Linear layer that keeps its last output in a dict it holds (one entry a call, written in place)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear, self.outputs = torch.nn.Linear(WIDTH, 2), {}

    def forward(self, x: Any) -> Any:
        self.outputs["last"] = self.linear(x)
        return self.outputs["last"]


def test_a_tensor_attribute_torch_cannot_read_is_refused_with_a_library_error() -> None:
    """A tensor kept from inside torch.func's vmap cannot be read: dp_model_digest raised torch's
    RuntimeError ("your tensor may have escaped from inside a function being vmapped"), not the
    ConfigurationError its docstring names for a tensor attribute it cannot flatten."""
    from secagg.errors import ConfigurationError  # noqa: PLC0415

    # Prepare: a module holding a tensor that escaped a vmap
    kept: list[Any] = []
    torch.func.vmap(lambda row: kept.append(row) or row)(torch.randn(3, WIDTH))
    model = torch.nn.Linear(WIDTH, 2)
    model.last = kept[0]
    # Execute / Assert
    with pytest.raises(ConfigurationError, match=r"module '': attribute 'last'.*cannot read"):
        torch_dp.dp_model_digest(model)


# clipped_gradient_sum runs the caller's model inside torch.func's vmap: a module that sets a plain
# attribute while it runs (an old-style weight_norm or spectral_norm sets its `weight`, a module
# keeps its last output) was left holding a tensor from inside vmap, which torch cannot read, so the
# next dp_model_digest of the model (the next hospital's in run_dp_round, or the next round's) was
# refused and every hospital but the first withheld.
_SETS_ATTRIBUTES: dict[str, Callable[[], Any]] = {
    "weight_norm (old style)": lambda: torch.nn.utils.weight_norm(torch.nn.Linear(WIDTH, 2)),
    "spectral_norm (old style)": lambda: torch.nn.utils.spectral_norm(torch.nn.Linear(WIDTH, 2)).eval(),
    "keeps its last output": _KeepsItsOutput,
    # a dict written in place, as a list is (an RNN's list of its weights); before: the dict kept the
    # tensor from inside vmap and the next digest was refused
    "keeps its last output in a dict": _KeepsItsOutputInADict,
}


@pytest.mark.parametrize("name", sorted(_SETS_ATTRIBUTES))
def test_the_per_sample_gradients_leave_the_model_s_attributes_as_they_were(name: str) -> None:
    # Prepare
    torch.manual_seed(0)
    model = _SETS_ATTRIBUTES[name]()
    before = torch_dp.dp_model_digest(model)
    inputs, targets = torch.randn(3, WIDTH), torch.tensor([0, 1, 1])
    # Execute
    torch_dp.clipped_gradient_sum(model, torch.nn.functional.cross_entropy, inputs, targets, 1.0)
    # Assert
    assert torch_dp.dp_model_digest(model) == before

class _Graph(torch.nn.Module):  # type: ignore[misc]
    """Mean of a Linear layer's output over a graph's neighbours: the adjacency a sparse attribute."""

    def __init__(self, edges: list[tuple[int, int]], layout: Any = None) -> None:
        super().__init__()
        index = torch.tensor(edges).T
        adjacency = torch.sparse_coo_tensor(index, torch.ones(len(edges)), (3, 3))
        self.adjacency = adjacency if layout is None else adjacency.to_sparse_csr()
        self.linear = torch.nn.Linear(WIDTH, 2)

    def forward(self, x: Any) -> Any:
        return self.linear(torch.stack([torch.sparse.mm(self.adjacency, one) for one in x]).mean(1))


def test_a_sparse_tensor_attribute_is_bound_by_its_values_not_refused() -> None:
    """A graph model keeps its adjacency as a sparse tensor; its per-sample gradients are computed,
    but dp_model_digest refused the model ("only dense tensors with data are supported"), so no DP
    round could run with it."""
    edges = [(0, 1), (1, 2), (2, 0)]
    # Prepare / Execute
    torch.manual_seed(0)
    model = _Graph(edges)
    torch.manual_seed(0)
    same = _Graph(list(reversed(edges)))  # another order of the same entries
    torch.manual_seed(0)
    other = _Graph([(0, 1), (1, 2), (2, 1)])
    torch.manual_seed(0)
    compressed = _Graph(edges, torch.sparse_csr)
    # Assert: one digest for one adjacency, another for another adjacency or layout
    digest = torch_dp.dp_model_digest(model)
    assert torch_dp.dp_model_digest(same) == digest
    assert torch_dp.dp_model_digest(other) != digest
    assert torch_dp.dp_model_digest(compressed) not in {digest, torch_dp.dp_model_digest(other)}


def test_an_integer_attribute_of_any_size_is_bound() -> None:
    """An integer beyond Python's 4300-digit limit for decimal text (a key's modulus, say) raised
    Python's ValueError from dp_model_digest: it is bound by its value like any other."""
    # Prepare
    model, other = torch.nn.Linear(WIDTH, 2), torch.nn.Linear(WIDTH, 2)
    other.load_state_dict(model.state_dict())
    model.modulus, other.modulus = 10**5000, 10**5000 + 1
    # Execute / Assert
    assert torch_dp.dp_model_digest(model) != torch_dp.dp_model_digest(other)
