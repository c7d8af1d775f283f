"""A node's DP budget record across rounds of different node counts.

A node rebuilds the plan of each round from the bound parameters, with that round's node count n
(``read_dp``: ``num_clients = max(n, h)``), and n is not in the DP digest the budget is bound
to. Its budget's refusal residual counts rounds x n x d noised coordinates: a round with fewer
nodes than an earlier one accounted the earlier contributions as rounds of the smaller count.
The budget (the state file, or ``context.state``) now records the largest count it was charged
under, and each round's plan is accounted at least at that count (an over-count, never an
under-count), so a round with fewer nodes is still charged, not refused.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

pytest.importorskip("flwr")
pytest.importorskip("dp_accounting")

from flwr.app import ConfigRecord, Context, RecordDict

from secagg.dp import DPConfig, PrivacyAccountant, calibrate
from secagg.dp.calibration import NoisePlan
from secagg.errors import BudgetExceededError, ProtocolError
from secagg.integrations.flower.node_budget import BUDGET_KEY, charge_node_budget, check_node_budget

CONFIG = DPConfig(epsilon=2.0, delta=1e-5, rounds=3, l2_clip=1.0, min_honest=2)


@pytest.fixture(scope="module")
def plans() -> dict[int, NoisePlan]:
    """The plan of rounds of 3, 5 and 7 nodes, as a node rebuilds it (one digest, another n)."""
    five = calibrate(CONFIG, num_clients=5, scale=256.0, dimension=17)
    return {n: dataclasses.replace(five, num_clients=n) for n in (3, 5, 7)}


def _context() -> Context:
    return Context(1, 7, {}, RecordDict(), {})


def test_a_state_file_is_charged_at_the_largest_node_count_it_has_seen(
    tmp_path: Path, plans: dict[int, NoisePlan]
) -> None:
    # Prepare / Execute: rounds of 5, then 3 nodes, charged to one file from fresh contexts
    path = str(tmp_path / "budget.json")
    charge_node_budget(_context(), plans[5], path)
    check_node_budget(_context(), plans[3], path)
    charge_node_budget(_context(), plans[3], path)
    # Assert: both charged; the file records 5 nodes, and its spend is the 5-node plan's
    state = json.loads(Path(path).read_text())
    assert state["released"] == 2 and state["num_clients"] == 5
    assert PrivacyAccountant(plans[5], path).get_epsilon() == plans[5].epsilon_at(CONFIG.delta, 2)
    # ... a round of 7 nodes raises the count; the budget's third contribution is the last
    charge_node_budget(_context(), plans[7], path)
    assert json.loads(Path(path).read_text())["num_clients"] == 7
    with pytest.raises(BudgetExceededError):
        check_node_budget(_context(), plans[3], path)


def test_a_run_budget_is_charged_at_the_largest_node_count_it_has_seen(plans: dict[int, NoisePlan]) -> None:
    # Prepare / Execute: one run's context.state, rounds of 5 then 3 nodes
    context = _context()
    charge_node_budget(context, plans[5], None)
    charge_node_budget(context, plans[3], None)
    # Assert: the record keeps 5
    record = context.state[BUDGET_KEY]
    assert isinstance(record, ConfigRecord) and record["released"] == 2 and record["num_clients"] == 5


@pytest.mark.parametrize("count", [0, -3, True, 2.0, "5"])
def test_a_malformed_stored_node_count_is_refused(plans: dict[int, NoisePlan], count: object) -> None:
    context = _context()
    charge_node_budget(context, plans[5], None)
    record = context.state[BUDGET_KEY]
    assert isinstance(record, ConfigRecord)
    context.state[BUDGET_KEY] = ConfigRecord({**record, "num_clients": count})  # type: ignore[dict-item]
    with pytest.raises(ProtocolError, match="malformed"):
        check_node_budget(context, plans[5], None)
