"""A node's DP budget lives in a state file by default: a DP round without one is refused.

Without a state file (the mod's ``dp_state_file`` or the node config's ``dp-state-file``) a node
keeps its DP budget in ``context.state``, which a restart or a new Flower run forgets: a server
could start a new run and collect the hospital's whole epsilon again, run after run. The default
policy (``require_dp_state_file=True``, whatever ``require_dp`` says) refuses such a DP round at
setup, before the node trains or charges anything, naming the fix (``dp-state-file``) and the
opt-out by name (``NodePolicy(require_dp_state_file=False)``: a budget per run). A node with a
state file takes part; one that opts out takes part with its budget in ``context.state``; a round
without DP is unaffected.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("dp_accounting")

from secagg.dp import SeededRandomSource
from secagg.errors import ConfigurationError
from secagg.integrations.flower import NodePolicy, SecAggGrid
from secagg.integrations.flower.node_budget import BUDGET_KEY

from . import test_integrations_flower_paillier_dp as paillier_dp
from .flower_harness import Audit, FakeGrid
from .test_integrations_flower_clipping_dp import DP, NODES, app, options, per_example_clipped_delta, run

pytestmark = pytest.mark.usefixtures("server_identity")

SEMI_HONEST = NodePolicy(allow_semi_honest=True)
POLICIES = {
    "default": SEMI_HONEST,
    "require-dp": NodePolicy(allow_semi_honest=True, require_dp=True),
}
"""The default policy refuses a DP round without a state file, and so does one that requires DP."""


def _counting(trained: list[int]) -> Callable[[int, str, np.ndarray], np.ndarray]:
    def delta(node: int, name: str, array: np.ndarray) -> np.ndarray:
        trained.append(node)
        return per_example_clipped_delta(node, name, array)

    return delta


def _masking_grid(trained: list[int], audit: Audit, **mod_options: object) -> FakeGrid:
    return FakeGrid({
        node: app(node, _counting(trained), audit, noise_source=SeededRandomSource(node.to_bytes(32, "big")),
                  **mod_options)
        for node in NODES
    })  # fmt: skip


def _refusal_names_the_fix_and_the_opt_out(reason: str) -> None:
    assert "dp-state-file" in reason and "NodePolicy(require_dp_state_file=False)" in reason, reason
    assert "new run" in reason, reason


def _refused_by_every_node(secure: Any, grid: Any, trained: list[Any], audit: Any) -> None:
    """Every node refused the setup, naming the fix and the opt-out; nothing trained, charged or sent."""
    (report,) = secure.reports
    assert report.aggregate is None
    assert set(report.errors) == set(NODES), report.errors
    for reason in report.errors.values():
        _refusal_names_the_fix_and_the_opt_out(reason)
    assert not trained and not audit.records
    assert all(BUDGET_KEY not in grid.states[node] for node in NODES)


def test_the_default_policy_requires_a_dp_state_file() -> None:
    assert NodePolicy().require_dp_state_file is True
    assert NodePolicy(require_dp=False).require_dp_state_file is True


@pytest.mark.parametrize("policy", POLICIES.values(), ids=list(POLICIES))
def test_a_masking_node_without_a_state_file_refuses_a_dp_round_before_training_and_charges_nothing(
    policy: NodePolicy,
) -> None:
    # Prepare: nodes under the default policy (or require_dp), no dp_state_file, no dp-state-file
    trained: list[int] = []
    audit = Audit()
    grid = _masking_grid(trained, audit, policy=policy)
    secure = SecAggGrid(grid, options(dp=DP))
    # Execute
    run(secure)
    # Assert: refused at setup by every node, naming the fix and the opt-out; nothing trained, charged, sent
    _refused_by_every_node(secure, grid, trained, audit)


def test_a_masking_node_with_a_state_file_takes_part_in_a_dp_round(tmp_path: Path) -> None:
    # Prepare: each node names its own budget file through the mod
    trained: list[int] = []
    audit = Audit()
    apps = {
        node: app(node, _counting(trained), audit, noise_source=SeededRandomSource(node.to_bytes(32, "big")),
                  policy=SEMI_HONEST, dp_state_file=tmp_path / f"node-{node % 1000}.json")
        for node in NODES
    }  # fmt: skip
    secure = SecAggGrid(FakeGrid(apps), options(dp=DP))
    # Execute
    run(secure)
    # Assert: aggregated; every node charged its file, not context.state
    (report,) = secure.reports
    assert report.aggregate is not None and not report.errors, report.errors
    assert set(audit.of_round(1)) == set(NODES)
    assert all((tmp_path / f"node-{node % 1000}.json").exists() for node in NODES)


def test_a_masking_node_that_opts_out_by_name_keeps_its_budget_in_context_state() -> None:
    # Prepare: the named opt-out
    trained: list[int] = []
    audit = Audit()
    grid = _masking_grid(trained, audit, policy=NodePolicy(allow_semi_honest=True, require_dp_state_file=False))
    secure = SecAggGrid(grid, options(dp=DP))
    # Execute
    run(secure)
    # Assert: aggregated, each node's budget in its context.state (one run's)
    (report,) = secure.reports
    assert report.aggregate is not None and not report.errors, report.errors
    assert all(BUDGET_KEY in grid.states[node] for node in NODES)


@pytest.mark.filterwarnings("ignore::secagg.segments.ClippingWarning")  # the delta is the DP test's, beyond the clip
def test_a_round_without_dp_is_unaffected_by_the_default() -> None:
    trained: list[int] = []
    grid = _masking_grid(trained, Audit(), policy=SEMI_HONEST)
    secure = SecAggGrid(grid, options())
    run(secure)
    (report,) = secure.reports
    assert report.aggregate is not None and not report.errors, report.errors
    assert set(trained) == set(NODES)


@pytest.fixture
def paillier_trained(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every node that trained (the Paillier test app's training function, counted)."""
    trained: list[int] = []
    monkeypatch.setattr(paillier_dp, "per_example_clipped_delta", _counting(trained))
    return trained


@pytest.mark.parametrize("require_dp", [False, True], ids=["default", "require-dp"])
def test_a_paillier_node_without_a_state_file_refuses_a_dp_round_before_training_and_charges_nothing(
    tmp_path: Path, paillier_trained: list[int], require_dp: bool
) -> None:
    # Prepare: the 3-of-5 key accepted by name; otherwise the default policy, no state file
    audit = Audit()
    grid, secure = paillier_dp.dp_grid(
        tmp_path, audit, NodePolicy(min_colluders=0, require_dp=require_dp), state_files=False
    )
    # Execute
    paillier_dp.run(secure)
    # Assert
    _refused_by_every_node(secure, grid, paillier_trained, audit)
    assert paillier_dp.DECRYPT not in paillier_dp.stages_sent(grid)


@pytest.mark.slow  # a heavy Flower round: CI runs it in the slow suite, beside the default suite
def test_a_paillier_node_with_a_node_config_state_file_takes_part(tmp_path: Path, paillier_trained: list[int]) -> None:
    # Prepare: each node's config names its dp-state-file
    grid, secure = paillier_dp.dp_grid(tmp_path, None, NodePolicy(min_colluders=0), state_files=False)
    files = {node: tmp_path / f"budget-{node % 1000}.json" for node in NODES}
    grid.node_configs.update({node: {"dp-state-file": str(path)} for node, path in files.items()})
    # Execute
    paillier_dp.run(secure)
    # Assert
    (report,) = secure.reports
    assert report.aggregate is not None and not report.errors, report.errors
    assert set(paillier_trained) == set(NODES)
    assert all(path.exists() for path in files.values())
    assert all(BUDGET_KEY not in grid.states[node] for node in NODES)


@pytest.mark.slow  # a heavy Flower round: CI runs it in the slow suite, beside the default suite
def test_a_paillier_node_that_opts_out_by_name_keeps_its_budget_in_context_state(
    tmp_path: Path, paillier_trained: list[int]
) -> None:
    policy = NodePolicy(min_colluders=0, require_dp_state_file=False)
    grid, secure = paillier_dp.dp_grid(tmp_path, None, policy, state_files=False)
    paillier_dp.run(secure)
    (report,) = secure.reports
    assert report.aggregate is not None and not report.errors, report.errors
    assert all(BUDGET_KEY in grid.states[node] for node in NODES)


@pytest.mark.parametrize("value", ["false", "no", 0, 1, None], ids=["str-false", "str-no", "zero", "one", "none"])
def test_the_policy_refuses_a_require_dp_state_file_that_is_not_a_bool(value: object) -> None:
    # A 0 or None read by truthiness would turn the default refusal off without naming the opt-out.
    with pytest.raises(ConfigurationError, match="require_dp_state_file must be a bool"):
        NodePolicy(require_dp_state_file=value)  # type: ignore[arg-type]
