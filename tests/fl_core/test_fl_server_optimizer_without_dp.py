"""FedAvgConfig's server optimiser applies to DP rounds only (the server's step on the noised
mean gradient); a non-DP run adds the mean update as it is. Asked for without a DPAggregator, it
would have no effect, so run_fedavg refuses it before the first round instead of ignoring it."""

from __future__ import annotations

import numpy as np
import pytest

from fl_core import ClientData, FedAvgConfig, LogisticRegression, make_aggregator, run_fedavg
from secagg.errors import ConfigurationError


def _run(config: FedAvgConfig) -> float:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(np.int64)
    clients = [ClientData(k, x[10 * k : 10 * k + 10], y[10 * k : 10 * k + 10]) for k in range(4)]
    result = run_fedavg(LogisticRegression(num_features=3), clients, make_aggregator("plain", num_clients=4),
                        x, y, config)
    return result.final_accuracy


@pytest.mark.parametrize(
    "config",
    [FedAvgConfig(rounds=1, server_momentum=0.9), FedAvgConfig(rounds=1, server_optimizer="adam")],
    ids=["momentum", "adam"],
)
def test_a_server_optimizer_without_dp_is_refused_not_ignored(config: FedAvgConfig) -> None:
    with pytest.raises(ConfigurationError, match=r"DP rounds only .*DPAggregator"):
        _run(config)


def test_the_default_server_step_runs_without_dp() -> None:
    assert 0.0 <= _run(FedAvgConfig(rounds=1)) <= 1.0
