"""Coverage-guided fuzzing of one target with atheris (libFuzzer).

``python tests/fuzz/atheris_harness.py TARGET [libFuzzer flags, e.g. -runs=20000 -seed=1]``

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

import random
import sys
from pathlib import Path

import atheris

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports(include=["secagg"]):
    import secagg  # noqa: F401
    from fuzz.mutation import mutate
    from fuzz.targets import TARGETS, run


def main() -> None:
    name = sys.argv[1]
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

    argv = [sys.argv[0], *sys.argv[2:]]
    if not any(arg.startswith("-max_len") for arg in argv):
        argv.append(f"-max_len={max(4096, 2 * max(len(s) for s in seeds))}")
    atheris.Setup(argv, one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
