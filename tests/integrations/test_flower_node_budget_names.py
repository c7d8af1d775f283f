"""A node's DP budget refusals name its state file with the name's unprintable characters escaped.

The refusals reach the node's log only (its reply to the server carries a code), but the file's
name, or a folder's on its path, may be chosen by another local user: a line break in it would
forge a line of that log, an escape sequence repaint the operator's terminal.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("flwr")
pytest.importorskip("dp_accounting")

from flwr.app import Context, RecordDict

from secagg.dp import DPConfig, calibrate
from secagg.errors import BudgetExceededError, ConfigurationError
from secagg.integrations.flower.node_budget import charge_node_budget, check_node_budget

FORGED = "budgets\nERROR:secagg.flower:node 9: all is well\x1b[2J"
PLAN = calibrate(DPConfig(epsilon=1.0, delta=1e-5, rounds=1, l2_clip=1.0, min_honest=2), num_clients=3,
                 scale=256.0, dimension=10)  # fmt: skip
MINE, OTHERS = b"\x01" * 32, b"\x02" * 32


def _context() -> Context:
    return Context(77, 1, {}, RecordDict(), {})


def _words(error: pytest.ExceptionInfo[Exception]) -> str:
    text = str(error.value)
    assert "\n" not in text and "\x1b" not in text, text
    return text


def test_a_missing_folder_with_a_line_break_in_its_name_is_escaped(tmp_path: Path) -> None:
    path = tmp_path / FORGED / "node.dp-budget.json"
    with pytest.raises(ConfigurationError, match="cannot open the directory") as error:
        charge_node_budget(_context(), PLAN, str(path), holder=MINE)
    assert "\\n" in _words(error)


def test_another_nodes_and_a_spent_budget_in_such_a_folder_are_escaped(tmp_path: Path) -> None:
    # Prepare: the budget file, in a folder whose name holds a line break, charged once (rounds=1)
    folder = tmp_path / FORGED
    folder.mkdir()
    path = str(folder / "node.dp-budget.json")
    charge_node_budget(_context(), PLAN, path, holder=MINE)
    # Execute / Assert: another node's key, then the spent budget
    with pytest.raises(ConfigurationError, match="another node's budget") as other:
        check_node_budget(_context(), PLAN, path, holder=OTHERS)
    with pytest.raises(BudgetExceededError) as spent:
        check_node_budget(_context(), PLAN, path, holder=MINE)
    assert "\\n" in _words(other) and "\\n" in _words(spent)
