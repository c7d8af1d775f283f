"""DP mode releases nothing outside the guarantee: no un-noised moments round (public or noised-moments scaling);
the server's momentum is post-processing of the charged rounds."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest

from fl_core import demo
from fl_core.aggregators.base import Aggregator
from fl_core.data import load_dataset
from fl_core.demo import DemoConfig, run_demo
from fl_core.dp import DPAggregator
from fl_core.fedavg import FedAvgConfig
from fl_core.public_scaling import PUBLIC_FEATURE_RANGES, public_scaler
from fl_core.server_opt import ServerOptimizer
from secagg.errors import ConfigurationError

needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="needs the examples extra")


@needs_sklearn
@pytest.mark.parametrize("dataset", ["breast-cancer", "digits"])
@pytest.mark.parametrize("scaling", ["public-ranges", "noised-moments"])
def test_dp_demo_sends_the_server_only_noised_charged_rounds(
    dataset: str, scaling: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: the un-noised moments round must not run; record every aggregator built.
    def no_moments(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("DP mode ran the un-noised standardisation round")

    built: list[Aggregator] = []
    original = demo._aggregator

    def recording(name: str, config: DemoConfig, **options: Any) -> Aggregator:
        aggregator = original(name, config, **options)
        built.append(aggregator)
        return aggregator

    monkeypatch.setattr(demo, "federated_standardiser", no_moments)
    monkeypatch.setattr(demo, "_aggregator", recording)

    # Execute
    config = DemoConfig(
        aggregation="plain-quantized", dataset=dataset, rounds=2, compare=False, dp_epsilon=3.0, dp_scaling=scaling
    )
    report = run_demo(config)

    # Assert: only DP aggregators (the noised moments release, then training), every release charged.
    assert all(isinstance(a, DPAggregator) for a in built)
    assert len(built) == (1 if scaling == "public-ranges" else 2)
    released = [r for r in report.result.rounds if r.skipped_reason is None]
    assert built[-1].accountant.num_releases == len(released) == 2
    if scaling == "noised-moments":
        assert built[0].accountant.num_releases == 1


@needs_sklearn
def test_non_dp_demo_still_standardises_with_the_secure_moments_round(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = demo.federated_standardiser

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(demo, "federated_standardiser", counting)
    run_demo(DemoConfig(aggregation="plain-quantized", rounds=1, compare=False))
    assert calls == [1]


@needs_sklearn
@pytest.mark.parametrize("dataset", sorted(PUBLIC_FEATURE_RANGES))
def test_public_ranges_cover_the_data_and_map_onto_minus_one_one(dataset: str) -> None:
    features, _ = load_dataset(dataset)
    scaled = public_scaler(dataset, features.shape[1]).apply(features)
    assert scaled.min() >= -1.0 and scaled.max() <= 1.0


def test_public_scaler_refuses_unknown_data_sets_and_wrong_widths() -> None:
    with pytest.raises(ConfigurationError, match="no declared public"):
        public_scaler("iris", 4)
    with pytest.raises(ConfigurationError, match="feature ranges"):
        public_scaler("digits", 30)


def test_server_momentum_must_be_in_zero_one() -> None:
    FedAvgConfig(server_momentum=0.9)
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(ConfigurationError, match="momentum"):
            FedAvgConfig(server_momentum=bad)


def test_server_optimizer_steps_are_the_documented_formulas() -> None:
    params, first, second = np.array([1.0, -2.0]), np.array([0.5, 0.25]), np.array([-1.0, 1.0])
    sgd = ServerOptimizer("sgd", learning_rate=2.0, momentum=0.5)
    after_one = sgd.step(params, first)
    np.testing.assert_allclose(after_one, params - 2.0 * first)
    np.testing.assert_allclose(sgd.step(after_one, second), after_one - 2.0 * (second + 0.5 * first))
    adam = ServerOptimizer("adam", learning_rate=0.1, momentum=0.9, beta2=0.99, tau=1e-3)
    m, v = 0.1 * first, 0.01 * first * first
    np.testing.assert_allclose(adam.step(params, first), params - 0.1 * m / (np.sqrt(v) + 1e-3))
    with pytest.raises(ConfigurationError, match="server optimizer"):
        ServerOptimizer("lamb")
