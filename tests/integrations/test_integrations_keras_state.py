"""Keras adapter: what a model holds besides the weights it sends is bound, and a model without
weights yet is refused.

With ``trainable_only=True`` only the trainable weights are summed, but the non-trainable ones
(a frozen backbone's kernels, batch-norm statistics) shape every hospital's training: the round
binds them through the global model's digest, as the PyTorch adapter binds every parameter. A
hospital that trained from a copy whose frozen weights differ is refused; one whose batch-norm
statistics moved during its own training is not (only the model it trained from is bound).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

from fl_core.aggregators import make_aggregator  # noqa: E402
from secagg.errors import ConfigurationError, ConfigurationTypeError  # noqa: E402
from secagg.integrations.keras import (  # noqa: E402
    aggregate_models,
    flatten_model,
    flatten_weights,
    hospital_update,
    load_into_model,
    model_digest,
    named_weights,
)

HOSPITALS = 3


def frozen_backbone(shift: float = 0.0) -> Any:
    """A frozen Dense backbone (its kernel moved by ``shift``) under a trainable head."""
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(3, name="backbone"), keras.layers.Dense(2, name="head")]
    )
    model.set_weights([np.full(w.shape, 0.5 + shift * (i == 0), w.dtype) for i, w in enumerate(model.get_weights())])
    model.layers[0].trainable = False
    return model


def trained(model: Any, step: float) -> Any:
    """A copy of ``model`` whose trainable weights moved by ``step``."""
    copy = frozen_backbone()
    copy.set_weights(model.get_weights())
    for variable in copy.trainable_weights:
        variable.assign(variable + step)
    return copy


def test_a_hospital_that_trained_from_another_frozen_backbone_is_refused_under_trainable_only() -> None:
    # Prepare: hospital 1 trained its head on top of another backbone (a stale or substituted
    # frozen layer); its head's update came from other features, yet only heads are summed
    global_model, other = frozen_backbone(), frozen_backbone(shift=1.0)
    locals_ = [trained(global_model, 0.1), trained(other, 0.2), trained(global_model, 0.3)]
    # Execute
    outcome = aggregate_models(
        global_model, locals_, make_aggregator("secagg", num_clients=HOSPITALS), num_samples=[1] * HOSPITALS,
        rng=np.random.default_rng(0), trainable_only=True, trained_from={1: other},
    )  # fmt: skip
    # Assert: refused with its reason, the round goes on (before: summed in)
    assert [client for client, _ in outcome.result.refused] == [1]
    assert "trained from another model" in outcome.result.refused[0][1]
    assert outcome.result.included == {0, 2} and outcome.weights is not None


def test_the_trainable_only_digest_binds_the_non_trainable_weights() -> None:
    # Prepare: two models that differ only in their frozen backbone
    first, second = frozen_backbone(), frozen_backbone(shift=1.0)
    # Execute
    digests = [model_digest(model, trainable_only=True) for model in (first, second)]
    update = hospital_update(0, second, trained(second, 0.5), num_samples=1, trainable_only=True)
    # Assert: the digests differ, and an update declares its source's (before: one digest for both)
    assert digests[0] != digests[1]
    assert update.model_digest == digests[1]
    assert model_digest(first, trainable_only=True) != model_digest(first)  # another layout, another digest
    np.testing.assert_allclose(update.vector, 0.5)


def batch_norm() -> Any:
    return keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(3, name="dense"), keras.layers.BatchNormalization(name="norm")]
    )


def test_batch_norm_statistics_that_moved_in_training_do_not_withhold_a_hospital_under_trainable_only() -> None:
    # Prepare: every hospital's moving statistics moved during its training (not summed, not compared)
    global_model = batch_norm()
    locals_ = []
    for k in range(HOSPITALS):
        local = batch_norm()
        local.set_weights(global_model.get_weights())
        local.get_layer("norm").moving_mean.assign(np.full(3, float(k + 1), np.float32))
        local.get_layer("dense").kernel.assign(local.get_layer("dense").kernel + 0.25)
        locals_.append(local)
    # Execute
    outcome = aggregate_models(
        global_model, locals_, make_aggregator("plain"), num_samples=[1] * HOSPITALS,
        rng=np.random.default_rng(0), trainable_only=True,
    )  # fmt: skip
    # Assert: every hospital included, the trainable weights only in the result
    assert outcome.result.included == set(range(HOSPITALS)) and not outcome.result.withheld
    assert outcome.weights is not None and len(outcome.weights) == 4
    np.testing.assert_allclose(outcome.weights[0], global_model.get_layer("dense").kernel.numpy() + 0.25, rtol=1e-6)


class _Branching(keras.Model):  # type: ignore[misc]
    """A subclassed model whose second layer is created with it but called only on request."""

    def __init__(self) -> None:
        super().__init__()
        self.first = keras.layers.Dense(2, name="first")
        self.extra = keras.layers.Dense(2, name="extra")

    def call(self, inputs: Any, use_extra: bool = False) -> Any:
        return self.extra(self.first(inputs)) if use_extra else self.first(inputs)


def unbuilt() -> dict[str, Any]:
    """Models some of whose weights do not exist yet (Keras creates a layer's weights at its first call)."""
    partly = _Branching()
    partly(np.zeros((1, 2), np.float32))
    return {"sequential": keras.Sequential([keras.layers.Dense(3, name="dense")]), "subclassed": partly}


@pytest.mark.filterwarnings("ignore:`build\\(\\)` was called on layer:UserWarning")  # Keras's, on _Branching
@pytest.mark.parametrize("which, layer", [("sequential", "dense"), ("subclassed", "extra")])
@pytest.mark.parametrize(
    "read",
    [
        flatten_model,
        model_digest,
        named_weights,
        lambda model: hospital_update(0, model, model, num_samples=1),
        lambda model: load_into_model(model, np.zeros(0), flatten_weights({})[1]),
    ],
    ids=["flatten_model", "model_digest", "named_weights", "hospital_update", "load_into_model"],
)
def test_a_model_with_a_layer_not_built_is_refused_naming_the_layer(which: str, layer: str, read: Any) -> None:
    # Prepare: the model (or one of its layers) was never called, so it has fewer weights than it will
    model = unbuilt()[which]
    # Execute / Assert (before: flattened as the weights that happen to exist, none for the Sequential)
    with pytest.raises(ConfigurationError, match=rf"layer '{layer}' is not built"):
        read(model)


class _Augmented(keras.Model):  # type: ignore[misc]
    """A subclassed model whose weightless augmentation layers run in training only."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = keras.layers.Rescaling(2.0, name="scale")
        self.flatten = keras.layers.Flatten(name="flatten")
        self.dense = keras.layers.Dense(2, name="dense")

    def call(self, inputs: Any, training: bool = False) -> Any:
        return self.dense(self.flatten(self.scale(inputs)) if training else inputs)


@pytest.mark.filterwarnings("ignore:`build\\(\\)` was called on layer:UserWarning")  # Keras's, on _Augmented
def test_a_weightless_layer_not_built_yet_does_not_refuse_the_model() -> None:
    # Prepare: the server builds the global model by one inference call; the training-only
    # layers (no build of their own: no weights, ever) stay unbuilt
    model = _Augmented()
    model(np.zeros((1, 2), np.float32))
    assert not model.scale.built and not model.flatten.built
    # Execute
    vector, layout = flatten_model(model)
    # Assert: every weight the model will ever have (before the narrowing: refused naming 'flatten')
    assert layout.names == ("dense/kernel", "dense/bias") and vector.shape == (6,)


def test_a_hospital_whose_model_is_not_built_is_withheld_saying_so() -> None:
    # Prepare: hospital 1 hands in its model before ever calling it
    global_model = batch_norm()
    locals_ = [batch_norm(), keras.Sequential([keras.layers.Dense(3, name="dense")]), batch_norm()]
    # Execute
    outcome = aggregate_models(
        global_model, locals_, make_aggregator("plain"), num_samples=[1] * HOSPITALS, rng=np.random.default_rng(0)
    )
    # Assert: withheld with the reason, the others aggregated (before: "0 weights here, 6 in the global model")
    assert [client for client, _ in outcome.result.withheld] == [1]
    assert "layer 'dense' is not built" in outcome.result.withheld[0][1]
    assert outcome.result.included == {0, 2}


@pytest.mark.parametrize(
    "call",
    [
        lambda model, flag: flatten_model(model, trainable_only=flag),
        lambda model, flag: model_digest(model, trainable_only=flag),
        lambda model, flag: named_weights(model, trainable_only=flag),
        lambda model, flag: hospital_update(0, model, model, num_samples=1, trainable_only=flag),
        lambda model, flag: load_into_model(model, *flatten_model(model), trainable_only=flag),
        lambda model, flag: aggregate_models(
            model, [model], make_aggregator("plain"), num_samples=[1], rng=np.random.default_rng(0),
            trainable_only=flag,
        ),
    ],
    ids=["flatten_model", "model_digest", "named_weights", "hospital_update", "load_into_model", "aggregate_models"],
)
@pytest.mark.parametrize("flag", ["no", 1, None])
def test_a_trainable_only_that_is_not_a_bool_is_refused_not_read_as_true_or_false(call: Any, flag: Any) -> None:
    # Prepare: "no" is truthy, None falsy: either would silently pick a layout
    model = batch_norm()
    # Execute / Assert (before: "no" sent the trainable weights only, 1 too, None all of them)
    with pytest.raises(ConfigurationTypeError, match="trainable_only must be True or False"):
        call(model, flag)


@pytest.mark.parametrize("adapter", ["keras", "torch"])
@pytest.mark.parametrize("aggregator", ["plain", None, object()], ids=["a name", "None", "an object"])
def test_an_aggregator_that_is_not_one_is_refused_with_the_library_s_error(adapter: str, aggregator: Any) -> None:
    # Prepare: the aggregator's name where the aggregator belongs (make_aggregator("plain") meant)
    module = importlib.import_module(f"secagg.integrations.{adapter}")
    model: Any = batch_norm() if adapter == "keras" else {"w": torch.zeros(2)}
    # Execute / Assert (before: AttributeError: 'str' object has no attribute 'aggregate')
    with pytest.raises(ConfigurationTypeError, match=r"aggregator must be .*make_aggregator"):
        module.aggregate_models(model, [model, model], aggregator, num_samples=[1, 1], rng=np.random.default_rng(0))


@pytest.mark.parametrize("text", ["abc", b"abc"], ids=["str", "bytes"])
def test_a_string_is_refused_as_a_string_not_read_as_a_list_of_weights(text: Any) -> None:
    # Execute / Assert (before: "weight '0' is a str, not a numpy array": its characters read as weights)
    for call in (flatten_weights, model_digest):
        with pytest.raises(ConfigurationError, match=f"expected a list of numpy arrays .*got {type(text).__name__}"):
            call(text)


def test_under_trainable_only_a_hospital_trains_from_the_global_model_s_statistics_every_round() -> None:
    # Prepare: round 2 of a trainable_only run. Hospitals 0 and 2 start from the whole global model
    # (the server sends its non-trainable weights too); hospital 1 loaded only the summed weights
    # into the model it kept, whose batch-norm statistics moved in round 1. Keras's fine-tuning
    # runs batch norm in inference mode (training=False), where those statistics shape the update.
    global_model = batch_norm()
    received = []
    for k in range(HOSPITALS):
        model = batch_norm()
        model.set_weights(global_model.get_weights())
        if k == 1:
            model.get_layer("norm").moving_mean.assign(np.full(3, 2.0, np.float32))
        received.append(model)
    # Execute
    outcome = aggregate_models(
        global_model, received, make_aggregator("plain"), num_samples=[1] * HOSPITALS,
        rng=np.random.default_rng(0), trainable_only=True, trained_from=dict(enumerate(received)),
    )  # fmt: skip
    # Assert: the two that trained from the global model are summed, the other refused with its reason
    assert outcome.result.included == {0, 2}
    assert [client for client, _ in outcome.result.refused] == [1]
    assert "trained from another model" in outcome.result.refused[0][1]
