"""``secagg bench --out DIR / --json PATH``: what a run measured is never lost nor half-written."""

from __future__ import annotations

import argparse
import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest
from secagg_bench import masking as masking_suite
from secagg_bench import runner

from secagg import cli
from secagg.paillier import benchmark as paillier_tool
from tests.disk_full import disk_full_at

QUICK = ["bench", "masking", "--clients", "5", "--dim", "64", "--graph", "complete", "--no-progress"]


def _no_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def measured(*args: Any) -> Any:
        raise AssertionError("the suite ran: its outputs were not checked before the run")

    monkeypatch.setattr(masking_suite, "run_configuration", measured)


def test_a_failed_report_write_keeps_the_previous_report_and_the_measured_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: an earlier run's report (a file secagg bench did not write is refused before the
    # run: tests/test_cli_hostile_paths.py), and a disk that fills up when this run's is written.
    report = tmp_path / "masking.json"
    assert cli.main([*QUICK, "--out", str(tmp_path)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    previous = report.read_text(encoding="utf-8")
    disk_full_at(monkeypatch, "masking.json")

    # Execute
    code = cli.main([*QUICK, "--out", str(tmp_path)])
    err = capsys.readouterr().err

    # Assert: one line naming the file and where the measured rows are; the earlier report whole.
    assert code == 2
    assert "Traceback" not in err
    partial = tmp_path / "masking.partial.jsonl"
    assert f"secagg: error: cannot write the benchmark report {report}: No space left on device" in err
    assert f"the 1 result measured is kept in {partial}" in err
    assert err.endswith("\n") and err.count("secagg: error:") == 1
    assert report.read_text(encoding="utf-8") == previous
    rows = [json.loads(line) for line in partial.read_text(encoding="utf-8").splitlines()]
    assert [row["params"]["dim"] for row in rows] == [64]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


@pytest.mark.parametrize(
    "name",
    [
        "masking.json", "masking.csv", "summary.md", "masking.partial.jsonl",
        "masking_time_vs_dim.png", "masking_time_vs_dropout.png",
    ],
)
def test_an_output_that_is_a_folder_is_refused_before_the_run(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a folder where the run would write a file (its plots too: refused only after all the
    # work before), and a suite that must not run.
    (tmp_path / name).mkdir()
    _no_run(monkeypatch)

    # Execute
    code = cli.main([*QUICK, "--out", str(tmp_path)])
    err = capsys.readouterr().err

    # Assert
    assert code == 2
    assert "Traceback" not in err
    assert f"{tmp_path / name}: it is not a regular file" in err


def test_a_json_path_that_is_a_link_to_a_folder_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    (tmp_path / "folder").mkdir()
    (tmp_path / "m.json").symlink_to(tmp_path / "folder")
    _no_run(monkeypatch)

    # Execute
    with pytest.raises(SystemExit) as exited:
        cli.main([*QUICK, "--json", str(tmp_path / "m.json")])

    # Assert
    assert exited.value.code == 2
    assert f"argument --json: {tmp_path / 'm.json'} is a directory" in capsys.readouterr().err


def test_json_to_dev_stdout_keeps_no_partial_file_beside_it() -> None:
    # Prepare
    args = argparse.Namespace(out=None, json="/dev/stdout")

    # Execute / Assert: no "/dev/stdout.partial.jsonl" (rows are printed on stdout as they come).
    assert runner.partial_path("masking", args) is None
    assert runner.partial_path("masking", argparse.Namespace(out=None, json="m.json")) == Path("m.json.partial.jsonl")


def test_a_partial_file_that_cannot_be_written_does_not_end_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the partial file's disk is full; the run's own report still fits (another file system).
    real_open = Path.open

    def full(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self.name.endswith(".partial.jsonl"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", full)

    # Execute
    code = cli.main([*QUICK, "--out", str(tmp_path)])
    err = capsys.readouterr().err

    # Assert: one warning, the report written all the same.
    assert code == 0, err
    assert "Traceback" not in err
    assert f"cannot keep results in {tmp_path / 'masking.partial.jsonl'}: No space left on device" in err
    assert json.loads((tmp_path / "masking.json").read_text(encoding="utf-8"))["suite"] == "masking"


def test_the_paillier_tool_refuses_a_json_folder_before_it_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute: ``python -m secagg.paillier.benchmark``, which ran for minutes and then failed to open it.
    with pytest.raises(SystemExit) as exited:
        paillier_tool.build_parser().parse_args(["--json", str(tmp_path)])

    # Assert
    assert exited.value.code == 2
    assert f"argument --json: {tmp_path} is a directory" in capsys.readouterr().err
