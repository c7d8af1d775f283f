"""The long run: coverage-guided fuzzing of every target with atheris (``slow``).

Run it with::

    PYTHONPATH=$PWD python -m pytest tests/fuzz -m slow -o addopts="" -s

(It skips unless ``-m slow`` selects it or ``SECAGG_FUZZ_LONG=1`` is set, so the
plain ``-o addopts=""`` run stays short.)

Each target runs in its own process (tests/fuzz/atheris_harness.py), two at a
time (the machine has 2 cores): two batch processes each do the instrumented
imports once and fork one child per target of their half (the imports take
seconds, most targets' runs less than one), and each child fuzzes its target
exactly as ``atheris_harness.py TARGET`` would, for a fixed number of inputs: decoders get
:data:`DECODER_RUNS`, stage entry points :data:`STAGE_RUNS`
(``SECAGG_FUZZ_SCALE=2`` doubles both). The test fails if any input makes
anything but a SecAggError escape, or a server step abort the round, and
requires at least :data:`MIN_TOTAL` inputs in all. It prints one line per
target (inputs, seconds); ``SECAGG_FUZZ_REPORT=path.json`` also writes them
as JSON.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path

import pytest

from .targets import TARGETS

HARNESS = Path(__file__).with_name("atheris_harness.py")
SCALE = float(os.environ.get("SECAGG_FUZZ_SCALE", "1"))
DECODER_RUNS = int(3000 * SCALE)
STAGE_RUNS = int(1500 * SCALE)
MIN_TOTAL = 100_000
DONE = re.compile(r"Done (\d+) runs in (\d+) second")


def _runs(name: str) -> int:
    return DECODER_RUNS if name.startswith("decode") else STAGE_RUNS


def _flags(name: str) -> list[str]:
    return [f"-runs={_runs(name)}", "-seed=1", "-timeout=60", "-rss_limit_mb=3072", "-print_final_stats=1"]


def _fuzz_batch(names: list[str], workdir: Path, index: int) -> list[tuple[str, int, float, int, str]]:
    """Fuzz ``names`` in one batch process (a forked child per target); (name, inputs, seconds, exit, log)."""
    folders = {name: workdir / name.replace(":", "_") for name in names}
    for folder in folders.values():
        folder.mkdir()
    spec = workdir / f"batch-{index}.json"
    spec.write_text(json.dumps([{"name": name, "folder": str(folders[name]), "flags": _flags(name)} for name in names]))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HARNESS.parents[2]), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(HARNESS), "--batch", str(spec)], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=1800 * len(names), check=False)
    reported = {}
    for line in done.stdout.splitlines():
        with suppress(ValueError):
            entry = json.loads(line)
            reported[entry["name"]] = entry
    results = []
    for name in names:
        log_path = folders[name] / "fuzz.log"
        log = log_path.read_text(errors="replace") if log_path.exists() else ""
        entry = reported.get(name)
        if entry is None:  # the batch process itself failed before this target's turn
            results.append((name, 0, 0.0, done.returncode or -1, (log + done.stderr)[-6000:]))
            continue
        match = DONE.search(log)
        inputs = int(match.group(1)) if match else 0
        results.append((name, inputs, float(entry["seconds"]), int(entry["exit"]), log[-6000:]))
    return results


@pytest.mark.slow
def test_atheris_every_target(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    # Minutes of work: only when asked for (-m slow), even if addopts' "not slow" is overridden.
    if "slow" not in (request.config.getoption("markexpr") or "") and not os.environ.get("SECAGG_FUZZ_LONG"):
        pytest.skip("the long fuzz run needs -m slow (or SECAGG_FUZZ_LONG=1)")
    pytest.importorskip("atheris", reason="atheris is not installed (pip install atheris; Linux x86-64 wheels only)")
    started = time.perf_counter()
    names = list(TARGETS)
    with ThreadPoolExecutor(max_workers=2) as pool:
        halves = pool.map(lambda index: _fuzz_batch(names[index::2], tmp_path, index), range(2))
        by_name = {result[0]: result for half in halves for result in half}
    results = [by_name[name] for name in names]
    wall = time.perf_counter() - started
    total = sum(inputs for _, inputs, _, _, _ in results)
    for name, inputs, seconds, code, _ in results:
        print(f"{name:44s} {inputs:7d} inputs {seconds:6.1f} s  exit {code}")
    print(f"total {total} inputs over {len(results)} targets in {wall:.0f} s wall time (2 processes)")
    report = os.environ.get("SECAGG_FUZZ_REPORT")
    if report:
        Path(report).write_text(json.dumps({
            "targets": {name: {"inputs": inputs, "seconds": round(seconds, 1), "exit": code}
                        for name, inputs, seconds, code, _ in results},
            "total_inputs": total, "wall_seconds": round(wall, 1),
        }, indent=2))
    crashes = [(name, log) for name, _, _, code, log in results if code != 0]
    assert not crashes, "\n\n".join(f"--- {name} ---\n{log}" for name, log in crashes)
    assert total >= MIN_TOTAL * min(SCALE, 1.0)
