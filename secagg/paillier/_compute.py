"""Big-integer kernels of packed Paillier, and the process pool that runs them.

**Hazardous layer.** These functions take raw integers and byte strings and do
exactly one arithmetic job each (obfuscators, modular powers, the threshold
combination); they carry no protocol or range checks. The protocol modules
validate everything before calling them.

Kernels are module-level functions of plain ``int``/``bytes`` arguments so that
:class:`Workers` can ship them to worker processes. Work is cut into chunks of
:data:`CHUNK` ciphertexts whose boundaries do not depend on the number of
workers, and chunk ``i`` draws its randomness from its own labelled expansion
of a 32-byte seed, so results are the same with 1 or 8 processes.

Integers live as ``gmpy2.mpz`` inside the kernels (GMP multiplication is several
times faster than CPython's at 2048-4096 bits) and cross process boundaries as
fixed-width big-endian byte strings ("blobs").
"""

from __future__ import annotations

import multiprocessing
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

import gmpy2
import numpy as np

from secagg.errors import ConfigurationError
from secagg.primitives import prg
from secagg.ring import RING64

__all__ = [
    "CHUNK",
    "FIXED_BASE_WINDOW_BITS",
    "Workers",
    "blob_to_ints",
    "chunked",
    "ciphertext_width",
    "combine_chunk",
    "crt_decrypt_chunk",
    "djn_exponent_bytes",
    "djn_exponents",
    "djn_obfuscators",
    "encrypt_with_obfuscators",
    "fixed_base_table",
    "ints_to_blob",
    "multiexp_chunk",
    "power_chunk",
    "product_chunk",
    "textbook_obfuscators",
    "textbook_roots",
]

CHUNK = 32
"""Ciphertexts per task: large enough to amortise inter-process transfer, small
enough to balance a 10,000-ciphertext vector over a few cores."""

FIXED_BASE_WINDOW_BITS = 8
"""Window of the fixed-base table: one table row per exponent byte, 256 entries
a row, so an exponent of L bits costs L/8 modular multiplications."""

RANDOMNESS_MARGIN_BYTES = 16
"""Extra random bytes drawn before reducing mod n: the bias is below 2^-128."""

OBFUSCATOR_LABEL = b"paillier-obfuscator/"
TABLE_CACHE_SIZE = 2

T = TypeVar("T")
R = TypeVar("R")


def chunked(count: int, size: int = CHUNK) -> list[tuple[int, int]]:
    """``(start, stop)`` pairs cutting ``range(count)`` into pieces of ``size``."""
    return [(start, min(start + size, count)) for start in range(0, count, size)]


def ints_to_blob(values: Iterable[Any], width: int) -> bytes:
    """Concatenate non-negative integers as ``width``-byte big-endian words."""
    return b"".join(int(value).to_bytes(width, "big") for value in values)


def ciphertext_width(nsquare: int) -> int:
    """Bytes of one ciphertext word for the modulus ``nsquare = n^2``: ``2 * ceil(|n|/8)``, the wire width.

    For ``|n| = 1..4 mod 8`` this is one byte more than ``ceil(bits(n^2)/8)``, so
    kernels must never derive a word's width from n^2 itself.
    """
    return 2 * ((int(gmpy2.isqrt(nsquare)).bit_length() + 7) // 8)


def blob_to_ints(blob: bytes, width: int) -> list[Any]:
    """Split a blob of ``width``-byte big-endian words into mpz integers."""
    return [gmpy2.mpz(int.from_bytes(blob[i : i + width], "big")) for i in range(0, len(blob), width)]


def _chunk_randomness(seed: bytes, chunk_index: int, size: int) -> bytes:
    """``size`` bytes of the AES-CTR expansion of ``seed`` labelled with the chunk index."""
    label = OBFUSCATOR_LABEL + chunk_index.to_bytes(8, "big")
    words = (size + 7) // 8
    return prg.expand(seed, label, words, RING64).tobytes()[:size]


def textbook_obfuscators(task: tuple[int, bytes, int, int]) -> bytes:
    """``r^n mod n^2`` for ``count`` fresh r uniform in [1, n-1] (Paillier 1999).

    Task: ``(n, seed, chunk_index, count)``. Returns a blob of ``2 * ceil(|n|/8)``-byte words.
    r is drawn as ``|n|/8 + 16`` bytes reduced mod n - 1, plus 1; the chance that
    r shares a factor with n is about 2^-(|n|/2) and is not tested.
    """
    n_int, seed, chunk_index, count = task
    n = gmpy2.mpz(n_int)
    nsquare = n * n
    width = (n_int.bit_length() + 7) // 8
    out = [gmpy2.powmod(r, n, nsquare) for r in textbook_roots(n_int, seed, chunk_index, count)]
    return ints_to_blob(out, 2 * width)


def textbook_roots(n_int: int, seed: bytes, chunk_index: int, count: int) -> list[Any]:
    """The r of each of the ``count`` obfuscators ``r^n`` that :func:`textbook_obfuscators` makes
    from the same ``(n, seed, chunk_index, count)``: the encryptor's witness for its proof of
    plaintext knowledge (secret)."""
    n = gmpy2.mpz(n_int)
    draw = (n_int.bit_length() + 7) // 8 + RANDOMNESS_MARGIN_BYTES
    raw = _chunk_randomness(seed, chunk_index, draw * count)
    return [gmpy2.mpz(int.from_bytes(raw[i * draw : (i + 1) * draw], "big")) % (n - 1) + 1 for i in range(count)]


def djn_exponents(n_int: int, seed: bytes, chunk_index: int, count: int) -> list[int]:
    """The short exponent alpha of each of the ``count`` obfuscators ``h_s^alpha`` that
    :func:`djn_obfuscators` makes from the same seed and chunk (the table reads alpha one byte
    at a time, least significant first): the encryptor's witness (secret)."""
    size = djn_exponent_bytes(n_int)
    raw = _chunk_randomness(seed, chunk_index, size * count)
    return [int.from_bytes(raw[i * size : (i + 1) * size], "little") for i in range(count)]


def djn_exponent_bytes(n: int) -> int:
    """Bytes of the short exponent alpha in DJN encryption: ceil(|n|/2) bits, rounded up to bytes."""
    return ((n.bit_length() + 1) // 2 + 7) // 8


def fixed_base_table(n_int: int, base_int: int) -> list[list[Any]]:
    """Rows ``T[i][j] = base^(j * 256^i) mod n^2`` for every byte position i of a DJN exponent."""
    nsquare = gmpy2.mpz(n_int) * n_int
    rows: list[list[Any]] = []
    power = gmpy2.mpz(base_int)
    for _ in range(djn_exponent_bytes(n_int)):
        row = [gmpy2.mpz(1), power]
        for _ in range(2, 1 << FIXED_BASE_WINDOW_BITS):
            row.append(row[-1] * power % nsquare)
        rows.append(row)
        power = row[-1] * power % nsquare  # base^(256^(i+1))
    return rows


_TABLES: OrderedDict[tuple[int, int], list[list[Any]]] = OrderedDict()


def _cached_table(n_int: int, base_int: int) -> list[list[Any]]:
    """The fixed-base table of (n, base), built once per process (a few kept, LRU)."""
    key = (n_int, base_int)
    table = _TABLES.get(key)
    if table is None:
        table = fixed_base_table(n_int, base_int)
        _TABLES[key] = table
        while len(_TABLES) > TABLE_CACHE_SIZE:
            _TABLES.popitem(last=False)
    else:
        _TABLES.move_to_end(key)
    return table


def djn_obfuscators(task: tuple[int, int, bytes, int, int]) -> bytes:
    """``h_s^alpha mod n^2`` for ``count`` fresh short exponents alpha (Damgard-Jurik-Nielsen).

    Task: ``(n, h_s, seed, chunk_index, count)`` with ``h_s = (-x^2)^n mod n^2``.
    alpha is uniform below 2^(8 * djn_exponent_bytes(n)); the power is read off the
    fixed-base table one exponent byte at a time (no squarings).
    """
    n_int, base_int, seed, chunk_index, count = task
    nsquare = gmpy2.mpz(n_int) * n_int
    table = _cached_table(n_int, base_int)
    size = djn_exponent_bytes(n_int)
    raw = _chunk_randomness(seed, chunk_index, size * count)
    out = []
    for i in range(count):
        accumulator = gmpy2.mpz(1)
        for row, byte in zip(table, raw[i * size : (i + 1) * size], strict=True):
            if byte:
                accumulator = accumulator * row[byte] % nsquare
        out.append(accumulator)
    width = (n_int.bit_length() + 7) // 8
    return ints_to_blob(out, 2 * width)


def encrypt_with_obfuscators(n_int: int, plaintexts: Sequence[int], obfuscators: Sequence[Any]) -> list[Any]:
    """``(1 + m*n) * obfuscator mod n^2`` per plaintext: g = n + 1 gives g^m = 1 + m*n."""
    n = gmpy2.mpz(n_int)
    nsquare = n * n
    return [(m * n + 1) * obfuscator % nsquare for m, obfuscator in zip(plaintexts, obfuscators, strict=True)]


def power_chunk(task: tuple[int, int, bytes, bool]) -> bytes:
    """``c^exponent mod modulus`` for every word of a blob (partial decryption).

    Task: ``(modulus, exponent, blob, constant_time)`` with ``modulus = n^2``; words
    are :func:`ciphertext_width` bytes. ``constant_time`` selects GMP's
    ``mpz_powm_sec`` (timing and cache access independent of the exponent; about
    1.4x slower at 2048 bits; the default, :data:`secagg.paillier.keys.DEFAULT_CONSTANT_TIME`).
    """
    modulus_int, exponent_int, blob, constant_time = task
    modulus = gmpy2.mpz(modulus_int)
    exponent = gmpy2.mpz(exponent_int)
    width = ciphertext_width(modulus_int)
    power = gmpy2.powmod_sec if constant_time else gmpy2.powmod
    return ints_to_blob((power(c, exponent, modulus) for c in blob_to_ints(blob, width)), width)


def crt_decrypt_chunk(task: tuple[int, int, int, int, int, bytes]) -> bytes:
    """``1 + 2*M*n mod n^2`` (= c^(2d)) per word of a blob, M by CRT decryption in constant time.

    Task: ``(p, q, h_p, h_q, p_inverse, blob)`` with n = p*q, p and q distinct odd primes,
    ``h_p = ((p-1) q)^-1 mod p``, ``h_q = ((q-1) p)^-1 mod q``, ``p_inverse = p^-1 mod q``
    (derived once per call, in constant time, by the caller); words are :func:`ciphertext_width`
    bytes, each a unit of Z*_(n^2) (not checked here). As in phe's decryption:
    ``m_p = L_p(c^(p-1) mod p^2) * h_p mod p`` with ``L_p(x) = (x - 1) / p`` (h_p is
    ``L_p(g^(p-1) mod p^2)^-1`` for g = n + 1; likewise for q), then
    ``M = m_p + ((m_q - m_p) p^-1 mod q) p``. The two exponentiations, the only steps that walk
    the secret bits, use GMP's ``mpz_powm_sec`` (its requirements, exponent > 0 and odd modulus,
    hold: p - 1 >= 2, p^2 odd); it also reduces c mod p^2 itself. The recombination (a division
    by p and q, a few products mod p and q) is GMP's ordinary arithmetic. About 7.4x cheaper
    than ``c^(2d) mod n^2`` by ``powmod_sec`` at 2048 bits (measured, docs/paillier.md):
    half-size moduli, exponents of a quarter the length.
    """
    p_int, q_int, h_p, h_q, p_inverse_int, blob = task
    p, q, p_inverse = gmpy2.mpz(p_int), gmpy2.mpz(q_int), gmpy2.mpz(p_inverse_int)
    n = p * q
    nsquare = n * n
    halves = [(p, p * p, p - 1, gmpy2.mpz(h_p)), (q, q * q, q - 1, gmpy2.mpz(h_q))]
    out = []
    for c in blob_to_ints(blob, ciphertext_width(int(nsquare))):
        m_p, m_q = (
            (gmpy2.powmod_sec(c, exponent, square) - 1) // prime * h % prime
            for prime, square, exponent, h in halves
        )
        plaintext = m_p + (m_q - m_p) * p_inverse % q * p
        out.append((2 * plaintext * n + 1) % nsquare)
    return ints_to_blob(out, ciphertext_width(int(nsquare)))


def product_chunk(task: tuple[int, Sequence[bytes]]) -> bytes:
    """Word-wise product mod ``modulus`` of equally long blobs (homomorphic addition).

    Task: ``(modulus, blobs)`` with ``modulus = n^2``; words are :func:`ciphertext_width` bytes.
    """
    modulus_int, blobs = task
    modulus = gmpy2.mpz(modulus_int)
    width = ciphertext_width(modulus_int)
    totals = blob_to_ints(blobs[0], width)
    for blob in blobs[1:]:
        totals = [total * c % modulus for total, c in zip(totals, blob_to_ints(blob, width), strict=True)]
    return ints_to_blob(totals, width)


def combine_chunk(task: tuple[int, int, Sequence[tuple[int, bytes]]]) -> tuple[bytes, int]:
    """Shoup's combination: ``M = L(prod c_i^(e_i) mod n^2) * inverse mod n``.

    Task: ``(n, inverse, [(e_i, blob_i)])`` with ``e_i = 2 * mu_i`` (negative
    exponents use modular inverses) and ``inverse = (4 * Delta^2)^-1 mod n``.
    Returns the plaintexts as a blob of ``ceil(|n|/8)``-byte words and the number of
    words whose combination was not 1 mod n (impossible for honest partials).
    """
    n_int, inverse_int, parts = task
    n = gmpy2.mpz(n_int)
    nsquare = n * n
    inverse = gmpy2.mpz(inverse_int)
    width = (n_int.bit_length() + 7) // 8
    columns = [(gmpy2.mpz(e), blob_to_ints(blob, 2 * width)) for e, blob in parts]
    plaintexts = []
    invalid = 0
    for j in range(len(columns[0][1])):
        # Negative coefficients are collected apart so that one inversion serves them all.
        positive = gmpy2.mpz(1)
        negative = gmpy2.mpz(1)
        for exponent, values in columns:
            if exponent >= 0:
                positive = positive * gmpy2.powmod(values[j], exponent, nsquare) % nsquare
            else:
                negative = negative * gmpy2.powmod(values[j], -exponent, nsquare) % nsquare
        combined = positive * gmpy2.invert(negative, nsquare) % nsquare if negative != 1 else positive
        quotient, remainder = gmpy2.f_divmod(combined - 1, n)
        if remainder:
            invalid += 1
        plaintexts.append(quotient * inverse % n)
    return ints_to_blob(plaintexts, width), invalid


def multiexp_chunk(task: tuple[int, bytes, bytes, int]) -> bytes:
    """``prod_j c_j^(w_j) mod modulus`` by Pippenger's bucket method with 8-bit windows.

    Task: ``(modulus, blob, weights, weight_bytes)`` with ``modulus = n^2``: ``blob``
    holds :func:`ciphertext_width`-byte words (so does the result) and ``weights``
    one ``weight_bytes``-byte big-endian exponent per word. Costs about
    ``weight_bytes * (count + 510)`` multiplications instead of one exponentiation
    per word, which makes batch verification of a whole vector cheap.
    """
    modulus_int, blob, weights, weight_bytes = task
    modulus = gmpy2.mpz(modulus_int)
    width = ciphertext_width(modulus_int)
    bases = blob_to_ints(blob, width)
    digits = np.frombuffer(weights, dtype=np.uint8).reshape(len(bases), weight_bytes)
    result = gmpy2.mpz(1)
    for column in range(weight_bytes):  # most significant byte first
        for _ in range(8 if column else 0):
            result = result * result % modulus
        buckets: list[Any] = [None] * 256
        for base, digit in zip(bases, digits[:, column].tolist(), strict=True):
            if digit:
                bucket = buckets[digit]
                buckets[digit] = base if bucket is None else bucket * base % modulus
        # sum_d d * bucket[d], as a product: running products from the top bucket down.
        running = gmpy2.mpz(1)
        window = gmpy2.mpz(1)
        for digit in range(255, 0, -1):
            if buckets[digit] is not None:
                running = running * buckets[digit] % modulus
            window = window * running % modulus
        result = result * window % modulus
    return int(result).to_bytes(width, "big")


MAX_WORKERS = 256
"""The most worker processes a pool may have."""


class Workers:
    """Processes that run kernels in parallel, or the calling process alone.

    ``count=1`` runs every task in the calling process (no pool is created);
    ``count=0`` means one process per CPU. Pools use the ``spawn`` start method
    (no inherited state, safe with threads) and are created on first use and
    reused until :meth:`close`. Tasks and results cross the process boundary as
    ints and bytes only, over the interprocess pipe of one machine; secret
    exponents of a key share do travel that way, to processes of the same user.
    """

    def __init__(self, count: int = 1) -> None:
        """``count`` processes (0: ``os.cpu_count()``)."""
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_WORKERS:
            raise ConfigurationError(f"workers must be an int in 0..{MAX_WORKERS}, got {count!r}")
        self.count = count or (os.cpu_count() or 1)
        self._executor: ProcessPoolExecutor | None = None

    def map(self, function: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        """``[function(task) for task in tasks]``, spread over the processes."""
        if self.count == 1 or len(tasks) <= 1:
            return [function(task) for task in tasks]
        if self._executor is None:
            self._executor = ProcessPoolExecutor(self.count, mp_context=multiprocessing.get_context("spawn"))
        return list(self._executor.map(function, tasks))

    def close(self) -> None:
        """Stop the worker processes (if any were started)."""
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None

    def __enter__(self) -> Workers:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


IN_PROCESS = Workers(1)
"""The default: run kernels in the calling process."""
