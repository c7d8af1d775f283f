"""Shared by the PyTorch DP tests: five hospitals' data, their DP aggregator, and the check that a
model is refused before anything is computed, charged or written."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fl_core.aggregators import make_aggregator
from fl_core.dp import DPAggregator
from secagg.dp import DPConfig, SeededRandomSource
from secagg.errors import ConfigurationError

torch = pytest.importorskip("torch")
torch_dp = pytest.importorskip("secagg.integrations.torch_dp")


def five_hospitals() -> list[tuple[int, Any, Any]]:
    """Hospitals 1..5, each 12 examples of 4 float64 features and a 0/1 label (seeded)."""
    rng = np.random.default_rng(3)
    return [
        (h, torch.from_numpy(rng.normal(size=(12, 4))), torch.from_numpy(rng.integers(0, 2, size=12)))
        for h in range(1, 6)
    ]


def dp_aggregator(dimension: int) -> DPAggregator:
    """plain-quantized under DP (epsilon 8, delta 1e-5, 2 rounds, l2_clip 1, min_honest 2) for 5
    hospitals of at most 64 examples and a model of ``dimension`` parameters; its noise seeded."""
    dp = DPConfig(epsilon=8.0, delta=1e-5, rounds=2, l2_clip=1.0, min_honest=2)
    aggregator = make_aggregator(
        "plain-quantized", num_clients=5, dp=dp, dimension=dimension, max_samples_per_client=64,
        noise_source=SeededRandomSource(bytes(32)),
    )  # fmt: skip
    assert isinstance(aggregator, DPAggregator)
    return aggregator


def assert_refused_before_any_charge(
    model: Any, hospitals: list[tuple[int, Any, Any]], loss: Any, aggregator: Any, refusal: str
) -> None:
    """``clipped_gradient_sum`` on the first hospital and ``run_dp_round`` on all of them both raise
    ConfigurationError matching ``refusal``; nothing is charged and the model's state is unchanged."""
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigurationError, match=refusal):
        torch_dp.clipped_gradient_sum(model, loss, hospitals[0][1], hospitals[0][2], 1.0)
    with pytest.raises(ConfigurationError, match=refusal):
        torch_dp.run_dp_round(
            model, hospitals, loss, aggregator, learning_rate=1.0,
            declared_sizes={h: 12 for h in range(1, 6)}, rng=np.random.default_rng(0),
        )  # fmt: skip
    assert aggregator.spent()[0] == 0.0
    assert all(_same(before[k], v) for k, v in model.state_dict().items())


def _same(before: Any, after: Any) -> bool:
    """Equal values; for a tensor on the meta device (no values), the same shape and dtype, still there."""
    if before.is_meta:
        return bool(after.is_meta and before.shape == after.shape and before.dtype == after.dtype)
    return bool(torch.equal(before, after))
