"""Binding, fl_core FedAvg: the model's settings shape what every hospital sends.

A hospital's update is its local training's (or, with DP, its clipped gradient sum) under the
model it runs: its kind and every setting (``LogisticRegression.l2``, the MLP's ``hidden`` and
``l2``, ...). A same-shaped model with another ``l2`` trains another update from the same global
model, of the same length, under the same model digest: unbound, it was summed with the others.
:func:`fl_core.fedavg.run_fedavg` binds the model's kind and every dataclass field
(:func:`fl_core.contribution_binding.model_parameters`). These tests split each field of each
fl_core model between hospital 1 and the others and assert that the session refuses hospital 1 at
setup (tests/masking/split_session.py); the field lists are introspected, so a field added later
fails here until it has another value to split with (and it is bound by then: the binding reads
``dataclasses.fields``).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import numpy as np
import pytest

from fl_core.aggregators import make_aggregator
from fl_core.aggregators.masking import MaskingAggregator
from fl_core.aggregators.quantizer import WeightedQuantizer
from fl_core.contribution_binding import MODEL_PREFIX, model_parameters
from fl_core.dp import DPAggregator
from fl_core.fedavg import FedAvgConfig, run_fedavg
from fl_core.models import MLP, FloatArray, IntArray, LogisticRegression, Params
from secagg.dp import DPConfig
from secagg.errors import ConfigurationError
from secagg.masking import MaskingConfig
from tests.fl_core.fedavg_runs import bound_round, fedavg_clients
from tests.masking.split_session import assert_honest_completes, assert_split_fails, split_session

HOSPITALS = (1, 2, 3, 4, 5)
CONFIG = FedAvgConfig(rounds=1, local_epochs=1, batch_size=8, learning_rate=0.05)

MODELS: dict[str, tuple[Any, dict[str, Any]]] = {
    "LogisticRegression": (LogisticRegression(3, 2, l2=0.01), {"num_features": 4, "num_classes": 3, "l2": 0.1}),
    "MLP": (MLP(3, 2, hidden=4, l2=0.01), {"num_features": 4, "num_classes": 3, "hidden": 5, "l2": 0.1}),
}
"""Each fl_core model every hospital runs, and another value of each of its fields."""


def test_every_fl_core_model_is_split_here() -> None:
    # Introspected: a model class added to fl_core.models fails here until its fields have a split.
    import fl_core.models  # noqa: PLC0415 (the module this guard scans)

    kinds = {
        name for name, value in vars(fl_core.models).items()
        if isinstance(value, type) and dataclasses.is_dataclass(value) and hasattr(value, "loss_and_grad")
    }  # fmt: skip
    assert kinds == set(MODELS)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_every_model_field_has_a_split(kind: str) -> None:
    model, others = MODELS[kind]
    assert {f.name for f in dataclasses.fields(model)} == set(others)


def _bound(model: Any) -> tuple[MaskingConfig, dict[int, Any]]:
    return bound_round(model, CONFIG)


@pytest.mark.parametrize(
    ("kind", "field"), [(kind, field) for kind, (_, others) in sorted(MODELS.items()) for field in sorted(others)]
)
def test_a_hospital_running_another_model_setting_is_refused(kind: str, field: str) -> None:
    # Prepare: the round the others bind, and the one a hospital whose model has one other value binds
    model, others = MODELS[kind]
    base, keys = _bound(model)
    other, _ = _bound(dataclasses.replace(model, **{field: others[field]}))
    # Execute / Assert: hospital 1 is refused at setup; the others' sum is exact
    assert other.digest() != base.digest(), f"run_fedavg does not bind {kind}.{field}"
    assert_split_fails(split_session(base, other, signing_keys=keys), base)


def test_a_hospital_running_another_model_kind_of_the_same_length_is_refused() -> None:
    # LogisticRegression(3, 2) and MLP(3, 2, hidden=1) both have 8 parameters: only the kind (and the
    # global model's shapes) tell them apart.
    logistic, mlp = LogisticRegression(3, 2), MLP(3, 2, hidden=1)
    assert model_parameters(logistic)[MODEL_PREFIX + "kind"] == "fl_core.models.LogisticRegression"
    assert model_parameters(mlp)[MODEL_PREFIX + "kind"] == "fl_core.models.MLP"
    base, keys = _bound(logistic)
    other, _ = _bound(mlp)
    assert_split_fails(split_session(base, other, signing_keys=keys), base)


def test_hospitals_running_one_model_are_all_included() -> None:
    model, _ = MODELS["MLP"]
    base, keys = _bound(model)
    assert _bound(model)[0] == base
    assert_honest_completes(base, signing_keys=keys)


def test_a_dp_run_binds_the_model_too() -> None:
    # A DP round's contribution is the model's clipped gradient sum: its kind and settings shape it too.
    dp = DPConfig(epsilon=3.0, delta=1e-5, rounds=1, l2_clip=1.0, min_honest=3)
    aggregator = make_aggregator("plain-quantized", num_clients=5, dp=dp, dimension=26, max_samples_per_client=64)
    assert isinstance(aggregator, DPAggregator)
    model = MLP(3, 2, hidden=4)
    rng = np.random.default_rng(1)
    run_fedavg(model, fedavg_clients(3), aggregator, rng.normal(size=(8, 3)), rng.integers(0, 2, 8), CONFIG)
    bound = {name: value for name, value in aggregator.quantizer.parameters if name.startswith(MODEL_PREFIX)}
    assert bound == model_parameters(model)


@dataclasses.dataclass(frozen=True)
class _Settings:
    depth: int = 2


@dataclasses.dataclass(frozen=True)
class _Nested:
    """A model whose setting is no scalar: it cannot be bound as it is, so it is refused."""

    settings: _Settings = _Settings()

    def init(self, rng: np.random.Generator) -> Params:
        return [np.zeros(2)]

    def loss_and_grad(self, params: Params, x: FloatArray, y: IntArray) -> tuple[float, Params]:
        return 0.0, [np.zeros(2)]

    def predict_proba(self, params: Params, x: FloatArray) -> FloatArray:
        return np.full((x.shape[0], 2), 0.5)


class _Opaque:
    """A model that is no dataclass: its settings (here ``l2``) are not visible, so it is refused."""

    def __init__(self, l2: float) -> None:
        self.l2 = l2

    def init(self, rng: np.random.Generator) -> Params:
        return [np.zeros(2)]

    def loss_and_grad(self, params: Params, x: FloatArray, y: IntArray) -> tuple[float, Params]:
        return 0.0, [np.zeros(2)]

    def predict_proba(self, params: Params, x: FloatArray) -> FloatArray:
        return np.full((x.shape[0], 2), 0.5)


class _Depth(enum.IntEnum):
    SHALLOW = 1


@dataclasses.dataclass(frozen=True)
class _Odd(_Nested):
    """A model whose scalar field has no exact encoding: an int subclass, or NaN (many encodings)."""

    settings: Any = None


@dataclasses.dataclass(frozen=True)
class _Kinded(_Odd):
    """A model with a field named ``kind``: its entry, ``fl_core.model.kind``, is the one that names
    the model's class, so binding it would replace the class (two classes alike in their fields
    would bind alike): refused."""

    kind: str = "relu"


@dataclasses.dataclass(frozen=True)
class _OtherKinded(_Kinded):
    """Another class with the same fields as :class:`_Kinded` (another forward pass, say)."""


def test_a_field_named_kind_cannot_replace_the_models_class() -> None:
    # Prepare: two classes alike in their fields, told apart only by the class entry
    one, other = _Kinded(settings=1), _OtherKinded(settings=1)
    # Execute / Assert: neither can be bound (on the old code both bound the same entries, the
    # class entry replaced by the field's value)
    for model in (one, other):
        with pytest.raises(ConfigurationError, match=r"field 'kind'.*class"):
            model_parameters(model)


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (_Nested(), r"field 'settings'.*_Settings"),
        (_Opaque(0.1), r"_Opaque.*dataclass"),
        (_Odd(_Depth.SHALLOW), r"field 'settings'.*_Depth"),
        (_Odd(float("nan")), r"field 'settings'.*NaN"),
        (_Kinded(settings=1), r"field 'kind'.*class"),
    ],
    ids=["nested", "no-dataclass", "int-subclass", "nan", "field-named-kind"],
)
def test_a_model_whose_settings_cannot_be_bound_is_refused_before_any_round(model: Any, match: str) -> None:
    aggregator = MaskingAggregator(WeightedQuantizer.create(len(HOSPITALS)), run_id=7)
    with pytest.raises(ConfigurationError, match=match):
        run_fedavg(model, fedavg_clients(3), aggregator, np.zeros((4, 3)), np.zeros(4, dtype=np.int64), CONFIG)
    assert aggregator.quantizer.parameters == ()


class _Subclassed(LogisticRegression):
    """A hospital's LogisticRegression with one method overridden and no decorator of its own: a
    dataclass by inheritance, refused (settings it added would not be fields)."""


@dataclasses.dataclass(frozen=True)
class _TupleSetting(_Nested):
    """A model whose setting is a tuple of layer sizes, a common way to write one."""

    settings: Any = (8, 4)


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (_Subclassed(3), r"_Subclassed is no dataclass of its own: it inherits LogisticRegression's.*"
                         r"decorate _Subclassed itself with @dataclass\(frozen=True\)"),
        (_TupleSetting(), r"field 'settings' holds a tuple.*one field per value"),
    ],
    ids=["undecorated-subclass", "tuple-setting"],
)
def test_the_refusal_says_how_to_declare_the_model(model: Any, match: str) -> None:
    """The refusal says what to change: an undecorated subclass of a dataclass was told it is "no
    dataclass" (``dataclasses.is_dataclass`` says it is), and a tuple setting only that it "cannot
    be bound"."""
    with pytest.raises(ConfigurationError, match=match):
        model_parameters(model)


@dataclasses.dataclass
class _Mutable:
    """A model declared as a plain (mutable) dataclass: its fields are bound before the first round,
    but user code (or a callback between rounds) can change them afterwards, so what trains is no
    longer what was bound."""

    num_features: int = 3
    l2: float = 0.0

    def init(self, rng: np.random.Generator) -> Params:
        return [np.zeros((self.num_features, 2)), np.zeros(2)]

    def loss_and_grad(self, params: Params, x: FloatArray, y: IntArray) -> tuple[float, Params]:
        return 0.0, [self.l2 * params[0], np.zeros(2)]

    def predict_proba(self, params: Params, x: FloatArray) -> FloatArray:
        return np.full((x.shape[0], 2), 0.5)


def test_a_mutable_model_dataclass_is_refused_before_any_round() -> None:
    """A non-frozen model could be changed after its settings were bound (``model.l2 = 0.5`` in an
    ``on_round`` callback): the session would then vouch for settings no hospital trains with. It is
    refused before any round, naming the fix."""
    model = _Mutable()
    with pytest.raises(ConfigurationError, match=r"_Mutable is a mutable dataclass.*@dataclass\(frozen=True\)"):
        model_parameters(model)
    aggregator = MaskingAggregator(WeightedQuantizer.create(len(HOSPITALS)), run_id=7)
    with pytest.raises(ConfigurationError, match=r"frozen=True"):
        run_fedavg(model, fedavg_clients(3), aggregator, np.zeros((4, 3)), np.zeros(4, dtype=np.int64), CONFIG)
    assert aggregator.quantizer.parameters == ()


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_every_fl_core_model_is_frozen(kind: str) -> None:
    model, others = MODELS[kind]
    field = sorted(others)[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(model, field, others[field])
