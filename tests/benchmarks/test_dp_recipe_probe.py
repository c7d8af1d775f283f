"""The DP recipe probe's loop is the library's: with the recipe it reproduces run_fedavg."""

from __future__ import annotations

import numpy as np
import pytest
from secagg_bench import dp_recipe_probe as probe

from fl_core import demo
from fl_core.data import make_federation
from fl_core.demo_config import TEST_FRACTION, DemoConfig
from fl_core.demo_dp import dp_setup
from fl_core.fedavg import run_fedavg
from fl_core.models import flatten

pytest.importorskip("dp_accounting")


def test_recipe_trajectory_is_run_fedavg() -> None:
    seed, epsilon, rounds = 100, 1.0, 3
    model, iterates, _ = probe.trajectory(seed, epsilon, 0, probe.Variant("recipe"), rounds)
    config = DemoConfig(
        aggregation="plain-quantized", hospitals=5, rounds=rounds, dataset="breast-cancer", seed=seed,
        compare=False, dp_epsilon=epsilon,
    )  # fmt: skip
    raw = make_federation(
        config.dataset, 5, partition=config.partition, alpha=config.alpha, test_fraction=TEST_FRACTION,
        rng=np.random.default_rng([seed, demo._SPLIT]),
    )  # fmt: skip
    federation, aggregator = dp_setup(
        config, raw, "plain-quantized", probe._seeded_factory(f"{seed}|{epsilon}|0".encode()), iterates[0].size,
        np.random.default_rng([seed, demo._STANDARDISE]),
    )  # fmt: skip
    result = run_fedavg(
        model, federation.clients, aggregator, federation.test_features, federation.test_labels, config.fedavg()
    )
    assert np.array_equal(flatten(result.params), iterates[-1])


def test_averages_and_schedules() -> None:
    iterates = [np.full(2, float(i)) for i in range(11)]  # initial, then 10 steps
    averaged = probe.averaged_models(iterates)
    assert set(averaged) == set(probe.AVERAGES)
    assert averaged["last"].tolist() == [10.0, 10.0]
    assert averaged["tail3"].tolist() == [9.0, 9.0]
    assert averaged["ema0.5"][0] == pytest.approx(sum(0.5 * 0.5 ** (10 - i) * i for i in range(2, 11)) + 0.5**9)
    assert probe._schedule("cos", 1, 20) == pytest.approx(1.0)
    assert probe._schedule("cos", 20, 20) == pytest.approx(0.1)
    assert [probe._schedule("step", s, 20) for s in (10, 11, 15, 16)] == [1.0, 0.5, 0.5, 0.25]
