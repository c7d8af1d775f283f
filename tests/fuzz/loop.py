"""A coverage-less mutation loop with a fixed seed (also the fallback when atheris is absent).

``python tests/fuzz/loop.py [--seconds S] [--runs N] [--seed K] [TARGET ...]`` runs each
target on random bytes (1 in 8) and on mutated seeds, prints one line per target
(inputs, seconds, failures) and the first failure of each distinct kind.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fuzz.mutation import mutate
from fuzz.targets import TARGETS, Target, run

__all__ = ["LoopResult", "fuzz_loop"]


@dataclass
class LoopResult:
    """Inputs tried, seconds spent and the distinct failures (kind -> (input, traceback))."""

    target: str
    inputs: int = 0
    seconds: float = 0.0
    failures: dict[str, tuple[bytes, str]] = field(default_factory=dict)


def next_input(target: Target, rng: random.Random, seeds: list[bytes], donors: list[bytes]) -> bytes:
    """Random bytes now and then, otherwise a mutated seed."""
    if not seeds or rng.random() < 0.125:
        return rng.randbytes(rng.choice((0, 1, 4, 5, 8, 16, 64, 300)))
    return mutate(rng.choice(seeds), rng, donors)


def fuzz_loop(target: Target, *, runs: int | None = None, seconds: float | None = None, seed: int = 0) -> LoopResult:
    """Fuzz ``target`` for ``runs`` inputs or ``seconds`` seconds (whichever is given first)."""
    rng = random.Random(f"{seed}:{target.name}")
    seeds, donors = target.seeds(), target.donors()
    result = LoopResult(target.name)
    started = time.perf_counter()
    while (runs is None or result.inputs < runs) and (
        seconds is None or time.perf_counter() - started < seconds
    ):
        data = next_input(target, rng, seeds, donors)
        result.inputs += 1
        try:
            run(target, data)
        except Exception as exc:
            origin = traceback.extract_tb(exc.__traceback__)[-1]
            kind = f"{type(exc).__name__} at {Path(origin.filename).name}:{origin.lineno}"
            result.failures.setdefault(kind, (data, traceback.format_exc()))
    result.seconds = time.perf_counter() - started
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("targets", nargs="*", help="target names or prefixes (default: all)")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    names = [n for n in TARGETS if not args.targets or any(n.startswith(p) for p in args.targets)]
    total, bad = 0, 0
    for name in names:
        result = fuzz_loop(TARGETS[name], runs=args.runs, seconds=args.seconds, seed=args.seed)
        total += result.inputs
        bad += len(result.failures)
        print(f"{name:48s} {result.inputs:8d} inputs {result.seconds:7.1f}s {len(result.failures)} failure kinds")
        for kind, (data, trace) in result.failures.items():
            print(f"    {kind}: input {data.hex()[:200]}")
            if args.verbose:
                print("      " + trace.replace("\n", "\n      "))
    print(f"total {total} inputs, {bad} failure kinds")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
