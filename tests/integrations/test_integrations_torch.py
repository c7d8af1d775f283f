"""PyTorch adapter: exact flatten/unflatten for every dtype, models in place, secure FedAvg of models."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from fl_core.aggregators import DropoutStage, make_aggregator  # noqa: E402
from secagg.errors import ConfigurationError  # noqa: E402
from secagg.integrations.torch import (  # noqa: E402
    aggregate_models,
    flatten_model,
    flatten_state_dict,
    hospital_update,
    load_into_model,
    model_digest,
    unflatten_state_dict,
)

# Every floating dtype PyTorch has, with the unsigned integer dtype of the same width.
SMALL_FLOATS = {
    "float16": torch.int16,
    "bfloat16": torch.int16,
    "float8_e4m3fn": torch.uint8,
    "float8_e5m2": torch.uint8,
    "float8_e4m3fnuz": torch.uint8,
    "float8_e5m2fnuz": torch.uint8,
    "float8_e8m0fnu": torch.uint8,
}
WIDE_FLOATS = {"float32": (torch.int32, np.int32), "float64": (torch.int64, np.int64)}
COMPLEX = {"complex32": "float16", "complex64": "float32", "complex128": "float64"}


def floating_dtypes_on_cpu() -> set[str]:
    """The names of every floating dtype this torch build defines."""
    return {
        str(d).removeprefix("torch.")
        for d in vars(torch).values()
        if isinstance(d, torch.dtype) and d.is_floating_point
    }


def all_bit_patterns(bits_dtype: torch.dtype) -> torch.Tensor:
    width = torch.iinfo(bits_dtype).bits
    low = 0 if bits_dtype == torch.uint8 else -(1 << (width - 1))
    return torch.arange(low, low + (1 << width), dtype=torch.int64).to(bits_dtype)


def same_bits_or_both_nan(a: torch.Tensor, b: torch.Tensor, bits_dtype: torch.dtype) -> bool:
    nan = torch.isnan(a.to(torch.float64))
    return bool(torch.isnan(b.to(torch.float64))[nan].all()) and torch.equal(
        a.view(bits_dtype)[~nan], b.view(bits_dtype)[~nan]
    )


def test_every_floating_dtype_of_this_torch_is_covered() -> None:
    # Prepare / Execute
    covered = set(SMALL_FLOATS) | set(WIDE_FLOATS) | {"float4_e2m1fn_x2"}
    # Assert: a new floating dtype in a future torch must get an exactness test here.
    assert floating_dtypes_on_cpu() <= covered


@pytest.mark.parametrize("name", sorted(SMALL_FLOATS))
def test_round_trip_is_exact_for_every_bit_pattern_of_small_floats(name: str) -> None:
    # Prepare: every 8- or 16-bit pattern, infinities, zeros, subnormals and NaNs included
    bits_dtype = SMALL_FLOATS[name]
    tensor = all_bit_patterns(bits_dtype).view(getattr(torch, name)).reshape(-1, 2)
    # Execute
    vector, layout = flatten_state_dict({"w": tensor})
    back = unflatten_state_dict(vector, layout)["w"]
    # Assert
    assert vector.dtype == np.float64 and vector.shape == (tensor.numel(),)
    assert back.dtype == tensor.dtype and back.shape == tensor.shape
    assert same_bits_or_both_nan(tensor, back, bits_dtype)


@pytest.mark.parametrize("name", sorted(WIDE_FLOATS))
def test_round_trip_is_exact_for_random_and_special_bit_patterns_of_wide_floats(name: str) -> None:
    # Prepare: random bit patterns (all exponents, subnormals) plus the special values
    torch_bits, np_bits = WIDE_FLOATS[name]
    rng = np.random.default_rng(7)
    info = np.iinfo(np_bits)
    bits = rng.integers(info.min, info.max, size=19_993, dtype=np_bits, endpoint=True)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-320, -5e-324], dtype=name).view(np_bits)
    tensor = torch.from_numpy(np.concatenate([bits, specials])).view(getattr(torch, name)).reshape(100, -1)
    # Execute
    vector, layout = flatten_state_dict({"w": tensor})
    back = unflatten_state_dict(vector, layout)["w"]
    # Assert
    assert back.dtype == tensor.dtype and back.shape == tensor.shape
    assert same_bits_or_both_nan(tensor, back, torch_bits)


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
@pytest.mark.parametrize("name", sorted(COMPLEX))
def test_complex_tensors_take_two_entries_per_element_and_round_trip_exactly(name: str) -> None:
    # Prepare
    real_dtype = getattr(torch, COMPLEX[name])
    parts = torch.tensor([[1.5, -0.0], [np.inf, 3.25], [-2.0, 1e-3]], dtype=torch.float64).to(real_dtype)
    tensor = torch.view_as_complex(parts.contiguous()).to(getattr(torch, name))
    # Execute
    vector, layout = flatten_state_dict({"z": tensor})
    back = unflatten_state_dict(vector, layout)["z"]
    # Assert
    assert vector.shape == (6,) and layout.specs[0].length == 6
    assert back.dtype == tensor.dtype
    assert torch.equal(torch.view_as_real(back), torch.view_as_real(tensor))
    assert torch.signbit(torch.view_as_real(back)[0, 1])  # -0.0 kept


def test_float4_e2m1_round_trips_every_byte_low_nibble_first() -> None:
    # Prepare: every packed byte (two FP4 values each)
    packed = torch.arange(256, dtype=torch.int64).to(torch.uint8).view(torch.float4_e2m1fn_x2)
    # Execute
    vector, layout = flatten_state_dict({"q": packed})
    back = unflatten_state_dict(vector, layout)["q"]
    # Assert
    assert vector.shape == (512,)
    assert list(vector[2 * 0x61 : 2 * 0x61 + 2]) == [0.5, 4.0]  # byte 0x61: low nibble 1, high nibble 6
    assert back.dtype == torch.float4_e2m1fn_x2
    assert torch.equal(back.view(torch.uint8), packed.view(torch.uint8))


def test_float4_e2m1_rounds_aggregates_to_nearest_with_ties_to_even() -> None:
    # Prepare: 0.25 ties 0|0.5 -> 0; 0.75 ties 0.5|1 -> 1; 2.5 ties 2|3 -> 2; 5 ties 4|6 -> 4; 6.9 rounds to 6
    # (within half a step of the largest value; beyond it is refused, see the test below)
    _, layout = flatten_state_dict({"q": torch.zeros(3, dtype=torch.uint8).view(torch.float4_e2m1fn_x2)})
    values = np.array([0.25, 0.75, 2.5, 5.0, 6.9, -1.2])
    # Execute
    back = unflatten_state_dict(values, layout)["q"]
    decoded, _ = flatten_state_dict({"q": back})
    # Assert
    assert list(decoded) == [0.0, 1.0, 2.0, 4.0, 6.0, -1.0]


def test_shapes_scalars_empty_and_non_contiguous_tensors_survive() -> None:
    # Prepare
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    tensors = {
        "scalar": torch.tensor(2.5, dtype=torch.float64),
        "empty": torch.zeros(0, 5),
        "transposed": base.t(),
        "grad": torch.ones(2, requires_grad=True),
        "steps": torch.tensor(7, dtype=torch.int64),
        "mask": torch.tensor([True, False]),
    }
    # Execute
    vector, layout = flatten_state_dict(tensors)
    back = unflatten_state_dict(vector, layout)
    # Assert
    assert layout.names == tuple(tensors) and layout.size == vector.shape[0] == 1 + 0 + 12 + 2 + 1 + 2
    for name, tensor in tensors.items():
        assert back[name].shape == tensor.shape and back[name].dtype == tensor.dtype
        assert torch.equal(back[name], tensor.detach())
        assert not back[name].requires_grad


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["float16", "bfloat16", "float32", "float64", "complex64", "int64", "bool"]),
            st.lists(st.integers(0, 4), max_size=3),
        ),
        min_size=1,
        max_size=5,
    ),
    st.integers(0, 2**32 - 1),
)
def test_any_state_dict_round_trips_bit_for_bit(entries: list[tuple[str, list[int]]], seed: int) -> None:
    # Prepare: tensors of random finite values in random dtypes and shapes
    rng = np.random.default_rng(seed)
    tensors = {}
    for index, (dtype, shape) in enumerate(entries):
        values = torch.from_numpy(rng.normal(scale=100.0, size=tuple(shape)))
        if dtype == "complex64":
            values = torch.complex(values, -values)
        tensors[f"t{index}"] = values.to(getattr(torch, dtype))
    # Execute
    vector, layout = flatten_state_dict(tensors)
    back = unflatten_state_dict(vector, layout)
    # Assert
    assert list(back) == list(tensors)
    for name, tensor in tensors.items():
        assert back[name].dtype == tensor.dtype and back[name].shape == tensor.shape
        assert torch.equal(back[name], tensor)


def small_model(dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2)).to(dtype)


def test_flatten_model_parameters_only_unless_buffers_are_asked_for() -> None:
    # Prepare
    model = small_model()
    # Execute
    params, param_layout = flatten_model(model)
    everything, full_layout = flatten_model(model, buffers=True)
    # Assert
    assert param_layout.names == tuple(name for name, _ in model.named_parameters())
    assert full_layout.names[-3:] == ("1.running_mean", "1.running_var", "1.num_batches_tracked")
    assert params.shape[0] == sum(p.numel() for p in model.parameters())
    assert everything.shape[0] == params.shape[0] + 3 + 3 + 1


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_load_into_model_writes_in_place_keeping_dtype(dtype: torch.dtype) -> None:
    # Prepare
    source, target = small_model(dtype), small_model(dtype)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.5)
    source.get_submodule("1").num_batches_tracked += 3
    vector, layout = flatten_model(source, buffers=True)
    weight = target.get_submodule("0").weight
    # Execute
    load_into_model(target, vector, layout)
    # Assert: same tensor objects, now holding the source's values
    assert target.get_submodule("0").weight is weight and weight.dtype == dtype
    for (name, a), (_, b) in zip(source.state_dict().items(), target.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(("alias", "entries"), [("cfloat", 2), ("chalf", 2), ("cdouble", 2), ("half", 2)])
def test_a_layout_naming_a_dtype_by_a_torch_alias_is_refused_with_a_library_error(alias: str, entries: int) -> None:
    # Prepare: a layout made elsewhere (a server's) naming torch.complex64 "cfloat": the entry count
    # was read from the name ("complex..."), the conversion from the dtype, and the two disagreed
    from secagg.integrations.torch import FlatLayout, TensorSpec  # noqa: PLC0415

    layout = FlatLayout((TensorSpec("a", (2,), alias, 0, entries),))
    # Execute / Assert: refused (a KeyError or torch's RuntimeError before), the names flatten gives only
    with pytest.raises(ConfigurationError, match="dtype"):
        unflatten_state_dict(np.zeros(entries), layout)


def test_bad_inputs_raise_configuration_errors() -> None:
    # Prepare
    vector, layout = flatten_model(small_model())
    other = torch.nn.Linear(4, 5)
    # Execute / Assert
    with pytest.raises(ConfigurationError, match="entries, the layout needs"):
        unflatten_state_dict(vector[:-1], layout)
    with pytest.raises(ConfigurationError, match="one-dimensional float vector"):
        unflatten_state_dict(vector.astype(np.int64), layout)
    with pytest.raises(ConfigurationError, match="no parameter or buffer"):
        load_into_model(other, vector, layout)
    with pytest.raises(ConfigurationError, match="beyond 2"):
        flatten_state_dict({"big": torch.tensor([2**53 + 1])})
    with pytest.raises(ConfigurationError, match="not supported"):
        flatten_state_dict({"u": torch.zeros(2, dtype=torch.uint16)})
    with pytest.raises(ConfigurationError, match=r"not a torch\.Tensor"):
        flatten_state_dict({"x": np.zeros(2)})
    with pytest.raises(ConfigurationError, match="outside the range"):
        unflatten_state_dict(np.array([300.0]), flatten_state_dict({"b": torch.zeros(1, dtype=torch.uint8)})[1])


@pytest.mark.parametrize(
    "tensor",
    [
        torch.tensor([1.0, 0.0]).to_sparse(),
        torch.eye(2).to_sparse_csr(),
    ],
    ids=["sparse-coo", "sparse-csr"],  # a meta tensor: tests/integrations/test_integrations_torch_hidden_state.py
)
def test_a_tensor_without_dense_data_is_refused(tensor: torch.Tensor) -> None:
    with pytest.raises(ConfigurationError, match="dense"):
        flatten_state_dict({"t": tensor})


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64])
def test_a_nan_aggregate_is_refused_for_an_integer_tensor(dtype: torch.dtype) -> None:
    # Prepare: an aggregate with a NaN where an integer buffer sits (as the Keras adapter refuses)
    layout = flatten_state_dict({"steps": torch.zeros(2, dtype=dtype)})[1]
    # Execute / Assert: refused, not cast to an arbitrary integer
    with pytest.raises(ConfigurationError, match="outside the range"):
        unflatten_state_dict(np.array([np.nan, 1.0]), layout)


def trained_copies(count: int) -> tuple[torch.nn.Module, list[torch.nn.Module]]:
    global_model = small_model(torch.float64)
    locals_ = []
    for k in range(count):
        model = small_model(torch.float64)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01 * (k + 1) * torch.sin(torch.arange(p.numel(), dtype=torch.float64)).reshape(p.shape))
        locals_.append(model)
    return global_model, locals_


def test_aggregate_models_with_plain_is_the_weighted_mean_of_the_models() -> None:
    # Prepare
    global_model, locals_ = trained_copies(3)
    counts = [10, 30, 60]
    # Execute
    outcome = aggregate_models(
        global_model, locals_, make_aggregator("plain"), num_samples=counts, rng=np.random.default_rng(0)
    )
    # Assert
    assert outcome.state_dict is not None
    expected = {
        name: sum(c * m.state_dict()[name] for c, m in zip(counts, locals_, strict=True)) / sum(counts)
        for name, _ in global_model.named_parameters()
    }
    for name, tensor in expected.items():
        torch.testing.assert_close(outcome.state_dict[name], tensor, rtol=0, atol=1e-12)


def test_aggregate_models_through_secagg_equals_the_plain_quantized_sum_with_a_dropout() -> None:
    # Prepare: four hospitals, one drops before uploading
    global_model, locals_ = trained_copies(4)
    counts, dropouts = [5, 9, 14, 20], {2: DropoutStage.UPLOAD}
    secure = make_aggregator("secagg", num_clients=4)
    reference = make_aggregator("plain-quantized", num_clients=4)
    # Execute
    outcome = aggregate_models(
        global_model, locals_, secure, num_samples=counts, rng=np.random.default_rng(3), dropouts=dropouts
    )
    expected = aggregate_models(
        global_model, locals_, reference, num_samples=counts, rng=np.random.default_rng(3), dropouts=dropouts
    )
    target = small_model(torch.float64)
    outcome.load_into(target)
    # Assert: bit-identical to the clear quantized sum, client 2 left out
    assert outcome.result.included == frozenset({0, 1, 3}) == expected.result.included
    assert outcome.state_dict is not None and expected.state_dict is not None
    for name, tensor in expected.state_dict.items():
        assert torch.equal(outcome.state_dict[name], tensor), name
        assert torch.equal(target.state_dict()[name], tensor), name


def test_aggregate_models_withholds_a_model_of_another_shape() -> None:
    # Prepare
    global_model, locals_ = trained_copies(2)
    stranger = torch.nn.Sequential(torch.nn.Linear(4, 2)).to(torch.float64)
    # Execute
    outcome = aggregate_models(
        global_model, [locals_[0], stranger], make_aggregator("plain"), num_samples=[1, 1],
        rng=np.random.default_rng(0),
    )
    # Assert: the stranger alone is left out, with the reason
    assert outcome.result.included == frozenset({0})
    assert [client for client, _ in outcome.result.withheld] == [1]
    assert outcome.result.withheld[0][1].startswith("model tensors differ from the global model's")


@pytest.mark.slow
def test_the_pytorch_example_trains_securely_to_a_good_model() -> None:
    # Prepare
    pytest.importorskip("sklearn")
    script = Path(__file__).resolve().parents[2] / "examples" / "pytorch_secure_fedavg.py"
    # Execute
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False)
    # Assert: eight rounds, one hospital dropped in each, a good final accuracy
    assert result.returncode == 0, result.stderr[-3000:]
    rounds = [line for line in result.stdout.splitlines() if line.startswith("round ")]
    included = [re.search(r"hospitals \[(.*?)\]", line) for line in rounds]
    assert len(rounds) == 8 and all(m is not None and len(m.group(1).split(",")) == 4 for m in included)
    assert float(rounds[-1].rsplit(" ", 1)[1]) > 0.9


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_aggregate_is_refused_for_a_bool_tensor(bad: float) -> None:
    # Prepare: an aggregate with a NaN or infinity where a bool mask sits
    layout = flatten_state_dict({"mask": torch.zeros(2, dtype=torch.bool)})[1]
    # Execute / Assert: refused, not read as "nonzero" (True)
    with pytest.raises(ConfigurationError, match="not finite"):
        unflatten_state_dict(np.array([bad, 0.0]), layout)


@pytest.mark.parametrize("bad", [7.0, -1.0, 1.5, -0.5 - 2**-40])
def test_an_aggregate_a_bool_tensor_cannot_hold_is_refused_not_made_true(bad: float) -> None:
    # Prepare: every weighted mean of bools lies in [0, 1]; a value rounding to neither is no bool
    layout = flatten_state_dict({"mask": torch.zeros(2, dtype=torch.bool)})[1]
    # Execute / Assert: refused, as for an integer tensor, not read as "nonzero" (True)
    with pytest.raises(ConfigurationError, match="outside the range of bool"):
        unflatten_state_dict(np.array([bad, 0.0]), layout)


def test_an_aggregate_within_a_bool_tensor_s_range_is_rounded_half_to_even() -> None:
    # The control: a weighted mean of bools rounds to the nearest, a half to False
    layout = flatten_state_dict({"mask": torch.zeros(5, dtype=torch.bool)})[1]
    got = unflatten_state_dict(np.array([-0.5, 0.4, 0.5, 0.6, 1.4]), layout)["mask"]
    assert got.tolist() == [False, False, False, True, True]


@pytest.mark.parametrize("name", list(COMPLEX))
def test_a_lazily_conjugated_complex_tensor_flattens_to_its_conjugate(name: str) -> None:
    # Prepare: conj() only sets a bit; view_as_real refuses such a tensor with a raw RuntimeError
    dtype = getattr(torch, name)
    plain = torch.tensor([1 + 2j, -3 - 4j, 0.5 - 0.25j], dtype=torch.complex128).to(dtype)
    lazy = plain.conj()
    # Execute
    vector, layout = flatten_state_dict({"c": lazy, "t": lazy.reshape(3, 1).t()})
    back = unflatten_state_dict(vector, layout)
    # Assert: the conjugate's values, real then imaginary, and back bit for bit
    assert list(vector[:6]) == [1.0, -2.0, -3.0, 4.0, 0.5, 0.25]
    wide = torch.complex128  # torch.equal has no complex32 kernel; widening is exact
    assert torch.equal(back["c"].to(wide), lazy.resolve_conj().to(wide)) and back["c"].dtype == dtype
    assert not back["c"].is_conj() and torch.equal(back["t"].to(wide), lazy.reshape(3, 1).t().to(wide))


# Floating dtypes narrower than float64, with what a value past the range became before it was refused.
NARROW = ["float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"]


@pytest.mark.parametrize("name", [*NARROW, "complex32", "complex64"])
def test_an_aggregate_beyond_a_narrow_float_range_is_refused_not_made_inf_nan_or_the_largest(name: str) -> None:
    # Prepare: float16 turned 2 * max into inf, float8_e4m3fn into 448 (saturated), the fnuz formats into NaN
    dtype = getattr(torch, name)
    largest = torch.finfo(dtype).max
    _, layout = flatten_state_dict({"w": torch.zeros(2, dtype=dtype)})
    fits = np.full(layout.size, largest)
    fits[0] = -largest
    # Execute: the largest value (either sign) is kept
    kept, _ = flatten_state_dict(unflatten_state_dict(fits, layout))
    # Assert
    assert list(kept) == list(fits)
    for bad in (2.0 * largest, -2.0 * largest):
        beyond = fits.copy()
        beyond[-1] = bad
        with pytest.raises(ConfigurationError, match="does not fit"):
            unflatten_state_dict(beyond, layout)


@pytest.mark.parametrize(
    ("name", "value"),
    [("float8_e4m3fn", np.inf), ("float8_e4m3fnuz", -np.inf), ("float8_e8m0fnu", -3.0), ("float8_e8m0fnu", np.inf)],
)
def test_a_value_a_narrow_format_cannot_hold_is_refused_not_changed(name: str, value: float) -> None:
    # Prepare: e4m3fn has no infinity (inf became 448), e8m0fnu no sign (-3 became 4) and no infinity
    _, layout = flatten_state_dict({"w": torch.zeros(1, dtype=getattr(torch, name))})
    # Execute / Assert
    with pytest.raises(ConfigurationError, match="does not fit"):
        unflatten_state_dict(np.array([value]), layout)


@pytest.mark.parametrize("value", [9.0, -7.5, np.inf, -np.inf])
def test_float4_e2m1_refuses_an_aggregate_beyond_its_range_instead_of_saturating(value: float) -> None:
    # Prepare: 6 is the largest value; 6.9 rounds to it, 9 (and inf) used to saturate to it silently
    _, layout = flatten_state_dict({"q": torch.zeros(1, dtype=torch.uint8).view(torch.float4_e2m1fn_x2)})
    # Execute / Assert
    assert list(flatten_state_dict(unflatten_state_dict(np.array([6.9, -6.0]), layout))[0]) == [6.0, -6.0]
    with pytest.raises(ConfigurationError, match="does not fit"):
        unflatten_state_dict(np.array([0.5, value]), layout)


@pytest.mark.parametrize("value", [2.0**63, -(2.0**63) - 2048.0, 2.0**64])
def test_an_integer_aggregate_just_past_int64_is_refused_not_wrapped(value: float) -> None:
    # Prepare: 2^63 compared as a float64 equals int64's max (2^63 - 1), then wrapped to -2^63
    layout = flatten_state_dict({"steps": torch.zeros(1, dtype=torch.int64)})[1]
    # Execute / Assert
    assert int(unflatten_state_dict(np.array([-(2.0**63)]), layout)["steps"]) == -(2**63)
    with pytest.raises(ConfigurationError, match="outside the range"):
        unflatten_state_dict(np.array([value]), layout)


def test_a_lazy_module_before_its_first_forward_pass_is_refused() -> None:
    # Prepare: LazyLinear's parameters have no shape yet; detach() raised torch's raw ValueError
    lazy = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LazyLinear(3), torch.nn.LazyBatchNorm1d())
    # Execute / Assert
    with pytest.raises(ConfigurationError, match="uninitialized"):
        flatten_model(lazy)
    with pytest.raises(ConfigurationError, match="uninitialized"):
        flatten_state_dict({"w": torch.nn.parameter.UninitializedBuffer()})
    with pytest.raises(ConfigurationError, match="uninitialized"):
        aggregate_models(lazy, [lazy] * 3, make_aggregator("plain"), num_samples=[1] * 3, rng=np.random.default_rng(0))
    # Assert: after a forward pass it flattens
    lazy(torch.zeros(4, 2))
    assert flatten_model(lazy, buffers=True)[1].names[-1] == "2.num_batches_tracked"


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["float16", "bfloat16", "float32", "float64", "complex64", "int64", "uint8"]),
            st.lists(st.integers(1, 4), max_size=3),
            st.floats(-3.0, 3.0),
        ),
        min_size=1,
        max_size=4,
    ),
    st.lists(st.integers(1, 60), min_size=3, max_size=3),
    st.integers(0, 2**32 - 1),
)
def test_aggregate_models_restores_dtypes_and_shapes_and_is_the_mean_within_a_step(
    entries: list[tuple[str, list[int], float]], counts: list[int], seed: int
) -> None:
    # Prepare: tensors of random dtypes, shapes and scales 10^e; integer buffers move by whole steps
    rng = np.random.default_rng(seed)
    dtypes = {f"t{i}": getattr(torch, dtype) for i, (dtype, _, _) in enumerate(entries)}

    def state(offset: float) -> dict[str, torch.Tensor]:
        out = {}
        for (name, dtype), (_, shape, exponent) in zip(dtypes.items(), entries, strict=True):
            if not dtype.is_floating_point and not dtype.is_complex:
                out[name] = torch.from_numpy(np.asarray(rng.integers(0, 100, size=tuple(shape)))).to(dtype)
                continue
            values = torch.from_numpy(np.asarray(offset + rng.uniform(-1, 1, size=tuple(shape)) * 10.0**exponent))
            out[name] = (torch.complex(values, -values) if dtype.is_complex else values).to(dtype)
        return out

    global_state = state(0.0)
    locals_ = [state(1.0) for _ in counts]
    aggregator = make_aggregator("plain-quantized", num_clients=3)
    # Execute
    outcome = aggregate_models(global_state, locals_, aggregator, num_samples=counts, rng=np.random.default_rng(1))
    # Assert: every tensor in its dtype and shape, within one step (and its dtype's rounding) of the float64 mean
    assert outcome.state_dict is not None and outcome.result.clipping is not None
    qmax = aggregator.quantizer.config.qmax
    for name, dtype in dtypes.items():
        got = outcome.state_dict[name]
        assert got.dtype == dtype and got.shape == global_state[name].shape
        wide = [torch.view_as_real(t[name]) if dtype.is_complex else t[name] for t in locals_]
        stacked = np.stack([t.to(torch.float64).numpy() for t in wide])
        expected = np.array(counts, dtype=np.float64) @ stacked.reshape(len(counts), -1) / sum(counts)
        actual = (torch.view_as_real(got) if dtype.is_complex else got).to(torch.float64).numpy().reshape(-1)
        clip = outcome.result.clipping.table.clips.get(name)
        if clip is None:  # an exact integer segment: the mean, rounded half to even
            assert np.array_equal(actual, np.rint(expected)) or np.abs(actual - expected).max() <= 0.5
            continue
        info = torch.finfo(dtype)
        bound = clip / qmax + info.eps * (np.abs(expected) + clip / qmax) + info.smallest_normal
        assert np.all(np.abs(actual - expected) <= bound), name


class _ReturnsMean:
    """An aggregator whose decoded mean is given (as a forged or overflowing sum would be)."""

    name = "fixed"

    def __init__(self, mean: float) -> None:
        self.mean = mean

    def aggregate(
        self, updates: Any, dropouts: Any = None, *, rng: Any, segments: Any = None, model_digest: Any = None
    ) -> Any:
        from fl_core.aggregators.base import AggregationResult  # noqa: PLC0415

        length = updates[0].vector.shape[0]
        return AggregationResult(np.full(length, self.mean), frozenset(u.client_id for u in updates), 0.0, 0.0)


def test_a_new_float64_global_that_overflows_to_infinity_is_refused() -> None:
    # Prepare: a float64 weight near the largest double plus a large mean update: base + mean was inf, kept
    global_state = {"w": torch.full((2,), 1.5e308, dtype=torch.float64)}
    locals_ = [{"w": torch.full((2,), 1.6e308, dtype=torch.float64)} for _ in range(3)]
    # Execute / Assert
    with pytest.raises(ConfigurationError, match="not finite"):
        aggregate_models(global_state, locals_, _ReturnsMean(1e308), num_samples=[1] * 3, rng=np.random.default_rng(0))


@pytest.mark.parametrize("name", NARROW)
@given(data=st.data())
def test_any_value_within_a_narrow_range_is_rounded_as_torch_rounds_it(name: str, data: st.DataObject) -> None:
    # Prepare: values anywhere in [-max, max], subnormals and signed zeros included
    dtype = getattr(torch, name)
    largest = torch.finfo(dtype).max
    values = np.array(data.draw(st.lists(st.floats(-largest, largest, allow_nan=False), min_size=1, max_size=8)))
    _, layout = flatten_state_dict({"w": torch.zeros(len(values), dtype=dtype)})
    # Execute: the range check refuses nothing a plain cast rounds
    back = unflatten_state_dict(values, layout)["w"]
    # Assert: bit for bit what torch's own cast gives
    bits = {1: torch.uint8, 2: torch.int16, 4: torch.int32}[back.element_size()]
    assert torch.equal(back.view(bits), torch.from_numpy(values).to(dtype).view(bits))


def batchnorm_trained_copies(global_model: Any, steps: tuple[int, ...]) -> list[Any]:
    """Copies of ``global_model``, copy k after ``steps[k]`` forward passes in training mode on
    data shifted by k + 1 (BatchNorm's running statistics move, the parameters do not)."""
    copies = []
    for k, count in enumerate(steps):
        local = small_model()
        local.load_state_dict(global_model.state_dict())
        local.train()
        with torch.no_grad():
            for _ in range(count):
                local(torch.full((8, 4), float(k + 1)) + torch.arange(4.0))
        copies.append(local)
    return copies


def test_aggregate_models_of_modules_averages_batchnorm_statistics_by_default() -> None:
    """A BatchNorm model's running statistics are part of the model FedAvg hands back: modules
    aggregate as their state dicts do (and as the Keras adapter's models do), buffers included,
    unless ``buffers=False`` asks for the parameters only. They were silently left at the global
    model's values (the aggregate held parameters only), so the global model evaluated with its
    initial statistics."""
    # Prepare: the global model and three hospitals' copies after training steps on shifted data
    global_model = small_model()
    local_models = batchnorm_trained_copies(global_model, steps=(1, 2, 3))
    counts = [10, 20, 30]
    # Execute
    outcome = aggregate_models(
        global_model, local_models, make_aggregator("plain"), num_samples=counts, rng=np.random.default_rng(0)
    )
    of_states = aggregate_models(
        global_model.state_dict(),
        [m.state_dict() for m in local_models],
        make_aggregator("plain"),
        num_samples=counts,
        rng=np.random.default_rng(0),
    )
    parameters_only = aggregate_models(
        global_model, local_models, make_aggregator("plain"), num_samples=counts,
        rng=np.random.default_rng(0), buffers=False,
    )
    # Assert: the running statistics are the weighted FedAvg of the hospitals', as for state dicts
    assert outcome.state_dict is not None and of_states.state_dict is not None
    assert set(outcome.state_dict) == set(global_model.state_dict())
    means = [m.state_dict()["1.running_mean"].double() for m in local_models]
    expected = sum(c * mean for c, mean in zip(counts, means, strict=True)) / 60
    torch.testing.assert_close(outcome.state_dict["1.running_mean"].double(), expected, rtol=0, atol=1e-6)
    assert 1 < int(outcome.state_dict["1.num_batches_tracked"]) <= 3
    for name, tensor in of_states.state_dict.items():
        assert torch.equal(outcome.state_dict[name], tensor), name
    assert parameters_only.state_dict is not None
    assert list(parameters_only.state_dict) == [name for name, _ in global_model.named_parameters()]


def test_models_passed_in_the_wrong_order_are_refused_saying_which_argument_is_which() -> None:
    """``aggregate_models(local_models, global_model, ...)`` (the hospitals' list first) was refused
    as "local_models must be a sequence, got Sequential Sequential(...", which does not say that a
    list of the hospitals' models is expected, nor in which order the models go."""
    # Prepare
    global_model = small_model()
    local_models = [small_model() for _ in range(3)]
    # Execute / Assert
    expected = r"one model per hospital.*aggregate_models\(global_model, local_models"
    with pytest.raises(ConfigurationError, match=expected):
        aggregate_models(
            local_models, global_model, make_aggregator("plain"),  # type: ignore[arg-type]
            num_samples=[1, 1, 1], rng=np.random.default_rng(0),
        )  # fmt: skip


def test_a_hospital_with_no_samples_is_refused_saying_to_leave_it_out() -> None:
    """A hospital with 0 samples has no weight in the mean; it was refused as "client 1:
    num_samples must be in 1.., got 0", which does not say what to do with it."""
    # Prepare
    global_model = small_model()
    # Execute / Assert
    with pytest.raises(ConfigurationError, match=r"client 1: num_samples is 0.*leave it out of the round"):
        aggregate_models(
            global_model, [small_model() for _ in range(3)], make_aggregator("plain"),
            num_samples=[5, 0, 5], rng=np.random.default_rng(0),
        )  # fmt: skip


def test_model_digest_covers_a_module_s_buffers_by_default() -> None:
    """Mutation audit: model_digest's default includes buffers, as hospital_update's and
    aggregate_models' do; a default of parameters only would bind a round to a model whose
    BatchNorm statistics the server could change unnoticed (and disagree with hospital_update)."""
    model, changed = small_model(), small_model()
    with torch.no_grad():
        changed[1].running_mean.add_(1.0)  # type: ignore[operator]
    assert model_digest(model) != model_digest(changed)
    assert model_digest(model) == model_digest(model, buffers=True)
    assert model_digest(model, buffers=False) == model_digest(changed, buffers=False)


def test_hospital_update_covers_a_module_s_buffers_by_default() -> None:
    """Mutation audit: hospital_update's default includes buffers (its update and its declared
    model digest), as model_digest and aggregate_models do: else its update would not line up
    with aggregate_models' layout and its digest would not match model_digest(global_model)."""
    received, local = small_model(), small_model()
    with torch.no_grad():
        local[1].running_mean.add_(1.0)  # type: ignore[operator]
    update = hospital_update(1, received, local, num_samples=4)
    assert update.vector.shape[0] == flatten_model(received, buffers=True)[0].shape[0]
    assert update.model_digest == model_digest(received)
    assert float(np.abs(update.vector).max()) > 0.0


def test_a_module_and_its_state_dict_are_one_model_with_buffers_by_default() -> None:
    """With buffers included (the default), a module's tensors are its state dict's, in the state
    dict's order: its digest is its state dict's, and a round mixes modules and state dicts
    (global model, local models, ``trained_from``). A module's tensors were its parameters, then its
    buffers, so with a BatchNorm layer before another layer the orders differed: every hospital
    that passed a state dict to a module's round was withheld ('tensor 4 is '1.running_mean' here,
    '2.weight' in the global model'), and a hospital_update of modules was refused by a server
    binding model_digest(global_model.state_dict())."""
    # Prepare: the global model and three hospitals' copies after training steps
    global_model = small_model()
    local_models = batchnorm_trained_copies(global_model, steps=(1, 1, 1))
    states = [m.state_dict() for m in local_models]
    counts = [10, 20, 30]
    # Execute
    mixed = aggregate_models(
        global_model, states, make_aggregator("plain"), num_samples=counts, rng=np.random.default_rng(0),
        trained_from={1: global_model.state_dict()},
    )
    of_states = aggregate_models(
        global_model.state_dict(), states, make_aggregator("plain"), num_samples=counts, rng=np.random.default_rng(0)
    )
    update = hospital_update(0, global_model, local_models[0], num_samples=10)
    of_state_dicts = hospital_update(0, global_model.state_dict(), states[0], num_samples=10)
    # Assert: one model, whichever form it comes in
    assert model_digest(global_model) == model_digest(global_model.state_dict())
    assert update.model_digest == model_digest(global_model.state_dict())
    assert np.array_equal(update.vector, of_state_dicts.vector)
    assert mixed.result.withheld == () and mixed.result.included == {0, 1, 2}
    assert mixed.state_dict is not None and of_states.state_dict is not None
    assert list(mixed.state_dict) == list(global_model.state_dict())
    for name, tensor in of_states.state_dict.items():
        assert torch.equal(mixed.state_dict[name], tensor), name


def test_an_integer_buffer_s_weighted_mean_is_rounded_half_to_even_as_documented() -> None:
    """Pins what docs/integrations.md says of integer tensors: the weighted mean of their updates
    is exact (integer sums), and the new global value is rounded half to even into the dtype,
    deterministically, whatever the aggregator's rng (num_batches_tracked 3 and 4 give 4, 2 and 3
    give 2, 1 and 2 weighted 2:1 give 1)."""

    def local(count: int) -> torch.nn.Module:
        model = torch.nn.BatchNorm1d(2)
        model.num_batches_tracked.fill_(count)  # type: ignore[operator]
        return model

    for counts, weights, expected in (((3, 4), [1, 1], 4), ((2, 3), [1, 1], 2), ((1, 2), [2, 1], 1)):
        for seed in (0, 1):
            outcome = aggregate_models(
                torch.nn.BatchNorm1d(2), [local(c) for c in counts], make_aggregator("plain-quantized", num_clients=2),
                num_samples=weights, rng=np.random.default_rng(seed),
            )
            assert outcome.state_dict is not None
            assert int(outcome.state_dict["num_batches_tracked"]) == expected, (counts, weights)


@pytest.mark.parametrize("container", ["ModuleList", "tuple", "dict values"])
def test_hospital_models_in_a_module_list_or_a_dict_s_values_are_aggregated(container: str) -> None:
    """A ``torch.nn.ModuleList`` of the hospitals' models, or a dict's values, is one model per
    hospital in a stable order: aggregated as the same models in a list. A ModuleList was refused
    as "local_models must be a list or tuple ..., got ModuleList", and so were a dict's values."""
    # Prepare
    torch.manual_seed(0)
    global_model = small_model()
    local_models = [small_model() for _ in range(3)]
    wrapped: Any = {
        "ModuleList": torch.nn.ModuleList(local_models),
        "tuple": tuple(local_models),
        "dict values": {f"hospital-{k}": m for k, m in enumerate(local_models)}.values(),
    }[container]
    counts = [3, 1, 2]
    # Execute
    outcome = aggregate_models(global_model, wrapped, make_aggregator("plain"), num_samples=counts,
                               rng=np.random.default_rng(0))
    listed = aggregate_models(global_model, local_models, make_aggregator("plain"), num_samples=counts,
                              rng=np.random.default_rng(0))
    # Assert: the round of the same models in a list
    assert outcome.result.included == {0, 1, 2} and outcome.state_dict is not None and listed.state_dict is not None
    for name, tensor in listed.state_dict.items():
        assert torch.equal(outcome.state_dict[name], tensor), name


@pytest.mark.parametrize("container", ["set", "generator", "dict", "Sequential", "str"])
def test_hospital_models_in_an_unordered_or_ambiguous_container_are_refused_saying_what_to_pass(
    container: str,
) -> None:
    """A set or a generator has no order to pair with ``num_samples``, a dict iterates over its
    keys, and a Sequential is itself one model: each is refused naming what to pass, never
    iterated into models and weights that do not belong together."""
    # Prepare
    local_models = [small_model() for _ in range(3)]
    wrapped: Any = {
        "set": set(local_models),
        "generator": (m for m in local_models),
        "dict": dict(enumerate(local_models)),
        "Sequential": torch.nn.Sequential(*local_models),
        "str": "abc",  # a sequence of three one-letter strings, not of models
    }[container]
    # Execute / Assert
    with pytest.raises(ConfigurationError, match=r"one model per hospital.*list, a tuple or a torch\.nn\.ModuleList"):
        aggregate_models(small_model(), wrapped, make_aggregator("plain"), num_samples=[1, 1, 1],
                         rng=np.random.default_rng(0))
