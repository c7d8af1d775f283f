"""Per-ciphertext cost of a Paillier decrypting party, constant time against the sliding window.

Deals one key over fresh safe primes (``--key-bits``, default 2048), encrypts
``--count`` random plaintexts and prints a Markdown table of the median CPU
milliseconds per ciphertext (``time.process_time``, one process, the variants run
in turn ``--repeats`` times so that each gets the same share of a shared
machine's load) of:

- a key share's partial decryption ``c^(2 Delta s_i) mod n^2``, ``powmod_sec``
  (the default) and ``powmod`` (``constant_time=False``);
- the single key holder's answer: the CRT decryption in constant time (the
  default), the same value as ``c^(2d) mod n^2`` by ``powmod_sec`` (the default
  before the CRT decryption), phe's CRT decryption (``constant_time=False``),
  and phe's ``raw_decrypt`` alone;

with each row's ratio to the default single-key row. docs/paillier.md
("Constant-time exponentiation (the default)") quotes its output::

    PYTHONPATH=. python -m benchmarks.paillier_decrypt
"""

from __future__ import annotations

import argparse
import secrets
from collections.abc import Callable

from secagg._cli_options import MAX_REPEATS, _integer
from secagg._outputs import run_tool
from secagg.paillier import deal_threshold_key_from_primes, generate_safe_primes, single_key_from_primes
from secagg.paillier._compute import CHUNK, chunked, ints_to_blob, power_chunk
from secagg.paillier.encryption import Encryptor
from secagg.paillier.threshold import partial_decrypt, single_key_partial_decrypt

from .compression import interleaved_cpu_medians

__all__ = ["main", "measure"]

PARTIES = 3
"""Key shares dealt (2-of-3): the share's exponent grows with Delta = l! only by a few bits."""


def _old_default(key: tuple[int, int], ciphertexts: list[int], width: int) -> Callable[[], object]:
    """c^(2d) mod n^2 by ``powmod_sec``, chunk by chunk: the single key holder's default before CRT."""
    nsquare, exponent = key

    def run() -> object:
        return [
            power_chunk((nsquare, exponent, ints_to_blob(ciphertexts[start:stop], width), True))
            for start, stop in chunked(len(ciphertexts), CHUNK)
        ]

    return run


def measure(key_bits: int, count: int, repeats: int) -> dict[str, float]:
    """Median CPU milliseconds per ciphertext of each variant (names as in the table)."""
    p, q = generate_safe_primes(key_bits // 2, 2)
    threshold = deal_threshold_key_from_primes(p, q, num_parties=PARTIES, threshold=2)
    single = single_key_from_primes(p, q)
    key = single.public.key
    ciphertexts = Encryptor(key).encrypt([secrets.randbelow(key.n) for _ in range(count)])
    share, private = threshold.shares[0], single.private
    phe_private = private.phe
    operations: dict[str, Callable[[], object]] = {
        "single key, CRT, powmod_sec (default)": lambda: single_key_partial_decrypt(private, ciphertexts),
        "single key, c^(2d), powmod_sec (default before CRT)": _old_default(
            (key.nsquare, 2 * private.exponent_d), ciphertexts, key.ciphertext_bytes
        ),
        "single key, phe CRT (constant_time=False)": lambda: single_key_partial_decrypt(
            private, ciphertexts, constant_time=False
        ),
        "phe raw_decrypt alone": lambda: [phe_private.raw_decrypt(int(c)) for c in ciphertexts],
        "share, powmod_sec (default)": lambda: partial_decrypt(share, ciphertexts),
        "share, powmod (constant_time=False)": lambda: partial_decrypt(share, ciphertexts, constant_time=False),
    }
    medians = interleaved_cpu_medians(operations, repeats)
    return {name: 1000 * seconds / count for name, seconds in medians.items()}


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.paillier_decrypt [--key-bits B] [--count C] [--repeats R]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--key-bits", type=_integer(2048, 8192), default=2048)
    parser.add_argument("--count", type=_integer(1, 10_000), default=50, help="ciphertexts (default: 50)")
    parser.add_argument("--repeats", type=_integer(1, MAX_REPEATS), default=5)
    args = parser.parse_args(argv)
    if args.key_bits % 2:
        parser.error("argument --key-bits: must be even")
    per_ciphertext = measure(args.key_bits, args.count, args.repeats)
    reference = next(iter(per_ciphertext.values()))
    print(f"{args.key_bits}-bit key, {args.count} ciphertexts, median of {args.repeats} interleaved runs")
    print("| decryption | CPU ms / ciphertext | / default single key |")
    print("| --- | --- | --- |")
    for name, milliseconds in per_ciphertext.items():
        print(f"| {name} | {milliseconds:.2f} | {milliseconds / reference:.2f}x |")
    return 0


if __name__ == "__main__":  # a library error or Ctrl-C: one line, exit code 2 or 130
    raise SystemExit(run_tool("paillier_decrypt", main))
