"""Error-feedback residuals through the PyTorch and Keras ``aggregate_models``: each hospital's
residual is kept under its client id, so the ids must name the same hospital in every call.

The default ids number the hospitals 0..m-1 in each call's order: drop one hospital between two
calls and every later one takes the previous one's id, and its residual (one hospital's unsent
update added to another's). A stateful aggregator therefore needs ``client_ids``."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fl_core.aggregators import make_aggregator  # noqa: E402
from fl_core.compression import CompressionConfig, SparseAggregator  # noqa: E402
from fl_core.rotated import RotatedAggregator  # noqa: E402
from secagg.errors import ConfigurationError  # noqa: E402
from secagg.integrations import keras as keras_adapter  # noqa: E402
from secagg.integrations import torch as torch_adapter  # noqa: E402

SIZE = 8


def _sparse(error_feedback: bool = True) -> SparseAggregator:
    config = CompressionConfig(fraction=0.5, error_feedback=error_feedback)
    return SparseAggregator(make_aggregator("plain-quantized", num_clients=3), config)


def _models(adapter: str, values: list[np.ndarray]) -> list[object]:
    if adapter == "torch":
        return [{"w": torch.from_numpy(v.copy())} for v in values]
    return [[v.copy()] for v in values]


def _aggregate(adapter: str, aggregator: object, models: list[object], **options: object) -> object:
    module = torch_adapter if adapter == "torch" else keras_adapter
    (global_model,) = _models(adapter, [np.zeros(SIZE)])
    counts = [1] * len(models)
    return module.aggregate_models(  # type: ignore[attr-defined]
        global_model, models, aggregator, num_samples=counts, rng=np.random.default_rng(3), discovery=False,
        **options,
    )


def _hospitals() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.normal(size=SIZE) * 0.05 * (k + 1) for k in range(3)]


@pytest.mark.parametrize("adapter", ["torch", "keras"])
@pytest.mark.parametrize("wrapped", [False, True], ids=["sparse", "sparse-over-rotation"])
def test_default_ids_with_error_feedback_are_refused_before_a_residual_can_go_astray(
    adapter: str, wrapped: bool
) -> None:
    # Prepare: three hospitals, then the same call without the second (m3 would become id 1 and
    # receive m2's residual); the error-feedback aggregator alone or over a rotation
    if wrapped:
        aggregator = SparseAggregator(
            RotatedAggregator(make_aggregator("plain-quantized", num_clients=3)), CompressionConfig(fraction=0.5)
        )
    else:
        aggregator = _sparse()
    m1, m2, m3 = _hospitals()
    # Execute / Assert: refused, naming client_ids, whichever call it is, and no residual kept
    for models in ([m1, m2, m3], [m1, m3]):
        with pytest.raises(ConfigurationError, match="client_ids"):
            _aggregate(adapter, aggregator, _models(adapter, models))
    assert all(aggregator.residual(k) is None for k in range(3))


@pytest.mark.parametrize("adapter", ["torch", "keras"])
def test_stable_ids_keep_each_hospitals_residual_its_own_when_one_drops(adapter: str) -> None:
    # Prepare: hospitals 10, 20, 30, then 10 and 30 only
    aggregator = _sparse()
    m1, m2, m3 = _hospitals()
    _aggregate(adapter, aggregator, _models(adapter, [m1, m2, m3]), client_ids=[10, 20, 30])
    before = {k: aggregator.residual(k) for k in (10, 20, 30)}
    # Execute
    _aggregate(adapter, aggregator, _models(adapter, [m1, m3]), client_ids=[10, 30])
    # Assert: 20's residual untouched; 30's is its own update plus its own residual, the round's subset zeroed
    subset = aggregator.last_subset
    assert subset is not None
    np.testing.assert_array_equal(aggregator.residual(20), before[20])  # type: ignore[arg-type]
    for client, update in ((10, m1), (30, m3)):
        expected = update + before[client]  # type: ignore[operator]
        expected[subset.indices] = 0.0
        np.testing.assert_array_equal(aggregator.residual(client), expected)  # type: ignore[arg-type]


@pytest.mark.parametrize("adapter", ["torch", "keras"])
def test_default_ids_are_fine_with_an_aggregator_that_keeps_no_residual(adapter: str) -> None:
    # Prepare / Execute: partial updates without error feedback keep no per-hospital state
    aggregator = _sparse(error_feedback=False)
    m1, m2, m3 = _hospitals()
    for models in ([m1, m2, m3], [m1, m3]):
        outcome = _aggregate(adapter, aggregator, _models(adapter, models))
        # Assert: the round ran with the default ids
        assert outcome.result.mean is not None  # type: ignore[attr-defined]
