"""A state file refused as another plan's names what it records beside this accountant's.

The file records its plan as a digest, with its node count; a digest that differed was refused
as "written for another DP configuration or noise plan", naming no value. The refusal now names
the file's node count beside this plan's, and this plan's parts the digest covers (h, sigma^2,
rounds, clip, sampling rate, dimension), saying the file records those only as the digest.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

pytest.importorskip("dp_accounting")

from secagg.dp import DPConfig, PrivacyAccountant, calibrate
from secagg.errors import ConfigurationError

CONFIG = DPConfig(epsilon=3.0, delta=1e-5, rounds=5, l2_clip=1.0, min_honest=4)


def test_another_plans_file_names_both_node_counts_and_this_plans_parts(tmp_path: Path) -> None:
    # Prepare: a file charged under h = 4 of 5 nodes; an accountant for h = 2 of 3 nodes
    path = tmp_path / "budget.json"
    PrivacyAccountant(calibrate(CONFIG, num_clients=5, scale=1024.0, dimension=31), path).record_round()
    other = calibrate(dataclasses.replace(CONFIG, min_honest=2), num_clients=3, scale=1024.0, dimension=31)
    # Execute
    with pytest.raises(ConfigurationError) as refusal:
        PrivacyAccountant(other, path)
    # Assert: both node counts, this plan's h and dimension, and that the file holds only a digest
    message = str(refusal.value)
    assert "num_clients = 5" in message and "num_clients = 3" in message, message
    assert "h = 2" in message and "dimension = 31" in message and "digest" in message, message
    assert str(path) in message and "new state file" in message, message


def test_another_budgets_file_names_both_budgets(tmp_path: Path) -> None:
    # Control: the budget, which the file records, is named with both values
    path = tmp_path / "budget.json"
    PrivacyAccountant(calibrate(CONFIG, num_clients=5, scale=1024.0, dimension=31), path).record_round()
    other = calibrate(dataclasses.replace(CONFIG, epsilon=4.0), num_clients=5, scale=1024.0, dimension=31)
    with pytest.raises(ConfigurationError) as refusal:
        PrivacyAccountant(other, path)
    message = str(refusal.value)
    assert "epsilon = 3.0" in message and "epsilon = 4.0" in message, message
