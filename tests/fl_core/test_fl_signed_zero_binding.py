"""Binding, fl_core: ``-0.0`` and ``0.0`` where the sign of a zero cannot change what is sent.

The descriptor binds a float by its IEEE-754 bits (:func:`secagg.descriptor.encode_parameters`),
so ``-0.0`` and ``0.0`` are different settings there: right for a value whose sign an
application's code may read (``math.copysign``, ``1 / x``), which the generic encoder cannot know.
Where fl_core knows what the value does it canonicalises the zero: the ``l2`` of its models (a
hospital that computed its weight decay as ``-x * 0`` trains exactly as one with ``0.0``: the
penalty and its gradient are multiplied by it, and a zero's sign never survives the quantization)
and the centre and scale of a bound scaler (features centred by ``-0.0`` or ``0.0`` differ in the
sign of a zero at most). Two such hospitals were refused from each other's sessions for nothing;
they are now in one session. A genuine split stays refused: the smallest positive ``l2``, and
a custom model whose float setting's sign it reads (the model binding stays bit-exact for
settings fl_core does not know).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest

from fl_core.aggregators import make_aggregator
from fl_core.contribution_binding import model_parameters, scaling_parameters
from fl_core.data import Standardiser
from fl_core.fedavg import FedAvgConfig, run_fedavg
from fl_core.models import MLP, FloatArray, IntArray, LogisticRegression, Params
from secagg.errors import ConfigurationError
from tests.fl_core.fedavg_runs import bound_round, fedavg_clients
from tests.masking.split_session import assert_split_fails, split_session

CONFIG = FedAvgConfig(rounds=1, local_epochs=1, batch_size=8, learning_rate=0.05)
SMALLEST = math.ulp(0.0)  # 5e-324: the smallest positive float, a genuine (if tiny) weight decay


def _models(l2: Any) -> dict[str, Any]:
    return {"LogisticRegression": LogisticRegression(3, 2, l2=l2), "MLP": MLP(3, 2, hidden=4, l2=l2)}


@pytest.mark.parametrize("kind", ["LogisticRegression", "MLP"])
@pytest.mark.parametrize("zero", [-0.0, 0, np.float64(-0.0)], ids=["minus-zero", "int-zero", "numpy-minus-zero"])
def test_a_weight_decay_of_another_zero_binds_as_zero(kind: str, zero: Any) -> None:
    # Prepare: the model every other hospital runs (l2=0.0), and hospital 1's (l2 computed as -x*0, or 0)
    base_model, other_model = _models(0.0)[kind], _models(zero)[kind]
    # Execute
    base, _ = bound_round(base_model, CONFIG)
    other, _ = bound_round(other_model, CONFIG)
    # Assert: one setting, one session (on the old code hospital 1 was refused from the others' session)
    assert model_parameters(other_model) == model_parameters(base_model)
    assert other.digest() == base.digest()


@pytest.mark.parametrize("kind", ["LogisticRegression", "MLP"])
def test_the_two_zeros_train_alike(kind: str) -> None:
    """What makes the canonical zero sound: a run at ``l2=-0.0`` ends where one at ``0.0`` does."""
    results = []
    for l2 in (0.0, -0.0):
        rng = np.random.default_rng(1)
        model = _models(l2)[kind]
        results.append(run_fedavg(
            model, fedavg_clients(3), make_aggregator("plain-quantized", num_clients=5),
            rng.normal(size=(8, 3)), rng.integers(0, 2, 8), dataclasses.replace(CONFIG, rounds=3),
        ).params)  # fmt: skip
    for ours, theirs in zip(*results, strict=True):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("kind", ["LogisticRegression", "MLP"])
def test_the_smallest_weight_decay_is_still_another_setting(kind: str) -> None:
    base, keys = bound_round(_models(0.0)[kind], CONFIG)
    other, _ = bound_round(_models(SMALLEST)[kind], CONFIG)
    assert other.digest() != base.digest()
    assert_split_fails(split_session(base, other, signing_keys=keys), base)


@dataclasses.dataclass(frozen=True)
class _Signed:
    """A custom model whose float setting's sign it reads: ``-0.0`` and ``0.0`` train apart here,
    so the model binding keeps them apart (it does not know what a custom setting does)."""

    num_features: int = 3
    direction: float = 0.0

    def init(self, rng: np.random.Generator) -> Params:
        return [np.zeros((self.num_features, 2)), np.zeros(2)]

    def loss_and_grad(self, params: Params, x: FloatArray, y: IntArray) -> tuple[float, Params]:
        step = math.copysign(0.1, self.direction)
        return 0.0, [np.full_like(params[0], step), np.full_like(params[1], step)]

    def predict_proba(self, params: Params, x: FloatArray) -> FloatArray:
        return np.full((x.shape[0], 2), 0.5)


def test_a_custom_models_signed_zero_stays_another_setting() -> None:
    base, keys = bound_round(_Signed(direction=0.0), CONFIG)
    other, _ = bound_round(_Signed(direction=-0.0), CONFIG)
    assert other.digest() != base.digest()
    assert_split_fails(split_session(base, other, signing_keys=keys), base)


def test_a_scaler_centred_at_another_zero_binds_as_zero() -> None:
    # Prepare: the pooled centre of a feature that is zero, summed in another order by hospital 1
    ours = Standardiser(np.array([0.0, 1.5]), np.array([0.0, 2.0]))
    theirs = Standardiser(np.array([-0.0, 1.5]), np.array([-0.0, 2.0]))
    features = np.array([[0.0, 1.0], [-0.0, 2.0], [3.0, -1.0]])
    # Assert: both scale features to the same values, and bind alike (the old code bound them apart)
    np.testing.assert_array_equal(ours.apply(features), theirs.apply(features))
    assert scaling_parameters("pooled-moments", theirs) == scaling_parameters("pooled-moments", ours)


def test_a_scaler_centred_at_the_smallest_offset_is_still_another_scaler() -> None:
    ours = Standardiser(np.array([0.0, 1.5]), np.array([1.0, 2.0]))
    theirs = Standardiser(np.array([SMALLEST, 1.5]), np.array([1.0, 2.0]))
    assert scaling_parameters("pooled-moments", theirs) != scaling_parameters("pooled-moments", ours)


@pytest.mark.parametrize(
    "l2", [np.array([0.5]), np.array([0.0, 1.0]), "0", None, True, np.bool_(False)],
    ids=["one-element-array", "array", "str", "None", "True", "numpy-bool"],
)
@pytest.mark.parametrize("kind", ["LogisticRegression", "MLP"])
def test_an_l2_that_is_no_real_number_is_refused_with_a_configuration_error(kind: str, l2: Any) -> None:
    # Prepare: the model's l2 is held as float(l2) + 0.0 since 9fd0832, so a one-element array
    # raised numpy's TypeError at construction and True was held as the setting 1.0, unsaid
    build = {"LogisticRegression": lambda: LogisticRegression(3, 2, l2=l2), "MLP": lambda: MLP(3, 2, hidden=4, l2=l2)}
    # Execute / Assert: refused by the library's own error, naming l2
    with pytest.raises(ConfigurationError, match="l2"):
        build[kind]()


@pytest.mark.parametrize("l2", [0, np.float32(0.25), np.int64(2), 0.5], ids=["int", "float32", "int64", "float"])
def test_an_l2_that_is_a_real_number_is_held_as_its_float(l2: Any) -> None:
    # Control: Python and numpy reals are taken, as their float value
    assert LogisticRegression(3, 2, l2=l2).l2 == float(l2)
    assert type(MLP(3, 2, hidden=4, l2=l2).l2) is float
