"""The fl_core FedAvg binding tests' shared run: round 1's bound masking config of a short FedAvg
run over five hospitals, to split one value between hospital 1 and the others."""

from __future__ import annotations

from typing import Any

import numpy as np

from fl_core.aggregators.masking import MaskingAggregator
from fl_core.aggregators.quantizer import WeightedQuantizer
from fl_core.data import ClientData
from fl_core.fedavg import FedAvgConfig, run_fedavg
from secagg.masking import ACTIVE, MaskingConfig
from secagg.primitives.randomness import InsecureDeterministicRandom
from tests.masking.split_session import bound_config

HOSPITALS = (1, 2, 3, 4, 5)


def fedavg_clients(features: int) -> list[ClientData]:
    """Every hospital's 16 patients of ``features`` features (the same data for every run)."""
    rng = np.random.default_rng(0)
    return [ClientData(h, rng.normal(size=(16, features)), rng.integers(0, 2, size=16)) for h in HOSPITALS]


def bound_round(model: Any, config: FedAvgConfig) -> tuple[MaskingConfig, dict[int, Any]]:
    """Round 1's bound config of a FedAvg run of ``model`` under ``config``, in one named run
    (identity keys from one deterministic source, as the same hospitals would hold)."""
    aggregator = MaskingAggregator(
        WeightedQuantizer.create(len(HOSPITALS), max_samples_per_client=64), mode=ACTIVE, clipping="fixed",
        run_id=7, random_bytes=InsecureDeterministicRandom(b"hospitals"),
    )  # fmt: skip
    rng = np.random.default_rng(1)
    features = model.num_features
    test_x, test_y = rng.normal(size=(8, features)), rng.integers(0, 2, 8)
    return bound_config(
        aggregator, lambda: run_fedavg(model, fedavg_clients(features), aggregator, test_x, test_y, config), HOSPITALS
    )
