"""Where the adapter's bytes sit in Flower records (both ends use these helpers).

Every stage message and reply carries a ConfigRecord ``"secagg"`` with the
stage name and an ArrayRecord ``"secagg.payload"`` whose one uint8 array holds
the wire-encoded protocol message. An array, not a ConfigRecord value, because
Flower transports large arrays in chunks: a masked input is as large as the
model. The round trip is lossless (``np.save``/``np.load`` of uint8).

Every array read here comes from another party, so it is checked before
Flower's ``Array.numpy()`` (``np.load``) sees it: ``.npy`` bytes only (no
empty data, zip or ``.npz`` archives, pickles), format 1.0 or 2.0, no object
dtype, and exactly as many data bytes as the header declares (so a short
header cannot make ``np.load`` allocate a huge array). Anything else is a
DecodeError. A receiver that knows what an honest message of the stage weighs
(:mod:`~secagg.integrations.flower._limits`) passes :func:`read_stage` that limit,
checked on the header before the payload is loaded, and can require the content
to hold the stage records alone.
"""

from __future__ import annotations

import math
import tokenize
from collections.abc import Callable
from io import BytesIO
from typing import Any

import numpy as np
import numpy.typing as npt
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, RecordDict
from flwr.common.constant import SType
from numpy.lib import format as npy_format

from secagg.descriptor import Parameter, encode_parameters
from secagg.errors import ConfigurationError, DecodeError, ProtocolError
from secagg.integrations.flower._limits import (
    MAX_EMPTY_ARRAYS,
    NPY_HEADER_LIMIT,
    VALUE_BYTES,
    config_lower_bound,
)
from secagg.integrations.flower._round_binding import check_message_type
from secagg.integrations.flower.protocol import STAGES

__all__ = [
    "PAYLOAD_RECORD",
    "STAGE_RECORD",
    "check_bindable",
    "check_training",
    "has_stage",
    "model_arrays",
    "read_stage",
    "stage_content",
    "stored_round",
    "without_stage",
]

STAGE_RECORD = "secagg"
"""Key of the ConfigRecord holding ``{"stage": name}``."""
PAYLOAD_RECORD = "secagg.payload"
"""Key of the ArrayRecord holding ``{"payload": uint8 array of the wire bytes}``."""
_OURS = (STAGE_RECORD, PAYLOAD_RECORD)

# What numpy's .npy header parser and np.load raise on malformed bytes (numpy 2.x, read in
# numpy/lib/_format_impl.py and _npyio_impl.py): ValueError (bad magic, version, header,
# dtype, shape, object arrays without pickle, truncated data; UnicodeDecodeError included),
# SyntaxError (IndentationError from the header tokenizer), tokenize.TokenError (an
# unbalanced header), OverflowError (a dimension beyond a C long), EOFError (no data).
_NPY_ERRORS = (ValueError, SyntaxError, tokenize.TokenError, OverflowError, EOFError)


def _header(array: object, who: str) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """The shape, dtype and data bytes of the ``.npy`` array in ``array`` (untrusted), read from its
    header alone; DecodeError unless it is a plain, complete .npy array (format 1.0 or 2.0, no
    object dtype, as many data bytes as the header declares)."""
    if not isinstance(array, Array):
        raise DecodeError(f"{who} is not an array")
    if array.stype != SType.NUMPY:
        raise DecodeError(f"{who} is not a numpy array (serialisation {array.stype!r})")
    data = array.data
    if not isinstance(data, bytes) or not data.startswith(npy_format.MAGIC_PREFIX):
        raise DecodeError(f"{who} is not .npy data (empty, a zip or .npz archive, or other bytes)")
    stream = BytesIO(data)
    try:
        version = npy_format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = npy_format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _, dtype = npy_format.read_array_header_2_0(stream)
        else:
            raise DecodeError(f"{who}: .npy format {version} is not accepted (1.0 and 2.0 are)")
    except _NPY_ERRORS as exc:
        raise DecodeError(f"{who} is not a valid .npy array: {exc}") from exc
    if dtype.hasobject:
        raise DecodeError(f"{who}: object arrays are not accepted")
    declared, carried = math.prod(shape) * dtype.itemsize, len(data) - stream.tell()
    if declared != carried:
        raise DecodeError(f"{who}: the header declares {declared} data bytes, {carried} follow")
    return shape, dtype, declared


def _ndarray(array: object, who: str, max_bytes: int | None = None) -> npt.NDArray[Any]:
    """The ndarray in ``array`` (untrusted); DecodeError unless it is a plain, complete .npy array
    (with ``max_bytes``: a one-dimensional uint8 array of at most that many bytes, checked before loading)."""
    shape, dtype, declared = _header(array, who)
    if max_bytes is not None:
        _check_payload_header(who, dtype, shape, declared, max_bytes)
    assert isinstance(array, Array)  # _header checked it
    try:
        loaded = array.numpy()
    except _NPY_ERRORS as exc:
        raise DecodeError(f"{who} is not a valid .npy array: {exc}") from exc
    if not isinstance(loaded, np.ndarray):
        raise DecodeError(f"{who} is not a single array")
    return loaded


def _check_payload_header(who: str, dtype: np.dtype[Any], shape: tuple[int, ...], size: int, max_bytes: int) -> None:
    """DecodeError unless a payload's header declares one one-dimensional uint8 array of at most ``max_bytes``."""
    if dtype != np.uint8 or len(shape) != 1:
        raise DecodeError(f"{who} must be exactly one one-dimensional uint8 array")
    if size > max_bytes:
        raise DecodeError(f"{who} of {size} bytes exceeds the {max_bytes} bytes an honest one has")


def _short(value: object) -> str:
    """``repr(value)``, cut to 40 characters (untrusted names in a report stay short)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _cut(text: str) -> str:
    """``text``, cut to 80 characters (untrusted names in a report stay short)."""
    return text if len(text) <= 80 else text[:77] + "..."


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


def read_stage(
    content: RecordDict,
    limit: Callable[[str], int] | None = None,
    *,
    alone: Callable[[str], bool] | None = None,
) -> tuple[str, bytes]:
    """The stage name and payload bytes; DecodeError if they are missing or malformed.

    ``limit(stage)``: the most payload bytes an honest message of that stage has, checked
    before the payload is loaded (the limit may raise a SecAggError of its own). ``alone(stage)``:
    True if the content must hold nothing but the stage records (every reply; a server message
    outside the training stages). Either way the stage record holds the stage name alone.
    """
    stage_record = content.get(STAGE_RECORD)
    payload_record = content.get(PAYLOAD_RECORD)
    if not isinstance(stage_record, ConfigRecord) or not isinstance(payload_record, ArrayRecord):
        raise DecodeError("message lacks the secagg stage or payload record")
    stage = stage_record.get("stage")
    if stage not in STAGES:
        raise DecodeError(f"unknown secagg stage {_short(stage)}")
    stage = str(stage)
    if len(stage_record) != 1:
        raise DecodeError(f"the secagg stage record holds {len(stage_record)} keys; it holds the stage name alone")
    if alone is not None and alone(stage) and len(content) != len(_OURS):
        others = sorted(key for key in content if key not in _OURS)
        named = ", ".join(_short(key) for key in others[:3])
        raise DecodeError(f"a {stage!r} message holds {len(others)} records beside the secagg records ({named})")
    if len(payload_record) != 1 or "payload" not in payload_record:
        raise DecodeError("secagg payload must be exactly one one-dimensional uint8 array")
    max_bytes = None if limit is None else limit(stage)
    data = _ndarray(payload_record["payload"], f"secagg {stage!r} payload", max_bytes)
    if data.dtype != np.uint8 or data.ndim != 1:
        raise DecodeError("secagg payload must be exactly one one-dimensional uint8 array")
    return stage, data.tobytes()


def without_stage(content: RecordDict) -> RecordDict:
    """A RecordDict of ``content``'s records other than the adapter's own."""
    stripped = RecordDict()
    for key, record in content.items():
        if key not in _OURS:
            stripped[key] = record
    return stripped


def model_arrays(content: RecordDict) -> list[tuple[str, str, npt.NDArray[Any]]]:
    """Every array of every ArrayRecord in ``content`` (the adapter's own excluded), in order.

    DecodeError if one of them is not a plain, complete .npy array (see the module docstring).
    """
    arrays = []
    for record_key, record in content.array_records.items():
        if record_key in _OURS:
            continue
        for name, array in record.items():
            arrays.append((record_key, name, _ndarray(array, f"array {record_key}/{name}")))
    return arrays


def _header_size(data: bytes) -> int:
    """The bytes before an ``.npy`` array's data, as its prefix declares (0 if it declares none:
    the header parser refuses it)."""
    if data[6:8] == b"\x01\x00":
        return 10 + int.from_bytes(data[8:10], "little")
    if data[6:8] == b"\x02\x00":
        return 12 + int.from_bytes(data[8:12], "little")
    return 0


def check_training(content: RecordDict, max_values: int, config_bytes: int) -> None:
    """DecodeError unless the training ``content`` (the adapter's records excluded) is within the
    honest size the round's setup binds, read from sizes and ``.npy`` headers alone, before any
    array is loaded: its arrays hold at most ``max_values`` values (complex ones count two), at
    most :data:`~secagg.integrations.flower._limits.VALUE_BYTES` bytes each, each array's header at
    most :data:`~secagg.integrations.flower._limits.NPY_HEADER_LIMIT` bytes, at most
    :data:`~secagg.integrations.flower._limits.MAX_EMPTY_ARRAYS` empty arrays; its config entries
    encode to at most ``config_bytes`` (the bound parameters' size); it holds no MetricRecord (a
    setup binds none: :func:`check_bindable`), refused unread."""
    check_bindable(content, DecodeError)
    used = empty = 0
    for record_key, record in content.array_records.items():
        if record_key in _OURS:
            continue
        for name, array in record.items():
            who = _cut(f"array {record_key}/{name}")
            room = NPY_HEADER_LIMIT + VALUE_BYTES * (max_values - used)
            data = array.data if isinstance(array, Array) and isinstance(array.data, bytes) else b""
            size = len(data)
            if size > room:
                raise DecodeError(f"{who} of {size} bytes exceeds the {room} bytes an honest model of "
                                  f"{max_values} values has room for")
            if _header_size(data) > NPY_HEADER_LIMIT:  # before the header is parsed
                raise DecodeError(f"{who}: a .npy header of {_header_size(data)} bytes exceeds the "
                                  f"{NPY_HEADER_LIMIT} bytes an honest one has")
            shape, dtype, _ = _header(array, who)
            pairs = 2 if dtype.kind == "c" else 1
            if dtype.kind not in "fciub" or dtype.itemsize > VALUE_BYTES * pairs:
                raise DecodeError(f"{who}: dtype {dtype} is not one an honest model has")
            values = math.prod(shape) * pairs
            used += values
            empty += values == 0
            if used > max_values or empty > MAX_EMPTY_ARRAYS:
                raise DecodeError(f"the model sent exceeds what an honest one of {max_values} values has "
                                  f"(at {who}: {used} values, {empty} empty arrays)")
    records = {key: record for key, record in content.config_records.items() if key not in _OURS}
    size = config_lower_bound(records, config_bytes)
    if size > config_bytes:
        raise DecodeError(f"the training configuration sent takes at least {size} bytes, more than the "
                          f"{config_bytes} bytes an honest one has (its setup binds it)")


def check_bindable(content: RecordDict, error: type[DecodeError] | type[ConfigurationError]) -> None:
    """``error`` unless ``content`` (the adapter's records excluded) holds only ArrayRecords and
    ConfigRecords, what a secure round binds (the model's digest, :func:`training_parameters`):
    a MetricRecord for the train handler would be the server's unbound, unchecked word (a split
    between nodes unseen, of any size). Its values are not read; the reason names at most three."""
    metrics = [key for key in content.metric_records if key not in _OURS]
    if metrics:
        named = ", ".join(_short(key) for key in metrics[:3])
        raise error(
            f"the training content holds {len(metrics)} MetricRecord ({named}) beside the model and config: "
            "a secure round binds arrays and config records only, an honest one has no other; put training "
            "settings in a ConfigRecord"
        )


def training_parameters(content: RecordDict) -> bytes:
    """:func:`secagg.descriptor.encode_parameters` of every ConfigRecord value in ``content``
    (the adapter's own records excluded), named ``"record/key"``: the training
    configuration a secure round binds. Lists cannot be bound, nor two entries of one name
    (``"a"/"b/c"`` and ``"a/b"/"c"``; ConfigurationError)."""
    flat: dict[str, Parameter] = {}
    for record_key, record in content.config_records.items():
        if record_key in _OURS:
            continue
        for key, value in record.items():
            if isinstance(value, list):
                raise ConfigurationError(f"config {record_key}/{key}: list values cannot be bound into a secure round")
            name = f"{record_key}/{key}"
            if name in flat:  # e.g. {"a": {"b/c": ...}} and {"a/b": {"c": ...}}: one would go unbound
                raise ConfigurationError(f"config {_cut(name)}: two config entries would be bound under this one name")
            flat[name] = value
    return encode_parameters(flat)


def stored_round(context: Context, key: str, field: str, message_type: str, what: str) -> tuple[bytes, bytes]:
    """The setup bytes and the ``field`` bytes of the round a node keeps in ``context.state[key]``
    (with the setup's message type, ``"type"``), read back at a later stage; ProtocolError if there
    is none ("no <what> in progress"), a field is missing, or ``message_type`` (this stage's
    message's) is not the setup's (:func:`~secagg.integrations.flower._round_binding.check_message_type`)."""
    record = context.state.get(key)
    if not isinstance(record, ConfigRecord):
        raise ProtocolError(f"no {what} in progress on this node")
    setup, kept, bound = record.get("setup"), record.get(field), record.get("type")
    if not isinstance(setup, bytes) or not isinstance(kept, bytes) or not isinstance(bound, str):
        raise ProtocolError(f"the stored {what} is incomplete")
    check_message_type(message_type, bound)
    return setup, kept
