"""An empty model (no tensor, no weight, or only empty ones) is refused with a message that
says what is wrong in the user's terms and what to pass, not the layout's internals."""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported
pytest.importorskip("keras")

from fl_core.aggregators import make_aggregator  # noqa: E402
from secagg.errors import ConfigurationError  # noqa: E402
from secagg.integrations import keras as keras_adapter  # noqa: E402
from secagg.integrations import torch as torch_adapter  # noqa: E402

WHAT_TO_DO = "the global model holds no values to aggregate"


@pytest.mark.parametrize(
    "make",
    [torch.nn.Sequential, lambda: torch.nn.Linear(0, 0, bias=False), lambda: {}],
    ids=["empty-sequential", "zero-size-linear", "empty-state-dict"],
)
def test_torch_empty_model_says_it_holds_nothing(make: object) -> None:
    # Prepare
    hospitals = [make() for _ in range(3)]  # type: ignore[operator]
    # Execute / Assert
    with pytest.raises(ConfigurationError, match=WHAT_TO_DO) as refusal:
        torch_adapter.aggregate_models(
            make(),  # type: ignore[operator]
            hospitals,
            make_aggregator("secagg", num_clients=3),
            num_samples=[1, 1, 1],
            rng=np.random.default_rng(0),
        )
    assert "tensor" in str(refusal.value)


@pytest.mark.parametrize("weights", [[], [np.zeros((0, 4), np.float32)]], ids=["no-weight", "zero-size-weight"])
def test_keras_empty_weights_say_they_hold_nothing(weights: list[np.ndarray]) -> None:
    # Execute / Assert
    with pytest.raises(ConfigurationError, match=WHAT_TO_DO) as refusal:
        keras_adapter.aggregate_models(
            weights,
            [list(weights) for _ in range(3)],
            make_aggregator("secagg", num_clients=3),
            num_samples=[1, 1, 1],
            rng=np.random.default_rng(0),
        )
    assert "weight" in str(refusal.value)
