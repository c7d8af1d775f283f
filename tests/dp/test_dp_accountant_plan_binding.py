"""A state file charged under one plan is refused to a plan whose noise or account differs in any
one value: the budget (epsilon, delta), rounds, l2 clip, sampling rate, min_honest, dimension,
scale, the preceding releases, or fewer nodes than the file records.

The plan digest binds the budget's declaration and the calibrated noise (variance, dimension,
integer sensitivity, preceding releases); the file records the node count beside it. A reuse under
any other plan would compose rounds of one noise with an account of another (a privacy-budget
hole). Plan B keeps plan A's variance (a recalibrated B would differ in its variance too and be
refused for that alone), so each test pins the binding of its one field. The ring is not in the
account (the noise is added before the ring wraps, and the ring is sized to hold the noised sum),
so it is not in the digest.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("dp_accounting")

from secagg.dp import DPConfig, NoisePlan, PrivacyAccountant, calibrate
from secagg.errors import ConfigurationError

CONFIG = DPConfig(epsilon=3.0, delta=1e-5, rounds=5, l2_clip=1.0, sampling_rate=0.5, min_honest=2)
PLAN_A: dict[str, Any] = {"num_clients": 4, "scale": 1024.0, "dimension": 31}

CONFIG_CHANGES = {
    "epsilon": {"epsilon": 2.5},
    "delta": {"delta": 2e-5},
    "rounds": {"rounds": 6},
    "l2_clip": {"l2_clip": 1.5},
    "sampling_rate": {"sampling_rate": 0.25},
    "no_sampling": {"sampling_rate": None},
    "min_honest": {"min_honest": 3},
}
PLAN_CHANGES = {
    "dimension": {"dimension": 32},
    "scale": {"scale": 2048.0},  # a larger integer sensitivity under the same variance
    "fewer_nodes": {"num_clients": 3},
}


@functools.cache
def _plan_a() -> NoisePlan:
    return calibrate(CONFIG, **PLAN_A)


def _charged(path: Path) -> None:
    PrivacyAccountant(_plan_a(), path).record_round()


@pytest.mark.parametrize("change", CONFIG_CHANGES.values(), ids=list(CONFIG_CHANGES))
def test_a_file_is_refused_to_a_config_differing_in_one_field(tmp_path: Path, change: dict[str, Any]) -> None:
    # Prepare: one round charged under plan A
    path = tmp_path / "budget.json"
    _charged(path)
    before = path.read_bytes()
    other = dataclasses.replace(_plan_a(), config=dataclasses.replace(CONFIG, **change))
    # Execute / Assert: refused, the file untouched
    with pytest.raises(ConfigurationError):
        PrivacyAccountant(other, path)
    assert path.read_bytes() == before


@pytest.mark.parametrize("change", PLAN_CHANGES.values(), ids=list(PLAN_CHANGES))
def test_a_file_is_refused_to_a_plan_differing_in_one_value(tmp_path: Path, change: dict[str, Any]) -> None:
    path = tmp_path / "budget.json"
    _charged(path)
    before = path.read_bytes()
    other = dataclasses.replace(_plan_a(), **change)
    with pytest.raises(ConfigurationError):
        PrivacyAccountant(other, path)
    assert path.read_bytes() == before


def test_a_file_is_refused_to_a_plan_with_other_preceding_releases(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    _charged(path)
    moments = calibrate(dataclasses.replace(CONFIG, rounds=1, sampling_rate=None), **PLAN_A)
    other = dataclasses.replace(_plan_a(), preceding=((moments, 1),))
    with pytest.raises(ConfigurationError):
        PrivacyAccountant(other, path)


def test_control_the_same_plan_goes_on_with_the_file(tmp_path: Path) -> None:
    # Control: the very plan (and a plan for more nodes, an over-count) reopens the file and counts on
    path = tmp_path / "budget.json"
    _charged(path)
    assert PrivacyAccountant(calibrate(CONFIG, **PLAN_A), path).num_releases == 1
    assert PrivacyAccountant(calibrate(CONFIG, **{**PLAN_A, "num_clients": 5}), path).num_releases == 1
