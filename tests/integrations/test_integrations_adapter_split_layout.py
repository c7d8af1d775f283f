"""Every field of the PyTorch and Keras adapters' layout is bound, field by field.

A hospital whose model differs from the global one in any field of its layout
(:class:`~secagg.integrations._layout.ArraySpec`: name, shape, dtype, offset, length) is
withheld by ``aggregate_models`` (named with the reason in ``result.withheld``) before
anything is encoded: its update never enters a sum decoded with another layout, and the
others' aggregate is, bit for bit, the round without it. The segment table the layout
gives (:meth:`FlatLayout.segments`) is what the session descriptor binds (its digest), so
every field of :class:`~secagg.segments.Segment` is shown to change the descriptor too.
A field added later fails :func:`test_every_field_is_listed` until its binding is shown here.

The Keras ``name`` is bound too (a model's variable paths, Keras's automatic names
renumbered from zero, or a mapping's keys): a hospital whose same-shaped weights come in
another order or under other names is withheld, naming the first mismatching weight
(tests/integrations/test_integrations_keras_names.py covers models).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported
pytest.importorskip("keras")

from fl_core.aggregators import make_aggregator  # noqa: E402
from fl_core.aggregators.base import DropoutStage  # noqa: E402
from fl_core.aggregators.quantizer import WeightedQuantizer  # noqa: E402
from secagg.errors import SecAggError  # noqa: E402
from secagg.integrations import keras as keras_adapter  # noqa: E402
from secagg.integrations import torch as torch_adapter  # noqa: E402
from secagg.integrations._layout import ArraySpec  # noqa: E402
from secagg.segments import Segment, SegmentTable  # noqa: E402

HOSPITALS = 3


def torch_global() -> dict[str, Any]:
    return {
        "a": torch.zeros(2, 3, dtype=torch.float32),
        "b": torch.zeros(2, 3, dtype=torch.float32),
        "steps": torch.zeros((), dtype=torch.int64),
    }


# One hospital's state dict, changed in one field of one tensor's spec.
TORCH_SPLITS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "name": lambda s: {"a": s["a"], "c": s["b"], "steps": s["steps"]},
    "shape": lambda s: {**s, "a": s["a"].reshape(3, 2)},  # same length, transposed shape
    "dtype": lambda s: {**s, "a": s["a"].to(torch.float64)},
    "offset": lambda s: {"b": s["b"], "a": s["a"], "steps": s["steps"]},  # order
    "length": lambda s: {**s, "a": torch.zeros(2, 4)},
}


def keras_global() -> list[np.ndarray]:
    return [np.zeros((2, 3), np.float32), np.zeros(4, np.float32), np.zeros((), np.int64)]


def keras_named_global() -> dict[str, np.ndarray]:
    return {"a": np.zeros((2, 3), np.float32), "b": np.zeros((2, 3), np.float32), "steps": np.zeros((), np.int64)}


# One hospital's named weights, changed in one field of one weight's spec.
KERAS_SPLITS: dict[str, Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]] = {
    "name": lambda w: {"a": w["a"], "c": w["b"], "steps": w["steps"]},
    "shape": lambda w: {**w, "a": w["a"].reshape(3, 2)},
    "dtype": lambda w: {**w, "a": w["a"].astype(np.float64)},
    "offset": lambda w: {"b": w["b"], "a": w["a"], "steps": w["steps"]},  # order
    "length": lambda w: {**w, "a": np.zeros((2, 4), np.float32)},
}
# The same for a weight list, whose names are its positions (no name to split).
KERAS_LIST_SPLITS: dict[str, Callable[[list[np.ndarray]], list[np.ndarray]]] = {
    "shape": lambda w: [w[0].reshape(3, 2), *w[1:]],
    "dtype": lambda w: [w[0].astype(np.float64), *w[1:]],
    "offset": lambda w: [w[1], w[0], w[2]],
    "length": lambda w: [np.zeros((2, 4), np.float32), *w[1:]],
}

# Another valid value for every field of a segment.
SEGMENT_CHANGES: dict[str, Any] = {"name": "other", "length": 7, "clip": 0.25, "integer": True}


def test_every_field_is_listed() -> None:
    spec_fields = {field.name for field in dataclasses.fields(ArraySpec)}
    assert set(TORCH_SPLITS) == spec_fields
    assert set(KERAS_SPLITS) == spec_fields
    assert set(KERAS_LIST_SPLITS) == spec_fields - {"name"}
    assert set(SEGMENT_CHANGES) == {field.name for field in dataclasses.fields(Segment)}


def _hospital(weights: Any, k: int) -> Any:
    """Hospital k's model: the global one moved by k + 1 (floats by (k + 1) / 8), so each hospital counts."""
    torch_like = isinstance(weights, dict) and any(isinstance(v, torch.Tensor) for v in weights.values())
    if torch_like:
        return {n: t + (k + 1) if not t.is_floating_point() else t + (k + 1) / 8 for n, t in weights.items()}
    step = lambda w: w + (k + 1) if w.dtype.kind == "i" else w + np.float32((k + 1) / 8)  # noqa: E731
    return {n: step(w) for n, w in weights.items()} if isinstance(weights, dict) else [step(w) for w in weights]


def _assert_withheld_alone(module: Any, global_weights: Any, locals_: list[Any], aggregator: str, noun: str) -> None:
    """Hospital 1 (another layout) is withheld with the reason; the others' aggregate is, bit for
    bit, the round without its upload (a valid hospital 1 dropping at UPLOAD, same rng state)."""
    # Execute
    outcome = module.aggregate_models(
        global_weights, locals_, make_aggregator(aggregator, num_clients=HOSPITALS),
        num_samples=[1] * HOSPITALS, rng=np.random.default_rng(0),
    )  # fmt: skip
    without = module.aggregate_models(
        global_weights, [locals_[0], _hospital(global_weights, 1), locals_[2]],
        make_aggregator(aggregator, num_clients=HOSPITALS), num_samples=[1] * HOSPITALS,
        dropouts={1: DropoutStage.UPLOAD}, rng=np.random.default_rng(0),
    )  # fmt: skip
    # Assert
    assert [client for client, _ in outcome.result.withheld] == [1]
    assert outcome.result.withheld[0][1].startswith(f"model {noun}s differ from the global model's")
    assert outcome.result.included == frozenset({0, 2}) == without.result.included
    flatten = module.flatten_weights if noun == "weight" else module.flatten_state_dict
    got, expected = ((o.weights if noun == "weight" else o.state_dict) for o in (outcome, without))
    assert got is not None and expected is not None
    assert flatten(got)[0].tobytes() == flatten(expected)[0].tobytes()


@pytest.mark.parametrize("field", sorted(TORCH_SPLITS))
@pytest.mark.parametrize("aggregator", ["plain", "secagg"])
def test_a_torch_layout_field_split_between_hospitals_withholds_that_hospital(field: str, aggregator: str) -> None:
    # Prepare: hospital 1 holds the same tensors but for one field of one spec
    # (before: ConfigurationError "client 1: model tensors differ" for everyone)
    global_state = torch_global()
    locals_ = [_hospital(torch_global(), k) for k in range(HOSPITALS)]
    locals_[1] = TORCH_SPLITS[field](locals_[1])
    split = torch_adapter.flatten_state_dict(locals_[1])[1]
    assert split != torch_adapter.flatten_state_dict(global_state)[1]
    # Execute / Assert
    _assert_withheld_alone(torch_adapter, global_state, locals_, aggregator, "tensor")


@pytest.mark.parametrize("field", sorted(KERAS_SPLITS))
@pytest.mark.parametrize("aggregator", ["plain", "secagg"])
def test_a_keras_layout_field_split_between_hospitals_withholds_that_hospital(field: str, aggregator: str) -> None:
    # Prepare: hospital 1 holds the same named weights but for one field of one spec
    global_weights = keras_named_global()
    locals_ = [_hospital(keras_named_global(), k) for k in range(HOSPITALS)]
    locals_[1] = KERAS_SPLITS[field](locals_[1])
    split = keras_adapter.flatten_weights(locals_[1])[1]
    assert split != keras_adapter.flatten_weights(global_weights)[1]
    # Execute / Assert
    _assert_withheld_alone(keras_adapter, global_weights, locals_, aggregator, "weight")


@pytest.mark.parametrize("field", sorted(KERAS_LIST_SPLITS))
@pytest.mark.parametrize("aggregator", ["plain", "secagg"])
def test_a_keras_weight_list_field_split_between_hospitals_withholds_that_hospital(field: str, aggregator: str) -> None:
    # Prepare
    global_weights = keras_global()
    locals_ = [_hospital(keras_global(), k) for k in range(HOSPITALS)]
    locals_[1] = KERAS_LIST_SPLITS[field](locals_[1])
    # Execute / Assert
    _assert_withheld_alone(keras_adapter, global_weights, locals_, aggregator, "weight")


@pytest.mark.parametrize("aggregator", ["plain", "secagg"])
def test_a_hospital_that_trained_from_a_copy_of_another_layout_is_withheld(aggregator: str) -> None:
    # Prepare: hospital 1's model has the global layout, the copy it names another
    # (before: ConfigurationError "client 1: model tensors differ" for everyone)
    global_state = torch_global()
    locals_ = [_hospital(torch_global(), k) for k in range(HOSPITALS)]
    copy = TORCH_SPLITS["dtype"](torch_global())
    # Execute
    outcome = torch_adapter.aggregate_models(
        global_state, locals_, make_aggregator(aggregator, num_clients=HOSPITALS), num_samples=[1] * HOSPITALS,
        rng=np.random.default_rng(0), trained_from={1: copy},
    )
    without = torch_adapter.aggregate_models(
        global_state, locals_, make_aggregator(aggregator, num_clients=HOSPITALS), num_samples=[1] * HOSPITALS,
        dropouts={1: DropoutStage.UPLOAD}, rng=np.random.default_rng(0),
    )  # fmt: skip
    # Assert
    assert [client for client, _ in outcome.result.withheld] == [1]
    assert "differ from those of the model it trained from" in outcome.result.withheld[0][1]
    assert outcome.state_dict is not None and without.state_dict is not None
    assert all(torch.equal(outcome.state_dict[n], t) for n, t in without.state_dict.items())


def test_too_few_hospitals_left_skip_the_round_naming_the_withheld() -> None:
    # Prepare: two of three hospitals hold another layout; secagg needs more than one
    global_state = torch_global()
    locals_ = [TORCH_SPLITS["length"](torch_global()), torch_global(), TORCH_SPLITS["name"](torch_global())]
    # Execute
    outcome = torch_adapter.aggregate_models(
        global_state, locals_, make_aggregator("secagg", num_clients=HOSPITALS), num_samples=[1] * HOSPITALS,
        rng=np.random.default_rng(0),
    )
    # Assert
    assert outcome.state_dict is None and [client for client, _ in outcome.result.withheld] == [0, 2]
    assert outcome.result.skipped_reason is not None
    assert "client 0: model tensors differ" in outcome.result.skipped_reason


def test_an_unusable_global_model_still_raises_for_everyone() -> None:
    # Prepare: a global model without any entries has no segments
    # Execute / Assert
    with pytest.raises(SecAggError, match="no segments"):
        torch_adapter.aggregate_models(
            {}, [torch_global()], make_aggregator("plain"), num_samples=[1], rng=np.random.default_rng(0)
        )


@pytest.mark.parametrize("field", sorted(SEGMENT_CHANGES))
def test_a_segment_field_changes_the_session_descriptor(field: str) -> None:
    # Prepare: the table the adapters hand the aggregator, and the same with one field changed
    honest = Segment("a", 6, 0.5)
    changes: dict[str, object] = {field: SEGMENT_CHANGES[field]}
    if field == "integer":  # an exact segment takes no clip
        changes["clip"] = None
    changed = dataclasses.replace(honest, **changes)  # type: ignore[arg-type]
    quantizer = WeightedQuantizer.create(HOSPITALS)
    tables = [SegmentTable((segment, Segment("steps", 1, integer=True))) for segment in (honest, changed)]
    # Execute / Assert: another descriptor, so another session (and, in active mode, another signed context)
    assert quantizer.descriptor(1, tables[0]) != quantizer.descriptor(1, tables[1])


BAD_ARGUMENTS: dict[str, dict[str, Any]] = {
    "num_samples an int": {"num_samples": 5},
    "num_samples a generator": {"num_samples": (n for n in [1, 1, 1])},
    "client_ids an int": {"client_ids": 5},
    "client_ids a string": {"client_ids": "abc"},
    "dropouts a list": {"dropouts": [1]},
    "clips a list": {"clips": [1.0]},
    "rng None": {"rng": None},
    "rng a seed": {"rng": 3},
    "local models None": {"local_models": None},
    "local models an int": {"local_models": 3},
}


@pytest.mark.parametrize("case", sorted(BAD_ARGUMENTS))
@pytest.mark.parametrize("adapter", ["torch", "keras"])
@pytest.mark.parametrize("aggregator", ["plain", "secagg"])
def test_a_malformed_argument_is_refused_with_a_library_error(case: str, adapter: str, aggregator: str) -> None:
    # Prepare: these raised Python's own TypeError/AttributeError (rng=None passed with plain)
    module, make = (torch_adapter, torch_global) if adapter == "torch" else (keras_adapter, keras_global)
    arguments: dict[str, Any] = {
        "local_models": [make() for _ in range(HOSPITALS)],
        "num_samples": [1] * HOSPITALS,
        "rng": np.random.default_rng(0),
        **BAD_ARGUMENTS[case],
    }
    # Execute / Assert
    with pytest.raises(SecAggError):
        module.aggregate_models(make(), aggregator=make_aggregator(aggregator, num_clients=HOSPITALS), **arguments)


@pytest.mark.parametrize("adapter", ["torch", "keras"])
def test_numpy_arrays_of_sample_counts_and_client_ids_are_accepted(adapter: str) -> None:
    # Prepare
    module, make = (torch_adapter, torch_global) if adapter == "torch" else (keras_adapter, keras_global)
    # Execute
    outcome = module.aggregate_models(
        make(), [make() for _ in range(HOSPITALS)], make_aggregator("plain"), num_samples=np.array([1, 2, 3]),
        client_ids=np.arange(4, 4 + HOSPITALS), rng=np.random.default_rng(0),
    )
    # Assert
    assert outcome.result.included == frozenset({4, 5, 6})


class _Unreadable:
    """A vector-like object numpy cannot read (its ``__array__`` raises a foreign error)."""

    def __array__(self, *args: object, **kwargs: object) -> object:
        raise RuntimeError("device-side assert")


def _malformed_calls() -> dict[str, Callable[[], object]]:
    vector, _ = torch_adapter.flatten_state_dict({"a": torch.zeros(2)})
    weights_vector, _ = keras_adapter.flatten_weights([np.zeros(2)])
    module = torch.nn.Linear(2, 1)
    module_layout = torch_adapter.flatten_model(module)[1]
    weights_layout = keras_adapter.flatten_weights([np.zeros(2)])[1]
    grad = torch.zeros(3, dtype=torch.float64, requires_grad=True)  # numpy() refuses a tensor that requires grad
    return {
        # a vector numpy cannot read raised torch's RuntimeError (or the object's own error)
        "torch unflatten_state_dict(grad)": lambda: torch_adapter.unflatten_state_dict(grad[:2], vector_layout()),
        "torch load_into_model(grad)": lambda: torch_adapter.load_into_model(module, grad, module_layout),
        "torch load_into_model(other)": lambda: torch_adapter.load_into_model(module, _Unreadable(), module_layout),
        "keras unflatten_weights(grad tensor)": lambda: keras_adapter.unflatten_weights(grad[:2], weights_layout),
        "keras unflatten_weights(unreadable)": lambda: keras_adapter.unflatten_weights(_Unreadable(), weights_layout),
        "torch flatten_state_dict(None)": lambda: torch_adapter.flatten_state_dict(None),  # type: ignore[arg-type]
        "torch flatten_state_dict(list)": lambda: torch_adapter.flatten_state_dict([torch.zeros(2)]),  # type: ignore[arg-type]
        "torch unflatten_state_dict(layout None)": lambda: torch_adapter.unflatten_state_dict(vector, None),  # type: ignore[arg-type]
        "torch load_into_model(layout None)": lambda: torch_adapter.load_into_model(module, vector, None),  # type: ignore[arg-type]
        "keras unflatten_weights(layout None)": lambda: keras_adapter.unflatten_weights(weights_vector, None),  # type: ignore[arg-type]
        "keras load_into_model(layout None)": lambda: keras_adapter.load_into_model(
            keras_model(), weights_vector, None  # type: ignore[arg-type]
        ),
    }


def vector_layout() -> Any:
    return torch_adapter.flatten_state_dict({"a": torch.zeros(2)})[1]


def keras_model() -> Any:
    keras = pytest.importorskip("keras")
    return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])


@pytest.mark.parametrize("case", sorted(_malformed_calls()))
def test_a_malformed_flatten_or_load_call_is_refused_with_a_library_error(case: str) -> None:
    # Prepare: a missing layout or a list for a state dict raised AttributeError
    call = _malformed_calls()[case]
    # Execute / Assert
    with pytest.raises(SecAggError):
        call()


def test_the_refusal_names_the_first_mismatching_tensor_or_weight() -> None:
    # Prepare: each adapter's layout against another in name (order), shape/dtype and count
    keras_layout = keras_adapter.flatten_weights(keras_named_global())[1]
    torch_layout = torch_adapter.flatten_state_dict(torch_global())[1]
    cases = {
        "keras order": (keras_adapter.flatten_weights(KERAS_SPLITS["offset"](keras_named_global()))[1], keras_layout),
        "keras dtype": (keras_adapter.flatten_weights(KERAS_SPLITS["dtype"](keras_named_global()))[1], keras_layout),
        "keras count": (keras_adapter.flatten_weights({"a": np.zeros((2, 3), np.float32)})[1], keras_layout),
        "torch order": (torch_adapter.flatten_state_dict(TORCH_SPLITS["offset"](torch_global()))[1], torch_layout),
    }
    # Execute
    found = {case: mine.first_difference(theirs, elsewhere="in the global model") for case, (mine, theirs) in
             cases.items()}  # fmt: skip
    # Assert
    assert found == {
        "keras order": "weight 0 is 'b' here, 'a' in the global model",
        "keras dtype": "weight 0 ('a') is float64 (2, 3) here, float32 (2, 3) in the global model",
        "keras count": "1 weights here, 3 in the global model",
        "torch order": "tensor 0 is 'b' here, 'a' in the global model",
    }
    assert keras_layout.first_difference(keras_adapter.flatten_weights(keras_named_global())[1]) is None


@pytest.mark.parametrize("fault", ["nan", "not a model"])
def test_a_hospital_whose_model_cannot_be_summed_is_withheld_and_the_others_are_exact(fault: str) -> None:
    # Prepare: hospital 1's model holds a NaN, or is not a model at all
    # (before: a library error out of aggregate_models, ending the round for everyone)
    global_state = torch_global()
    locals_: list[Any] = [_hospital(torch_global(), k) for k in range(HOSPITALS)]
    if fault == "nan":
        name = next(iter(locals_[1]))
        locals_[1][name] = torch.full_like(locals_[1][name], float("nan"))
    else:
        locals_[1] = {"weight": "not a tensor"}
    # Execute
    outcome = torch_adapter.aggregate_models(
        global_state, locals_, make_aggregator("secagg", num_clients=HOSPITALS), num_samples=[1] * HOSPITALS,
        rng=np.random.default_rng(0),
    )
    without = torch_adapter.aggregate_models(
        global_state, [_hospital(torch_global(), k) for k in range(HOSPITALS)],
        make_aggregator("secagg", num_clients=HOSPITALS), num_samples=[1] * HOSPITALS,
        dropouts={1: DropoutStage.UPLOAD}, rng=np.random.default_rng(0),
    )  # fmt: skip
    # Assert: withheld with the reason; the others' model is that of the round without its upload
    assert [client for client, _ in outcome.result.withheld] == [1]
    assert "its model cannot be summed" in outcome.result.withheld[0][1]
    assert outcome.state_dict is not None and without.state_dict is not None
    assert all(torch.equal(outcome.state_dict[n], t) for n, t in without.state_dict.items())
