"""The summary reads every ``DIR/SUITE.json`` back: a file there that ``secagg bench`` did not
write (unrelated or hostile JSON, a huge file, a link, a field of the wrong type) is refused with
the library's DecodeError, one line naming the file, never another exception or a silent skip."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import pytest
from secagg_bench import runner
from secagg_bench.report import SCHEMA_ID, SuiteReport, Target, validate
from secagg_bench.summary import load_reports, markdown, write_summary

from secagg import cli
from secagg.errors import ConfigurationError, DecodeError, SecAggError


def _honest() -> dict[str, Any]:
    return SuiteReport(
        suite="peers",
        mode="quick",
        command="secagg bench peers --quick",
        machine={"platform": "p", "python": "3", "cpus": 2, "cpu_model": "c", "numpy": "2", "secagg": "0.1"},
        started="2026-01-01T00:00:00+00:00",
        seconds=1.5,
        floors={"aes128_ctr_bytes_per_s": 1e9, "numpy_add_uint32_per_s": 1e9, "powmod_s": {"2048": 0.01}},
        results=[
            {
                "params": {"peer": "x", "component": "c", "role": "client"},
                "metrics": {"ours_s": 1.0, "peer_s": 2.0, "ours_over_peer": 0.5},
            }
        ],
        targets=[Target("t", "d", 0.5, 1.0, "<=")],
        plots=["peers_time.png"],
    ).to_json()


def _with(path: tuple[Any, ...], value: Any) -> str:
    document = _honest()
    place = document
    for step in path[:-1]:
        place = place[step]
    place[path[-1]] = value
    return json.dumps(document)


HOSTILE: dict[str, str | bytes] = {
    "not JSON": "{",
    "not UTF-8": b'{"schema": "\xff"}',
    "a NaN": json.dumps(_honest()).replace('"seconds": 1.5', '"seconds": NaN'),
    "a repeated name": json.dumps(_honest())[:-1] + ', "suite": "peers"}',
    "a list": "[1, 2]",
    "deep nesting": "[" * 100_000 + "]" * 100_000,
    "another schema": json.dumps({"schema": "https://example.org/other", "suite": "peers"}),
    "no schema": json.dumps({"suite": "peers"}),
    "another suite's report": _with(("suite",), "masking"),
    "targets not a list": _with(("targets",), 5),
    "a target's limit a string": _with(("targets", 0, "limit"), "0.5"),
    "a target's met a string": _with(("targets", 0, "met"), "yes"),
    "a target's name a number": _with(("targets", 0, "name"), 7),
    "results not a list": _with(("results",), {"a": 1}),
    "a row's params not an object": _with(("results", 0, "params"), 1),
    "a row without metrics": _with(("results", 0), {"params": {}}),
    "a number that is a string": _with(("results", 0, "metrics", "ours_s"), "fast"),
    "a number beyond binary64": json.dumps(_honest()).replace('"seconds": 1.5', '"seconds": ' + "9" * 400),
    "seconds a string": _with(("seconds",), "1.5"),
    "seconds a boolean": _with(("seconds",), True),
    "command a number": _with(("command",), 1),
    "machine not an object": _with(("machine",), 5),
    "notes not a list of strings": _with(("notes",), [1]),
    "plots not a list of strings": _with(("plots",), [{"a": 1}]),
    "a plot outside the folder": _with(("plots",), ["../../etc/passwd"]),
    "a line break in the command": _with(("command",), "secagg bench\n# injected"),
}


def _refusal(folder: Path, error: type[SecAggError] = DecodeError) -> str:
    with pytest.raises(error) as refusal:
        markdown(load_reports(folder))
    message = str(refusal.value)
    assert "\n" not in message and str(folder / "peers.json") in message
    return message


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_report_is_refused_with_one_line_naming_it(case: str, tmp_path: Path) -> None:
    # Prepare
    content = HOSTILE[case]
    path = tmp_path / "peers.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")

    # Execute / Assert
    _refusal(tmp_path)


def test_the_honest_report_is_summarized(tmp_path: Path) -> None:
    # Prepare / Execute
    (tmp_path / "peers.json").write_text(json.dumps(_honest()), encoding="utf-8")
    written = write_summary(tmp_path)

    # Assert
    text = written.read_text(encoding="utf-8")
    assert text.startswith("# secagg benchmarks\n") and "`secagg bench peers --quick`" in text
    assert _honest()["schema"] == SCHEMA_ID
    if importlib.util.find_spec("jsonschema") is not None:
        assert validate(_honest()) == []  # a report secagg bench could write


def test_a_huge_report_is_refused_unread(tmp_path: Path) -> None:
    # Prepare: a sparse file of 65 MiB, past the 64 MiB a report may hold
    path = tmp_path / "peers.json"
    with path.open("wb") as handle:
        handle.truncate((1 << 26) + 1)

    # Execute / Assert
    assert "larger than 67108864 bytes" in _refusal(tmp_path)


def _place(kind: str, path: Path) -> None:
    """At ``path``: a link to an honest report elsewhere, a folder, a named pipe (never opened for a
    writer) or one of the HOSTILE contents."""
    if kind == "link to a report":
        elsewhere = path.parent / "elsewhere.json"
        elsewhere.write_text(json.dumps(_honest()), encoding="utf-8")
        path.symlink_to(elsewhere)
    elif kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        content = HOSTILE[kind]
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


@pytest.mark.parametrize("kind", ["link to a report", "folder", "fifo"])
def test_what_secagg_bench_never_writes_at_a_reports_name_is_refused(kind: str, tmp_path: Path) -> None:
    # Prepare
    _place(kind, tmp_path / "peers.json")

    # Execute / Assert: what is at the path (a folder, a pipe) is a ConfigurationError, a link a DecodeError
    _refusal(tmp_path, DecodeError if kind.startswith("link") else ConfigurationError)


@pytest.mark.parametrize(
    ("kind", "jsonschema"),
    [
        ("fifo", True),
        ("folder", True),
        ("link to a report", True),
        ("targets not a list", False),  # without the bench extra's jsonschema, only the schema id was checked
        ("a line break in the command", False),
    ],
)
def test_bench_out_refuses_before_the_run_what_the_summary_would_refuse_after_it(
    kind: str, jsonschema: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: at the name of a suite not run now, something the summary cannot read; no run may start
    path = tmp_path / "peers.json"
    _place(kind, path)
    monkeypatch.setattr(runner, "run_suite", _never_run)
    if not jsonschema:
        real_find_spec = importlib.util.find_spec
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda name, *a: None if name == "jsonschema" else real_find_spec(name, *a)
        )

    # Execute
    try:
        code = cli.main(["bench", "dropouts", "--clients", "3", "--dim", "1", "--no-progress", "--out", str(tmp_path)])
    except SystemExit as exited:
        code = int(exited.code or 0)
    err = capsys.readouterr().err

    # Assert: exit 2, one line naming the file, before any work
    assert code == 2, err
    assert f"argument --out: {path} was not written by secagg bench" in err
    assert "Traceback" not in err
    line = next(line for line in err.splitlines() if "was not written" in line)
    assert line.endswith("give a new or empty folder, or move the file")


def _never_run(*args: object) -> None:
    raise AssertionError("the suite ran: the folder was not checked up front")
