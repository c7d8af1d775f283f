"""A restarted Flower server refused its DP state file as "another plan" names what differs.

The file records its plan's node count and digest; a server's h (the honest contributions in
the smallest sum a round releases) follows its first round's node count and guarantee, and
enters the digest. A restart whose h differs from the file's was refused as "written for another
DP configuration or noise plan", naming neither. The refusal now names the file's node count and
h beside this server's, and the way on: ``DPConfig.min_honest`` set to the file's h when that
is fewer (its noise suffices), or rounds whose sums hold the file's h, or a new budget.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

pytest.importorskip("flwr")
pytest.importorskip("dp_accounting")

from secagg.dp import DPConfig
from secagg.errors import ConfigurationError
from secagg.guarantee import Guarantee
from secagg.integrations.flower.dp import DPRounds
from secagg.masking import SEMI_HONEST, MaskingConfig

CONFIG = DPConfig(epsilon=2.0, delta=1e-5, rounds=3, l2_clip=1.0)  # h follows each round's nodes
DIMENSION = 10
EVERY_NODE_HONEST = Guarantee(colluders=0, dropouts=0, lying_server=False)  # h = n


def _plan_round(rounds: DPRounds, nodes: int, guarantee: Guarantee | None = None) -> None:
    guarantee = guarantee or MaskingConfig.secagg(nodes, DIMENSION, mode=SEMI_HONEST).guarantee  # h = 2
    rounds.plan_round(nodes, DIMENSION, guarantee, 100, None)


def _charged(path: Path, nodes: int, guarantee: Guarantee | None = None) -> DPRounds:
    rounds = DPRounds(CONFIG, path)
    _plan_round(rounds, nodes, guarantee)
    assert rounds.charge(1, nodes) is None
    return rounds


def test_a_restart_with_fewer_honest_names_both_counts_and_both_h(tmp_path: Path) -> None:
    # Prepare: charged under h = 5 of 5 nodes; the restarted server's first round has 3 nodes, h = 2
    path = tmp_path / "accountant.json"
    _charged(path, 5, EVERY_NODE_HONEST)
    restarted = DPRounds(CONFIG, path)
    # Execute
    with pytest.raises(ConfigurationError) as refusal:
        _plan_round(restarted, 3)
    # Assert: the file's count and h, this server's, and no advice to lower min_honest (unsafe here)
    message = str(refusal.value)
    assert "h = 5 honest of 5 nodes" in message and "3 nodes" in message and "h = 2" in message, message
    assert "min_honest = 5" not in message and "new state file" in message, message
    assert restarted.accountant is None


def test_a_restart_with_more_honest_names_both_h_and_the_setting_that_goes_on(tmp_path: Path) -> None:
    # Prepare: charged under h = 2 of 3 nodes; the restarted server's first round has 5 nodes, h = 5
    path = tmp_path / "accountant.json"
    _charged(path, 3)
    restarted = DPRounds(CONFIG, path)
    # Execute
    with pytest.raises(ConfigurationError) as refusal:
        _plan_round(restarted, 5, EVERY_NODE_HONEST)
    message = str(refusal.value)
    # Assert: both h and counts, and the setting that takes the file's plan
    assert "h = 2 honest of 3 nodes" in message and "5 nodes" in message and "h = 5" in message, message
    assert "DPConfig.min_honest = 2" in message, message
    # ... which does go on under the file's plan
    again = DPRounds(dataclasses.replace(CONFIG, min_honest=2), path)
    _plan_round(again, 5, EVERY_NODE_HONEST)
    assert again.plan is not None and again.plan.honest == 2  # n is not in the digest: taken over for 5
    assert again.accountant is not None and again.accountant.num_releases == 1


def test_a_restart_under_another_configuration_says_h_is_not_the_difference(tmp_path: Path) -> None:
    # Prepare: charged with 3 rounds declared; restarted with 4 (same budget, same nodes)
    path = tmp_path / "accountant.json"
    _charged(path, 3)
    restarted = DPRounds(dataclasses.replace(CONFIG, rounds=4), path)
    # Execute
    with pytest.raises(ConfigurationError) as refusal:
        _plan_round(restarted, 3)
    # Assert: no h gives the file's plan: it names the parts of the plan the file records only as a digest
    message = str(refusal.value)
    assert "No honest count" in message and "rounds" in message and "dimension" in message, message
