"""The ``python -m`` measuring tools and ``secagg bench``: a failed write never loses the results.

A tool's ``--json`` that cannot be written ends it with one line naming the path (exit code 2) and
the results on stdout instead; ``/dev/stderr`` and ``/dev/fd/N`` go through the process's own
streams; a Ctrl-C stays a Ctrl-C when the summary written on the way out fails.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from secagg_bench import runner

from secagg import _outputs as outputs
from secagg import cli
from secagg.errors import ConfigurationError
from secagg.masking import benchmark as masking_tool
from tests.disk_full import disk_full_at

QUICK = ["bench", "masking", "--clients", "5", "--dim", "64", "--graph", "complete", "--no-progress"]
ROOT = Path(__file__).resolve().parents[2]


def _json_after_table(out: str) -> Any:
    """The JSON document printed after a tool's table (it starts on a line of its own)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line in ("{", "["))
    return json.loads("\n".join(lines[start:]))


@pytest.mark.parametrize(
    ("module", "argv", "prog"),
    [
        ("secagg.paillier.benchmark", ["--ceremony-only", "--workers", "1"], "secagg.paillier.benchmark"),
        ("secagg_bench.prg_throughput", ["--mib", "1", "--repeats", "1"], "prg_throughput"),
        ("secagg_bench.dp_sampler", ["--size", "200", "--repeats", "1"], "dp_sampler"),
    ],
)
def test_a_tool_whose_json_write_fails_prints_one_line_and_its_results(
    module: str,
    argv: list[str],
    prog: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: ``python -m MODULE ARGV --json PATH``; an earlier report, and a disk that fills up
    # when this run's is written.
    report = tmp_path / "r.json"
    report.write_text('{"previous": true}\n', encoding="utf-8")
    disk_full_at(monkeypatch, "r.json")
    monkeypatch.setattr(sys, "argv", [module, *argv, "--json", str(report)])

    # Execute: the module as ``python -m`` runs it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # runpy: the module is imported already
        with pytest.raises(SystemExit) as exited:
            runpy.run_module(module, run_name="__main__")
    captured = capsys.readouterr()

    # Assert: one line naming the tool and the path, exit code 2, the earlier report whole, and the
    # results on stdout instead of lost.
    assert exited.value.code == 2
    assert "Traceback" not in captured.err
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"{prog}: error: cannot write the benchmark report {report}: ")
    assert "No space left on device" in captured.err and "printed on stdout instead" in captured.err
    assert report.read_text(encoding="utf-8") == '{"previous": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    assert _json_after_table(captured.out)


def _masking_args(json_path: str) -> argparse.Namespace:
    return argparse.Namespace(clients=[5], dim=[64], graph=["complete"], dropout=[0.0], repeats=1, json=json_path)


def test_the_masking_tool_checks_its_json_path_before_it_measures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a folder where the report would go, and a measurement that must not run.
    (tmp_path / "m.json").mkdir()
    monkeypatch.setattr(masking_tool, "run_configuration", lambda *a: pytest.fail("it measured first"))

    # Execute / Assert
    with pytest.raises(ConfigurationError, match=r"m\.json: it is not a regular file"):
        masking_tool.main(_masking_args(str(tmp_path / "m.json")))


def test_the_masking_tool_prints_its_results_when_the_write_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    disk_full_at(monkeypatch, "m.json")

    # Execute
    with pytest.raises(ConfigurationError, match=r"No space left on device.*printed on stdout instead"):
        masking_tool.main(_masking_args(str(tmp_path / "m.json")))

    # Assert: the report is on stdout, not lost.
    assert _json_after_table(capsys.readouterr().out)["suite"] == "masking"


@pytest.mark.parametrize(
    ("path", "stream"), [("/dev/stderr", 2), ("/dev/fd/2", 2), ("/dev/fd/1", 1), ("/dev/stdout", 1)]
)
def test_a_standard_stream_path_writes_through_the_stream_and_keeps_a_redirected_file(
    path: str, stream: int, tmp_path: Path
) -> None:
    # Prepare: the stream redirected to a file that already holds something (``>> log``).
    log = tmp_path / "log"
    log.write_text("previous\n", encoding="utf-8")
    name = "stdout" if stream == 1 else "stderr"
    program = (
        "import sys\n"
        "from secagg._outputs import write_output\n"
        f"print('before', file=sys.{name})\n"
        f"write_output({path!r}, 'report', b'{{}}\\n')\n"
        f"print('after', file=sys.{name})\n"
    )

    # Execute
    with log.open("ab") as handle:
        done = subprocess.run(
            [sys.executable, "-c", program],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=handle if stream == 1 else subprocess.DEVNULL,
            stderr=handle if stream == 2 else subprocess.PIPE,
            check=False,
        )

    # Assert: appended in order, nothing replaced or truncated.
    assert done.returncode == 0, done.stderr
    assert log.read_text(encoding="utf-8") == "previous\nbefore\n{}\nafter\n"


def test_ctrl_c_wins_over_a_summary_that_cannot_be_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: ``secagg bench all --out DIR``: the first suite finishes, Ctrl-C during the second,
    # and the disk is full when the summary of the finished suite is written on the way out.
    finished = runner.run_suite("masking", cli.build_parser().parse_args(QUICK))
    reports = iter([finished])

    def run_suite(suite: str, args: argparse.Namespace, partial: Any = None) -> Any:
        for report in reports:
            return report
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "SUITES", ("masking", "paillier"))
    monkeypatch.setattr(runner, "run_suite", run_suite)
    disk_full_at(monkeypatch, "summary.md")
    capsys.readouterr()

    # Execute
    code = cli.main(["bench", "all", "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err

    # Assert: the interrupt's exit code and line, the failed write one more line naming the path.
    assert code == cli.EXIT_INTERRUPTED == 130
    assert "Traceback" not in err
    assert err.endswith("secagg: interrupted\n")
    assert "secagg: error:" not in err
    summary = tmp_path / "summary.md"
    lines = [line for line in err.splitlines() if str(summary) in line]
    assert len(lines) == 1 and "No space left on device" in lines[0]
    assert (tmp_path / "masking.json").is_file() and not summary.exists()


_TOOL = (
    "import sys\n"
    "from secagg._outputs import run_tool, write_results\n"
    "def main():\n"
    "    print('table')\n"
    "    write_results({path!r}, 'report', '{{}}\\n')\n"
    "    return 0\n"
    "raise SystemExit(run_tool('tool', main))\n"
)


@pytest.mark.parametrize(("path", "closed"), [("/dev/stdout", 1), ("/dev/fd/1", 1), ("/dev/stderr", 2)])
def test_a_standard_stream_that_is_closed_is_a_failed_write_not_a_traceback(path: str, closed: int) -> None:
    # Prepare: a tool whose --json names a standard stream the shell closed (``>&-``, ``2>&-``);
    # Python then has no sys.stdout (or sys.stderr), and the descriptor may be reused by any file
    # opened later, which a write through the path would truncate.
    program = _TOOL.format(path=path)

    # Execute
    done = subprocess.run(
        ["sh", "-c", f'exec "$0" -c "$1" {closed}>&-', sys.executable, program],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )

    # Assert: the library's one line (on the stream still open) and exit code 2, never a traceback
    assert done.returncode == 2, (done.stdout, done.stderr)
    said = done.stderr if closed == 1 else done.stdout
    assert "Traceback" not in said
    assert f"tool: error: cannot write the report {path}: " in said
    assert "closed" in said


@pytest.mark.parametrize("printed", [False, True])
def test_a_broken_pipe_on_stdout_ends_the_tool_quietly(printed: bool) -> None:
    # Prepare: ``tool --json /dev/stdout | head -c 0``: stdout is a pipe whose reader is gone, met
    # by the report or by the tool's own table before it
    program = _TOOL.format(path="/dev/stdout")
    if not printed:
        program = program.replace("    print('table')\n", "")
    read, write = os.pipe()
    os.close(read)

    # Execute
    try:
        done = subprocess.run(
            [sys.executable, "-c", program],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},  # the table meets the pipe first
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    finally:
        os.close(write)

    # Assert: quietly with 141 (128 + SIGPIPE), as ``secagg`` piped into ``head``: no traceback,
    # no "Exception ignored" from the interpreter's last flush
    assert done.returncode == 141, done.stderr
    assert done.stderr == ""


def test_a_closed_standard_stream_is_found_before_the_run() -> None:
    # Prepare / Execute / Assert: check_output (options checked before anything is measured)
    # says a closed stdout cannot take the report
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stdout", None)
        problem = outputs.output_problem("/dev/stdout")
    assert problem is not None
    assert "closed" in problem
