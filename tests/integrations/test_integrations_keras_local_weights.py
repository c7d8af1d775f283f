"""Keras adapter: ``local_weights``, the non-trainable weights a hospital keeps as its own (FedBN-style
batch-norm statistics) under ``trainable_only=True``.

Named weights are left out of the received-model binding (they are already out of the sum) and
nothing else is; the set of names is bound into the digest, so a hospital that disagrees with the
server about it is refused. Names that are not the model's batch-norm statistics (one weight each)
are refused.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

from fl_core.aggregators import make_aggregator  # noqa: E402
from secagg.errors import ConfigurationError, ConfigurationTypeError  # noqa: E402
from secagg.integrations.keras import aggregate_models, hospital_update, model_digest  # noqa: E402

HOSPITALS = 3
LOCAL = ("norm/moving_mean", "norm/moving_variance")
STEPS = (0.25, 0.5, 0.75)  # each hospital's training step; their mean, 0.5, is exact


def fedbn(frozen_dense: bool = False, backbone: float = 0.5) -> Any:
    """Dense -> BatchNormalization -> Dense head, every weight 0.5 (the first Dense's kernel ``backbone``)."""
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(3, name="dense"),
            keras.layers.BatchNormalization(name="norm"),
            keras.layers.Dense(2, name="head"),
        ]
    )
    weights = model.get_weights()
    model.set_weights([np.full(w.shape, backbone if i == 0 else 0.5, w.dtype) for i, w in enumerate(weights)])
    model.get_layer("dense").trainable = not frozen_dense
    return model


def with_own_statistics(global_model: Any, value: float, frozen_dense: bool = False) -> Any:
    """What a FedBN hospital trains from: the global model's weights, its own batch-norm statistics."""
    model = fedbn(frozen_dense)
    model.set_weights(global_model.get_weights())
    model.get_layer("norm").moving_mean.assign(np.full(3, value, np.float32))
    model.get_layer("norm").moving_variance.assign(np.full(3, 2 * value, np.float32))
    return model


def trained(received: Any, step: float, frozen_dense: bool = False) -> Any:
    """``received`` after training: its trainable weights moved by ``step``, its statistics moved too."""
    model = fedbn(frozen_dense)
    model.set_weights(received.get_weights())
    for variable in model.trainable_weights:
        variable.assign(variable + step)
    model.get_layer("norm").moving_mean.assign(model.get_layer("norm").moving_mean + 1.0)
    return model


def statistics(model: Any) -> list[np.ndarray]:
    norm = model.get_layer("norm")
    return [np.asarray(norm.moving_mean.numpy()), np.asarray(norm.moving_variance.numpy())]


def test_hospitals_with_their_own_statistics_aggregate_the_trainable_weights_exactly_and_keep_them() -> None:
    # Prepare: three hospitals train from the global weights with their own batch-norm statistics
    global_model = fedbn()
    received = [with_own_statistics(global_model, float(k + 1)) for k in range(HOSPITALS)]
    locals_ = [trained(model, step) for model, step in zip(received, STEPS, strict=True)]
    own = [statistics(model) for model in received]
    # Execute
    outcome = aggregate_models(
        global_model, locals_, make_aggregator("plain"), num_samples=[1] * HOSPITALS, rng=np.random.default_rng(0),
        trainable_only=True, local_weights=LOCAL, trained_from=dict(enumerate(received)),
    )  # fmt: skip
    # Assert: everyone summed; the trainable weights are the global ones plus the mean step, exactly
    assert outcome.result.included == set(range(HOSPITALS)) and not outcome.result.refused
    assert not outcome.result.withheld
    assert outcome.weights is not None and len(outcome.weights) == 6
    for weight in outcome.weights:
        np.testing.assert_array_equal(weight, np.full(weight.shape, 1.0, weight.dtype))
    # Load-back writes the summed weights and leaves each hospital's statistics untouched
    for model, mine in zip(received, own, strict=True):
        outcome.load_into(model)
        for variable in model.trainable_weights:
            np.testing.assert_array_equal(variable.numpy(), 1.0)
        for value, before in zip(statistics(model), mine, strict=True):
            np.testing.assert_array_equal(value, before)


def test_without_the_option_hospitals_with_their_own_statistics_are_refused() -> None:
    # Prepare: the same round, the default (nothing local): the statistics are bound
    global_model = fedbn()
    received = [with_own_statistics(global_model, float(k + 1)) for k in range(HOSPITALS)]
    locals_ = [trained(model, step) for model, step in zip(received, STEPS, strict=True)]
    # Execute
    outcome = aggregate_models(
        global_model, locals_, make_aggregator("plain"), num_samples=[1] * HOSPITALS, rng=np.random.default_rng(0),
        trainable_only=True, trained_from=dict(enumerate(received)),
    )  # fmt: skip
    # Assert: refused, each for training from another model; the round is skipped
    assert sorted(client for client, _ in outcome.result.refused) == list(range(HOSPITALS))
    assert outcome.weights is None


def test_a_weight_not_named_local_is_still_bound() -> None:
    # Prepare: a frozen Dense under the statistics; hospital 1 trained on another frozen Dense
    global_model, other = fedbn(frozen_dense=True), fedbn(frozen_dense=True, backbone=1.5)
    sources = (global_model, other, global_model)
    received = [with_own_statistics(model, float(k + 1), True) for k, model in enumerate(sources)]
    locals_ = [trained(model, step, True) for model, step in zip(received, STEPS, strict=True)]
    # Execute
    outcome = aggregate_models(
        global_model, locals_, make_aggregator("plain"), num_samples=[1] * HOSPITALS, rng=np.random.default_rng(0),
        trainable_only=True, local_weights=LOCAL, trained_from=dict(enumerate(received)),
    )  # fmt: skip
    # Assert: only hospital 1 refused, for training from another model
    assert [client for client, _ in outcome.result.refused] == [1]
    assert "trained from another model" in outcome.result.refused[0][1]
    assert outcome.result.included == {0, 2}


def test_the_digest_leaves_out_the_local_statistics_and_binds_which_weights_are_local() -> None:
    # Prepare: two models that differ only in their statistics
    global_model = fedbn()
    first, second = with_own_statistics(global_model, 1.0), with_own_statistics(global_model, 2.0)
    # Execute
    digest = model_digest(first, trainable_only=True, local_weights=LOCAL)
    # Assert: one digest for both with the option, whatever the names' order; another for another set
    assert model_digest(second, trainable_only=True, local_weights=LOCAL[::-1]) == digest
    assert model_digest(first, trainable_only=True, local_weights=LOCAL[:1]) != digest
    assert model_digest(first, trainable_only=True) != digest
    assert model_digest(first, trainable_only=True) != model_digest(second, trainable_only=True)


@pytest.mark.parametrize("odd_one", ["local", "shared"])
@pytest.mark.parametrize("aggregator", ["plain", "secagg"])
def test_a_local_weights_split_between_hospitals_fails_the_odd_one(odd_one: str, aggregator: str) -> None:
    # Prepare: round 1, every hospital starts from the global model itself (its statistics too), so
    # only the option differs; hospital 1 holds the other value of local_weights than the server
    global_model = fedbn()
    server = () if odd_one == "local" else LOCAL
    other = LOCAL if odd_one == "local" else ()
    updates = [
        hospital_update(
            k, global_model, trained(global_model, 0.0625 * (k + 1)), num_samples=1, trainable_only=True,
            local_weights=other if k == 1 else server,
        )
        for k in range(HOSPITALS)
    ]  # fmt: skip
    digest = model_digest(global_model, trainable_only=True, local_weights=server)
    # Execute
    result = make_aggregator(aggregator, num_clients=HOSPITALS).aggregate(
        updates, rng=np.random.default_rng(0), model_digest=digest
    )
    # Assert: hospital 1 alone refused, the others' mean is theirs
    assert result.included == {0, 2}
    assert "another model" in dict(result.refused)[1]
    assert result.mean is not None
    np.testing.assert_allclose(result.mean, 0.125, atol=1e-3)  # within the secure default clip


def _digest(model: Any, names: Any, trainable_only: bool = True) -> Any:
    return model_digest(model, trainable_only=trainable_only, local_weights=names)


def _update(model: Any, names: Any, trainable_only: bool = True) -> Any:
    return hospital_update(0, model, model, num_samples=1, trainable_only=trainable_only, local_weights=names)


def _aggregate(model: Any, names: Any, trainable_only: bool = True) -> Any:
    return aggregate_models(
        model, [model], make_aggregator("plain"), num_samples=[1], rng=np.random.default_rng(0),
        trainable_only=trainable_only, local_weights=names,
    )  # fmt: skip


CALLS = pytest.mark.parametrize(
    "call", [_digest, _update, _aggregate], ids=["model_digest", "hospital_update", "aggregate_models"]
)


@CALLS
@pytest.mark.parametrize(
    ("names", "error", "match"),
    [
        (["norm/moving_meen"], ConfigurationError, "'norm/moving_meen' is no weight of the model"),
        (["norm/gamma"], ConfigurationError, "'norm/gamma' is trainable"),
        (["norm/moving_mean", "norm/moving_mean"], ConfigurationError, "'norm/moving_mean' is named twice"),
        ([b"norm/moving_mean"], ConfigurationTypeError, "must be a str, got bytes"),
        ([1], ConfigurationTypeError, "must be a str, got int"),
        ("norm/moving_mean", ConfigurationTypeError, "local_weights must be a sequence"),
        ({"norm/moving_mean"}, ConfigurationTypeError, "local_weights must be a sequence"),
        (None, ConfigurationTypeError, "local_weights must be a sequence"),
    ],
    ids=["missing", "trainable", "duplicate", "bytes", "int", "str", "set", "none"],
)
def test_local_weights_that_are_not_the_model_s_non_trainable_weights_are_refused(
    call: Any, names: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        call(fedbn(), names)


@CALLS
def test_local_weights_without_trainable_only_are_refused(call: Any) -> None:
    with pytest.raises(ConfigurationError, match="local_weights needs trainable_only=True"):
        call(fedbn(), list(LOCAL), trainable_only=False)


@CALLS
def test_local_weights_of_a_weight_list_are_refused(call: Any) -> None:
    with pytest.raises(ConfigurationError, match="local_weights names a Keras model's weights"):
        call(fedbn().get_weights(), list(LOCAL))


@CALLS
def test_no_local_weights_is_the_default(call: Any) -> None:
    # Control: an empty sequence is today's behaviour, as is leaving the option out
    model = fedbn()
    assert model_digest(model, trainable_only=True, local_weights=[]) == model_digest(model, trainable_only=True)
    call(model, [])


def layer_norm() -> Any:
    """fedbn() with a LayerNormalization for "norm": the same trainable weights, no statistics."""
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(3, name="dense"),
            keras.layers.LayerNormalization(name="norm"),
            keras.layers.Dense(2, name="head"),
        ]
    )
    model.set_weights([np.full(w.shape, 0.5, w.dtype) for w in model.get_weights()])
    return model


def test_the_names_are_bound_not_only_the_values_they_leave_out() -> None:
    # Prepare: a hospital whose "norm" holds no statistics against a server whose every
    # non-trainable weight is local: the two bind the same weights and values, and differ only in
    # which weights are kept local
    server = fedbn()
    # Execute / Assert: another digest (with the names left out of bound_digest: one digest)
    shared = model_digest(layer_norm(), trainable_only=True)
    assert shared != model_digest(server, trainable_only=True, local_weights=LOCAL)


def test_a_hospital_whose_model_lacks_a_named_weight_costs_only_itself() -> None:
    # Prepare: hospital 1 trained from a model without the named statistics (its layouts agree)
    global_model = fedbn()
    received = [with_own_statistics(global_model, 1.0), layer_norm(), with_own_statistics(global_model, 3.0)]
    locals_ = [trained(received[0], 0.25), layer_norm(), trained(received[2], 0.75)]
    # Execute
    outcome = aggregate_models(
        global_model, locals_, make_aggregator("plain"), num_samples=[1] * HOSPITALS, rng=np.random.default_rng(0),
        trainable_only=True, local_weights=LOCAL, trained_from=dict(enumerate(received)),
    )  # fmt: skip
    # Assert: withheld with the reason, the round goes on with the others
    assert [client for client, _ in outcome.result.withheld] == [1]
    assert "'norm/moving_mean' is no weight of the model" in dict(outcome.result.withheld)[1]
    assert outcome.result.included == {0, 2} and outcome.weights is not None


@CALLS
@pytest.mark.parametrize(
    ("frozen", "names"),
    [("dense", ["dense/kernel"]), ("dense", ["dense/bias", *LOCAL]), ("norm", ["norm/gamma"]), ("norm", ["norm/beta"])],
    ids=["frozen-kernel", "frozen-bias-with-statistics", "frozen-norm-scale", "frozen-norm-shift"],
)
def test_a_non_trainable_weight_that_is_no_batch_norm_statistic_cannot_be_kept_local(
    call: Any, frozen: str, names: list[str]
) -> None:
    # Prepare: a frozen layer's weights are non-trainable; kept local, a frozen backbone would leave
    # the binding (a server's instructions could name it), so only batch-norm statistics can be
    model = fedbn()
    model.get_layer(frozen).trainable = False
    # Execute / Assert
    with pytest.raises(ConfigurationError, match=f"'{frozen}/[a-z]+' is no batch-norm statistic"):
        call(model, names)


def twin_norms() -> Any:
    """Two nested functional models, each with a statistics-only BatchNormalization named "norm":
    both layers' statistics get the same flatten_model names."""

    def block(name: str) -> Any:
        inputs = keras.Input((3,))
        dense = keras.layers.Dense(3, name=f"dense_{name}")(inputs)
        norm = keras.layers.BatchNormalization(name="norm", center=False, scale=False)
        return keras.Model(inputs, norm(dense), name=name)

    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(block("right")(block("left")(inputs))))


@CALLS
def test_a_local_name_that_matches_two_weights_is_refused(call: Any) -> None:
    # Prepare: one name, two weights: neither would be bound, and a hospital could not tell which it keeps
    model = twin_norms()
    # Execute / Assert
    with pytest.raises(ConfigurationError, match="'norm/moving_mean' names 2 weights of the model"):
        call(model, list(LOCAL))


def two_norms() -> Any:
    """fedbn() with a second BatchNormalization ("backbone_norm") before the first Dense."""
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.BatchNormalization(name="backbone_norm"),
            keras.layers.Dense(3, name="dense"),
            keras.layers.BatchNormalization(name="norm"),
            keras.layers.Dense(2, name="head"),
        ]
    )
    model.set_weights([np.full(w.shape, 0.5, w.dtype) for w in model.get_weights()])
    return model


def test_a_server_that_names_more_weights_local_than_the_hospital_fails_that_hospital() -> None:
    # Prepare: the hospital keeps "norm"'s statistics and binds "backbone_norm"'s; a server that
    # declares both local (to leave "backbone_norm" unchecked) binds another set of names
    global_model = two_norms()
    hospital = hospital_update(
        0, global_model, global_model, num_samples=1, trainable_only=True, local_weights=LOCAL
    )
    wider = [*LOCAL, "backbone_norm/moving_mean", "backbone_norm/moving_variance"]
    # Execute
    result = make_aggregator("plain").aggregate(
        [hospital], rng=np.random.default_rng(0),
        model_digest=model_digest(global_model, trainable_only=True, local_weights=wider),
    )  # fmt: skip
    # Assert: the hospital's own set decides what it binds; the server's other set refuses it
    assert [client for client, _ in result.refused] == [0]
    assert hospital.model_digest == model_digest(global_model, trainable_only=True, local_weights=LOCAL)


def test_automatic_names_of_the_statistics_do_not_depend_on_what_the_process_built_before() -> None:
    # Prepare: batch-norm layers without names, one model built before: Keras numbers the second
    # model's layer batch_normalization_1; the digest (names bound) must be a fresh process's
    def unnamed() -> Any:
        model = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization(), keras.layers.Dense(2)])
        model.set_weights([np.full(w.shape, 0.5, w.dtype) for w in model.get_weights()])
        return model

    first, second = unnamed(), unnamed()
    names = ["batch_normalization/moving_mean", "batch_normalization/moving_variance"]
    # Execute / Assert
    assert second.layers[0].moving_mean.path != first.layers[0].moving_mean.path
    assert model_digest(second, trainable_only=True, local_weights=names) == model_digest(
        first, trainable_only=True, local_weights=names
    )
