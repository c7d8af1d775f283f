"""Exact noise sampler throughput against the PRG floor (issue 15: >= 10^6 samples/s on one core).

    PYTHONPATH=. python benchmarks/dp_sampler.py [--size 1000000] [--repeats 5] [--json PATH]

For each sigma^2, in one process and one thread, the median of ``repeats`` runs of
:func:`secagg.dp.sample_discrete_gaussian` drawing ``size`` samples:

- from :class:`~secagg.dp.SeededRandomSource` (AES-128-CTR keystream, the vectors'
  source) and from :class:`~secagg.dp.SystemRandomSource` (``os.urandom``, real use);
- bytes of randomness consumed per sample (counted, not estimated);
- the floor: raw AES-128-CTR keystream bytes per CPU second (same run) divided
  by the bytes per sample, i.e. how fast sampling could be if only the PRG cost time.

Kept a plain function (:func:`sampler_throughput`) so a ``secagg bench dp`` suite
can call it beside the accuracy-against-epsilon measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secagg._cli_options import MAX_DIM, MAX_REPEATS, _integer, _output_file
from secagg._outputs import run_tool, write_results
from secagg.dp import SeededRandomSource, SystemRandomSource, sample_discrete_gaussian

__all__ = ["DEFAULT_SIGMA_SQUARED", "sampler_throughput"]

DEFAULT_SIGMA_SQUARED = (10**6, 10**8, 2**40)
"""sigma = 10^3 and 10^4 (the issue's target range) and 2^20 (the largest demo scale)."""

_SEED = bytes(range(32))


class _Counting:
    def __init__(self) -> None:
        self.inner = SeededRandomSource(_SEED)
        self.consumed = 0

    def random_bytes(self, n: int) -> bytes:
        self.consumed += n
        return self.inner.random_bytes(n)


def _keystream_cpu_s(nbytes: int, repeats: int = 7) -> float:
    """Median CPU seconds of ``nbytes`` of raw AES-128-CTR keystream into a warm buffer
    (:func:`secagg_bench.floors.keystream_s` in CPU time, comparable with the sampler's)."""
    zeros, out = bytes(nbytes), bytearray(nbytes + 16)
    times = []
    for _ in range(repeats + 1):
        started = time.process_time()
        Cipher(algorithms.AES(os.urandom(16)), modes.CTR(bytes(16))).encryptor().update_into(zeros, out)
        times.append(time.process_time() - started)
    return sorted(times[1:])[repeats // 2]


def _median_seconds(sigma_squared: int, size: int, repeats: int, system: bool) -> tuple[float, float]:
    """Median (wall, CPU) seconds. CPU time is this process's: on a shared machine it is
    the one-core figure, while wall time also counts the waits for a core."""
    walls, cpus = [], []
    for _ in range(repeats):
        source = SystemRandomSource() if system else SeededRandomSource(_SEED)
        wall, cpu = time.perf_counter(), time.process_time()
        sample_discrete_gaussian(sigma_squared, size, source)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return sorted(walls)[len(walls) // 2], sorted(cpus)[len(cpus) // 2]


def sampler_throughput(
    sigma_squared: Sequence[int] = DEFAULT_SIGMA_SQUARED, size: int = 1_000_000, repeats: int = 5
) -> list[dict[str, Any]]:
    """One row per sigma^2: samples/s (seeded and OS sources), bytes/sample, PRG floor and ratio."""
    keystream_bytes = 1 << 26
    prg_bytes_per_s = keystream_bytes / _keystream_cpu_s(keystream_bytes)
    rows = []
    for value in sigma_squared:
        counting = _Counting()
        sample_discrete_gaussian(value, size, counting)
        per_sample = counting.consumed / size
        seeded_wall, seeded_cpu = _median_seconds(value, size, repeats, system=False)
        system_wall, system_cpu = _median_seconds(value, size, max(1, repeats // 2), system=True)
        floor = prg_bytes_per_s / per_sample
        rows.append(
            {
                "params": {"sigma_squared": value, "size": size, "repeats": repeats},
                "metrics": {
                    "samples_per_cpu_s_seeded": size / seeded_cpu,
                    "samples_per_cpu_s_system": size / system_cpu,
                    "samples_per_wall_s_seeded": size / seeded_wall,
                    "samples_per_wall_s_system": size / system_wall,
                    "bytes_per_sample": per_sample,
                    "prg_bytes_per_s": prg_bytes_per_s,
                    "floor_samples_per_s": floor,
                    "floor_over_seeded_cpu": floor / (size / seeded_cpu),
                },
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=_integer(1, MAX_DIM), default=1_000_000)
    parser.add_argument("--repeats", type=_integer(1, MAX_REPEATS), default=5)
    parser.add_argument("--json", metavar="PATH", type=_output_file)
    args = parser.parse_args()
    rows = sampler_throughput(size=args.size, repeats=args.repeats)
    print("samples per second of CPU time (one core) and of wall time; floor = PRG bytes/s / bytes per sample")
    header = ("sigma^2", "seeded cpu", "urandom cpu", "seeded wall", "urandom wall", "B/sample", "floor", "floor/cpu")
    print("".join(f"{name:>14}" for name in header))
    for row in rows:
        p, m = row["params"], row["metrics"]
        keys = (
            "samples_per_cpu_s_seeded",
            "samples_per_cpu_s_system",
            "samples_per_wall_s_seeded",
            "samples_per_wall_s_system",
        )
        print(
            f"{p['sigma_squared']:>14}"
            + "".join(f"{m[key]:>14,.0f}" for key in keys)
            + f"{m['bytes_per_sample']:>14.1f}{m['floor_samples_per_s']:>14,.0f}{m['floor_over_seeded_cpu']:>14.1f}"
        )
    print(f"PRG floor: AES-128-CTR keystream {rows[0]['metrics']['prg_bytes_per_s'] / 2**30:.2f} GiB per CPU second")
    if args.json:
        write_results(args.json, "benchmark report", json.dumps(rows, indent=2) + "\n")  # or on stdout


if __name__ == "__main__":
    raise SystemExit(run_tool("dp_sampler", main))  # a failed write or Ctrl-C: one line, exit code 2 or 130
