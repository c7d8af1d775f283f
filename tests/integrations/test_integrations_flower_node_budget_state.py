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
import logging
from pathlib import Path

import pytest

pytest.importorskip("flwr")
pytest.importorskip("dp_accounting")

from flwr.app import ConfigRecord, Context, RecordDict

from secagg.dp import DPConfig, PrivacyAccountant, calibrate
from secagg.dp.calibration import NoisePlan
from secagg.errors import BudgetExceededError, ConfigurationError, DecodeError, ProtocolError
from secagg.integrations.flower.node_budget import BUDGET_KEY, charge_node_budget, check_node_budget

from . import test_integrations_flower_paillier_dp as paillier_dp
from .flower_harness import node_identity_key
from .test_integrations_flower_clipping_dp import NODES
from .test_integrations_flower_node_budget import dp_round

pytestmark = pytest.mark.usefixtures("server_identity")

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


# --- The budget file is one hospital's: bound to the node's identity key -------------------------


def test_a_node_refuses_another_nodes_budget_file_naming_both_identity_keys(
    tmp_path: Path, plans: dict[int, NoisePlan]
) -> None:
    # Prepare: node A's file, charged once under A's identity key
    alice, bob = node_identity_key(NODES[0]).public, node_identity_key(NODES[1]).public
    path = tmp_path / "hospital-a.dp-budget.json"
    charge_node_budget(_context(), plans[5], str(path), holder=alice)
    before = path.read_bytes()
    # Execute / Assert: node B (another key), and a node without one, refuse it at setup and at the charge
    for holder, named in ((bob, bob.hex()[:16]), (None, "no identity key")):
        for refuse in (check_node_budget, charge_node_budget):
            with pytest.raises(ConfigurationError) as refusal:
                refuse(_context(), plans[5], str(path), holder=holder)
            message = str(refusal.value)
            assert alice.hex()[:16] in message and named in message and str(path) in message, message
    assert path.read_bytes() == before


def test_swapped_budget_files_are_refused_by_both_nodes_and_left_unchanged(
    tmp_path: Path, plans: dict[int, NoisePlan], caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: a Paillier DP federation (every node has an identity key); an operator swapped the
    # budget files of its first two nodes, each bound to the other's identity key (by a charge)
    grid, secure = paillier_dp.dp_grid(tmp_path)
    a, b = paillier_dp.NODES[:2]
    files = {a: tmp_path / "budget-b.json", b: tmp_path / "budget-a.json"}
    for node, owner in ((a, b), (b, a)):
        charge_node_budget(_context(), plans[5], str(files[node]), holder=node_identity_key(owner).public)
        grid.node_configs[node] = {"dp-state-file": str(files[node])}
    before = {node: path.read_bytes() for node, path in files.items()}
    # Execute
    with caplog.at_level(logging.ERROR, logger="secagg.flower"):
        report = dp_round(secure, 1)
    # Assert: both refuse at setup (the reply carries the code only, the node's log names the
    # identity key), and neither file is charged
    assert caplog.text.count("another node's budget") >= 2, caplog.text
    for node in (a, b):
        reason = report.errors.get(node, "")
        assert "local configuration error (this node's DP budget)" in reason, report.errors
        assert "another node's budget" not in reason and str(files[node]) not in reason, report.errors
        assert files[node].read_bytes() == before[node]


def test_a_malformed_or_version_1_node_file_is_refused_naming_the_file(
    tmp_path: Path, plans: dict[int, NoisePlan]
) -> None:
    # Prepare: a node's file, then rewritten in the previous format, then with a malformed holder
    holder = node_identity_key(NODES[0]).public
    path = tmp_path / "budget.json"
    charge_node_budget(_context(), plans[5], str(path), holder=holder)
    state = json.loads(path.read_text())
    old = {k: v for k, v in state.items() if k not in ("num_clients", "holder")} | {"version": 1}
    for content, named in ((old, "version 1"), (state | {"holder": holder.hex().upper()}, "holder")):
        path.write_text(json.dumps(content))
        before = path.read_bytes()
        # Execute / Assert: a library error naming the file (and not "another node's budget")
        with pytest.raises(DecodeError) as refusal:
            check_node_budget(_context(), plans[5], str(path), holder=holder)
        message = str(refusal.value)
        assert str(path) in message and named in message and "another node" not in message, message
        assert path.read_bytes() == before


@pytest.mark.parametrize("content", [b"{not json", b"[]", b'{"format": "secagg/dp-accountant", "version": 2}'])
def test_an_unreadable_node_file_is_refused_naming_the_file_and_the_way_on(
    tmp_path: Path, plans: dict[int, NoisePlan], content: bytes
) -> None:
    # Prepare: a node's budget file, then corrupted (not JSON, not an object, fields missing)
    holder = node_identity_key(NODES[0]).public
    path = tmp_path / "budget.json"
    charge_node_budget(_context(), plans[5], str(path), holder=holder)
    path.write_bytes(content)
    # Execute / Assert: at setup and at the charge, a library error naming the file and what the
    # operator does (as the server's unreadable file does); the file is left as it is
    for refuse in (check_node_budget, charge_node_budget):
        with pytest.raises(DecodeError) as refusal:
            refuse(_context(), plans[5], str(path), holder=holder)
        message = str(refusal.value)
        assert str(path) in message and "backup" in message and "new budget" in message, message
        assert path.read_bytes() == content
