"""PyTorch adapter: ``-0.0`` and ``0.0`` are other values to the round's binding (docs/integrations.md,
"The round's model is bound"); the sign does not survive the sum.

The digest binds every value by its float64 bits, so a copy holding ``-0.0`` where the global model
holds ``0.0`` is another model (the two zeros compute differently: ``1 / w``); the sum encodes both
as the integer 0, and the new global value is ``global + mean`` in IEEE arithmetic.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fl_core.aggregators import make_aggregator  # noqa: E402
from secagg.integrations import torch as adapter  # noqa: E402


def _zero_bias(signs: tuple[float, float]) -> Any:
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 2).double()
    with torch.no_grad():
        model.bias.copy_(torch.tensor(signs, dtype=torch.float64))
    return model


def test_a_copy_holding_negative_zero_where_the_global_holds_zero_is_another_model() -> None:
    global_model, copy = _zero_bias((0.0, 0.0)), _zero_bias((-0.0, 0.0))
    assert torch.equal(global_model.bias, copy.bias)  # equal as numbers
    assert adapter.model_digest(global_model) != adapter.model_digest(copy)
    outcome = adapter.aggregate_models(
        global_model, [global_model, copy], make_aggregator("plain-quantized", num_clients=2), num_samples=[1, 1],
        rng=np.random.default_rng(0), trained_from={1: copy}, discovery=False,
    )  # fmt: skip
    assert outcome.result.included == {0} and [client for client, _ in outcome.result.refused] == [1]


def test_flattening_keeps_the_sign_of_zero_both_ways() -> None:
    vector, layout = adapter.flatten_model(_zero_bias((-0.0, 0.0)))
    assert np.signbit(vector[-2:]).tolist() == [True, False]
    back = adapter.unflatten_state_dict(vector, layout)["bias"]
    assert torch.signbit(back).tolist() == [True, False]


@pytest.mark.parametrize("name", ["plain", "plain-quantized"])
def test_a_global_negative_zero_with_a_zero_mean_update_becomes_zero(name: str) -> None:
    global_model = _zero_bias((-0.0, 0.0))
    outcome = adapter.aggregate_models(
        global_model, [global_model, global_model], make_aggregator(name, num_clients=2), num_samples=[1, 1],
        rng=np.random.default_rng(0), discovery=False,
    )  # fmt: skip
    assert outcome.state_dict is not None
    assert torch.signbit(outcome.state_dict["bias"]).tolist() == [False, False]
