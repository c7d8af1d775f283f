"""The verifier's limits on what an untrusted vector file may ask it to do (docs/vectors.md, "Limits").

The library's own bounds are sized for production (a PRG expansion of up to 2^32 - 1
words: 32 GiB); a vector file is a reviewer's input and needs far less. Each size field
that drives an allocation or a loop in a checker is bounded here, per test-group type,
before the checker runs: a test over a limit fails with the field, its value and the
limit, and nothing is allocated. Bit widths (ring, key, slot) need no entry: the library
refuses those outside their small ranges before any work.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from secagg.vectors._format import Json, VectorError

__all__ = ["MAX_FILE_BYTES", "MAX_FILE_WORK", "MAX_NESTING", "check_limits", "file_work", "nesting_depth"]

MAX_FILE_BYTES = 1 << 23
"""Largest vector file read (8 MiB; the largest committed file is under 1 MiB)."""
MAX_NESTING = 32
"""Deepest nesting of JSON arrays and objects in a vector file (the committed files nest at most 9 deep)."""
MAX_FILE_WORK = 16
"""Most work one file may ask for, in tests at their limits: each test costs the sum over its size
fields of value / limit (a test at one limit costs 1), and a file whose tests together cost more is
refused before any test runs (the committed files cost at most 4.4). Without it an 8 MiB file of
tens of thousands of tests could run each one at full size, just inside its limits."""
MAX_ELEMENTS = 1 << 20
"""Most elements (words, values, coordinates, indices) one test may ask for."""
MAX_STREAM_BYTES = 1 << 20
"""Most bytes of a random stream one test may draw."""
MAX_SAMPLES = 1 << 12
"""Most DP noise samples one test may draw (each costs many stream draws)."""
MAX_SESSION_CLIENTS = 1 << 8
"""Most clients of a masking configuration whose graph or session a test derives."""
MAX_SHARES = 1 << 8
"""Most Shamir shares one test splits into or combines (checking each extra share costs t^2)."""
MAX_MODULUS_BYTES = 256
"""Largest Paillier modulus n a test computes with (2048 bits; the committed tests use 128-bit keys)."""
MAX_KEY_RECORD_BYTES = 1 << 14
"""Largest encoded Paillier public key or key shares (together) of one test."""
MAX_CIPHERTEXTS = 1 << 6
"""Most Paillier encryptions, ciphertexts or partial decryptions of one test (each a modular power)."""
MAX_PARTIES = 1 << 4
"""Most key-share holders one Paillier test deals to or decrypts with."""
MAX_PAILLIER_VALUES = 1 << 8
"""Most values of one Paillier session test (packed several to a plaintext, each encrypted)."""

Size = Callable[[object], int]


def _integer(value: object) -> int:
    if type(value) is not int:  # not a bool, float or numeric text, which int() would accept
        raise VectorError(f"must be a JSON integer, got {type(value).__name__}")
    return value


def _optional_integer(value: object) -> int:
    """An integer, or null (``block``: one block of the padded dimension, which ``dimension`` bounds)."""
    return 0 if value is None else _integer(value)


def _sum(value: object) -> int:
    """The total of a list of sizes (``draws``)."""
    if not isinstance(value, list):
        raise VectorError(f"must be a list of integers, got {type(value).__name__}")
    return sum(_integer(item) for item in value)


def _count(value: object) -> int:
    """The number of entries of a list (``indices``, ``shares``)."""
    if not isinstance(value, list):
        raise VectorError(f"must be a list, got {type(value).__name__}")
    return len(value)


def _count_all(value: object) -> int:
    """The number of entries of a list of lists (``vectors``: ciphertext vectors)."""
    if not isinstance(value, list):
        raise VectorError(f"must be a list of lists, got {type(value).__name__}")
    return sum(_count(item) for item in value)


def _hex_bytes(value: object) -> int:
    """The bytes a hex string (or a list of them, together) encodes."""
    items = value if isinstance(value, list) else [value]
    texts = [item for item in items if isinstance(item, str)]
    if len(texts) != len(items):
        raise VectorError("must be a hex string or a list of them")
    return sum(len(text) for text in texts) // 2


def _layout_sum(value: object) -> int:
    """The total size of a ``[[name, size], ...]`` layout."""
    if not isinstance(value, list) or not all(isinstance(item, list) and len(item) == 2 for item in value):
        raise VectorError("must be a list of [name, size] pairs")
    return sum(_integer(size) for _, size in value)


_CONFIG = {"numClients": (_integer, MAX_SESSION_CLIENTS), "vectorLength": (_integer, MAX_ELEMENTS)}

LIMITS: Mapping[str, Mapping[str, tuple[Size, int]]] = {
    "DeterministicRandomTest": {"draws": (_sum, MAX_STREAM_BYTES)},
    "PrgTest": {"length": (_integer, MAX_ELEMENTS)},
    "BitPackTest": {"length": (_integer, MAX_ELEMENTS)},
    "BitUnpackTest": {"length": (_integer, MAX_ELEMENTS)},
    "RotationTest": {"dimension": (_integer, MAX_ELEMENTS), "block": (_optional_integer, MAX_ELEMENTS)},
    "SparsitySubsetTest": {"dimension": (_integer, MAX_ELEMENTS), "count": (_integer, MAX_ELEMENTS)},
    "SparsityLayerTest": {"layout": (_layout_sum, MAX_ELEMENTS)},
    "PairwiseMaskTest": {"length": (_integer, MAX_ELEMENTS)},
    "SessionIdTest": _CONFIG,
    "GraphTest": _CONFIG,
    "MaskingSessionTest": _CONFIG,
    "MaskingClientTest": _CONFIG,
    "DpSamplerStreamTest": {"size": (_integer, MAX_STREAM_BYTES)},
    "DiscreteGaussianTest": {"size": (_integer, MAX_SAMPLES)},
    "DiscreteLaplaceTest": {"size": (_integer, MAX_SAMPLES)},
    "PoissonSampleTest": {"size": (_integer, MAX_ELEMENTS), "offset": (_integer, MAX_STREAM_BYTES)},
    "PaillierUnpackTest": {"length": (_integer, MAX_ELEMENTS)},
    "PaillierEncryptionTest": {"n": (_hex_bytes, MAX_MODULUS_BYTES), "plaintexts": (_count, MAX_CIPHERTEXTS)},
    "PaillierAdditionTest": {"n": (_hex_bytes, MAX_MODULUS_BYTES), "vectors": (_count_all, MAX_CIPHERTEXTS)},
    "PaillierCiphertextTest": {"n": (_hex_bytes, MAX_MODULUS_BYTES)},
    "ThresholdDealTest": {
        "p": (_hex_bytes, MAX_MODULUS_BYTES // 2),
        "q": (_hex_bytes, MAX_MODULUS_BYTES // 2),
        "numParties": (_integer, MAX_PARTIES),
    },
    "KeyShareTest": {"publicKey": (_hex_bytes, MAX_KEY_RECORD_BYTES)},
    "PartialDecryptionTest": {
        "publicKey": (_hex_bytes, MAX_KEY_RECORD_BYTES),
        "keyShares": (_hex_bytes, MAX_KEY_RECORD_BYTES),
        "ciphertexts": (_count, MAX_CIPHERTEXTS),
        "partials": (_count, MAX_PARTIES),
    },
    "DecryptionProofTest": {
        "publicKey": (_hex_bytes, MAX_KEY_RECORD_BYTES),
        "keyShares": (_hex_bytes, MAX_KEY_RECORD_BYTES),
        "aggregate": (_count, MAX_CIPHERTEXTS),
        "partial": (_count, MAX_CIPHERTEXTS),
    },
    "PaillierSessionTest": {
        "publicKey": (_hex_bytes, MAX_KEY_RECORD_BYTES),
        "keyShare1": (_hex_bytes, MAX_KEY_RECORD_BYTES),
        "vectorLength": (_integer, MAX_PAILLIER_VALUES),
    },
    "ShamirSplitTest": {"indices": (_count, MAX_SHARES)},
    "ShamirCombineTest": {"shares": (_count, MAX_SHARES)},
}
"""Test-group type -> {size field (in the group or the test): (how to read it, its limit)}."""


def check_limits(group: Json, test: Json) -> float:
    """VectorError naming the first size field of ``test`` (or of its ``group``) above its limit;
    else the test's work: the sum over its size fields of value / limit (:data:`MAX_FILE_WORK`)."""
    work = 0.0
    for field, (size, limit) in LIMITS.get(str(group.get("type")), {}).items():
        for holder in (group, test):
            if field not in holder:
                continue
            try:
                value = size(holder[field])
            except VectorError as exc:
                raise VectorError(f"{field} {exc}") from None
            if value > limit:
                raise VectorError(f"{field} {value} is above the verifier's limit {limit} (docs/vectors.md, 'Limits')")
            work += value / limit
    return work


def file_work(document: Json) -> float:
    """The work of every test of a parsed vector file within its limits (a test over a limit counts
    nothing here: it fails on its own, before its checker runs)."""
    total = 0.0
    for group in document.get("testGroups", []):
        for test in group.get("tests", []):
            try:
                total += check_limits(group, test)
            except VectorError:
                continue
    return total


def nesting_depth(value: object) -> int:
    """How deeply arrays and objects nest in a parsed JSON value (a scalar: 0), without recursion."""
    deepest, pending = 0, [(value, 0)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, depth + 1)
            pending.extend((child, depth + 1) for child in children)
    return deepest
