"""``secagg bench --out DIR``: a re-run into the folder of an earlier run is taken, whatever that run
left (an interrupted run's partial results, a first report whose write failed), while a plot or a
partial-results file of the user's at one of the run's names is refused (tests/test_cli_hostile_paths.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from secagg_bench import plotkit

from secagg import cli
from secagg._cli_bench_out import out_problem
from tests.disk_full import disk_full_at

QUICK = ["bench", "dropouts", "--clients", "3", "--dim", "1", "--no-progress"]


def test_a_rerun_after_a_first_report_write_that_failed_is_taken(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a first run into a new folder whose report write fails (a full disk), after its CSV
    # and plot went in
    out = tmp_path / "out"
    with monkeypatch.context() as patched:
        disk_full_at(patched, "dropouts.json")
        assert cli.main([*QUICK, "--out", str(out)]) == 2
    assert "No space left on device" in capsys.readouterr().err

    # Execute: the same command again, the disk freed
    code = cli.main([*QUICK, "--out", str(out)])
    err = capsys.readouterr().err

    # Assert: what the failed run left is its own, not the user's: the re-run runs and writes
    assert code == 0, err
    assert json.loads((out / "dropouts.json").read_text(encoding="utf-8"))["suite"] == "dropouts"


@pytest.mark.parametrize(
    "text",
    [
        '{"suite": "dropouts", "params": {}}\n',  # the rows an interrupted run kept, one JSON object a line
        '{"suite": "dropouts", "par',  # its first row cut by a full disk (the run went on without the file)
        "",  # created, its first row never written
    ],
)
def test_an_earlier_runs_partial_results_do_not_refuse_the_rerun(text: str, tmp_path: Path) -> None:
    # Prepare
    (tmp_path / "dropouts.partial.jsonl").write_text(text, encoding="utf-8")

    # Execute / Assert: the re-run supersedes them
    assert out_problem(str(tmp_path), ["dropouts"]) is None


def test_a_plot_is_taken_if_secagg_bench_wrote_it_or_its_report_lists_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: an earlier run (its plot marked as secagg bench's), then the same plot as an earlier
    # version wrote it (no mark) but listed by the report beside it
    assert cli.main([*QUICK, "--out", str(tmp_path)]) == 0, capsys.readouterr().err
    plot = tmp_path / "dropouts_completion.png"
    assert plot.name in plotkit.PLOT_NAMES["dropouts"]
    assert out_problem(str(tmp_path), ["dropouts"]) is None
    plot.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    assert out_problem(str(tmp_path), ["dropouts"]) is None

    # Execute: the report no longer lists it
    report = tmp_path / "dropouts.json"
    document = json.loads(report.read_text(encoding="utf-8"))
    report.write_text(json.dumps({**document, "plots": []}), encoding="utf-8")
    problem = out_problem(str(tmp_path), ["dropouts"])

    # Assert: an unmarked plot no report lists is the user's
    assert problem is not None and f"{plot} was not written by secagg bench" in problem


def test_every_plot_a_suite_writes_is_a_declared_name() -> None:
    # Execute / Assert: a plot saved under a name out_problem does not check is refused
    with pytest.raises(ValueError, match="not declared"):
        plotkit.save(None, Path("."), "dropouts_extra.png", "title")
