"""What the state-file folder and lock tests share: one small plan and the accountant's refusal text."""

from __future__ import annotations

from pathlib import Path

import pytest

from secagg.dp import DPConfig, NoisePlan, PrivacyAccountant, calibrate
from secagg.errors import ConfigurationError

CONFIG = DPConfig(epsilon=3.0, delta=1e-5, rounds=5, l2_clip=1.0, min_honest=4)


def small_plan() -> NoisePlan:
    """5 nodes, 31 coordinates: calibrated in milliseconds, enough to open a state file."""
    return calibrate(CONFIG, num_clients=5, scale=1024.0, dimension=31)


def refusal(plan: NoisePlan, path: Path) -> str:
    """The ConfigurationError's text when an accountant is opened on ``path``; fails if none is raised."""
    with pytest.raises(ConfigurationError) as raised:
        PrivacyAccountant(plan, path)
    return str(raised.value)
