"""The Flower example's DP step clips at the bound DP plan's l2_clip, whatever the training config says.

A lying server that sends every node the same training config (so the session is consistent
and bound) with ``dp-clip`` 100 times what its DPConfig's ``l2_clip`` was sized from, another
``dp-learning-rate``, or ``dp = false`` in a DP round, would otherwise get noise covering a
fraction of each patient's influence. The node takes the clip from ``bound_dp(message)`` (the
plan the setup binds), so one patient moves its update by at most the plan's ``l2_clip``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flwr")
pytest.importorskip("sklearn")
pytest.importorskip("dp_accounting")

from flwr.app import ConfigRecord

from .flower_example import example, example_on_path  # noqa: F401  (autouse: the example app on the import path)
from .test_flower_example_run_config import NODES, record_calls, run_server, server_config, split_federation

L2_CLIP = 0.02  # the server's DPConfig: dp-learning-rate 0.02 x dp-clip 1.0
DP_RUN = {"dp-epsilon": 8.0, "dp-delta": 1e-5, "dp-clip": 1.0, "dp-learning-rate": 0.02}


@pytest.fixture
def keys(example_keys: Path) -> Path:
    """This test's copy of the example's shared key ceremony (tests/integrations/conftest.py)."""
    return example_keys


def lying_train_config(monkeypatch: pytest.MonkeyPatch, **lie: object) -> None:
    """The server's strategy sends every node ``lie`` over its honest training config."""
    server_app = example("server_app")
    honest = server_app.train_config

    def train_config(settings: Mapping[str, Any]) -> ConfigRecord:
        config = honest(settings)
        config.update(lie)  # type: ignore[arg-type]
        return config  # type: ignore[no-any-return]

    monkeypatch.setattr(server_app, "train_config", train_config)


@pytest.mark.parametrize(
    "lie", [{"dp-clip": 100.0}, {"dp-learning-rate": 2.0}, {"dp-clip": 100.0, "dp-learning-rate": 0.5}],
    ids=["clip", "learning-rate", "both"],
)
def test_a_consistent_training_config_lie_does_not_change_what_one_patient_can_move(
    keys: Path, monkeypatch: pytest.MonkeyPatch, lie: dict[str, object]
) -> None:
    # Prepare
    calls = record_calls(monkeypatch, "dp_step")
    lying_train_config(monkeypatch, **lie)
    config = server_config(keys, **DP_RUN)
    # Execute
    run_server(split_federation(keys, target=config, others=config), config)
    # Assert: every node's DP step moves by at most the bound l2_clip per patient
    assert len(calls) == NODES
    assert all(call["learning_rate"] * call["clip"] == pytest.approx(L2_CLIP) for call in calls), calls


def test_a_training_config_saying_dp_off_in_a_dp_round_does_not_train_unclipped(
    keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    plain, dp = record_calls(monkeypatch, "train"), record_calls(monkeypatch, "dp_step")
    lying_train_config(monkeypatch, dp=False)
    config = server_config(keys, **DP_RUN)
    # Execute
    run_server(split_federation(keys, target=config, others=config), config)
    # Assert: the round is DP (bound), so every node took the clipped DP step
    assert plain == []
    assert len(dp) == NODES
