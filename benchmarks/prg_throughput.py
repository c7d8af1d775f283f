"""PRG throughput against the raw AES-128-CTR keystream rate of this machine.

    python benchmarks/prg_throughput.py [--mib 64] [--repeats 7] [--json PATH]

Measures, in one run and with the median of several repeats:

- raw: one OpenSSL AES-128-CTR ``update_into`` of the whole buffer into a warm
  preallocated buffer (the floor); ``raw_fresh``: the same into a new buffer;
- expand_into: ``prg.expand_into`` (HKDF + chunked keystream) into a warm ring
  vector, compared with raw; ``expand``: into a fresh array, compared with raw_fresh
  (a fresh allocation costs page faults on both sides);
- add_expansion: the masking hot path, keystream added in place into a vector,
  compared with raw keystream + one numpy add (``raw_add``).

Reports GiB/s and the ratio of each rate to its raw counterpart (the
foundations issue asks for >= 80%).
"""

from __future__ import annotations

import argparse
import functools
import json
import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secagg._cli_options import _output_file
from secagg._outputs import run_tool, write_results
from secagg.masking.benchmark import median_seconds
from secagg.primitives import prg
from secagg.ring import RING32, RING64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=64, help="keystream per measurement (MiB)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", metavar="PATH", type=_output_file)
    args = parser.parse_args()
    nbytes = args.mib << 20
    zeros = bytes(nbytes)
    out = bytearray(nbytes + 16)
    seed = os.urandom(32)

    def keystream_into(buffer: bytearray | memoryview) -> None:
        Cipher(algorithms.AES(os.urandom(16)), modes.CTR(bytes(16))).encryptor().update_into(zeros, buffer)

    words = np.frombuffer(out, dtype=np.uint32, count=nbytes // 4)
    accumulator = np.zeros(nbytes // 4, dtype=np.uint32)

    def raw_add() -> None:
        keystream_into(out)
        np.add(accumulator, words, out=accumulator)

    results: dict[str, float] = {
        "raw_s": median_seconds(lambda: keystream_into(out), args.repeats),
        "raw_fresh_s": median_seconds(lambda: keystream_into(np.empty(nbytes + 16, np.uint8).data), args.repeats),
        "raw_add_s": median_seconds(raw_add, args.repeats),
    }
    baseline = {"expand_into": "raw_s", "expand": "raw_fresh_s", "add_expansion": "raw_add_s"}
    for ring in (RING32, RING64):
        length = nbytes // ring.element_size
        target = ring.zeros(length)
        results[f"expand_into_u{ring.bits}_s"] = median_seconds(
            functools.partial(prg.expand_into, target, seed, b"bench"), args.repeats
        )
        results[f"expand_u{ring.bits}_s"] = median_seconds(
            functools.partial(prg.expand, seed, b"bench", length, ring), args.repeats
        )
        results[f"add_expansion_u{ring.bits}_s"] = median_seconds(
            functools.partial(prg.add_expansion, target, seed, b"bench"), args.repeats
        )
    gib = nbytes / (1 << 30)
    print(f"{'operation':<22} {'GiB/s':>8}  {'vs':<12} {'ratio':>6}")
    for name, seconds in results.items():
        reference = baseline.get(name[:-2].rsplit("_u", 1)[0], name)
        ratio = results[reference] / seconds
        print(f"{name[:-2]:<22} {gib / seconds:>8.2f}  {reference[:-2]:<12} {ratio:>6.2f}")
    if args.json:
        report = {"bytes": nbytes, "machine_cpus": os.cpu_count(), "numpy": np.__version__, **results}
        write_results(args.json, "benchmark report", json.dumps(report, indent=2) + "\n")  # or on stdout


if __name__ == "__main__":
    raise SystemExit(run_tool("prg_throughput", main))  # a failed write or Ctrl-C: one line, exit code 2 or 130
