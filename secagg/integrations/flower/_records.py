"""Where the adapter's bytes sit in Flower records (both ends use these helpers).

Every stage message and reply carries a ConfigRecord ``"secagg"`` with the
stage name and an ArrayRecord ``"secagg.payload"`` whose one uint8 array holds
the wire-encoded protocol message. An array, not a ConfigRecord value, because
Flower transports large arrays in chunks: a masked input is as large as the
model. The round trip is lossless (``np.save``/``np.load`` of uint8).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from secagg.descriptor import Parameter, encode_parameters
from secagg.errors import ConfigurationError, DecodeError
from secagg.integrations.flower.protocol import STAGES

__all__ = [
    "PAYLOAD_RECORD",
    "STAGE_RECORD",
    "has_stage",
    "model_arrays",
    "read_stage",
    "stage_content",
    "without_stage",
]

STAGE_RECORD = "secagg"
"""Key of the ConfigRecord holding ``{"stage": name}``."""
PAYLOAD_RECORD = "secagg.payload"
"""Key of the ArrayRecord holding ``{"payload": uint8 array of the wire bytes}``."""
_OURS = (STAGE_RECORD, PAYLOAD_RECORD)


def stage_content(stage: str, payload: bytes, base: RecordDict | None = None) -> RecordDict:
    """A RecordDict with ``base``'s records (if any) plus the stage name and payload."""
    if stage not in STAGES:
        raise ConfigurationError(f"unknown secagg stage {stage!r}")
    content = RecordDict()
    if base is not None:
        for key, record in base.items():
            content[key] = record
    content[STAGE_RECORD] = ConfigRecord({"stage": stage})
    content[PAYLOAD_RECORD] = ArrayRecord({"payload": Array(np.frombuffer(payload, dtype=np.uint8))})
    return content


def has_stage(content: RecordDict) -> bool:
    """True if ``content`` carries a secagg stage record."""
    return STAGE_RECORD in content


def read_stage(content: RecordDict) -> tuple[str, bytes]:
    """The stage name and payload bytes; DecodeError if they are missing or malformed."""
    stage_record = content.get(STAGE_RECORD)
    payload_record = content.get(PAYLOAD_RECORD)
    if not isinstance(stage_record, ConfigRecord) or not isinstance(payload_record, ArrayRecord):
        raise DecodeError("message lacks the secagg stage or payload record")
    stage = stage_record.get("stage")
    if stage not in STAGES:
        raise DecodeError(f"unknown secagg stage {stage!r}")
    array = payload_record.get("payload")
    try:
        data = array.numpy() if isinstance(array, Array) else None
    except (TypeError, ValueError, OSError) as exc:
        raise DecodeError(f"secagg payload is not a numpy array: {exc}") from exc
    if data is None or data.dtype != np.uint8 or data.ndim != 1 or len(payload_record) != 1:
        raise DecodeError("secagg payload must be exactly one one-dimensional uint8 array")
    return str(stage), data.tobytes()


def without_stage(content: RecordDict) -> RecordDict:
    """A RecordDict of ``content``'s records other than the adapter's own."""
    stripped = RecordDict()
    for key, record in content.items():
        if key not in _OURS:
            stripped[key] = record
    return stripped


def model_arrays(content: RecordDict) -> list[tuple[str, str, npt.NDArray[Any]]]:
    """Every array of every ArrayRecord in ``content`` (the adapter's own excluded), in order."""
    arrays = []
    for record_key, record in content.array_records.items():
        if record_key in _OURS:
            continue
        for name, array in record.items():
            try:
                arrays.append((record_key, name, array.numpy()))
            except (TypeError, ValueError, OSError) as exc:
                raise ConfigurationError(f"array {record_key}/{name} is not a numpy array: {exc}") from exc
    return arrays


def training_parameters(content: RecordDict) -> bytes:
    """:func:`secagg.descriptor.encode_parameters` of every ConfigRecord value in ``content``
    (the adapter's own records excluded), named ``"record/key"``: the training
    configuration a secure round binds. Lists cannot be bound (ConfigurationError)."""
    flat: dict[str, Parameter] = {}
    for record_key, record in content.config_records.items():
        if record_key in _OURS:
            continue
        for key, value in record.items():
            if isinstance(value, list):
                raise ConfigurationError(f"config {record_key}/{key}: list values cannot be bound into a secure round")
            flat[f"{record_key}/{key}"] = value
    return encode_parameters(flat)
