"""simulate.py's summary after the run: rounds aggregated, skipped (with each reason) or not run,
and its documented exit code (examples/flower/README.md). Ray is not started: the simulation is
replaced by a stand-in that writes the ServerApp's JSON report as a run would have."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("flwr")
pytest.importorskip("sklearn")

from .flower_example import (
    EXAMPLE,
    example_on_path,  # noqa: F401  (autouse: the example app on the import path)
)


def load_simulate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flower_simulate", EXAMPLE / "simulate.py")
    assert spec is not None and spec.loader is not None
    simulate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(simulate)
    return simulate


def aggregated(number: int) -> dict[str, Any]:
    return {"round": number, "aggregate": [1, 2, 3], "skipped_reason": None, "errors": {}, "included": [1, 2, 3]}


def skipped(number: int) -> dict[str, Any]:
    return {"round": number, "aggregate": None, "included": [],
            "skipped_reason": "only 1 of the sampled nodes completed setup, below the threshold 3",
            "errors": {"7": "node 7 has no identity key: set key-dir", "9": "node 9 has no identity key: set key-dir"}}


def run(monkeypatch: pytest.MonkeyPatch, rounds: list[dict[str, Any]] | None, asked: int,
        tmp_path: Path) -> tuple[ModuleType, int]:
    """simulate.main in semi-honest mode with a stand-in simulation that reports ``rounds``
    (None: the run ended before writing any report)."""
    simulate = load_simulate()
    configs: list[dict[str, Any]] = []

    def server_app(run_config: dict[str, Any]) -> object:
        configs.append(run_config)
        return object()

    def simulation(**_: object) -> None:
        if rounds is not None:
            Path(configs[0]["result-path"]).write_text(json.dumps({"initial": {}, "rounds": rounds}))

    stand_ins: dict[str, Callable[..., object]] = {"make_server_app": server_app, "run_simulation": simulation}
    for name, stand_in in stand_ins.items():
        monkeypatch.setattr(simulate, name, stand_in)
    code = simulate.main(["--semi-honest", "--rounds", str(asked), "--result", str(tmp_path / "report.json")])
    return simulate, code


def test_skipped_rounds_are_summarized_with_their_reasons_and_exit_code_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute: three rounds asked, the second skipped (two nodes without keys)
    simulate, code = run(monkeypatch, [aggregated(1), skipped(2), aggregated(3)], 3, tmp_path)
    # Assert: one summary line with the counts, the skipped round with its reason and each node's
    out = capsys.readouterr().out
    assert code == simulate.EXIT_ROUND_SKIPPED == 1
    assert f"3 rounds asked: 2 aggregated, 1 skipped, 0 not run; report in {tmp_path / 'report.json'}" in out
    assert "round 2 skipped: only 1 of the sampled nodes completed setup, below the threshold 3" in out
    assert "  node 7: node 7 has no identity key: set key-dir" in out
    assert "  node 9: node 9 has no identity key: set key-dir" in out


def test_a_run_that_ended_early_names_the_rounds_not_run_and_exits_3(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute: three rounds asked, one reported, then the simulation stopped
    simulate, code = run(monkeypatch, [aggregated(1)], 3, tmp_path)
    # Assert
    out = capsys.readouterr().out
    assert code == simulate.EXIT_RUN_INCOMPLETE == 3
    assert "3 rounds asked: 1 aggregated, 0 skipped, 2 not run" in out
    assert "rounds 2-3 not run: the simulation ended before reporting them (see Flower's log above)" in out


def test_a_run_that_wrote_no_report_exits_3(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute: the simulation ended before the first round's report
    simulate, code = run(monkeypatch, None, 2, tmp_path)
    # Assert
    out = capsys.readouterr().out
    assert code == simulate.EXIT_RUN_INCOMPLETE
    assert "2 rounds asked: 0 aggregated, 0 skipped, 2 not run" in out
    assert "rounds 1-2 not run" in out


def test_a_run_whose_every_round_aggregated_exits_0(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    simulate, code = run(monkeypatch, [aggregated(1), aggregated(2)], 2, tmp_path)
    # Assert
    out = capsys.readouterr().out
    assert code == simulate.EXIT_OK == 0
    assert "2 rounds asked: 2 aggregated, 0 skipped, 0 not run" in out
    assert "skipped:" not in out and "not run:" not in out


def test_an_earlier_runs_report_at_the_result_path_is_not_summarized_as_this_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: an earlier run's report, every round aggregated, at the path this run will write
    (tmp_path / "report.json").write_text(json.dumps({"initial": {}, "rounds": [aggregated(1), aggregated(2)]}))
    # Execute: this run ends before writing any report
    simulate, code = run(monkeypatch, None, 2, tmp_path)
    # Assert: nothing of this run was reported, so nothing is counted as aggregated
    out = capsys.readouterr().out
    assert code == simulate.EXIT_RUN_INCOMPLETE
    assert "2 rounds asked: 0 aggregated, 0 skipped, 2 not run" in out
