"""Keras adapter: every weight's identity (its variable path) is bound, not only its position.

Two hospitals may build one architecture whose weights come out in another order (a
subclassed model's layers created in another order, a functional model's branches summed in
another order: two same-shaped kernels swapped): shapes and dtypes still match
position by position, so only the names tell the weights apart. A layout names each weight
by its variable path inside the model, with Keras's automatic names (``dense``, ``dense_1``,
``variable_3``: a class's snake-case name and a process-wide counter) renumbered from zero
in weight order, so two independently built identical models agree in one process and
across processes, and explicit layer names are kept as given.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported
keras = pytest.importorskip("keras")

from fl_core.aggregators import make_aggregator  # noqa: E402
from secagg.errors import ConfigurationError  # noqa: E402
from secagg.integrations._keras_names import stable_paths  # noqa: E402
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


def sequential() -> Any:
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3), keras.layers.BatchNormalization(), keras.layers.Dense(3)]
    )


def branches(first: str, second: str) -> Any:
    """Two same-shaped Dense branches named ``"left"`` and ``"right"``, summed in the given order
    (a functional model orders its weights by the graph: the same function, the weights swapped)."""
    inputs = keras.Input((3,))
    made = {name: keras.layers.Dense(3, name=name) for name in ("left", "right")}
    outputs = keras.layers.Add()([made[first](inputs), made[second](inputs)])
    return keras.Model(inputs, outputs)


class Tower(keras.Model):  # type: ignore[misc]
    """A subclassed model whose weights follow the order its layers are created in."""

    def __init__(self, order: tuple[str, str]) -> None:
        super().__init__()
        self.made = {name: keras.layers.Dense(3, name=name) for name in order}

    def call(self, inputs: Any) -> Any:
        return self.made["right"](self.made["left"](inputs))


def tower(order: tuple[str, str]) -> Any:
    model = Tower(order)
    model(np.zeros((1, 3), np.float32))
    return model


def test_two_identical_models_built_in_one_process_have_the_same_layout() -> None:
    # Prepare: the second instance's layers are dense_2, batch_normalization_1, dense_3 in Keras
    first, second = sequential(), sequential()
    assert first.layers[0].name != second.layers[0].name
    # Execute
    layouts = [flatten_model(model)[1] for model in (first, second)]
    # Assert: automatic names renumbered from zero in weight order, as in a fresh process
    assert layouts[0] == layouts[1]
    assert layouts[0].names == (
        "dense/kernel", "dense/bias", "batch_normalization/gamma", "batch_normalization/beta",
        "batch_normalization/moving_mean", "batch_normalization/moving_variance", "dense_1/kernel", "dense_1/bias",
    )  # fmt: skip


def test_automatic_names_of_nested_models_and_of_variables_are_renumbered_per_scope() -> None:
    # Prepare: a Sequential inside a functional model, and a layer whose variables have automatic names
    class Scale(keras.layers.Layer):  # type: ignore[misc]
        def build(self, shape: Any) -> None:
            self.factor = self.add_weight(shape=(3,))
            self.offset = self.add_weight(shape=(3,))

        def call(self, inputs: Any) -> Any:
            return inputs * self.factor + self.offset

    def nested() -> Any:
        inputs = keras.Input((4,))
        return keras.Model(inputs, Scale()(keras.layers.Dense(3)(keras.Sequential([keras.layers.Dense(4)])(inputs))))

    first, second = nested(), nested()
    # Execute
    names = [flatten_model(model)[1].names for model in (first, second)]
    # Assert
    assert names[0] == names[1] == (
        "sequential/dense/kernel", "sequential/dense/bias", "dense/kernel", "dense/bias", "scale/variable",
        "scale/variable_1",
    )  # fmt: skip


def test_the_layers_a_bidirectional_wrapper_names_after_an_automatic_name_are_renumbered() -> None:
    # Prepare: Bidirectional names its copies "forward_" / "backward_" + the wrapped layer's name, so
    # the second instance's are forward_lstm_1 and backward_lstm_1 (another process: any number);
    # an explicit backward layer keeps its own (automatic) name, an explicitly named layer its name
    def recurrent() -> Any:
        inputs = keras.Input((3, 2))
        x = keras.layers.Bidirectional(keras.layers.LSTM(2, return_sequences=True))(inputs)
        backward = keras.layers.GRU(1, return_sequences=True, go_backwards=True)
        x = keras.layers.Bidirectional(keras.layers.GRU(1, return_sequences=True), backward_layer=backward)(x)
        return keras.Model(inputs, keras.layers.Bidirectional(keras.layers.SimpleRNN(1, name="encoder"))(x))

    first, second = recurrent(), recurrent()
    assert first.layers[1].forward_layer.name != second.layers[1].forward_layer.name
    # Execute
    names = [flatten_model(model)[1].names for model in (first, second)]
    # Assert: the names a fresh process gives
    assert names[0] == names[1]
    assert [name.removesuffix("/kernel") for name in names[0] if name.endswith("/kernel")] == [
        "bidirectional/forward_lstm/lstm_cell", "bidirectional/backward_lstm/lstm_cell",
        "bidirectional_1/forward_gru/gru_cell", "bidirectional_1/gru/gru_cell",
        "bidirectional_2/forward_encoder/simple_rnn_cell", "bidirectional_2/backward_encoder/simple_rnn_cell",
    ]  # fmt: skip


def test_stable_paths_renumber_a_bidirectional_copy_of_an_automatic_name_and_keep_other_prefixed_names() -> None:
    # Prepare: paths as Keras gives them after other models were built in the process
    paths = [
        "functional_7/bidirectional_4/forward_lstm_9/lstm_cell/kernel",
        "functional_7/bidirectional_4/backward_lstm_9/lstm_cell/kernel",
        "functional_7/bidirectional_5/forward_lstm_12/lstm_cell/kernel",
        "functional_7/bidirectional_5/backward_lstm_12/lstm_cell/kernel",
        "functional_7/forward_pass/kernel",
        "functional_7/forward_lstm_x/kernel",
    ]
    prefixes = frozenset({"functional", "bidirectional", "lstm", "lstm_cell", "variable"})
    # Execute
    stable = stable_paths("functional_7", paths, prefixes)
    # Assert: as in a fresh process; "forward_pass" and "forward_lstm_x" are not automatic names
    assert stable == [
        "bidirectional/forward_lstm/lstm_cell/kernel", "bidirectional/backward_lstm/lstm_cell/kernel",
        "bidirectional_1/forward_lstm/lstm_cell/kernel", "bidirectional_1/backward_lstm/lstm_cell/kernel",
        "forward_pass/kernel", "forward_lstm_x/kernel",
    ]  # fmt: skip


def test_explicit_layer_names_are_kept_as_given() -> None:
    # Execute
    layout = flatten_model(branches("left", "right"))[1]
    # Assert
    assert layout.names == ("left/kernel", "left/bias", "right/kernel", "right/bias")


def assert_withheld_alone(outcome: Any, reason: str) -> None:
    """Hospital 1 is withheld with ``reason`` (a regex) and the others' round goes on."""
    assert [client for client, _ in outcome.result.withheld] == [1]
    assert re.search(reason, outcome.result.withheld[0][1]), outcome.result.withheld
    assert outcome.result.included == frozenset({0, 2}) and outcome.weights is not None


@pytest.mark.parametrize(
    "build",
    [lambda order: branches(*order), tower],
    ids=["functional branches", "subclassed layers"],
)
@pytest.mark.parametrize("aggregator", ["plain", "secagg"])
def test_a_hospital_whose_same_shaped_weights_come_in_another_order_is_withheld(build: Any, aggregator: str) -> None:
    # Prepare: hospital 1 created (subclassed) or summed (functional) its two same-shaped layers
    # in the other order, so its weights come out swapped while every shape and dtype still matches position by position
    global_model = build(("left", "right"))
    locals_ = [build(("left", "right")), build(("right", "left")), build(("left", "right"))]
    assert [w.shape for w in locals_[1].get_weights()] == [w.shape for w in global_model.get_weights()]
    # Execute / Assert: the first mismatching weight is named (before the fix: silently aggregated)
    outcome = aggregate_models(
        global_model, locals_, make_aggregator(aggregator, num_clients=HOSPITALS), num_samples=[1] * HOSPITALS,
        rng=np.random.default_rng(0),
    )
    assert_withheld_alone(outcome, r"model weights differ .*weight 0 is 'right/kernel' here, 'left/kernel'")


def test_identical_models_built_independently_aggregate_together() -> None:
    # Prepare: every hospital builds its own instance (automatic names differ within the process)
    global_model = sequential()
    locals_ = [sequential() for _ in range(HOSPITALS)]
    for local in locals_:
        local.set_weights([w + np.float32(0.25) for w in global_model.get_weights()])
    # Execute
    outcome = aggregate_models(
        global_model, locals_, make_aggregator("plain"), num_samples=[1] * HOSPITALS, rng=np.random.default_rng(0)
    )
    # Assert
    assert outcome.weights is not None and outcome.layout == flatten_model(locals_[0])[1]
    assert np.allclose(outcome.weights[0], global_model.get_weights()[0] + 0.25)


def test_a_weight_list_and_a_model_are_not_mixed_in_one_round_the_list_is_withheld() -> None:
    # Prepare: a list's weights are named by position only, a model's by path
    global_model = sequential()
    locals_: list[Any] = [sequential(), global_model.get_weights(), sequential()]
    # Execute / Assert
    outcome = aggregate_models(
        global_model, locals_, make_aggregator("plain"), num_samples=[1] * HOSPITALS, rng=np.random.default_rng(0)
    )
    assert_withheld_alone(outcome, r"weight 0 is '0' here, 'dense/kernel' in the global")


def test_load_into_model_refuses_a_layout_whose_weights_are_named_otherwise() -> None:
    # Prepare: same shapes and dtypes at every position, other weights
    vector, layout = flatten_model(tower(("left", "right")))
    target = tower(("right", "left"))
    before = target.get_weights()
    # Execute / Assert (before the fix: written in by position, each kernel into the other layer)
    with pytest.raises(ConfigurationError, match=r"weight 'left/kernel': the model holds 'right/kernel' there"):
        load_into_model(target, vector, layout)
    assert all(np.array_equal(a, b) for a, b in zip(before, target.get_weights(), strict=True))


def test_a_layout_from_a_weight_list_still_loads_by_position() -> None:
    # Prepare: get_weights() carries no names; such a layout loads by position, as set_weights does
    source, target = tower(("left", "right")), tower(("left", "right"))
    vector, layout = flatten_weights(source.get_weights())
    # Execute
    load_into_model(target, vector, layout)
    # Assert
    assert all(np.array_equal(a, b) for a, b in zip(source.get_weights(), target.get_weights(), strict=True))


def test_a_mapping_of_named_weights_binds_its_names() -> None:
    # Prepare: weights keyed by name (e.g. a Flower ArrayRecord's keys), in mapping order
    weights = {"left/kernel": np.ones((3, 3), np.float32), "right/kernel": np.zeros((3, 3), np.float32)}
    # Execute
    vector, layout = flatten_weights(weights)
    # Assert
    assert layout.names == ("left/kernel", "right/kernel") and vector.tolist() == [1.0] * 9 + [0.0] * 9
    with pytest.raises(ConfigurationError, match="weight names must be strings"):
        flatten_weights({0: np.zeros(2)})  # type: ignore[dict-item]


def frozen(layer: int) -> Any:
    """Two same-shaped Dense layers with automatic names, layer ``layer`` frozen (not trainable)."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3), keras.layers.Dense(3)])
    model.layers[layer].trainable = False
    return model


def test_a_hospital_that_froze_another_layer_is_withheld_when_only_trainable_weights_are_aggregated() -> None:
    # Prepare: hospital 1 froze the first Dense layer, everyone else the second; with
    # trainable_only each sends one kernel and one bias of the same shapes, of different layers
    global_model = frozen(1)
    locals_ = [frozen(1), frozen(0), frozen(1)]
    # Execute / Assert: the names are those of all the weights (dense, dense_1), so the subsets
    # differ (before: the first layer's update summed into the second's)
    outcome = aggregate_models(
        global_model, locals_, make_aggregator("plain"), num_samples=[1] * HOSPITALS,
        rng=np.random.default_rng(0), trainable_only=True,
    )  # fmt: skip
    assert_withheld_alone(outcome, r"weight 0 is 'dense_1/kernel' here, 'dense/kernel'")
    assert flatten_model(frozen(0), trainable_only=True)[1].names == ("dense_1/kernel", "dense_1/bias")


def test_a_trainable_weight_outside_the_models_weights_is_refused() -> None:
    # Prepare: a layer whose trainable weights list a variable its weights do not (no name for it)
    class Odd(keras.layers.Layer):  # type: ignore[misc]
        @property
        def trainable_weights(self) -> list[Any]:
            return [keras.Variable(np.zeros(2, np.float32))]

    # Execute / Assert (a KeyError without the check)
    with pytest.raises(ConfigurationError, match="not among its weights"):
        flatten_model(Odd(), trainable_only=True)


def test_named_weights_travel_with_their_names_and_load_only_where_the_names_agree() -> None:
    # Prepare: what a transport that carries names (a Flower ArrayRecord of Arrays) would carry
    source = tower(("left", "right"))
    sent = named_weights(source)
    same, swapped = tower(("left", "right")), tower(("right", "left"))
    # Execute
    load_into_model(same, *flatten_weights(sent))
    # Assert
    assert list(sent) == list(flatten_model(source)[1].names)
    assert all(np.array_equal(a, b) for a, b in zip(source.get_weights(), same.get_weights(), strict=True))
    with pytest.raises(ConfigurationError, match="the model holds 'right/kernel' there"):
        load_into_model(swapped, *flatten_weights(sent))


def test_the_model_digest_binds_the_weight_names_and_each_update_declares_the_model_it_came_from() -> None:
    # Prepare: the same values under the other names (the towers swapped), and a stale copy
    global_model, swapped, stale = tower(("left", "right")), tower(("right", "left")), tower(("left", "right"))
    swapped.set_weights(global_model.get_weights())
    stale.set_weights([w - np.float32(1) for w in global_model.get_weights()])
    digest = model_digest(global_model)
    # Execute
    trained = {name: w + np.float32(0.5) for name, w in named_weights(stale).items()}
    update = hospital_update(3, stale, trained, num_samples=2)
    # Assert: the names are bound (a weight list, named by position, is another layout)
    assert model_digest(named_weights(global_model)) == digest
    assert model_digest(swapped) != digest and model_digest(global_model.get_weights()) != digest
    assert update.client_id == 3 and update.model_digest == model_digest(stale) != digest
    np.testing.assert_allclose(update.vector, 0.5)


class _Twins(keras.layers.Layer):  # type: ignore[misc]
    """A layer with two weights of one name (Keras lets a layer name two weights alike): one path twice."""

    def __init__(self, weight_name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.weight_name = weight_name

    def build(self, input_shape: Any) -> None:
        self.first = self.add_weight(shape=(2,), name=self.weight_name)
        self.second = self.add_weight(shape=(3,), name=self.weight_name)

    def call(self, inputs: Any) -> Any:
        return inputs


def test_weights_with_one_path_are_refused_naming_it() -> None:
    # Prepare
    model = keras.Sequential([keras.Input((2,)), _Twins("w", name="twins")])
    # Execute / Assert: which path is not unique, not only that one is not
    with pytest.raises(ConfigurationError, match=r"'twins/w'"):
        flatten_model(model)


def test_a_hostile_duplicate_path_is_named_escaped_and_cut() -> None:
    # Prepare: a path with a newline, a terminal escape and 300 characters more
    model = keras.Sequential([keras.Input((2,)), _Twins("w\n\x1b[31m" + "x" * 300, name="twins")])
    # Execute
    with pytest.raises(ConfigurationError) as caught:
        flatten_model(model)
    # Assert: its start shown escaped, no control character and not the whole name
    text = str(caught.value)
    assert r"'twins/w\n\x1b[31mxxx" in text
    assert "\n" not in text and "\x1b" not in text
    assert len(text) < 200
