"""What CI runs: every suite's ``--quick`` grid, each report checked against the schema.

No wall-clock bound here: how long ``--quick`` takes is a benchmark figure (each
report's ``seconds``, and CI's step timings), not something a test on a shared
machine can assert without flaking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from secagg_bench import SUITES
from secagg_bench.report import validate

from secagg import cli

pytest.importorskip("jsonschema")


@pytest.mark.slow
def test_bench_all_quick_writes_valid_reports(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Execute
    code = cli.main(["bench", "all", "--quick", "--out", str(tmp_path), "--no-progress"])
    captured = capsys.readouterr()

    # Assert
    assert code == 0, captured.err
    for suite in SUITES:
        document = json.loads((tmp_path / f"{suite}.json").read_text(encoding="utf-8"))
        assert document["mode"] == "quick"
        assert validate(document) == []
        assert document["seconds"] > 0
    assert (tmp_path / "summary.md").is_file()
