"""Coverage-guided fuzzing of one target with atheris (libFuzzer).

``python tests/fuzz/atheris_harness.py TARGET [libFuzzer flags, e.g. -runs=20000 -seed=1]``

``python tests/fuzz/atheris_harness.py --batch SPEC.json`` fuzzes several targets, each in a
process of its own forked from this one once the instrumented imports are done (they take
seconds, the runs of most targets less than one): SPEC.json is a list of ``{"name", "folder",
"flags"}``; each child works in its ``folder`` (crash files land there), writes its output to
``folder/fuzz.log`` and runs exactly as ``TARGET flags`` would. One JSON line per target
(``name``, ``exit``, ``seconds``) goes to stdout.

The secagg package is instrumented for coverage; the target's valid encodings
are the seed corpus; half of the mutations are libFuzzer's own, half the
structure-aware ones of :mod:`.mutation` (field splices, length-prefix edits,
truncation at field boundaries). An input that makes anything but a
SecAggError escape (or a server step abort the round) is a crash: libFuzzer
prints the traceback, writes the input to ``crash-*`` in the working
directory and exits non-zero. On success the last line is libFuzzer's
``Done N runs in S second(s)``; the test in test_fuzz_atheris.py parses it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import atheris

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports(include=["secagg"]):
    import secagg  # noqa: F401
    from fuzz.mutation import mutate
    from fuzz.targets import TARGETS, run

CHILD_TIMEOUT_S = 1800.0


def fuzz(name: str, flags: list[str]) -> None:
    """Fuzz one target with libFuzzer's ``flags``; does not return (libFuzzer exits)."""
    target = TARGETS[name]
    seeds = list(target.seeds())
    donors = list(target.donors())
    for seed in seeds[:2]:  # build the lazily cached corpus objects before fuzzing starts
        run(target, seed)

    def one_input(data: bytes) -> None:
        run(target, data)

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if not data or rng.random() < 0.3:
            data = rng.choice(seeds)
        out = mutate(data, rng, donors) if rng.random() < 0.5 else atheris.Mutate(data, max(max_size, len(data)))
        return out[:max_size] if len(out) > max_size else out

    argv = [sys.argv[0], *flags]
    if not any(arg.startswith("-max_len") for arg in argv):
        argv.append(f"-max_len={max(4096, 2 * max(len(s) for s in seeds))}")
    atheris.Setup(argv, one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


def _child(name: str, folder: Path, flags: list[str]) -> None:
    """In the forked process: work in ``folder``, output to ``folder/fuzz.log``, fuzz; never returns.

    No ``try`` around :func:`fuzz`: under an exception handler atheris turns a target's uncaught
    exception into ``SystemExit(-1)`` instead of libFuzzer's crash report (exit 77, ``crash-*``
    file). An exception before libFuzzer starts (an unknown target) ends the child with exit 1.
    """
    os.chdir(folder)
    log = os.open("fuzz.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    fuzz(name, flags)
    os._exit(70)  # libFuzzer exits by itself; reaching this is a failure


def _wait(pid: int) -> int:
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        time.sleep(0.02)


def batch(spec: Path) -> None:
    for entry in json.loads(spec.read_text()):
        sys.stdout.flush()
        sys.stderr.flush()
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            _child(entry["name"], Path(entry["folder"]), list(entry["flags"]))
        code = _wait(pid)
        seconds = time.perf_counter() - started
        print(json.dumps({"name": entry["name"], "exit": code, "seconds": seconds}), flush=True)


def main() -> None:
    if sys.argv[1] == "--batch":
        batch(Path(sys.argv[2]))
    else:
        fuzz(sys.argv[1], sys.argv[2:])


if __name__ == "__main__":
    main()
