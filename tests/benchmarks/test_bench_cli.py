"""``secagg bench``: trimmed runs of every suite through the command line, checked
against the report schema (CI runs the real ``--quick`` grid, see test_bench_quick)."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from secagg_bench import compression_accuracy, dropouts, flower_peer
from secagg_bench import masking as masking_suite
from secagg_bench.progress import Progress
from secagg_bench.report import validate

from secagg import cli, rotation

pytest.importorskip("jsonschema")
PLOTS = importlib.util.find_spec("matplotlib") is not None


def _run(capsys: pytest.CaptureFixture[str], out: Path, suite: str, *options: str) -> dict[str, Any]:
    code = cli.main(["bench", suite, *options, "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document: dict[str, Any] = json.loads((out / f"{suite}.json").read_text(encoding="utf-8"))
    return document


def _check_outputs(out: Path, document: dict[str, Any]) -> None:
    suite = document["suite"]
    assert validate(document) == []
    with (out / f"{suite}.csv").open(encoding="utf-8") as handle:
        assert len(list(csv.reader(handle))) == len(document["results"]) + 1
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert f"(`{suite}`)" in summary
    for name in document["plots"]:
        assert (out / name).stat().st_size > 1000
        assert f"![{name}]({name})" in summary
    if PLOTS:
        assert document["plots"], f"{suite}: no plot written"


def test_masking_suite_keeps_the_legacy_options_and_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # Prepare
    legacy = tmp_path / "legacy.json"

    # Execute
    code = cli.main(
        ["bench", "masking", "--clients", "5", "--dim", "64", "--graph", "complete", "harary", "--dropout", "0.2",
         "--json", str(legacy), "--no-progress"]
    )  # fmt: skip
    document = json.loads(legacy.read_text(encoding="utf-8"))

    # Assert
    assert code == 0
    assert document["suite"] == "masking" and document["mode"] == "custom"
    assert [r["params"]["requested_graph"] for r in document["results"]] == ["complete", "harary"]
    for row in document["results"]:
        metrics = row["metrics"]
        assert metrics["exact"] is True
        assert metrics["client_mask_s"] > 0 and metrics["floor_client_s"] > 0
        assert metrics["bytes_per_client_download"] > 0 and metrics["client_total_s"] >= metrics["client_mask_s"]
    assert validate(document) == []


def test_masking_and_scaling_write_reports_plots_and_one_summary(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Execute
    masking = _run(capsys, tmp_path, "masking", "--clients", "6", "--dim", "100", "1000",
                   "--graph", "complete", "harary", "--dropout", "0", "0.34")  # fmt: skip
    scaling = _run(capsys, tmp_path, "scaling", "--clients", "5", "10", "20", "--dim", "100", "--max-complete", "10")

    # Assert
    _check_outputs(tmp_path, masking)
    _check_outputs(tmp_path, scaling)
    assert len(masking["results"]) == 8
    graphs = [(r["params"]["requested_graph"], r["params"]["clients"]) for r in scaling["results"]]
    assert graphs == [("harary", 5), ("harary", 10), ("harary", 20), ("complete", 5), ("complete", 10)]
    assert any("capped at n <= 10" in note for note in scaling["notes"])
    assert "SecAgg+ per-client cost growth, top decade (log-log slope)" in {t["name"] for t in scaling["targets"]}


def test_dropouts_suite_runs_the_defaults_under_every_single_dropout_and_ten_percent_per_stage(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Execute
    document = _run(capsys, tmp_path, "dropouts", "--clients", "5", "20", "--sessions", "3", "--dim", "8")

    # Assert: n = 5 exhaustively (5 hospitals x 4 rounds, x 5 in active mode), n = 20 sampled
    _check_outputs(tmp_path, document)
    sessions = {(r["params"]["mode"], r["params"]["clients"]): r["metrics"]["sessions"] for r in document["results"]}
    assert sessions == {("semi-honest", 5): 20, ("active", 5): 25, ("semi-honest", 20): 3, ("active", 20): 3}
    assert all(r["metrics"]["exact"] for r in document["results"])
    limits = {t["params"]["clients"]: t["limit"] for t in document["targets"]}
    assert limits == {5: 1.0, 20: 0.99}
    assert all(t["met"] for t in document["targets"])


def test_dropouts_targets_fail_a_run_that_lost_a_session_or_an_exact_sum() -> None:
    def row(n: int, completed: int, sessions: int, exact: bool = True) -> dict[str, Any]:
        params = {"mode": "active", "clients": n, "schedule": "s"}
        metrics = {"completion_rate": completed / sessions, "exact": exact}
        return {"params": params, "metrics": metrics}

    rows = [row(5, 25, 25), row(5, 24, 25), row(20, 198, 200), row(20, 197, 200)]
    met = [t.met for t in dropouts.targets(rows)]
    assert met == [True, False, True, False]
    assert [t.met for t in dropouts.targets([row(20, 200, 200, exact=False)])] == [False]


def test_compression_suite_reports_bytes_per_parameter_accuracy_and_exactness(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Execute: uncompressed and a 1 byte/parameter budget, one seed, two rounds
    document = _run(
        capsys, tmp_path, "compression", "--dataset", "breast-cancer", "--bits", "16", "--sparsity",
        "--bytes-per-parameter", "1", "--seeds", "1", "--rounds", "2", "--rotation-dim", "4096",
    )  # fmt: skip

    # Assert
    _check_outputs(tmp_path, document)
    rows = {r["params"]["setting"]: r for r in document["results"]}
    assert set(rows) == {"uncompressed", "budget 1 B/param", "rotation vs masking (SecAgg+, n = 100)"}
    rotation_row = rows["rotation vs masking (SecAgg+, n = 100)"]
    assert rotation_row["metrics"]["rotation_over_mask"] > 0
    assert rotation_row["params"]["rotation_backend"] == rotation.backend()
    assert rotation_row["metrics"]["rotation_numpy_forward_s"] > 0
    assert rotation_row["metrics"]["rotation_numpy_inverse_s"] > 0
    assert rows["uncompressed"]["metrics"]["protected_bytes"] == 4 * 64
    budget = rows["budget 1 B/param"]
    assert budget["params"]["coordinates_sent"] == 18
    assert (budget["params"]["bits"], budget["params"]["ring_bits"], budget["params"]["rotate"]) == (8, 23, True)
    assert budget["metrics"]["protected_bytes"] == 58 and budget["metrics"]["gap_pp"] is not None
    assert budget["metrics"]["protected_bytes_per_parameter"] <= 1.0
    assert budget["metrics"]["total_bytes_per_hospital"] > budget["metrics"]["protected_bytes"]
    assert all(r["metrics"].get("exact", True) for r in document["results"])
    names = [t["name"] for t in document["targets"]]
    assert "rotation at d = 4,096 over masking the same vector" in names
    assert "breast-cancer: secure sums bit-exact against the plain sum of the same compressed encodings" in names
    assert "compression" in document["command"] and "--bytes-per-parameter 1.0" in document["command"]


def test_compression_targets_take_the_best_setting_within_the_budget() -> None:
    def row(setting: str, per_parameter: float, gap: float, exact: bool = True) -> dict[str, Any]:
        params = {"dataset": "digits", "setting": setting, "bits": 16}
        metrics = {"protected_bytes_per_parameter": per_parameter, "gap_pp": gap, "exact": exact,
                   "total_bytes_per_parameter": 2.0}  # fmt: skip
        return {"params": params, "metrics": metrics}

    found = compression_accuracy.targets([row("uncompressed", 4.0, 0.0), row("a", 1.0, -0.7), row("b", 0.5, -0.4)])
    assert [(t.achieved, t.met) for t in found if t.limit is not None] == [(-0.4, True), (1.0, True)]
    found = compression_accuracy.targets([row("uncompressed", 4.0, 0.0), row("a", 1.0, -0.7, exact=False)])
    assert [t.met for t in found if t.limit is not None] == [False, False]


def test_paillier_suite_compares_with_phe_and_the_floor(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # Execute
    document = _run(capsys, tmp_path, "paillier", "--clients", "3", "--dim", "8", "40", "--workers", "1",
                    "--naive-sample", "2")  # fmt: skip

    # Assert
    _check_outputs(tmp_path, document)
    for row in document["results"]:
        metrics = row["metrics"]
        assert metrics["exact"] is True
        assert metrics["naive_phe_encrypt_s"] > 0 and metrics["floor_encrypt_s"] > 0
        assert metrics["upload_expansion"] > 1
    assert "2048" in document["floors"]["powmod_s"]


@pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="the demo data needs scikit-learn")
def test_fedavg_suite_relates_every_aggregation_to_plain(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # Execute
    document = _run(capsys, tmp_path, "fedavg", "--rounds", "2", "--aggregation", "secagg+", "paillier",
                    "--insecure-small-key")  # fmt: skip

    # Assert
    _check_outputs(tmp_path, document)
    rows = {r["params"]["aggregation"]: r for r in document["results"]}
    assert list(rows) == ["plain", "secagg+", "paillier"]
    assert rows["plain"]["metrics"]["secure_over_plain_round"] == pytest.approx(1.0)
    assert rows["secagg+"]["params"]["dim"] == rows["plain"]["params"]["dim"] > 0
    assert rows["paillier"]["params"]["key_bits"] == 1024
    assert any("NOT secure" in note for note in document["notes"])


@pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="the demo data needs scikit-learn")
def test_dp_suite_reports_accuracy_against_epsilon_and_the_sampler(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Execute
    document = _run(capsys, tmp_path, "dp", "--quick", "--epsilon", "3", "--seeds", "1", "--rounds", "2")

    # Assert
    _check_outputs(tmp_path, document)
    accuracy = [r for r in document["results"] if "accuracy_mean" in r["metrics"]]
    assert [r["params"]["epsilon"] for r in accuracy] == [None, 3.0]
    assert accuracy[1]["metrics"]["epsilon_spent"] <= 3.0 + 1e-9
    assert accuracy[1]["params"]["min_honest"] == 4
    assert any("samples_per_cpu_s_seeded" in r["metrics"] for r in document["results"])
    assert document["plots"] == ["dp_accuracy.png"]
    # Not the conditions (2 rounds, 1 seed): the targets are reported, never claimed met.
    assert all(t["met"] is None for t in document["targets"])


@pytest.mark.skipif(not flower_peer.available(), reason="Flower (the bench extra) is not installed")
def test_peers_suite_times_flower_and_phe_on_the_same_work(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # Execute
    document = _run(capsys, tmp_path, "peers", "--clients", "10", "--dim", "500", "--repeats", "1",
                    "--paillier-dim", "8")  # fmt: skip

    # Assert
    _check_outputs(tmp_path, document)
    components = [r["params"]["component"] for r in document["results"]]
    assert "mask generation" in components and "masked-input step (protocol)" in components
    assert components[-1] == "Paillier encryption of one vector"
    assert any("32 bits of entropy" in note for note in document["notes"])
    assert document["machine"]["flwr"] == flower_peer.version() in flower_peer.FLOWER_VERSIONS


def test_peers_suite_without_flower_runs_phe_and_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    monkeypatch.setattr(flower_peer, "available", lambda: False)

    # Execute
    document = _run(capsys, tmp_path, "peers", "--paillier-dim", "8", "--repeats", "1")

    # Assert
    assert validate(document) == []
    assert [r["params"]["component"] for r in document["results"]] == ["Paillier encryption of one vector"]
    assert any("Flower is not installed" in note for note in document["notes"])


def test_bench_all_lists_every_suite(capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    with pytest.raises(SystemExit) as exited:
        cli.main(["bench", "--help"])
    out = capsys.readouterr().out

    # Assert
    assert exited.value.code == 0
    for suite in ("masking", "paillier", "fedavg", "scaling", "peers", "dropouts", "dp", "compression", "all"):
        assert suite in out


@pytest.mark.parametrize("suite", ["dropouts", "masking"])
def test_suite_help_prints_its_description_as_in_the_suite_list(capsys: pytest.CaptureFixture[str], suite: str) -> None:
    # Execute: argparse %-formats a subcommand's help in the list, but not its description
    with pytest.raises(SystemExit) as exited:
        cli.main(["bench", suite, "--help"])
    out = capsys.readouterr().out

    # Assert: no doubled percent sign ("10%% of n") on the suite's own page
    assert exited.value.code == 0
    assert "%%" not in out


def test_quick_and_full_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    with pytest.raises(SystemExit) as exited:
        cli.main(["bench", "masking", "--quick", "--full"])

    # Assert
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


# --- interrupted and piped runs (issue 14, item 4) -------------------------------------------


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, rows: int) -> None:
    """Make the masking suite's configuration ``rows + 1`` raise KeyboardInterrupt (Ctrl-C)."""
    real = masking_suite.run_configuration
    calls = []

    def measured(*args: Any) -> Any:
        calls.append(args)
        if len(calls) > rows:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(masking_suite, "run_configuration", measured)


def test_interrupted_bench_keeps_what_it_measured_and_says_where(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    _interrupt_after(monkeypatch, rows=2)
    out = tmp_path / "run"

    # Execute
    code = cli.main(["bench", "masking", "--clients", "5", "--dim", "64", "128", "256", "--out", str(out)])
    err = capsys.readouterr().err

    # Assert: exit 130, one line saying where the two measured rows are, and the rows themselves.
    assert code == 130
    partial = out / "masking.partial.jsonl"
    assert f"secagg bench masking: interrupted; the 2 results measured so far are in {partial}" in err
    assert err.endswith("secagg: interrupted\n") and "Traceback" not in err
    rows = [json.loads(line) for line in partial.read_text(encoding="utf-8").splitlines()]
    assert [(r["suite"], r["params"]["dim"]) for r in rows] == [("masking", 64), ("masking", 128)]
    assert all(r["metrics"]["exact"] is True for r in rows)


def test_interrupted_bench_leaves_no_empty_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    _interrupt_after(monkeypatch, rows=0)

    # Execute
    code = cli.main(["bench", "masking", "--clients", "5", "--dim", "64", "--out", str(tmp_path / "run")])

    # Assert
    assert code == 130
    assert "interrupted before the first result" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_finished_bench_removes_its_partial_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # Execute
    _run(capsys, tmp_path, "masking", "--clients", "5", "--dim", "64")

    # Assert
    assert sorted(p.suffix for p in tmp_path.iterdir() if p.suffix != ".png") == [".csv", ".json", ".md"]


class _Stream(io.StringIO):
    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


@pytest.mark.parametrize("terminal", [False, True])
def test_progress_bar_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch, terminal: bool) -> None:
    pytest.importorskip("tqdm")
    # Prepare
    stderr = _Stream(terminal)
    monkeypatch.setattr(sys, "stderr", stderr)

    # Execute
    with Progress(3, "masking") as progress:
        progress.begin("n=5")
        progress.advance()

    # Assert: frames on a terminal, none in a redirected log.
    assert ("masking" in stderr.getvalue()) is terminal


def test_interrupt_with_sigint_in_a_real_process(cli_env: dict[str, str], tmp_path: Path) -> None:
    # Prepare: a run long enough to be interrupted after its first row.
    out = tmp_path / "run"
    partial = out / "masking.partial.jsonl"
    command = [sys.executable, "-m", "secagg.cli", "bench", "masking", "--clients", "20",
               "--dim", "64", "3000000", "3000001", "--graph", "harary", "--out", str(out)]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env,
        # A background job of a non-interactive shell starts with SIGINT ignored; undo that (no threads here).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (partial.exists() and partial.stat().st_size) and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    # Execute
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)

    # Assert
    assert process.returncode == 130, err
    assert "Traceback" not in err and err.endswith("secagg: interrupted\n")
    assert "measured so far are in" in err
    assert len(partial.read_text(encoding="utf-8").splitlines()) >= 1


def test_piping_into_head_exits_quietly(cli_env: dict[str, str]) -> None:
    # Prepare: rows printed (and flushed) one by one, the reader gone after the first.
    command = [sys.executable, "-m", "secagg.cli", "bench", "masking", "--clients", "5",
               "--dim", "64", "20000", "40000", "80000", "160000", "--no-progress"]  # fmt: skip

    # Execute: ``secagg bench ... | head -1``
    producer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env)
    assert producer.stdout is not None
    head = subprocess.run(["head", "-1"], stdin=producer.stdout, capture_output=True, check=True)
    producer.stdout.close()
    err = producer.communicate(timeout=120)[1].decode()

    # Assert: one line through, nothing on stderr, the SIGPIPE status (0 if every write beat head's exit).
    assert head.stdout.decode().startswith("masking  n=5  d=64")
    assert err == ""
    assert producer.returncode in (141, 0)
