"""``secagg demo --json PATH``: a run's results are never lost nor half-written."""

from __future__ import annotations

import errno
import importlib
import importlib.util
import json
import os
import sys
import threading
from pathlib import Path

import pytest

from secagg import _cli_options
from secagg.cli import main as cli_main
from secagg.errors import ConfigurationError
from tests.disk_full import disk_full_at

pytestmark = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="needs the examples extra")

QUICK = ["demo", "--aggregation", "plain", "--hospitals", "3", "--rounds", "1", "--no-progress"]


def test_a_failed_json_write_keeps_the_previous_file_and_prints_the_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the results of an earlier run, and a disk that fills up when this run's are written.
    target = tmp_path / "run.json"
    target.write_text('{"previous": true}\n', encoding="utf-8")
    disk_full_at(monkeypatch, "run.json")

    # Execute
    code = cli_main([*QUICK, "--json", str(target)])
    captured = capsys.readouterr()

    # Assert: the library's one-line error naming the file, the earlier file whole, no temporary file
    # left, and the run's JSON on stdout instead of lost.
    assert code == 2
    assert "Traceback" not in captured.err
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"secagg: error: cannot write the demo's JSON results {target}: ")
    assert "No space left on device" in captured.err and "printed on stdout" in captured.err
    assert target.read_text(encoding="utf-8") == '{"previous": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]
    document = json.loads(captured.out[captured.out.index("{\n") :])
    assert document["configuration"]["aggregation"] == "plain" and len(document["rounds"]) == 1


def test_json_to_dev_stdout_follows_the_summary_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    code = cli_main([*QUICK, "--json", "/dev/stdout"])
    out = capsys.readouterr().out

    # Assert: in order after the summary, through the process's own stdout (a redirection to a file
    # is neither truncated nor replaced).
    assert code == 0
    assert out.index("Summary") < out.index("{\n")
    assert json.loads(out[out.index("{\n") : out.rindex("}") + 1])["configuration"]["hospitals"] == 3
    assert "results written to /dev/stdout" not in out


def test_json_into_a_named_pipe_reaches_its_reader(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: a reader waiting on a FIFO.
    fifo = tmp_path / "results.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()

    # Execute
    code = cli_main([*QUICK, "--json", str(fifo)])
    reader.join(timeout=30)

    # Assert: written through, the pipe still a pipe.
    assert code == 0, capsys.readouterr().err
    assert json.loads(received[0])["configuration"]["rounds"] == 1
    assert fifo.is_fifo()


def test_json_through_a_symbolic_link_replaces_the_file_it_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    (tmp_path / "results").mkdir()
    real = tmp_path / "results" / "run.json"
    real.write_text("old\n", encoding="utf-8")
    link = tmp_path / "latest.json"
    link.symlink_to(real)

    # Execute
    code = cli_main([*QUICK, "--json", str(link)])

    # Assert: the link kept, the file it names replaced whole.
    assert code == 0, capsys.readouterr().err
    assert link.is_symlink() and link.resolve() == real
    assert json.loads(real.read_text(encoding="utf-8"))["configuration"]["aggregation"] == "plain"


def test_an_existing_file_in_a_folder_that_takes_no_new_file_is_refused_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the file is writable, its folder is not (simulated: the tests may run as root).
    target = tmp_path / "run.json"
    target.write_text("old\n", encoding="utf-8")
    real_probe = _cli_options._probe

    def probe(folder: Path) -> None:
        if Path(folder) == tmp_path:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        real_probe(folder)

    monkeypatch.setattr(_cli_options, "_probe", probe)

    # Execute
    with pytest.raises(SystemExit) as exited:
        cli_main([*QUICK, "--json", str(target)])

    # Assert: a usage error before the run (an atomic replacement needs a new file in that folder).
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --json: cannot write {target}: Permission denied" in err
    assert target.read_text(encoding="utf-8") == "old\n"


def test_json_to_a_closed_stdout_does_not_claim_it_was_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: `secagg demo --json /dev/stdout >&-`: Python has no sys.stdout
    demo = importlib.import_module("fl_core.demo")
    monkeypatch.setattr(sys, "stdout", None)
    # Execute
    with pytest.raises(ConfigurationError) as refused:
        demo._write_json("/dev/stdout", "{}\n")
    # Assert: the write failed, and the message does not say the results went to stdout instead
    message = str(refused.value)
    assert "cannot write the demo's JSON results /dev/stdout" in message, message
    assert "printed on stdout instead" not in message, message
    assert "lost" in message, message
