"""The registry that ties a vector file to its generator and its checkers.

A :class:`Suite` is one vector file: its name, its JSON Schema, a function that
regenerates it, and one checker per test-group type. The verifier looks a
group's checker up by the group's ``type`` (:data:`CHECKERS`), so a file is
checked by what it contains, whatever its name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.vectors._check import Checker
from secagg.vectors._format import Json

__all__ = ["CHECKERS", "Suite", "deterministic", "uniforms", "words"]

CHECKERS: dict[str, Checker] = {}
"""Test-group type -> checker; filled by the suite modules as they are imported."""

VECTOR_SEED_PREFIX = b"secagg/v1/vectors/"


@dataclass(frozen=True)
class Suite:
    """One vector file: ``filename`` in the data folder, ``schema`` in the schema folder."""

    filename: str
    schema: str
    generate: Callable[[], Json]


def register(group_type: str) -> Callable[[Checker], Checker]:
    """Decorator: ``checker`` verifies the tests of groups whose ``type`` is ``group_type``."""

    def decorate(checker: Checker) -> Checker:
        if group_type in CHECKERS:
            raise TypeError(f"test-group type {group_type} has two checkers")
        CHECKERS[group_type] = checker
        return checker

    return decorate


def deterministic(label: str) -> InsecureDeterministicRandom:
    """The generator's randomness for one named case: the documented SHA-256 stream
    seeded with ``"secagg/v1/vectors/" || label`` (docs/spec.md, section 2)."""
    return InsecureDeterministicRandom(VECTOR_SEED_PREFIX + label.encode())


def words(label: str, count: int, bits: int) -> np.ndarray:
    """``count`` uniform ``bits``-bit words (numpy dtype ``<u4``/``<u8``) from the stream of ``label``.

    Non-secret test data (inputs) comes from the same SHA-256 stream as the secrets,
    not from numpy's generators, whose streams may change between numpy releases.
    """
    dtype = np.dtype("<u4") if bits == 32 else np.dtype("<u8")
    out: np.ndarray = np.frombuffer(deterministic(label)(count * dtype.itemsize), dtype=dtype).copy()
    return out


def uniforms(label: str, count: int) -> list[float]:
    """``count`` doubles in [0, 1): (u64 >> 11) * 2^-53 from the stream of ``label``."""
    return [float(int(w) >> 11) * 2.0**-53 for w in words(label, count, 64)]


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()
