"""PyTorch adapter: a model with tied (shared) weights is one tensor per shared weight.

``lin2.weight = lin1.weight`` (an embedding tied to an output layer) makes one tensor that
``named_parameters`` lists once and ``state_dict`` lists under both names. The adapter reads
each distinct tensor once, under its first name, whatever the form (module or state dict) and
the buffer mode, so a module and its state dict are one model (one layout, one digest); the
aggregated shared weight is one tensor, written back once, and equals plain FedAvg.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fl_core.aggregators import make_aggregator  # noqa: E402
from secagg.errors import ConfigurationError  # noqa: E402
from secagg.integrations.torch import (  # noqa: E402
    aggregate_models,
    flatten_model,
    flatten_state_dict,
    hospital_update,
    load_into_model,
    model_digest,
)


class _Tied(torch.nn.Module):  # type: ignore[misc]
    """Two layers sharing one weight, with a BatchNorm between them when ``norm``."""

    def __init__(self, norm: bool = False) -> None:
        super().__init__()
        self.lin1 = torch.nn.Linear(3, 3)
        self.norm = torch.nn.BatchNorm1d(3) if norm else torch.nn.Identity()
        self.lin2 = torch.nn.Linear(3, 3)
        self.lin2.weight = self.lin1.weight

    def forward(self, x: Any) -> Any:
        return self.lin2(self.norm(self.lin1(x)))


def _copy(model: _Tied, step: float, norm: bool = False) -> _Tied:
    copy = _Tied(norm)
    copy.load_state_dict(model.state_dict())
    with torch.no_grad():
        copy.lin1.weight.add_(step)
        copy.lin2.bias.sub_(step)
    return copy


@pytest.mark.parametrize("buffers", [True, False])
def test_a_tied_module_and_its_state_dict_are_one_model(buffers: bool) -> None:
    """With ``buffers=False`` a module's shared weight was read once (``named_parameters``) and its
    state dict's twice: two layouts and two digests for one model, so a hospital passing a state
    dict to a module's round was withheld and a server binding the state dict's digest refused
    every hospital_update of modules."""
    # Prepare
    torch.manual_seed(0)
    received = _Tied()
    local = _copy(received, 0.5)
    # Execute
    of_module = hospital_update(0, received, local, num_samples=3, buffers=buffers)
    of_state = hospital_update(0, received.state_dict(), local.state_dict(), num_samples=3, buffers=buffers)
    # Assert: one digest, one update; the shared weight once
    assert model_digest(received, buffers=buffers) == model_digest(received.state_dict(), buffers=buffers)
    assert of_module.model_digest == of_state.model_digest == model_digest(received, buffers=buffers)
    assert np.array_equal(of_module.vector, of_state.vector)
    assert of_module.vector.shape[0] == 9 + 3 + 3


@pytest.mark.parametrize("buffers", [True, False])
@pytest.mark.parametrize("aggregator", ["plain", "plain-quantized"])
def test_the_shared_weight_is_averaged_once_and_written_back_once(buffers: bool, aggregator: str) -> None:
    """The aggregate of tied models is plain FedAvg, the shared weight one tensor under both of
    its names, and loading it keeps the tie. Before, with buffers the aggregate listed the shared
    weight twice (each copy quantized and rounded on its own, so the two could differ) and could
    not be loaded back into the model ("the model has no parameter or buffer named
    'lin2.weight'"); without buffers, hospitals passing state dicts were withheld."""
    # Prepare: hospitals pass modules and state dicts, some with a BatchNorm's statistics
    torch.manual_seed(1)
    norm = buffers
    global_model = _Tied(norm)
    locals_ = [_copy(global_model, 0.25 * (k + 1), norm) for k in range(3)]
    counts = [1, 2, 3]
    given = [locals_[0], locals_[1].state_dict(), locals_[2]]
    # Execute
    outcome = aggregate_models(
        global_model, given, make_aggregator(aggregator, num_clients=3), num_samples=counts,
        rng=np.random.default_rng(0), buffers=buffers,
    )  # fmt: skip
    # Assert: every hospital summed; the shared weight once in the layout, one tensor in the result
    assert outcome.result.withheld == () and outcome.result.included == {0, 1, 2}
    assert "lin2.weight" not in outcome.layout.names and "lin1.weight" in outcome.layout.names
    state = outcome.state_dict
    assert state is not None
    assert state["lin2.weight"] is state["lin1.weight"]
    expected_names = list(global_model.state_dict()) if buffers else [
        name for name, _ in global_model.named_parameters(remove_duplicate=False)
    ]
    assert list(state) == expected_names
    fedavg = sum(c * m.lin1.weight.detach().double() for c, m in zip(counts, locals_, strict=True)) / 6
    torch.testing.assert_close(state["lin1.weight"].double(), fedavg, rtol=0, atol=1e-3)
    # the aggregate loads into a tied model, the tie kept, and a strict load_state_dict takes it
    target = _Tied(norm)
    outcome.load_into(target)
    assert target.lin2.weight is target.lin1.weight
    assert torch.equal(target.lin1.weight.detach(), state["lin1.weight"])
    fresh = _Tied(norm)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.lin2.weight.detach(), state["lin1.weight"])


def test_a_state_dict_whose_tied_copies_were_untied_is_withheld_naming_the_tensor() -> None:
    """A state dict whose shared weight was cloned into two tensors (``{k: v.clone()}``) is another
    model: two weights that may differ. It is withheld naming the extra tensor, never summed into
    the shared one. Before, with buffers, it was summed as if it were the tied model."""
    # Prepare
    torch.manual_seed(2)
    global_model = _Tied()
    untied = {name: tensor.clone() for name, tensor in _copy(global_model, 0.5).state_dict().items()}
    # Execute
    outcome = aggregate_models(
        global_model, [_copy(global_model, 0.1), untied, _copy(global_model, 0.3)], make_aggregator("plain"),
        num_samples=[1, 1, 1], rng=np.random.default_rng(0), discovery=False,
    )  # fmt: skip
    # Assert
    ((client, reason),) = outcome.result.withheld
    assert client == 1 and "'lin2.weight'" in reason
    assert outcome.result.included == {0, 2}


def test_loading_two_values_into_one_shared_weight_is_refused() -> None:
    """A layout that gives both names of a shared weight different values cannot be written into
    a tied model: the second write would silently overwrite the first. Refused, naming both,
    with the model untouched (before: 'the model has no parameter or buffer named
    'lin2.weight'', which says nothing of the tie; with equal values the load goes through)."""
    # Prepare
    torch.manual_seed(3)
    model = _Tied()
    before = model.lin1.weight.detach().clone()
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    equal_vector, layout = flatten_state_dict(state)
    state["lin2.weight"] += 1.0
    vector, layout = flatten_state_dict(state)
    # Execute / Assert
    with pytest.raises(ConfigurationError, match=r"'lin2.weight'.*'lin1.weight'.*(same|one) tensor"):
        load_into_model(model, vector, layout)
    assert torch.equal(model.lin1.weight.detach(), before)
    load_into_model(model, equal_vector, layout)
    assert model.lin2.weight is model.lin1.weight and torch.equal(model.lin1.weight.detach(), before)


class _Aliased(torch.nn.Module):  # type: ignore[misc]
    """A parameter and a buffer over the same memory viewed another way (another dtype, or transposed):
    two tensors, not one, whose writes overwrite each other."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(2, 2))
        alias = self.w.data.view(torch.int32) if how == "dtype" else self.w.data.t()
        self.register_buffer("alias", alias)


@pytest.mark.parametrize("how", ["dtype", "transposed"])
def test_loading_into_two_tensors_over_one_memory_is_refused(how: str) -> None:
    """Two entries over overlapping memory that are not one tensor (a buffer that is the parameter's
    bits as int32, or its transpose) are averaged apart; writing both back leaves the memory holding
    the second write, which the first entry then reads: an int32 average of float bits is no float
    average (a weight of -1e37 where the mean is -0.09). Refused, naming both, model untouched."""
    # Prepare: two hospitals that moved w apart, aggregated
    torch.manual_seed(4)
    global_model = _Aliased(how)
    hospitals = []
    for k in range(2):
        local = _Aliased(how)
        local.load_state_dict(global_model.state_dict())
        with torch.no_grad():
            local.w.add_(0.1 + 0.2 * k)
        hospitals.append(local)
    outcome = aggregate_models(
        global_model, hospitals, make_aggregator("plain"), num_samples=[1, 1], rng=np.random.default_rng(0),
        discovery=False,
    )  # fmt: skip
    target = _Aliased(how)
    target.load_state_dict(global_model.state_dict())
    before = target.w.detach().clone()
    # Execute / Assert
    with pytest.raises(ConfigurationError, match=r"'alias'.*'w'.*memory"):
        outcome.load_into(target)
    assert torch.equal(target.w.detach(), before)


def test_loading_nan_into_both_names_of_a_shared_weight_is_one_value() -> None:
    """Equal values are compared NaN for NaN: a shared weight holding a NaN (written the same
    under both names) is loaded, not refused as two different values."""
    # Prepare
    torch.manual_seed(4)
    model = _Tied()
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    for name in ("lin1.weight", "lin2.weight"):
        state[name][0, 0] = float("nan")
    vector, layout = flatten_state_dict(state)
    # Execute
    load_into_model(model, vector, layout)
    # Assert
    assert model.lin2.weight is model.lin1.weight and torch.isnan(model.lin1.weight[0, 0])


def _views() -> dict[str, tuple[Any, Any]]:
    """Pairs of entries over one storage that differ in exactly one thing torch views them by."""
    line, square = torch.arange(8.0), torch.zeros(2, 2)
    single, complex_ = torch.zeros(4), torch.zeros(3, dtype=torch.complex64)
    return {
        "offset": (line[0:4], line[4:8]),
        "shape": (line[0:4], line[0:2]),
        "strides": (square, square.t()),
        "dtype": (single, single.view(torch.int32)),
        "conjugation": (complex_, complex_.conj()),
        "negation": (complex_, torch._neg_view(complex_)),
        "empty": (torch.zeros(0), torch.zeros(0)),
        "meta": (torch.empty(3, device="meta"), torch.empty(3, device="meta")),
    }


@pytest.mark.parametrize("difference", sorted(_views()))
def test_two_entries_are_tied_only_if_they_view_the_same_elements_the_same_way(difference: str) -> None:
    """Two entries are one tensor only when every way torch views the storage agrees: a slice at
    another offset, a transpose, a dtype view, a lazily conjugated or negated view, two empty or
    two meta tensors (no data, one address) are two tensors; the same view twice is one."""
    from secagg.integrations._torch_ties import ties  # noqa: PLC0415 (the tie rule itself)

    first, second = _views()[difference]
    # Execute / Assert
    assert ties({"a": first, "b": second}) == {"a": "a", "b": "b"}
    if difference not in ("empty", "meta"):
        assert ties({"a": first, "b": first.view(first.shape)}) == {"a": "a", "b": "a"}


def test_flatten_model_reads_a_tied_weight_once_under_its_first_name() -> None:
    # Prepare
    model = _Tied()
    # Execute
    _, layout = flatten_model(model, buffers=True)
    # Assert: lin2.weight is lin1.weight: one entry, under the first name
    assert [spec.name for spec in layout.specs] == ["lin1.weight", "lin1.bias", "lin2.bias"]


class _SharedBuffer(torch.nn.Module):  # type: ignore[misc]
    """Two layers sharing one buffer (a running statistic kept once)."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
        shared = torch.zeros(2)
        self.first.register_buffer("scale", shared)
        self.second.register_buffer("scale", shared)


def test_a_state_dict_of_a_model_with_a_shared_buffer_loads_back_into_it() -> None:
    """The state dict lists the shared buffer under both names: both are the model's, one tensor
    written once (before remove_duplicate=False, the second name was not found in the model)."""
    # Prepare
    model = _SharedBuffer()
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    state["first.scale"] += 2.0
    state["second.scale"] += 2.0
    vector, layout = flatten_state_dict(state)
    # Execute
    load_into_model(model, vector, layout)
    # Assert
    assert model.first.scale is model.second.scale and torch.equal(model.first.scale, torch.full((2,), 2.0))


class _NoStorage(torch.Tensor):  # type: ignore[misc]
    """A tensor subclass that has no storage to show (its untyped_storage raises)."""

    def untyped_storage(self) -> Any:
        raise NotImplementedError("no storage here")


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")  # the strided layout on purpose
def test_a_tensor_without_a_storage_or_a_nested_tensor_is_never_tied_and_gets_the_librarys_answer() -> None:
    """The tie rule reads each entry's storage: an entry that has none (a subclass whose storage
    raises NotImplementedError, a nested tensor, whose shape raises) shares nothing, and a state
    dict holding one gets its digest or the library's error, never the foreign exception."""
    from secagg.integrations._torch_ties import ties  # noqa: PLC0415 (the tie rule itself)

    # Prepare
    first, second = torch.zeros(2).as_subclass(_NoStorage), torch.zeros(2).as_subclass(_NoStorage)
    nested = torch.nested.nested_tensor([torch.zeros(2), torch.zeros(3)])
    # Execute / Assert
    assert ties({"a": first, "b": second}) == {"a": "a", "b": "b"}
    assert model_digest({"a": first, "b": second}) == model_digest({"a": torch.zeros(2), "b": torch.zeros(2)})
    with pytest.raises(ConfigurationError, match="nested: only dense tensors"):
        model_digest({"nested": nested})


class _Expanded(torch.nn.Module):  # type: ignore[misc]
    """A linear layer, then a buffer whose elements share one memory location (``expand``, or a
    stride-0 or overlapping view): torch refuses any write into it."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)
        base = torch.zeros(4)
        view = base[:1].expand(4) if how == "expand" else base.as_strided((2, 3), (1, 1))
        self.register_buffer("shared", view)


@pytest.mark.parametrize("how", ["expand", "overlapping-strides"])
def test_loading_into_a_tensor_whose_elements_share_memory_is_refused_with_the_model_untouched(how: str) -> None:
    """Such a tensor flattens (each element an entry), but no vector can be written into it: the
    load must be refused with the library's error naming it, before any other tensor is written,
    not end in torch's RuntimeError after the layer's weight was overwritten."""
    # Prepare
    model = _Expanded(how)
    vector, layout = flatten_model(model, buffers=True)
    before = model.lin.weight.detach().clone()
    # Execute / Assert
    with pytest.raises(ConfigurationError, match=r"'shared'.*share"):
        load_into_model(model, vector + 1.0, layout)
    assert torch.equal(model.lin.weight.detach(), before)


def test_a_strided_view_whose_elements_do_not_share_memory_loads() -> None:
    # The control: a transposed and a sliced buffer are written back as given
    model = torch.nn.Module()
    model.register_buffer("transposed", torch.zeros(3, 2).t())
    model.register_buffer("sliced", torch.zeros(8)[::2])
    vector, layout = flatten_model(model, buffers=True)
    load_into_model(model, vector + 2.0, layout)
    assert bool((model.transposed == 2.0).all()) and bool((model.sliced == 2.0).all())
