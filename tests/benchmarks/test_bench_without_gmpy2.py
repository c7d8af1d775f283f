"""``secagg bench`` without gmpy2 (or phe): the suites that need no Paillier run; a Paillier suite is
refused with the library's ConfigurationError naming the package.

benchmarks/floors.py and report.py imported gmpy2 at the top, and every suite's context imports
them: ``secagg bench masking`` ended in a ModuleNotFoundError traceback where gmpy2 does not
import, and so did ``secagg bench paillier`` (no library error naming the package). Now gmpy2 is
imported only for the powmod floor (measured where it imports, else left out of the report with the
reason) and the machine's versions; the Paillier suites (paillier, peers, fedavg) import through
:func:`fl_core.aggregators.paillier_import.paillier_dependency`, the loader make_aggregator uses.

Each run is a subprocess with ``sys.modules[name] = None`` for the blocked packages (an import of
them raises ModuleNotFoundError, as where they are not installed).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jsonschema")

BLOCKED = ("gmpy2", "phe")
_PROGRAM = (
    "import sys\n"
    "for name in {blocked!r}: sys.modules[name] = None\n"
    "from secagg.cli import main\n"
    "raise SystemExit(main({argv!r}))\n"
)


def _bench(cli_env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    program = _PROGRAM.format(blocked=BLOCKED, argv=["bench", *argv, "--no-progress"])
    return subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=cli_env, timeout=600, check=False
    )


def test_a_suite_without_paillier_runs_without_gmpy2_and_phe(cli_env: dict[str, str], tmp_path: Path) -> None:
    # Execute: the smallest masking run, its report written and checked against the schema
    report = tmp_path / "masking.json"
    done = _bench(cli_env, "masking", "--clients", "3", "--dim", "8", "--graph", "complete", "--json", str(report))
    # Assert: it ran, its report holds the keystream and add floors, and says why powmod is not there
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    floors = json.loads(report.read_text(encoding="utf-8"))["floors"]
    assert floors["aes128_ctr_bytes_per_s"] > 0 and "powmod_s" not in floors, floors
    assert "gmpy2" in floors["powmod_skipped"], floors


@pytest.mark.parametrize("suite", ["paillier", "peers"])
def test_a_paillier_suite_without_gmpy2_is_the_librarys_error_naming_it(cli_env: dict[str, str], suite: str) -> None:
    done = _bench(cli_env, suite)
    # Assert: the library's error (exit 2), naming the package and how to install it; no traceback
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert f"secagg bench {suite} needs 'gmpy2'" in done.stderr, done.stderr


def test_fedavg_without_gmpy2_runs_plain_and_masking_and_says_why_paillier_is_missing(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    # Plain FedAvg and the masking aggregations need neither package: only the paillier rows go
    pytest.importorskip("sklearn")
    report = tmp_path / "fedavg.json"
    done = _bench(cli_env, "fedavg", "--hospitals", "3", "--rounds", "2", "--json", str(report))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    written = json.loads(report.read_text(encoding="utf-8"))
    rows = {row["params"]["aggregation"] for row in written["results"]}
    assert rows == {"plain", "secagg", "secagg+"}, rows
    skipped = [note for note in written["notes"] if note.startswith("paillier rows skipped")]
    assert len(skipped) == 1 and "gmpy2" in skipped[0], written["notes"]
    assert not any("--insecure-small-key" in note for note in written["notes"]), written["notes"]


def test_fedavg_asked_for_paillier_without_gmpy2_is_the_librarys_error_naming_it(cli_env: dict[str, str]) -> None:
    # Asked for explicitly, paillier is refused (no report quietly short of a row that was asked for)
    done = _bench(cli_env, "fedavg", "--aggregation", "secagg", "paillier")
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert "aggregation 'paillier' needs 'gmpy2'" in done.stderr, done.stderr


def test_the_schema_takes_a_skipped_powmod_floor_only_with_its_reason() -> None:
    # The floors hold powmod_s, or powmod_skipped saying why; neither (or both) is refused
    from secagg_bench.report import SuiteReport, Target, validate  # noqa: PLC0415 (this checkout's)

    base = {"aes128_ctr_bytes_per_s": 1e9, "numpy_add_uint32_per_s": 1e9}
    powmod = {"powmod_s": {"2048": 0.01}}
    skipped = {"powmod_skipped": "gmpy2 does not import"}

    def problems(floors: dict[str, object]) -> list[str]:
        report = SuiteReport(
            suite="peers", mode="quick", command="secagg bench peers --quick",
            machine={"platform": "p", "python": "3", "cpus": 2, "cpu_model": "c", "numpy": "2", "secagg": "0.1"},
            started="2026-01-01T00:00:00+00:00", seconds=1.5, floors=floors,
            results=[{"params": {"peer": "x", "component": "c", "role": "client"},
                      "metrics": {"ours_s": 1.0, "peer_s": 2.0, "ours_over_peer": 0.5}}],
            targets=[Target("t", "d", 0.5, 1.0, "<=")],
        )  # fmt: skip
        return validate(report.to_json())

    assert problems({**base, **powmod}) == []
    assert problems({**base, **skipped}) == []
    assert problems(base) != []
    assert problems({**base, **powmod, **skipped}) != []
