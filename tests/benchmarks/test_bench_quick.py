"""What CI runs: every suite's ``--quick`` grid, each report checked against the schema."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from secagg_bench import SUITES
from secagg_bench.report import validate

from secagg import cli

pytest.importorskip("jsonschema")

QUICK_BUDGET_S = 120


@pytest.mark.slow
def test_bench_all_quick_writes_valid_reports_within_two_minutes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Execute
    started = time.perf_counter()
    code = cli.main(["bench", "all", "--quick", "--out", str(tmp_path), "--no-progress"])
    seconds = time.perf_counter() - started
    captured = capsys.readouterr()

    # Assert
    assert code == 0, captured.err
    for suite in SUITES:
        document = json.loads((tmp_path / f"{suite}.json").read_text(encoding="utf-8"))
        assert document["mode"] == "quick"
        assert validate(document) == []
    assert (tmp_path / "summary.md").is_file()
    assert seconds < QUICK_BUDGET_S, f"--quick took {seconds:.0f} s"
