"""The h search of a restarted server's "another plan" refusal: when it runs, and what it concludes.

:func:`secagg.integrations.flower._dp_state.another_plan` calibrates the server's configuration
for each h up to :data:`~secagg.integrations.flower._dp_state.MAX_HONEST_SEARCHED` at the file's
node count to find the file's h. It ran (up to 128 calibrations) after any ConfigurationError
of the accountant whose file's digest differed, a budget that differs too, and appended "no h
gives the file's plan: it was charged under another configuration (rounds, clip, sampling rate,
dimension)" beside the budget's refusal, which the budget explains; and past the bound it
concluded the same, though the file's h may be one it did not try. It now runs only on the plan's
own refusal, and says which h it did not try.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

pytest.importorskip("flwr")
pytest.importorskip("dp_accounting")

from secagg.errors import ConfigurationError
from secagg.guarantee import Guarantee
from secagg.integrations.flower import _dp_state
from secagg.integrations.flower.dp import DPRounds

from .test_integrations_flower_dp_restart_plan import CONFIG, EVERY_NODE_HONEST, _charged, _plan_round


def _refusal(rounds: DPRounds, nodes: int, guarantee: Guarantee | None = None) -> str:
    with pytest.raises(ConfigurationError) as refusal:
        _plan_round(rounds, nodes, guarantee)
    assert rounds.accountant is None
    return str(refusal.value)


def test_a_restart_under_another_budget_is_refused_for_the_budget_without_an_h_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: charged under epsilon = 2 (3 nodes); restarted with epsilon = 3, same nodes and h
    path = tmp_path / "accountant.json"
    _charged(path, 3)
    before = path.read_bytes()
    searched: list[int] = []
    real = _dp_state.calibrate

    def counted(config: object, **kwargs: object) -> object:
        searched.append(1)
        return real(config, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_dp_state, "calibrate", counted)
    restarted = DPRounds(dataclasses.replace(CONFIG, epsilon=3.0), path)
    # Execute
    message = _refusal(restarted, 3)
    # Assert: the budget is the reason named; no h searched, no other configuration blamed
    assert "epsilon = 2.0" in message and "epsilon = 3.0" in message, message
    assert "No honest count" not in message and "honest of" not in message, message
    assert searched == []
    assert path.read_bytes() == before


def test_the_files_h_at_the_search_bound_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The bound: charged under h = 4 of 4 nodes, searched up to h = 4
    monkeypatch.setattr(_dp_state, "MAX_HONEST_SEARCHED", 4)
    path = tmp_path / "accountant.json"
    _charged(path, 4, EVERY_NODE_HONEST)
    message = _refusal(DPRounds(CONFIG, path), 3)
    assert "h = 4 honest of 4 nodes" in message and "h = 2" in message, message


def test_the_files_h_past_the_search_bound_is_named_as_untried_not_as_another_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One past the bound: charged under h = 5 of 5 nodes, searched up to h = 4 only
    monkeypatch.setattr(_dp_state, "MAX_HONEST_SEARCHED", 4)
    path = tmp_path / "accountant.json"
    _charged(path, 5, EVERY_NODE_HONEST)
    before = path.read_bytes()
    # Execute
    message = _refusal(DPRounds(CONFIG, path), 3)
    # Assert: h = 5 was not tried, and the refusal says the file's h may be it; still refused
    assert "h = 1..4" in message and "h = 5..5 were not tried" in message, message
    assert "min_honest" not in message, message
    assert path.read_bytes() == before
