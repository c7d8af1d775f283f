"""Helpers shared by the Paillier vector files: the test key size, hex integers, the test primes.

Every key here is a small **insecure** test key (128-bit modulus, 64-bit safe
primes) built inside :func:`~secagg.paillier.keys.insecure_key_sizes_for_testing`;
the verifier enters the same context. The arithmetic is the same at any size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from secagg.paillier.ceremony import generate_safe_primes
from secagg.vectors._format import from_hex
from secagg.vectors._suite import deterministic

__all__ = ["KEY_BITS", "_big", "_primes", "_unbig", "_unwords", "_words"]

KEY_BITS = 128


def _big(value: Any) -> str:
    number = int(value)
    return number.to_bytes((number.bit_length() + 7) // 8, "big").hex()


def _unbig(text: str) -> int:
    return int.from_bytes(from_hex(text), "big")


def _words(values: Sequence[Any], width: int) -> list[str]:
    return [int(v).to_bytes(width, "big").hex() for v in values]


def _unwords(items: Sequence[str]) -> list[int]:
    return [int.from_bytes(from_hex(item), "big") for item in items]


def _primes(label: str, bits: int = KEY_BITS // 2) -> tuple[int, int]:
    p, q = generate_safe_primes(bits, 2, random_bytes=deterministic(label))
    return min(p, q), max(p, q)

