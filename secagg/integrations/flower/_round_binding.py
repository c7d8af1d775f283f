"""What binds a Flower round's session to the round, shared by the masking and Paillier setups.

- :func:`round_context`: the 32-byte session context of one run, round and model;
- :func:`round_descriptor` and :func:`merged_parameters`: the round's
  :class:`~secagg.descriptor.SessionDescriptor` (quantization, weight key, run,
  round, layout or segment-table digest, training, DP and compression parameters);
- :func:`message_type_parameters`: the round's message type (``train.<action>`` picks the node's
  train handler), bound into the descriptor's parameters unless it is plain ``train``, and
  :func:`check_message_type`: a node's refusal of a later stage sent in messages of another type
  than its setup's (masking and Paillier nodes alike), and of a Paillier setup sent in a message
  of another type than the one it names;
- :func:`check_round_fields` and :func:`protocol_id_of`: the node-id and
  weight-key checks both setups make, and the node id -> protocol id mapping;
- :func:`float_bits` / :func:`bits_float`: the clip as IEEE-754 float64 bits on the wire.

Re-exported where public by :mod:`secagg.integrations.flower.protocol`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import struct

import numpy as np

from secagg._validate import require_bytes, require_int
from secagg.descriptor import SessionDescriptor, decode_parameters, encode_parameters
from secagg.encoding import QuantizationConfig
from secagg.errors import ConfigurationError, ProtocolError
from secagg.segments import SEGMENTS_LABEL

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_TYPE_BYTES",
    "ROUND_LABEL",
    "bits_float",
    "check_message_type",
    "check_round_fields",
    "float_bits",
    "merged_parameters",
    "message_type_parameters",
    "protocol_id_of",
    "round_context",
    "round_descriptor",
]

MAX_KEY_BYTES = 256
MAX_TYPE_BYTES = 256
"""The longest message type a :class:`~secagg.integrations.flower.protocol.PaillierSetup` names (UTF-8 bytes)."""
ROUND_LABEL = b"secagg/v1/flower-round"
TRAIN = "train"
"""The plain training message type (Flower's default train handler), which binds nothing more."""
MESSAGE_TYPE_PARAMETER = "secagg.flower.message-type"
"""The descriptor parameter naming a round's message type when it is not plain ``train``."""


def float_bits(value: float) -> int:
    return int.from_bytes(struct.pack(">d", value), "big")


def bits_float(bits: int) -> float:
    return float(struct.unpack(">d", bits.to_bytes(8, "big"))[0])


def round_descriptor(
    quantization: QuantizationConfig, weight_key: str, digest: bytes, run_id: int, server_round: int,
    parameters: bytes, segments: bytes = b"",
) -> SessionDescriptor:
    """A round's descriptor; the layout is inside ``digest`` (:func:`arrays_digest` hashes it), and
    the digest of ``segments`` (the segment table, with every clip), if any, replaces it as layout digest."""
    layout = hashlib.sha256(SEGMENTS_LABEL + segments).digest() if segments else digest
    plain = SessionDescriptor.create(
        quantization, weight_key=weight_key, layout_digest=layout, model_digest=digest,
        run_id=run_id, server_round=server_round,
    )
    return dataclasses.replace(plain, parameters=parameters)


def merged_parameters(parameters: bytes, *extras: bytes) -> bytes:
    """The training parameters and the ``secagg.dp.*`` or compression ones as one canonical parameter list."""
    if not any(extras):
        return parameters
    merged = decode_parameters(parameters)
    for extra in (decode_parameters(data) for data in extras if data):
        if set(merged) & set(extra):
            raise ConfigurationError(f"a training parameter has a {sorted(set(merged) & set(extra))[0]!r} name")
        merged.update(extra)
    return encode_parameters(merged)


def message_type_parameters(message_type: str) -> bytes:
    """The round's message type as bound parameters: empty for plain ``train`` (so such rounds bind
    exactly what they did before), else ``{MESSAGE_TYPE_PARAMETER: message_type}``. Flower runs a
    ``train.<action>`` message through the app's ``<action>`` train handler, so the type shapes
    the contribution: nodes sent different types are in different sessions."""
    if not isinstance(message_type, str):
        raise ConfigurationError(f"a message type must be a string, got {type(message_type).__name__}")
    return b"" if message_type == TRAIN else encode_parameters({MESSAGE_TYPE_PARAMETER: message_type})


def check_message_type(message_type: str, bound: str) -> None:
    """ProtocolError unless ``message_type`` (a later stage's message's, or a Paillier setup's) is
    ``bound``, the type of the messages the node's session is set up for: the type picks the train
    handler, and the setup binds it (:func:`message_type_parameters`)."""
    if message_type != bound:
        raise ProtocolError(
            f"a {message_type!r} message in a session set up for {bound!r} messages: the message type picks the "
            "train handler, and the setup binds it"
        )


def protocol_id_of(node_ids: tuple[int, ...], node_id: int) -> int:
    """Position of ``node_id`` in the strictly increasing ``node_ids``, plus one."""
    index = int(np.searchsorted(np.array(node_ids, dtype=np.uint64), np.uint64(node_id)))
    if index >= len(node_ids) or node_ids[index] != node_id:
        raise ConfigurationError(f"node {node_id} is not among the round's nodes")
    return index + 1


def check_round_fields(who: str, node_ids: tuple[int, ...], weight_key: bytes) -> None:
    """The checks RoundSetup and PaillierSetup share: sorted ids, a UTF-8 weight key."""
    if any(a >= b for a, b in itertools.pairwise(node_ids)):
        raise ConfigurationError(f"{who}: node ids must be strictly increasing")
    try:
        weight_key.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"{who}: the weight key is not UTF-8") from exc


def round_context(run_id: int, server_round: int, digest: bytes) -> bytes:
    """SHA-256(``"secagg/v1/flower-round"`` || u64 run id || u32 round || arrays digest).

    The masking session's 32-byte context: it binds the session to one run,
    one round and one model, so a session's messages are useless elsewhere.
    """
    require_int("run id", run_id, 0, (1 << 64) - 1)
    require_int("server round", server_round, 0, (1 << 32) - 1)
    if len(require_bytes("arrays digest", digest)) != 32:
        raise ConfigurationError("the arrays digest must be 32 bytes")
    return hashlib.sha256(ROUND_LABEL + run_id.to_bytes(8, "big") + server_round.to_bytes(4, "big") + digest).digest()
