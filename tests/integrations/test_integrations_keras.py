"""Keras 3 adapter: exact flatten/unflatten for every dtype, models in place, secure FedAvg of models."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported
keras = pytest.importorskip("keras")
ml_dtypes = pytest.importorskip("ml_dtypes")

from fl_core.aggregators import DropoutStage, make_aggregator  # noqa: E402
from secagg.errors import ConfigurationError  # noqa: E402
from secagg.integrations.keras import (  # noqa: E402
    aggregate_models,
    flatten_model,
    flatten_weights,
    load_into_model,
    unflatten_weights,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "keras_secure_fedavg.py"


def ml_floating_dtypes() -> list[str]:
    """Every floating format ml_dtypes defines (bfloat16, float8, float6, float4, complex32 ...)."""
    names = []
    for name in sorted(dir(ml_dtypes)):
        candidate = getattr(ml_dtypes, name)
        if isinstance(candidate, type) and issubclass(candidate, np.generic):
            try:
                ml_dtypes.finfo(candidate)
            except (TypeError, ValueError, KeyError):
                continue
            names.append(name)
    return names


def ml_complex_dtypes() -> list[str]:
    return [name for name in ml_floating_dtypes() if "complex" in name]


def ml_float_dtypes() -> list[str]:
    return [name for name in ml_floating_dtypes() if "complex" not in name]


def ml_int_dtypes() -> list[str]:
    names = []
    for name in sorted(dir(ml_dtypes)):
        candidate = getattr(ml_dtypes, name)
        if isinstance(candidate, type) and issubclass(candidate, np.generic):
            try:
                ml_dtypes.iinfo(candidate)
            except (TypeError, ValueError, KeyError):
                continue
            names.append(name)
    return names


def same_bits_or_both_nan(a: np.ndarray, b: np.ndarray) -> bool:
    bits = np.dtype(f"u{a.dtype.itemsize}")
    nan = np.isnan(a.astype(np.float64))
    return bool(np.isnan(b.astype(np.float64))[nan].all()) and np.array_equal(a.view(bits)[~nan], b.view(bits)[~nan])


def test_the_narrow_float_formats_are_found() -> None:
    # Assert: the discovery above sees the formats Keras uses
    assert {"bfloat16", "float8_e4m3fn", "float8_e5m2"} <= set(ml_float_dtypes())
    assert set(ml_complex_dtypes()) <= {"complex32", "bcomplex32"}


@pytest.mark.parametrize("name", ["float16", *ml_float_dtypes()])
def test_round_trip_is_exact_for_every_bit_pattern_of_narrow_floats(name: str) -> None:
    # Prepare: every bit pattern of the format (4 to 16 bits): infinities, zeros, subnormals, NaNs
    dtype = np.dtype(getattr(ml_dtypes, name, None) or name)
    width = 16 if name == "float16" else ml_dtypes.finfo(dtype).bits
    bits = np.arange(1 << width, dtype=np.uint64).astype(f"u{dtype.itemsize}")
    array = bits.view(dtype).reshape(-1, 2)
    # Execute
    vector, layout = flatten_weights([array])
    (back,) = unflatten_weights(vector, layout)
    # Assert
    assert vector.dtype == np.float64 and vector.shape == (array.size,)
    assert back.dtype == dtype and back.shape == array.shape
    assert same_bits_or_both_nan(array, back)


@pytest.mark.parametrize("name", ["float32", "float64"])
def test_round_trip_is_exact_for_random_and_special_bit_patterns_of_wide_floats(name: str) -> None:
    # Prepare: random bit patterns (every exponent, subnormals) plus the special values
    bits_dtype = np.dtype(f"u{np.dtype(name).itemsize}")
    rng = np.random.default_rng(11)
    bits = rng.integers(0, np.iinfo(bits_dtype).max, size=19_993, dtype=bits_dtype, endpoint=True)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -5e-324], dtype=name).view(bits_dtype)
    array = np.concatenate([bits, specials]).view(name).reshape(100, -1)
    # Execute
    vector, layout = flatten_weights([array])
    (back,) = unflatten_weights(vector, layout)
    # Assert
    assert back.dtype == array.dtype and back.shape == array.shape
    assert same_bits_or_both_nan(array, back)


@pytest.mark.parametrize("name", ["complex64", "complex128", *ml_complex_dtypes()])
def test_complex_weights_take_two_entries_per_element_and_round_trip_exactly(name: str) -> None:
    # Prepare
    values = np.empty((3,), dtype=np.complex128)
    values.real, values.imag = [1.5, np.inf, -2.0], [-0.0, 3.25, 1e-3]
    array = values.astype(getattr(ml_dtypes, name, None) or name)
    # Execute
    vector, layout = flatten_weights([array])
    (back,) = unflatten_weights(vector, layout)
    # Assert
    assert vector.shape == (6,) and layout.specs[0].length == 6
    assert back.dtype == array.dtype
    assert np.array_equal(back.astype(np.complex128), array.astype(np.complex128))
    assert np.signbit(back.astype(np.complex128).imag[0])  # -0.0 kept


@pytest.mark.parametrize(
    "name", ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", *ml_int_dtypes()]
)
def test_integer_weights_round_trip_exactly_to_their_limits(name: str) -> None:
    # Prepare: the dtype's extremes (capped at 2^53) and a few values between
    dtype = np.dtype(getattr(ml_dtypes, name, None) or name)
    info = ml_dtypes.iinfo(dtype) if name in ml_int_dtypes() else np.iinfo(dtype)
    low, high = max(int(info.min), -(1 << 53)), min(int(info.max), 1 << 53)
    array = np.array([low, high, 0, high // 3, low // 3, 1], dtype=np.int64 if high < (1 << 63) else np.uint64)
    array = array.astype(dtype)
    # Execute
    vector, layout = flatten_weights([array])
    (back,) = unflatten_weights(vector, layout)
    # Assert
    assert back.dtype == dtype and np.array_equal(back.astype(np.int64), array.astype(np.int64))


def test_shapes_scalars_empty_and_bool_weights_survive() -> None:
    # Prepare
    weights = [
        np.float64(2.5),
        np.zeros((0, 5), dtype=np.float32),
        np.arange(12, dtype=np.float32).reshape(3, 4).T,  # not C-contiguous
        np.array(7, dtype=np.int64),
        np.array([True, False]),
    ]
    # Execute
    vector, layout = flatten_weights(weights)
    back = unflatten_weights(vector, layout)
    # Assert
    assert layout.names == ("0", "1", "2", "3", "4") and layout.size == vector.shape[0] == 1 + 0 + 12 + 1 + 2
    for before, after in zip(weights, back, strict=True):
        assert after.shape == np.shape(before) and after.dtype == np.asarray(before).dtype
        assert np.array_equal(after, before)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["float16", "bfloat16", "float32", "float64", "complex64", "int32", "bool"]),
            st.lists(st.integers(0, 4), max_size=3),
        ),
        min_size=1,
        max_size=5,
    ),
    st.integers(0, 2**32 - 1),
)
def test_any_weight_list_round_trips_bit_for_bit(entries: list[tuple[str, list[int]]], seed: int) -> None:
    # Prepare: arrays of random finite values in random dtypes and shapes
    rng = np.random.default_rng(seed)
    weights = []
    for dtype, shape in entries:
        values = rng.normal(scale=100.0, size=tuple(shape))
        if dtype == "complex64":
            values = values - 1j * values
        weights.append(values.astype(getattr(ml_dtypes, dtype, None) or dtype))
    # Execute
    vector, layout = flatten_weights(weights)
    back = unflatten_weights(vector, layout)
    # Assert
    for before, after in zip(weights, back, strict=True):
        assert after.dtype == before.dtype and after.shape == before.shape
        assert np.array_equal(after, before)


def test_dtypes_that_cannot_be_aggregated_are_refused_by_name() -> None:
    # Prepare: no float64 holds these exactly, or they are not numbers
    refused = [
        np.array(["a"]),
        np.array([object()]),
        np.array(["2026-01-01"], dtype="datetime64[D]"),
        np.zeros(2, dtype=[("x", "f4")]),
    ]
    if np.dtype(np.longdouble).itemsize > 8:
        refused += [np.zeros(2, dtype=np.longdouble), np.zeros(2, dtype=np.clongdouble)]
    # Execute / Assert
    for array in refused:
        with pytest.raises(ConfigurationError, match=r"weight '0': dtype .* cannot be aggregated"):
            flatten_weights([array])


def test_bad_inputs_raise_configuration_errors() -> None:
    # Prepare
    vector, layout = flatten_weights([np.zeros((2, 3), dtype=np.float32), np.zeros(3, dtype=np.float32)])
    # Execute / Assert
    with pytest.raises(ConfigurationError, match="entries, the layout needs"):
        unflatten_weights(vector[:-1], layout)
    with pytest.raises(ConfigurationError, match="one-dimensional float vector"):
        unflatten_weights(vector.astype(np.int64), layout)
    with pytest.raises(ConfigurationError, match="beyond 2"):
        flatten_weights([np.array([2**53 + 1])])
    with pytest.raises(ConfigurationError, match="not a numpy array"):
        flatten_weights([[1.0, 2.0]])
    with pytest.raises(ConfigurationError, match="list of numpy arrays"):
        flatten_weights(np.zeros(3))
    with pytest.raises(ConfigurationError, match="outside the range"):
        unflatten_weights(np.array([300.0]), flatten_weights([np.zeros(1, dtype=np.uint8)])[1])
    with pytest.raises(ConfigurationError, match="outside the range"):
        unflatten_weights(np.array([np.nan]), flatten_weights([np.zeros(1, dtype=np.int32)])[1])
    with pytest.raises(ConfigurationError, match="Keras model or layer"):
        flatten_model([np.zeros(2)])


def small_model(dtype: str = "float32") -> Any:
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, dtype=dtype),
            keras.layers.BatchNormalization(dtype=dtype),
            keras.layers.Dense(2, dtype=dtype),
        ]
    )


def test_flatten_model_follows_get_weights_and_names_weights_by_path() -> None:
    # Prepare
    model = small_model()
    # Execute
    everything, full_layout = flatten_model(model)
    trainable, trainable_layout = flatten_model(model, trainable_only=True)
    # Assert: get_weights order, the model's own name stripped from the paths, Keras's automatic
    # layer names (batch_normalization_<n> here, n from a process-wide counter) renumbered from zero
    expected = np.concatenate([w.reshape(-1).astype(np.float64) for w in model.get_weights()])
    assert np.array_equal(everything, expected)
    assert full_layout.names[2:6] == (
        *(f"batch_normalization/{v}" for v in ("gamma", "beta", "moving_mean", "moving_variance")),
    )
    assert trainable_layout.size == everything.shape[0] - 6 == trainable.shape[0]


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_load_into_model_writes_in_place_keeping_dtype(dtype: str) -> None:
    # Prepare: two instances of one architecture (Keras numbers their layers differently; the layouts agree)
    source, target = small_model(dtype), small_model(dtype)
    source.set_weights([w + np.asarray(0.5, dtype=w.dtype) for w in source.get_weights()])
    vector, layout = flatten_model(source)
    kernel = target.layers[0].kernel
    # Execute
    load_into_model(target, vector, layout)
    # Assert: same variable objects, now holding the source's values in their dtype
    assert target.layers[0].kernel is kernel and str(kernel.dtype) == dtype
    for a, b in zip(source.get_weights(), target.get_weights(), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_load_into_model_refuses_another_architecture() -> None:
    # Prepare
    vector, layout = flatten_model(small_model())
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5)])
    wider = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.BatchNormalization(),
                              keras.layers.Dense(3)])  # fmt: skip
    # Execute / Assert
    with pytest.raises(ConfigurationError, match="the model has 2 weights, the layout 8"):
        load_into_model(other, vector, layout)
    with pytest.raises(ConfigurationError, match=r"float32 \(3, 3\) at that position"):
        load_into_model(wider, vector, layout)


def trained_copies(count: int) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    keras.utils.set_random_seed(0)
    global_weights = small_model("float64").get_weights()
    locals_ = []
    for k in range(count):
        locals_.append([w + 0.01 * (k + 1) * np.sin(np.arange(w.size)).reshape(w.shape) for w in global_weights])
    return global_weights, locals_


def test_aggregate_models_with_plain_is_the_weighted_mean_of_the_weights() -> None:
    # Prepare
    global_weights, locals_ = trained_copies(3)
    counts = [10, 30, 60]
    # Execute
    outcome = aggregate_models(
        global_weights, locals_, make_aggregator("plain"), num_samples=counts, rng=np.random.default_rng(0)
    )
    # Assert
    assert outcome.weights is not None
    for index, weight in enumerate(outcome.weights):
        expected = sum(c * m[index] for c, m in zip(counts, locals_, strict=True)) / sum(counts)
        np.testing.assert_allclose(weight, expected, rtol=0, atol=1e-12)


def test_aggregate_models_through_secagg_equals_the_plain_quantized_mean_with_a_dropout() -> None:
    # Prepare: four hospitals, one drops before uploading; float32 models as Keras makes them
    keras.utils.set_random_seed(1)
    global_model = small_model()
    local_models = []
    for k in range(4):
        local = small_model()
        local.set_weights([w + np.float32(0.01 * (k + 1)) for w in global_model.get_weights()])
        local_models.append(local)
    counts, dropouts = [5, 9, 14, 20], {2: DropoutStage.UPLOAD}
    secure = make_aggregator("secagg", num_clients=4)
    reference = make_aggregator("plain-quantized", num_clients=4)
    exact = make_aggregator("plain")
    # Execute
    outcomes = [
        aggregate_models(
            global_model, local_models, aggregator, num_samples=counts, rng=np.random.default_rng(3), dropouts=dropouts
        )
        for aggregator in (secure, reference, exact)
    ]
    target = small_model()
    outcomes[0].load_into(target)
    # Assert: bit-identical to the clear quantized mean, client 2 left out, and within one
    # quantization step (clip / 32767) of the float mean before the cast to float32
    outcome, expected, plain = outcomes
    assert outcome.result.included == frozenset({0, 1, 3}) == expected.result.included
    assert outcome.weights is not None and expected.weights is not None and plain.weights is not None
    step = 0.5 / 32767
    for secure_weight, clear_weight, float_weight, loaded in zip(
        outcome.weights, expected.weights, plain.weights, target.get_weights(), strict=True
    ):
        assert secure_weight.dtype == np.float32 and np.array_equal(secure_weight, clear_weight)
        assert np.array_equal(loaded, secure_weight)
        spacing = np.spacing(np.abs(float_weight))
        assert np.all(np.abs(secure_weight - float_weight) <= step + spacing)


def test_aggregate_models_withholds_models_of_another_shape_and_skipped_rounds_say_why() -> None:
    # Prepare
    global_weights, locals_ = trained_copies(3)
    stranger = [np.zeros((4, 2))]
    secure = make_aggregator("secagg", num_clients=3)
    # Execute / Assert: the stranger alone is left out, with the reason
    withheld = aggregate_models(global_weights, [locals_[0], stranger], make_aggregator("plain"), num_samples=[1, 1],
                                rng=np.random.default_rng(0))  # fmt: skip
    assert withheld.result.included == frozenset({0}) and [c for c, _ in withheld.result.withheld] == [1]
    assert withheld.result.withheld[0][1].startswith("model weights differ from the global model's")
    skipped = aggregate_models(
        global_weights, locals_, secure, num_samples=[1, 1, 1], rng=np.random.default_rng(0),
        dropouts={0: DropoutStage.SETUP, 1: DropoutStage.SETUP},
    )
    assert skipped.weights is None
    with pytest.raises(ConfigurationError, match="the round was skipped"):
        skipped.load_into(small_model("float64"))


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """A tiny model trains fastest on one thread (and other test runs share the cores)."""
    if keras.backend.backend() != "torch":
        yield
        return
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("one_torch_thread")
def test_keras_mlp_on_digits_trains_securely_bit_for_bit_as_in_the_clear() -> None:
    # Prepare: the example, imported as a module (4 hospitals, SecAgg, a dropout per round from round 2)
    pytest.importorskip("sklearn")
    spec = importlib.util.spec_from_file_location("keras_secure_fedavg", EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    # Execute
    report = example.run(rounds=5, verbose=False)
    # Assert: every round's secure weights equal the clear quantized ones; digits learned
    assert report["identical"] == [True] * 5
    assert [len(ids) for ids in report["included"]] == [4, 3, 3, 3, 3]
    assert report["accuracies"][-1] > 0.85


@pytest.mark.slow
def test_the_keras_example_runs_as_a_script() -> None:
    # Prepare
    pytest.importorskip("sklearn")
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    # Execute
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=300, check=False, env=env
    )
    # Assert: five rounds, each the same as in the clear, a good final accuracy
    assert result.returncode == 0, result.stderr[-3000:]
    rounds = [line for line in result.stdout.splitlines() if line.startswith("round ")]
    assert len(rounds) == 5 and all("same weights as in the clear: True" in line for line in rounds)
    assert float(rounds[-1].rsplit(" ", 1)[1]) > 0.85


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_aggregate_is_refused_for_a_bool_weight(bad: float) -> None:
    # Prepare: an aggregate with a NaN or infinity where a bool mask sits
    _, layout = flatten_weights([np.zeros(2, dtype=bool)])
    # Execute / Assert: refused, not read as "nonzero" (True)
    with pytest.raises(ConfigurationError, match="not finite"):
        unflatten_weights(np.array([bad, 0.0]), layout)


@pytest.mark.parametrize("bad", [7.0, -1.0, 1.5, -0.5 - 2**-40])
def test_an_aggregate_a_bool_weight_cannot_hold_is_refused_not_made_true(bad: float) -> None:
    # Prepare: every weighted mean of bools lies in [0, 1]; a value rounding to neither is no bool
    _, layout = flatten_weights([np.zeros(2, dtype=bool)])
    # Execute / Assert: refused, as for an integer weight, not read as "nonzero" (True)
    with pytest.raises(ConfigurationError, match="outside the range of bool"):
        unflatten_weights(np.array([bad, 0.0]), layout)


def test_an_aggregate_within_a_bool_weight_s_range_is_rounded_half_to_even() -> None:
    # The control: a weighted mean of bools rounds to the nearest, a half to False
    _, layout = flatten_weights([np.zeros(5, dtype=bool)])
    got = unflatten_weights(np.array([-0.5, 0.4, 0.5, 0.6, 1.4]), layout)[0]
    assert got.tolist() == [False, False, False, True, True]


def finfo_of(dtype: np.dtype[Any]) -> Any:
    return np.finfo(dtype) if dtype.kind in "fc" else ml_dtypes.finfo(dtype)


@pytest.mark.parametrize(
    "name", ["float32", "float16", "complex64", *[n for n in ml_floating_dtypes() if n not in ("float64",)]]
)
def test_an_aggregate_beyond_a_narrow_float_range_is_refused_not_made_inf_nan_or_the_largest(name: str) -> None:
    # Prepare: float16 turned 2 * max into inf, float8_e4m3fn into NaN, float4_e2m1fn into 6 (saturated)
    dtype = np.dtype(getattr(ml_dtypes, name, None) or name)
    largest, lowest = float(finfo_of(dtype).max), float(finfo_of(dtype).min)
    signed = lowest < 0  # float8_e8m0fnu and float8_e5m3fnu have no sign
    _, layout = flatten_weights([np.zeros(2, dtype=dtype)])
    fits = np.full(layout.size, largest)
    fits[0] = lowest if signed else largest
    # Execute: the largest value (and the lowest) is kept
    kept, _ = flatten_weights(unflatten_weights(fits, layout))
    # Assert
    assert list(kept) == list(fits)
    for bad in (2.0 * largest, -2.0 * largest if signed else -1.0):
        beyond = fits.copy()
        beyond[-1] = bad
        with pytest.raises(ConfigurationError, match="does not fit"):
            unflatten_weights(beyond, layout)


@pytest.mark.parametrize(
    ("name", "value"), [("float8_e4m3fn", np.inf), ("float4_e2m1fn", -np.inf), ("float6_e2m3fn", np.nan)]
)
def test_a_value_a_narrow_format_cannot_hold_is_refused_not_changed(name: str, value: float) -> None:
    # Prepare: e4m3fn has no infinity, the float4 and float6 formats neither infinity nor NaN
    _, layout = flatten_weights([np.zeros(1, dtype=getattr(ml_dtypes, name))])
    # Execute / Assert
    with pytest.raises(ConfigurationError, match="does not fit"):
        unflatten_weights(np.array([value]), layout)


@pytest.mark.parametrize(("dtype", "value"), [("int64", 2.0**63), ("uint64", 2.0**64), ("uint64", -1.0)])
def test_an_integer_aggregate_just_past_a_64_bit_range_is_refused_not_wrapped(dtype: str, value: float) -> None:
    # Prepare: 2^63 (2^64) compared as a float64 equals the dtype's max, then wrapped to -2^63 (0)
    _, layout = flatten_weights([np.zeros(1, dtype=dtype)])
    # Execute / Assert
    with pytest.raises(ConfigurationError, match="outside the range"):
        unflatten_weights(np.array([value]), layout)


@pytest.mark.parametrize("count", [1.9, 2.0, "3", True, np.float64(4.0)])
def test_a_sample_count_that_is_not_an_integer_is_refused_not_truncated(count: Any) -> None:
    # Prepare: int() made 1.9 a weight of 1 and "3" a weight of 3 (the PyTorch adapter refuses both)
    global_weights = [np.zeros(3, dtype=np.float32)]
    locals_ = [[np.full(3, 0.1 * (k + 1), dtype=np.float32)] for k in range(3)]
    # Execute / Assert
    with pytest.raises(ConfigurationError, match="num_samples must be an integer"):
        aggregate_models(
            global_weights, locals_, make_aggregator("plain"), num_samples=[count, 1, 1], rng=np.random.default_rng(0)
        )


def test_a_numpy_integer_sample_count_is_a_weight() -> None:
    # Prepare
    global_weights = [np.zeros(3, dtype=np.float64)]
    locals_ = [[np.full(3, float(k + 1))] for k in range(3)]
    # Execute
    outcome = aggregate_models(
        global_weights, locals_, make_aggregator("plain"), num_samples=[np.int64(2), np.uint32(1), 1],
        rng=np.random.default_rng(0),
    )
    # Assert: (2 * 1 + 1 * 2 + 1 * 3) / 4
    assert outcome.weights is not None and list(outcome.weights[0]) == [1.75] * 3


def test_a_masked_array_is_refused_not_flattened_with_its_hidden_values() -> None:
    # Prepare: np.asarray drops the mask, so the masked 1e6 was aggregated as if it were a weight
    masked = np.ma.array([0.5, 1e6], mask=[False, True])
    # Execute / Assert
    with pytest.raises(ConfigurationError, match="masked"):
        flatten_weights([np.zeros(2), masked])
    # Each hospital sending one is withheld with the reason (one faulty party costs only itself)
    outcome = aggregate_models(
        [np.zeros(2)], [[masked]] * 3, make_aggregator("plain"), num_samples=[1] * 3, rng=np.random.default_rng(0)
    )
    assert [client for client, _ in outcome.result.withheld] == [0, 1, 2]
    assert all("masked" in reason for _, reason in outcome.result.withheld)
    assert outcome.result.mean is None and "masked" in (outcome.result.skipped_reason or "")


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["float16", "bfloat16", "float32", "float64", "complex64", "int32", "uint8"]),
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
    # Prepare: weights of random dtypes, shapes and scales 10^e; integer weights move by whole steps
    rng = np.random.default_rng(seed)
    dtypes = [np.dtype(getattr(ml_dtypes, name, None) or name) for name, _, _ in entries]

    def weights(offset: float) -> list[np.ndarray]:
        out = []
        for dtype, (_, shape, exponent) in zip(dtypes, entries, strict=True):
            if dtype.kind in "iu":
                out.append(np.asarray(rng.integers(0, 100, size=tuple(shape))).astype(dtype))
                continue
            values = np.asarray(offset + rng.uniform(-1, 1, size=tuple(shape)) * 10.0**exponent)
            out.append((values - 1j * values if dtype.kind == "c" else values).astype(dtype))
        return out

    global_weights = weights(0.0)
    locals_ = [weights(1.0) for _ in counts]
    aggregator = make_aggregator("plain-quantized", num_clients=3)
    # Execute
    outcome = aggregate_models(global_weights, locals_, aggregator, num_samples=counts, rng=np.random.default_rng(1))
    # Assert: every weight in its dtype and shape, within one step (and its dtype's rounding) of the float64 mean
    assert outcome.weights is not None and outcome.result.clipping is not None
    qmax = aggregator.quantizer.config.qmax
    for index, dtype in enumerate(dtypes):
        got = outcome.weights[index]
        assert got.dtype == dtype and got.shape == global_weights[index].shape
        stacked = np.stack([flatten_weights([w[index]])[0] for w in locals_])
        expected = np.array(counts, dtype=np.float64) @ stacked / sum(counts)
        actual = flatten_weights([got])[0]
        clip = outcome.result.clipping.table.clips.get(str(index))
        if clip is None:  # an exact integer segment: the mean, rounded half to even
            assert np.abs(actual - expected).max() <= 0.5
            continue
        info = finfo_of(dtype)
        bound = clip / qmax + float(info.eps) * (np.abs(expected) + clip / qmax) + float(info.smallest_normal)
        assert np.all(np.abs(actual - expected) <= bound), index


def test_a_new_float64_global_that_overflows_to_infinity_is_refused() -> None:
    # Prepare: as for PyTorch, an aggregator whose mean makes base + mean overflow float64
    from fl_core.aggregators.base import AggregationResult  # noqa: PLC0415

    class ReturnsHugeMean:
        name = "fixed"

        def aggregate(
            self, updates: Any, dropouts: Any = None, *, rng: Any, segments: Any = None, model_digest: Any = None
        ) -> Any:
            length = updates[0].vector.shape[0]
            return AggregationResult(np.full(length, 1e308), frozenset(u.client_id for u in updates), 0.0, 0.0)

    # Execute / Assert
    with pytest.raises(ConfigurationError, match="not finite"):
        aggregate_models(
            [np.full(2, 1.5e308)], [[np.full(2, 1.6e308)]] * 3, ReturnsHugeMean(), num_samples=[1] * 3,
            rng=np.random.default_rng(0),
        )


def test_a_hospital_that_trained_from_stale_weights_is_refused_and_the_round_goes_on() -> None:
    # Prepare: hospital 1 trained from last round's weights, the others from this round's
    stale = [np.zeros((2, 3), np.float32), np.zeros(3, np.float32)]
    global_weights = [w + np.float32(0.5) for w in stale]
    locals_ = [[w + np.float32(step) for w in start] for step, start in ((0.1, global_weights), (0.2, stale))]
    locals_.append([w + np.float32(0.3) for w in global_weights])
    # Execute
    outcome = aggregate_models(
        global_weights, locals_, make_aggregator("secagg", num_clients=3), num_samples=[4, 4, 4],
        rng=np.random.default_rng(0), trained_from={1: stale},
    )  # fmt: skip
    # Assert: refused with its reason, in the discovery round too (was summed in: -0.3 per coordinate)
    assert outcome.result.included == {0, 2} and [c for c, _ in outcome.result.refused] == [1]
    assert "trained from another model" in outcome.result.refused[0][1]
    assert outcome.discovery is not None and [c for c, _ in outcome.discovery.refused] == [1]
    assert outcome.weights is not None
    np.testing.assert_allclose(outcome.weights[0], 0.7, atol=1e-4)


@pytest.mark.parametrize("name", ["float32", "float16", *[n for n in ml_float_dtypes() if n != "float64"]])
@given(data=st.data())
def test_any_value_within_a_narrow_range_is_rounded_as_numpy_rounds_it(name: str, data: st.DataObject) -> None:
    # Prepare: values anywhere in [lowest, max], subnormals and signed zeros included
    dtype = np.dtype(getattr(ml_dtypes, name, None) or name)
    info = finfo_of(dtype)
    values = np.array(
        data.draw(st.lists(st.floats(float(info.min), float(info.max), allow_nan=False), min_size=1, max_size=8))
    )
    _, layout = flatten_weights([np.zeros(len(values), dtype=dtype)])
    # Execute: the range check refuses nothing a plain cast rounds
    back = unflatten_weights(values, layout)[0]
    # Assert: bit for bit what numpy's (ml_dtypes') own cast gives
    bits = f"u{dtype.itemsize}"
    assert np.array_equal(back.view(bits), values.astype(dtype).view(bits))
