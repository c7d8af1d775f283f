"""Binding splits, PyTorch and Keras adapters: the hospital-side options of ``hospital_update``.

``hospital_update`` takes one option that shapes what a hospital sends: which tensors its update
holds (PyTorch ``buffers``, Keras ``trainable_only``). The server aggregates under its own value
(``model_digest(global_model, ...)`` and ``aggregate_models``'s). A hospital that builds its update
under the other value sends another layout and declares another model digest; these tests split
the option between hospital 1 and the others (everything else equal) and assert that hospital 1
alone is refused, with a reason, and the others' mean is theirs alone (its other length does not
end the round: fl_core.aggregators.binding.check_lengths). The layout fields themselves (names,
shapes, dtypes, order) are split in tests/integrations/test_integrations_adapter_split_layout.py; the model digest in
tests/integrations/test_integrations_torch_model_binding.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported
keras = pytest.importorskip("keras")

from fl_core.aggregators import make_aggregator  # noqa: E402
from fl_core.aggregators.base import ClientUpdate  # noqa: E402
from secagg.integrations import keras as keras_adapter  # noqa: E402
from secagg.integrations import torch as torch_adapter  # noqa: E402

from .torch_modules import torch_model  # noqa: E402

HOSPITALS = (1, 2, 3, 4, 5)
TARGET = 1
"""The hospital that holds the other value."""
AGGREGATORS = ("plain", "secagg")


def keras_model(step: float = 0.0) -> Any:
    """A model with non-trainable weights (BatchNormalization's moving statistics), its weights moved by ``step``."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.BatchNormalization()])
    model.set_weights([w + np.float32(step) for w in model.get_weights()])
    return model


def torch_updates(other: bool) -> tuple[list[ClientUpdate], bytes]:
    """Every hospital's update (hospital 1 without its buffers when ``other``) and the server's digest."""
    global_model = torch_model()
    updates = [
        torch_adapter.hospital_update(
            h, global_model, torch_model(0.05 * h), num_samples=10, buffers=not (other and h == TARGET)
        )
        for h in HOSPITALS
    ]
    return updates, torch_adapter.model_digest(global_model)


def keras_updates(other: bool) -> tuple[list[ClientUpdate], bytes]:
    """Every hospital's update (hospital 1 of its trainable weights only when ``other``) and the server's digest."""
    global_model = keras_model()
    updates = [
        keras_adapter.hospital_update(
            h, global_model, keras_model(0.05 * h), num_samples=10, trainable_only=other and h == TARGET
        )
        for h in HOSPITALS
    ]
    return updates, keras_adapter.model_digest(global_model)


SPLITS: dict[str, Callable[[bool], tuple[list[ClientUpdate], bytes]]] = {
    "torch.hospital_update.buffers": torch_updates,
    "keras.hospital_update.trainable_only": keras_updates,
}


def mean_of(updates: list[ClientUpdate]) -> np.ndarray:
    return np.mean([u.vector for u in updates], axis=0)


@pytest.mark.parametrize("aggregator", AGGREGATORS)
@pytest.mark.parametrize("option", sorted(SPLITS))
def test_an_option_split_between_two_hospitals_never_mixes_the_odd_update_in(option: str, aggregator: str) -> None:
    # Prepare: hospital 1 builds its update under the other value, the others and the server under the default
    updates, digest = SPLITS[option](True)
    assert updates[0].model_digest != digest and updates[0].vector.shape != updates[1].vector.shape
    agg = make_aggregator(aggregator, num_clients=len(HOSPITALS))
    # Execute: hospital 1 comes first, so a round that took its length from the first update would
    # refuse everyone (or blame an honest hospital)
    result = agg.aggregate(updates, rng=np.random.default_rng(0), model_digest=digest)
    # Assert: hospital 1 alone is refused, saying why, and the mean is the others' alone
    assert result.included == set(HOSPITALS) - {TARGET}
    assert "another model" in dict(result.refused)[TARGET]
    assert result.mean is not None
    np.testing.assert_allclose(result.mean, mean_of(updates[1:]), atol=1e-3)


@pytest.mark.parametrize("aggregator", AGGREGATORS)
@pytest.mark.parametrize("option", sorted(SPLITS))
def test_the_control_round_includes_every_hospital(option: str, aggregator: str) -> None:
    updates, digest = SPLITS[option](False)
    result = make_aggregator(aggregator, num_clients=len(HOSPITALS)).aggregate(
        updates, rng=np.random.default_rng(0), model_digest=digest
    )
    assert result.included == set(HOSPITALS) and result.refused == ()
    assert result.mean is not None
    np.testing.assert_allclose(result.mean, mean_of(updates), atol=1e-3)
