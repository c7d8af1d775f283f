"""The vector file format: canonical JSON, Wycheproof-style files, hex helpers.

A vector file is one JSON object (docs/vectors.md)::

    {"algorithm", "schema", "generatorVersion", "numberOfTests", "header",
     "notes": {flag: description}, "testGroups": [{"type", ..., "tests": [...]}]}

Files are written as ``json.dumps(obj, indent=2, sort_keys=True) + "\\n"`` in
UTF-8, so regenerating them gives the same bytes. Byte strings are lowercase hex;
ring vectors are the hex of their little-endian words.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from secagg.errors import SecAggError
from secagg.ring import Ring, RingVector

__all__ = [
    "GENERATOR_VERSION",
    "Json",
    "VectorError",
    "canonical_json",
    "from_hex",
    "ring_from_hex",
    "ring_to_hex",
    "vector_file",
]

GENERATOR_VERSION = "1.0"
"""Version of the generator and of the file layout (bump when either changes)."""

Json = dict[str, Any]


class VectorError(Exception):
    """The implementation disagrees with a vector (or the vector is malformed)."""


def canonical_json(document: Mapping[str, Any]) -> str:
    """The one text form of ``document``: 2-space indent, sorted keys, final newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def from_hex(text: str) -> bytes:
    """Bytes from a lowercase hex string; VectorError if it is not one."""
    if not isinstance(text, str) or text != text.lower():
        raise VectorError(f"expected a lowercase hex string, got {text!r:.40}")
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise VectorError(f"invalid hex string {text!r:.40}") from exc


def ring_to_hex(vector: RingVector) -> str:
    """The little-endian words of a ring vector, as hex."""
    ring = Ring(8 * vector.dtype.itemsize)
    return np.ascontiguousarray(vector, dtype=ring.dtype).tobytes().hex()


def ring_from_hex(text: str, ring_bits: int) -> RingVector:
    """A writeable ring vector from the hex of its little-endian words."""
    ring = Ring(ring_bits)
    data = from_hex(text)
    if len(data) % ring.element_size:
        raise VectorError(f"{len(data)} bytes is not a whole number of {ring.bits}-bit words")
    vector: RingVector = np.frombuffer(data, dtype=ring.dtype).copy()
    return vector


def vector_file(
    *,
    algorithm: str,
    schema: str,
    header: Sequence[str],
    notes: Mapping[str, str],
    groups: Sequence[Json],
) -> Json:
    """Assemble a vector file: number the tests 1..N in order and count them.

    Every flag a test uses must be described in ``notes`` (checked here, so a
    generator cannot emit an undocumented flag).
    """
    tc_id = 0
    for group in groups:
        for test in group["tests"]:
            tc_id += 1
            test["tcId"] = tc_id
            undocumented = [flag for flag in test["flags"] if flag not in notes]
            if undocumented:
                raise SecAggError(f"{schema}: test {tc_id} uses undocumented flags {undocumented}")
    return {
        "algorithm": algorithm,
        "schema": schema,
        "generatorVersion": GENERATOR_VERSION,
        "numberOfTests": tc_id,
        "header": list(header),
        "notes": dict(notes),
        "testGroups": list(groups),
    }


def test_case(comment: str, flags: Sequence[str], result: str, **fields: Any) -> Json:
    """One test: ``comment``, ``flags``, ``result`` and its own fields (tcId is set later)."""
    if result not in ("valid", "invalid", "acceptable"):
        raise SecAggError(f"result must be valid, invalid or acceptable, got {result!r}")
    return {"comment": comment, "flags": list(flags), "result": result, **fields}
