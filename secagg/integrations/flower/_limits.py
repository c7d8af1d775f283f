"""What an honest message of each stage can weigh: the payload limits both ends check before decoding.

Every payload crosses a trust boundary, and each stage's honest message has a size
fixed by the round: the node count ``n``, the vector length, the ring, the Paillier
ciphertext bytes. A payload above its stage's limit is refused before it is loaded
(``np.load``) or decoded (:func:`~secagg.integrations.flower._records.read_payload`):
by the server, as that node's dropout with the reason; by a node, with an error reply.

The limits are the wire layouts of docs/spec.md with every variable part at its
honest largest (``n - 1`` peers' boxes or roster entries, ``n`` share entries or
survivors; signatures present). :data:`ROUND_SETUP_LIMIT` and
:data:`PAILLIER_SETUP_LIMIT` bound a setup, which a node receives before it knows
the round: the largest round its policy accepts (``NodePolicy.max_nodes`` nodes, at most
``MAX_NODES``) with every parameter field full.

The training content a ``masked-input`` or ``encrypt`` message carries for the node's own train
handler is bounded by what the setup binds (:func:`model_values`, :func:`config_lower_bound`):
at most the model's values, each at most :data:`VALUE_BYTES` bytes, each array's ``.npy``
header at most :data:`NPY_HEADER_LIMIT` bytes, at most :data:`MAX_EMPTY_ARRAYS` empty arrays,
and config entries no larger than the bound parameters
(:func:`~secagg.integrations.flower._records.check_training`, before anything is loaded).
"""

from __future__ import annotations

from collections.abc import Mapping

from secagg.bitpack import packed_size
from secagg.descriptor import DESCRIPTOR_DIGEST_SIZE, MAX_PARAMETERS_BYTES
from secagg.errors import DecodeError
from secagg.integrations.flower._round_binding import MAX_KEY_BYTES, MAX_TYPE_BYTES
from secagg.integrations.flower._round_setup import MAX_NODES
from secagg.integrations.flower.clipping import parse_table
from secagg.integrations.flower.compression import check_entries
from secagg.integrations.flower.protocol import (
    CONSISTENCY_CHECK,
    DECRYPT,
    ENCRYPT,
    IDENTIFY,
    MASKED_INPUT,
    SETUP,
    SHARE_KEYS,
    UNMASK,
)
from secagg.paillier.packing import MAX_CLIENTS as MAX_PAILLIER_NODES
from secagg.paillier.proofs import CHALLENGE_BYTES, MAX_RESPONSE_BYTES
from secagg.primitives.aead import OVERHEAD
from secagg.primitives.key_agreement import KEY_SIZE
from secagg.primitives.shamir import VALUE_SIZE
from secagg.primitives.signing import PUBLIC_KEY_SIZE, SIGNATURE_SIZE
from secagg.rotation import PARAMETER_PREFIX as ROTATION_PREFIX
from secagg.sparsity import PARAMETER_PREFIX as SPARSITY_PREFIX
from secagg.wire import HEADER_SIZE

__all__ = [
    "IDENTIFY_REPLY_LIMIT",
    "MAX_EMPTY_ARRAYS",
    "NPY_HEADER_LIMIT",
    "PAILLIER_SETUP_LIMIT",
    "ROUND_SETUP_LIMIT",
    "VALUE_BYTES",
    "check_size",
    "config_lower_bound",
    "masking_message_limit",
    "masking_reply_limit",
    "model_values",
    "paillier_reply_limit",
    "paillier_request_limit",
    "paillier_setup_limit",
    "round_setup_limit",
]

_U16, _U32, _U64, _ID = 2, 4, 8, 32
_LENGTH = _U32  # the u32 length or count prefix of a variable field
_PARAMETERS = 4 * (_LENGTH + MAX_PARAMETERS_BYTES)  # parameters, segments, dp, compression
_SIGNED_KEYS = _U32 + 2 * KEY_SIZE + _LENGTH + SIGNATURE_SIZE  # AdvertiseKeys body, RosterEntry
_BOX = _U32 + _LENGTH + OVERHEAD + HEADER_SIZE + 2 * _U32 + 2 * VALUE_SIZE  # SealedBox of a ShareBundle
_SHARE_ENTRY = _U32 + VALUE_SIZE
_UPLOAD_BODY = _ID + 2 * _U32 + _LENGTH + SIGNATURE_SIZE  # EncryptedVector without its ciphertexts

IDENTIFY_REPLY_LIMIT = HEADER_SIZE + _U64 + PUBLIC_KEY_SIZE + SIGNATURE_SIZE
"""An :class:`~secagg.integrations.flower.protocol.IdentityAnnouncement` (fixed size)."""


def round_setup_limit(num_nodes: int) -> int:
    """Bytes of the largest :class:`~secagg.integrations.flower.protocol.RoundSetup` of up to
    ``num_nodes`` nodes, every parameter field full (what a node whose policy accepts at most
    ``num_nodes`` reads)."""
    n = min(num_nodes, MAX_NODES)
    return (
        HEADER_SIZE + _U32 + _LENGTH + _U64 * n  # server round, node ids
        + 6 * _U32 + 3 + DESCRIPTOR_DIGEST_SIZE + _LENGTH + PUBLIC_KEY_SIZE * n  # the masking record
        + _U64 + 1 + _U32 + _LENGTH + MAX_KEY_BYTES + _ID + _PARAMETERS
    )


def paillier_setup_limit(num_nodes: int) -> int:
    """Bytes of the largest :class:`~secagg.integrations.flower.protocol.PaillierSetup` of up to
    ``num_nodes`` nodes, every field full."""
    n = min(num_nodes, MAX_PAILLIER_NODES)
    return (
        HEADER_SIZE + _U32 + _LENGTH + _U64 * n + _ID + 2 * _U32 + _U64 + 1 + _U32
        + _LENGTH + MAX_KEY_BYTES + _ID + _LENGTH + PUBLIC_KEY_SIZE * n + _PARAMETERS + _LENGTH + MAX_TYPE_BYTES
    )


ROUND_SETUP_LIMIT = round_setup_limit(MAX_NODES)
"""The largest :class:`~secagg.integrations.flower.protocol.RoundSetup`: MAX_NODES nodes, full fields."""
PAILLIER_SETUP_LIMIT = paillier_setup_limit(MAX_PAILLIER_NODES)
"""The largest :class:`~secagg.integrations.flower.protocol.PaillierSetup`: every node, full fields."""


def masking_reply_limit(stage: str, num_clients: int, vector_length: int, ring_bits: int) -> int:
    """Bytes of the largest honest reply of a masking ``stage`` (node -> server) in a session of
    ``num_clients`` nodes, vectors of ``vector_length`` values in Z_(2^ring_bits)."""
    n = num_clients
    limits = {
        IDENTIFY: IDENTIFY_REPLY_LIMIT,
        SETUP: HEADER_SIZE + _SIGNED_KEYS,  # AdvertiseKeys
        SHARE_KEYS: HEADER_SIZE + _U32 + 2 * _ID + _LENGTH + (n - 1) * _BOX,  # EncryptedShares
        MASKED_INPUT: HEADER_SIZE + _U32 + _ID + 1 + _U32 + packed_size(vector_length, ring_bits),
        CONSISTENCY_CHECK: HEADER_SIZE + _U32 + _ID + SIGNATURE_SIZE,
        UNMASK: HEADER_SIZE + _U32 + _ID + 2 * _LENGTH + n * _SHARE_ENTRY,  # at most one share per client
    }
    return limits[stage]


def masking_message_limit(stage: str, num_clients: int) -> int:
    """Bytes of the largest honest server message of a masking ``stage`` after ``setup`` (server ->
    node) in a session of ``num_clients`` nodes (0 for ``identify``, whose payload is empty)."""
    n = num_clients
    limits = {
        IDENTIFY: 0,
        SETUP: round_setup_limit(n),
        SHARE_KEYS: HEADER_SIZE + _U32 + _LENGTH + (n - 1) * _SIGNED_KEYS,  # KeyRoster: the neighbours
        MASKED_INPUT: HEADER_SIZE + _U32 + _ID + _LENGTH + (n - 1) * _BOX,  # ShareDelivery
        CONSISTENCY_CHECK: HEADER_SIZE + _U32 + _ID + _LENGTH + n * _U32,  # SurvivorList
        UNMASK: HEADER_SIZE + _U32 + _ID + 2 * _LENGTH + n * (2 * _U32 + SIGNATURE_SIZE),  # UnmaskRequest
    }
    return limits[stage]


def paillier_reply_limit(stage: str, upload_data_bytes: int) -> int:
    """Bytes of the largest honest reply of a Paillier ``stage`` whose uploads carry
    ``upload_data_bytes`` bytes of ciphertexts (the partial decryptions as many)."""
    limits = {
        IDENTIFY: IDENTIFY_REPLY_LIMIT,
        ENCRYPT: HEADER_SIZE + _U16 + _UPLOAD_BODY + upload_data_bytes,  # PaillierUpload
        DECRYPT: HEADER_SIZE + _ID + _U16 + _ID + _LENGTH + upload_data_bytes  # PartialDecryption
        + CHALLENGE_BYTES + _U16 + MAX_RESPONSE_BYTES,
    }
    return limits[stage]


def paillier_request_limit(num_nodes: int, upload_data_bytes: int) -> int:
    """Bytes of the largest honest ``decrypt`` request (server -> node): every node's upload."""
    return HEADER_SIZE + _ID + _U16 + _LENGTH + num_nodes * (_UPLOAD_BODY + upload_data_bytes)


def check_size(stage: str, size: int, limit: int) -> None:
    """DecodeError unless a ``stage`` payload of ``size`` bytes is within ``limit``."""
    if size > limit:
        raise DecodeError(
            f"a {stage!r} payload of {size} bytes exceeds the {limit} bytes an honest one of this round has"
        )


VALUE_BYTES = 8
"""The most bytes an accepted model array spends on one vector value: float64 and int64 (8),
complex128 (16 for two values); wider dtypes are refused by
:func:`~secagg.integrations.flower.arrays.flatten_arrays`."""
NPY_HEADER_LIMIT = 4096
"""The most bytes of an honest array's ``.npy`` header (magic, version, length, the padded dict):
numpy writes about 128 for a few dimensions and under 1600 for the most (64) of 19 digits each."""
MAX_EMPTY_ARRAYS = 1024
"""The most arrays without a value an honest model holds (placeholders; each costs a header)."""


def model_values(vector_length: int, segments: bytes, dp: bytes, compression: bytes) -> int:
    """The values of the model a setup binds (its flat vector's length): the vector length in a
    DP round (no clip table, no compression), else the clip table's length, else (compressed)
    the subset's dimension, or the rotation's dimension plus the integer segments' lengths.
    DecodeError if the fields do not say (the node refuses the setup's fields before this)."""
    if dp or not segments:
        return vector_length
    table = parse_table(segments)
    if not compression:
        return table.size
    entries = check_entries(compression)
    dimension = entries.get(SPARSITY_PREFIX + "dimension")
    if dimension is None:
        rotated = entries.get(ROTATION_PREFIX + "dimension")
        integers = sum(s.length for s in table.segments if s.integer)
        dimension = rotated + integers if type(rotated) is int else None
    if type(dimension) is not int or dimension < 0:
        raise DecodeError("the round's compression names no model dimension")
    return dimension


def config_lower_bound(records: Mapping[str, Mapping[str, object]], limit: int) -> int:
    """A lower bound on the bytes :func:`secagg.descriptor.encode_parameters` makes of the config
    ``records`` (``"record/key"`` names: 9 bytes of lengths and type, the name, the value; a str
    counted in characters, which UTF-8 never shortens), stopping once above ``limit``. List values
    count 0 (they cannot be bound and are refused)."""
    total = 0
    for record_key, record in records.items():
        for key, value in record.items():
            if isinstance(value, bool):
                size = 1
            elif isinstance(value, int | float):
                size = 8
            elif isinstance(value, str | bytes):
                size = len(value)
            else:
                size = 0
            total += 9 + len(record_key) + 1 + len(key) + size
            if total > limit:
                return total
    return total
