"""The accountant's state file records the node count its plan was fixed for.

The DP digest a state file binds (``plan_digest``: epsilon, delta, rounds, l2 clip, sampling
rate, h, sigma^2, dimension, sensitivity) leaves out the plan's ``num_clients`` n, and n shapes
the accounting: the refusal residual counts rounds x n x d noised coordinates
(:meth:`NoisePlan.tail_coordinates`). A file charged under a plan for 5 nodes, loaded under the
same digest with a plan for 3, went on accounting its released rounds as 3-node rounds (an
under-count of the residual). The digest is wire-visible (the session descriptor, spec.md's
pinned example), so the count is bound in the file's record instead: a plan for fewer nodes
than the file's is refused naming both counts; one for more is accepted (its residual
over-counts the released rounds) and the next write records it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

pytest.importorskip("dp_accounting")

from secagg.dp import DPConfig, NoisePlan, PrivacyAccountant, calibrate
from secagg.errors import ConfigurationError, DecodeError

CONFIG = DPConfig(epsilon=3.0, delta=1e-5, rounds=5, l2_clip=1.0, min_honest=2)


@pytest.fixture(scope="module")
def plans() -> tuple[NoisePlan, NoisePlan]:
    """One plan for 5 nodes and the same noise (same digest) for 3."""
    five = calibrate(CONFIG, num_clients=5, scale=1024.0, dimension=31)
    return five, dataclasses.replace(five, num_clients=3)


def _charged(plan: NoisePlan, path: Path, rounds: int) -> bytes:
    accountant = PrivacyAccountant(plan, path)
    for server_round in range(1, rounds + 1):
        accountant.record_round(server_round)
    return path.read_bytes()


def test_the_file_records_the_plans_node_count(plans: tuple[NoisePlan, NoisePlan], tmp_path: Path) -> None:
    five, _ = plans
    state = json.loads(_charged(five, tmp_path / "budget.json", 1))
    assert state["num_clients"] == 5 and state["version"] == 2
    assert PrivacyAccountant(five).state_dict()["num_clients"] == 5


def test_a_file_charged_under_a_plan_for_more_nodes_is_refused_naming_both_counts(
    plans: tuple[NoisePlan, NoisePlan], tmp_path: Path
) -> None:
    # Prepare: two rounds charged under the plan for 5 nodes; the digests agree
    five, three = plans
    assert five.config.digest(five) == three.config.digest(three)
    path = tmp_path / "budget.json"
    before = _charged(five, path, 2)
    # Execute / Assert: the plan for 3 nodes would account those rounds as 3-node rounds
    with pytest.raises(ConfigurationError) as refusal:
        PrivacyAccountant(three, path)
    message = str(refusal.value)
    assert "5 nodes" in message and "3" in message and str(path) in message, message
    assert path.read_bytes() == before  # nothing written


def test_a_file_charged_under_a_plan_for_fewer_nodes_goes_on_over_counted(
    plans: tuple[NoisePlan, NoisePlan], tmp_path: Path
) -> None:
    # Prepare: two rounds charged under the plan for 3 nodes
    five, three = plans
    path = tmp_path / "budget.json"
    _charged(three, path, 2)
    # Execute: the plan for 5 nodes takes the file over and charges a round
    accountant = PrivacyAccountant(five, path)
    assert accountant.num_releases == 2 and accountant.last_round == 2
    accountant.record_round(3)
    # Assert: its spend bounds the 3-node plan's from above, and the file now records 5 nodes
    assert accountant.get_epsilon() >= PrivacyAccountant(three).plan.epsilon_at(CONFIG.delta, 3)
    assert json.loads(path.read_text())["num_clients"] == 5
    with pytest.raises(ConfigurationError, match="5 nodes"):
        PrivacyAccountant(three, path)


@pytest.mark.parametrize("count", [0, -1, 1.0, True, "5", None, 1 << 40, 1 << 63])
def test_a_malformed_node_count_is_refused(plans: tuple[NoisePlan, NoisePlan], tmp_path: Path, count: object) -> None:
    five, _ = plans
    path = tmp_path / "budget.json"
    state = json.loads(_charged(five, path, 1))
    state["num_clients"] = count
    path.write_text(json.dumps(state))
    with pytest.raises(DecodeError, match="num_clients"):
        PrivacyAccountant(five, path)


def test_a_version_1_file_without_the_count_is_refused_naming_the_fix(
    plans: tuple[NoisePlan, NoisePlan], tmp_path: Path
) -> None:
    # Prepare: a file of the previous format (no num_clients, version 1)
    five, _ = plans
    path = tmp_path / "budget.json"
    state = json.loads(_charged(five, path, 1))
    del state["num_clients"]
    state["version"] = 1
    path.write_text(json.dumps(state))
    before = path.read_bytes()
    # Execute / Assert: refused, naming the field to add, the file left as it is
    with pytest.raises(DecodeError) as refusal:
        PrivacyAccountant(five, path)
    message = str(refusal.value)
    assert "version 1" in message and '"num_clients"' in message and str(path) in message, message
    assert path.read_bytes() == before
