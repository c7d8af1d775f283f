"""Checks shared by the simulation and deployment tests: the server's aggregate against the plain sum.

Masking rounds sum in Z_(2^32); Paillier rounds (``"protocol": "paillier"``) as int64 integers.

The example ServerApp writes a JSON report (every round's included and dropped
nodes, the unmasked ring sum, the resulting arrays); each node's audit log
holds its own unmasked contribution. The checks: the server's aggregate is the
ring sum of the included nodes' contributions, bit for bit, and the new model
is the previous one plus the decoded weighted mean.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from secagg.encoding import QuantizationConfig, from_ring
from secagg.integrations.flower.clipping import decode_segmented, parse_table
from secagg.integrations.flower.protocol import flatten_arrays, unflatten_arrays

CLIP, BITS, MAX_WEIGHT = 0.5, 16, 4096  # SecAggOptions' defaults, as the example uses them


def audits_of_round(audit_dir: Path, server_round: int) -> dict[int, dict[str, Any]]:
    """node id -> that node's audit record of ``server_round``."""
    records = [json.loads(p.read_text()) for p in audit_dir.glob(f"round-{server_round}-node-*.json")]
    return {int(record["node_id"]): record for record in records}


def arrays_from_json(arrays: dict[str, Any]) -> list[tuple[str, str, np.ndarray]]:
    return [
        ("arrays", name, np.frombuffer(bytes.fromhex(a["hex"]), dtype=a["dtype"]).reshape(a["shape"]))
        for name, a in arrays.items()
    ]


def check_rounds(report: dict[str, Any], audit_dir: Path) -> list[dict[str, Any]]:
    """Assert every round's aggregate and model; return the rounds for further checks."""
    previous = arrays_from_json(report["initial"])
    for entry in report["rounds"]:
        assert entry["skipped_reason"] is None, entry
        audits = audits_of_round(audit_dir, entry["round"])
        included = set(entry["included"])
        assert included <= set(audits), (included, set(audits))
        # The server's aggregate (unmasked, or decrypted) is exactly the plain sum of what the
        # included nodes put in: in Z_(2^32) for masking, as int64 integers for Paillier.
        paillier = entry.get("protocol") == "paillier"
        dtype = np.int64 if paillier else np.uint32
        plain = np.zeros(len(entry["aggregate"]), dtype=dtype)
        for node in included:
            assert audits[node]["ring_bits"] == (64 if paillier else 32)
            np.add(plain, np.array(audits[node]["encoded"], dtype=dtype), out=plain)
        assert np.array_equal(plain, np.array(entry["aggregate"], dtype=dtype))
        assert entry["weight_total"] == sum(audits[node]["weight"] for node in included)
        # The new model is the previous one plus the decoded weighted mean update.
        ring_bits = 64 if paillier else 32
        quantization = QuantizationConfig(CLIP, BITS, len(entry["node_ids"]), ring_bits, max_weight=MAX_WEIGHT)
        table = parse_table(bytes.fromhex(entry["segments"]))  # the round's clip per array
        # Both protocols carry a clipped count per array and the weight after the values.
        integers = plain if paillier else from_ring(plain, quantization)
        mean, _, _ = decode_segmented(integers, table, quantization, len(included))
        base, layout = flatten_arrays(previous)
        expected = unflatten_arrays(base + mean, layout)
        current = arrays_from_json(entry["arrays"])
        for (_, name, got), want in zip(current, expected, strict=True):
            assert got.tobytes() == want.tobytes(), (entry["round"], name)
        previous = current
    rounds: list[dict[str, Any]] = report["rounds"]
    return rounds
