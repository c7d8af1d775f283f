"""The Flower adapter's own protocol pieces, independent of ``flwr``.

A secure Flower round is one masking session (:mod:`secagg.masking`) or one
packed-Paillier session (:mod:`secagg.paillier`) whose messages travel as
Flower messages, one *stage* per protocol round. Masking:

=====================  ==============================  ===============================
stage                  server -> node                  node -> server
=====================  ==============================  ===============================
``setup``              :class:`RoundSetup`             ``AdvertiseKeys``
``share-keys``         ``KeyRoster``                   ``EncryptedShares``
``masked-input``       ``ShareDelivery`` + the          ``MaskedInput``
                       strategy's training content
``consistency-check``  ``SurvivorList`` (active mode)  ``ConsistencySignature``
``unmask``             ``UnmaskRequest``               ``UnmaskResponse``
=====================  ==============================  ===============================

In active mode a node whose identity key the server does not know yet first
answers an ``identify`` stage (empty payload) with an
:class:`IdentityAnnouncement`. Paillier (:class:`PaillierSetup`):

=====================  ==============================  ===============================
stage                  server -> node                  node -> server
=====================  ==============================  ===============================
``encrypt``            :class:`PaillierSetup` + the    :class:`PaillierUpload`
                       strategy's training content     (its ``EncryptedVector``)
``decrypt``            ``DecryptionRequest``           ``PartialDecryption``
=====================  ==============================  ===============================

:class:`RoundSetup` maps Flower's 64-bit node ids to protocol ids 1..n (the
position in the sorted id list, plus one), carries the masking configuration,
the quantization and the clip table, and binds the session to the run, the
round and the model (:func:`round_context`). Each node contributes its weighted
quantized update with one clipped count per array (``(w * q(local - global), c, w)``,
:mod:`~secagg.integrations.flower.clipping`), masked, or packed and encrypted
under the federation's threshold key (:class:`PaillierSetup`).
docs/spec.md, last section, has the byte layouts.

Model arrays map to one float64 vector by :func:`flatten_arrays` (exact for
numpy's float, complex, bool and integer dtypes up to 2^53).

This module holds the stage names and each stage's message types; it is the
public import path for the rest, which lives one concept per module and is
re-exported here:

- :mod:`~secagg.integrations.flower.arrays`: model arrays <-> one float64 vector;
- :mod:`~secagg.integrations.flower._round_setup`: :class:`RoundSetup`;
- :mod:`~secagg.integrations.flower._paillier_setup`: :class:`PaillierSetup`, :class:`PaillierUpload`;
- :mod:`~secagg.integrations.flower._identity`: :class:`IdentityAnnouncement`, :func:`identity_payload`;
- :mod:`~secagg.integrations.flower._round_binding`: :func:`round_context` and the round's descriptor;
- :mod:`~secagg.integrations.flower._update_codec`: :func:`encode_update`, :func:`decode_sum` and kin.
"""

from __future__ import annotations

from secagg import wire
from secagg.integrations.flower._identity import IDENTITY_LABEL as IDENTITY_LABEL  # noqa: PLC0414 (still importable from here)
from secagg.integrations.flower._identity import IdentityAnnouncement, identity_payload
from secagg.integrations.flower._paillier_setup import PaillierSetup, PaillierUpload, paillier_layout
from secagg.integrations.flower._round_binding import MAX_KEY_BYTES as MAX_KEY_BYTES  # noqa: PLC0414 (still importable from here)
from secagg.integrations.flower._round_binding import ROUND_LABEL as ROUND_LABEL  # noqa: PLC0414 (still importable from here)
from secagg.integrations.flower._round_binding import round_context
from secagg.integrations.flower._round_setup import MAX_NODES as MAX_NODES  # noqa: PLC0414 (still importable from here)
from secagg.integrations.flower._round_setup import RoundSetup
from secagg.integrations.flower._update_codec import (
    decode_integers,
    decode_sum,
    encode_integers,
    encode_update,
    packed_value_bits,
)
from secagg.integrations.flower.arrays import ArrayLayout, ArraySpec, arrays_digest, flatten_arrays, unflatten_arrays
from secagg.masking import ServerPhase
from secagg.masking.messages import (
    ConsistencySignature,
    EncryptedShares,
    KeyRoster,
    MaskedInput,
    ShareDelivery,
    SurvivorList,
    UnmaskRequest,
    UnmaskResponse,
)
from secagg.paillier.messages import DecryptionRequest, PartialDecryption

__all__ = [
    "CONSISTENCY_CHECK",
    "DECRYPT",
    "ENCRYPT",
    "IDENTIFY",
    "MASKED_INPUT",
    "MASKING_STAGES",
    "PAILLIER_STAGES",
    "SETUP",
    "SHARE_KEYS",
    "STAGES",
    "UNMASK",
    "ArrayLayout",
    "ArraySpec",
    "IdentityAnnouncement",
    "PaillierSetup",
    "PaillierUpload",
    "RoundSetup",
    "arrays_digest",
    "decode_integers",
    "decode_sum",
    "encode_integers",
    "encode_update",
    "flatten_arrays",
    "identity_payload",
    "packed_value_bits",
    "paillier_layout",
    "round_context",
    "stage_of_phase",
    "unflatten_arrays",
]

IDENTIFY, SETUP, SHARE_KEYS, MASKED_INPUT, CONSISTENCY_CHECK, UNMASK = (
    "identify",
    "setup",
    "share-keys",
    "masked-input",
    "consistency-check",
    "unmask",
)
ENCRYPT, DECRYPT = "encrypt", "decrypt"
MASKING_STAGES = (IDENTIFY, SETUP, SHARE_KEYS, MASKED_INPUT, CONSISTENCY_CHECK, UNMASK)
"""The masking stages in protocol order (``identify`` only in active mode, when needed)."""
PAILLIER_STAGES = (ENCRYPT, DECRYPT)
"""The Paillier stages in protocol order."""
STAGES = MASKING_STAGES + PAILLIER_STAGES
"""Every stage name."""

_STAGE_OF_PHASE = {
    ServerPhase.COLLECT_KEYS: SETUP,
    ServerPhase.COLLECT_SHARES: SHARE_KEYS,
    ServerPhase.COLLECT_MASKED: MASKED_INPUT,
    ServerPhase.COLLECT_CONSISTENCY: CONSISTENCY_CHECK,
    ServerPhase.COLLECT_UNMASK: UNMASK,
}
DOWNLINK: dict[str, type[wire.Message]] = {
    SHARE_KEYS: KeyRoster,
    MASKED_INPUT: ShareDelivery,
    CONSISTENCY_CHECK: SurvivorList,
    UNMASK: UnmaskRequest,
}
"""The masking message a node receives in each stage after ``setup``."""
UPLINK: dict[str, type[wire.Message]] = {
    SHARE_KEYS: EncryptedShares,
    MASKED_INPUT: MaskedInput,
    CONSISTENCY_CHECK: ConsistencySignature,
    UNMASK: UnmaskResponse,
}
"""The masking message a node sends back in each stage after ``setup``."""


def stage_of_phase(phase: ServerPhase) -> str:
    """The stage whose replies a server in ``phase`` is collecting."""
    return _STAGE_OF_PHASE[phase]


PAILLIER_DOWNLINK: dict[str, type[wire.Message]] = {ENCRYPT: PaillierSetup, DECRYPT: DecryptionRequest}
"""The message a node receives in each Paillier stage."""
PAILLIER_UPLINK: dict[str, type[wire.Message]] = {ENCRYPT: PaillierUpload, DECRYPT: PartialDecryption}
"""The message a node sends back in each Paillier stage."""
