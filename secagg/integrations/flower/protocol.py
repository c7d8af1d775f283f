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
numpy's float, complex, bool and integer dtypes up to 2^53; they live in
:mod:`~secagg.integrations.flower.arrays` and are re-exported here).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from secagg import wire
from secagg._validate import require_bytes, require_int
from secagg.descriptor import MAX_PARAMETERS_BYTES, SessionDescriptor, decode_parameters, encode_parameters
from secagg.encoding import IntArray, QuantizationConfig, from_ring, quantize_to_integers, to_ring
from secagg.errors import AuthenticationError, ConfigurationError, DecodeError, OverflowDetectedError, ProtocolError
from secagg.integrations.flower.arrays import ArrayLayout, ArraySpec, arrays_digest, flatten_arrays, unflatten_arrays
from secagg.masking import ServerPhase
from secagg.masking.config import ConfigRecord, MaskingConfig
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
from secagg.paillier.keys import ThresholdPublicKey
from secagg.paillier.messages import DecryptionRequest, EncryptedVector, PartialDecryption
from secagg.paillier.packing import MAX_CLIENTS as MAX_PACKED_CLIENTS
from secagg.paillier.packing import SlotLayout
from secagg.paillier.protocol import SessionParameters
from secagg.primitives.signing import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, SigningKey, verify
from secagg.ring import RingVector
from secagg.segments import SEGMENTS_LABEL
from secagg.wire import U8, U16, U32, U64, FixedBytes, ListOf, Struct, VarBytes, wire_field

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

MAX_NODES = 1 << 16
MAX_KEY_BYTES = 256
IDENTITY_LABEL = b"secagg/v1/flower-identity"
ROUND_LABEL = b"secagg/v1/flower-round"


def stage_of_phase(phase: ServerPhase) -> str:
    """The stage whose replies a server in ``phase`` is collecting."""
    return _STAGE_OF_PHASE[phase]


def _float_bits(value: float) -> int:
    return int.from_bytes(struct.pack(">d", value), "big")


def _bits_float(bits: int) -> float:
    return float(struct.unpack(">d", bits.to_bytes(8, "big"))[0])


@dataclass(frozen=True)
class RoundSetup(wire.Message):
    """Server -> every sampled node, first stage of a secure round.

    Attributes:
        server_round: the strategy's round number.
        node_ids: the round's Flower node ids, strictly increasing; node
            ``node_ids[i]`` is protocol client ``i + 1``.
        masking: the masking configuration's wire record (each node validates it again).
        clip_bits: the quantization clip as IEEE-754 float64 bits.
        bits: quantization bits per value (sign included).
        max_weight: the public bound on a node's weight (its example count).
        weight_key: the MetricRecord key holding that weight (UTF-8).
        arrays_digest: :func:`arrays_digest` of the model the round trains from.
        parameters: :func:`secagg.descriptor.encode_parameters` of the training
            content's config records (``"record/key"`` names): what the server
            tells every node to train with.
        segments: the round's segment table (:meth:`secagg.segments.SegmentTable.describe`:
            one segment per array with its clip, :mod:`~secagg.integrations.flower.clipping`);
            empty in a DP round (one noised flat vector, nothing clipped).
        dp: a DP round's ``secagg.dp.*`` parameters (:func:`~secagg.integrations.flower.dp.dp_parameters`),
            empty without DP.
        compression: the round's ``secagg.sparsity.*`` and ``secagg.rotation.*`` parameters
            (:mod:`~secagg.integrations.flower.compression`), empty without compression.

    Every field but ``node_ids`` enters the round's
    :class:`~secagg.descriptor.SessionDescriptor` (:meth:`descriptor`), whose
    digest the masking record carries; a node refuses a setup whose record
    names another digest, so nodes given different setups are in different
    sessions.
    """

    TAG: ClassVar[int] = 0x0701
    server_round: int = wire_field(U32)
    node_ids: tuple[int, ...] = wire_field(ListOf(U64, MAX_NODES))
    masking: ConfigRecord = wire_field(Struct(ConfigRecord))
    clip_bits: int = wire_field(U64)
    bits: int = wire_field(U8)
    max_weight: int = wire_field(U32)
    weight_key: bytes = wire_field(VarBytes(MAX_KEY_BYTES))
    arrays_digest: bytes = wire_field(FixedBytes(32))
    parameters: bytes = wire_field(VarBytes(MAX_PARAMETERS_BYTES))
    segments: bytes = wire_field(VarBytes(MAX_PARAMETERS_BYTES), default=b"")
    dp: bytes = wire_field(VarBytes(MAX_PARAMETERS_BYTES), default=b"")
    compression: bytes = wire_field(VarBytes(MAX_PARAMETERS_BYTES), default=b"")

    def __post_init__(self) -> None:
        _check_round_fields("round setup", self.node_ids, self.weight_key)
        if self.dp and (self.segments or self.compression):
            raise ConfigurationError("round setup: a DP round has no segment table and no compression")
        if len(self.node_ids) != self.masking.num_clients:
            raise ConfigurationError(
                f"round setup: {len(self.node_ids)} node ids for {self.masking.num_clients} protocol clients"
            )

    @classmethod
    def create(
        cls,
        server_round: int,
        node_ids: Sequence[int],
        masking: MaskingConfig,
        quantization: QuantizationConfig,
        weight_key: str,
        digest: bytes,
        run_id: int,
        parameters: bytes = b"",
        *,
        segments: bytes = b"",
        dp: bytes = b"",
        compression: bytes = b"",
    ) -> RoundSetup:
        """The setup message for ``node_ids`` (sorted here) and validated configurations;
        ``masking`` gets this round's descriptor digest (:meth:`descriptor`)."""
        if quantization.ring_bits != masking.ring_bits or quantization.num_clients != masking.num_clients:
            raise ConfigurationError("quantization and masking must agree on the ring and the number of clients")
        unbound = cls(
            server_round=server_round,
            node_ids=tuple(sorted(node_ids)),
            masking=masking.record(),
            clip_bits=_float_bits(quantization.clip),
            bits=quantization.bits,
            max_weight=quantization.max_weight,
            weight_key=weight_key.encode("utf-8"),
            arrays_digest=digest,
            parameters=parameters,
            segments=segments,
            dp=dp,
            compression=compression,
        )
        bound = dataclasses.replace(masking, descriptor=unbound.descriptor(run_id).digest())
        return dataclasses.replace(unbound, masking=bound.record())

    def descriptor(self, run_id: int) -> SessionDescriptor:
        """The round's session descriptor: quantization, weight key, run, round, the segment
        table's digest as layout digest (the arrays digest in a DP round), the arrays digest
        as model digest, and the training parameters with the DP and compression parameters."""
        return _descriptor(self.quantization, self.weight_name, self.arrays_digest, run_id, self.server_round,
                           _merged(self.parameters, self.dp, self.compression), self.segments)

    def bound_masking_config(self, run_id: int) -> MaskingConfig:
        """:attr:`masking_config` after checking that its record binds this setup's descriptor.

        ConfigurationError if the record names another descriptor digest: the
        server's fields and the session it set up disagree.
        """
        masking = self.masking_config
        if masking.descriptor != self.descriptor(run_id).digest():
            raise ConfigurationError("the round setup's masking record binds another setup than the one sent")
        return masking

    @property
    def masking_config(self) -> MaskingConfig:
        """The masking configuration, validated (ConfigurationError if unsafe)."""
        return MaskingConfig.from_record(self.masking)

    @property
    def quantization(self) -> QuantizationConfig:
        """The quantization, validated against overflow for all the round's nodes."""
        return QuantizationConfig(
            clip=_bits_float(self.clip_bits),
            bits=self.bits,
            num_clients=self.masking.num_clients,
            ring_bits=self.masking.ring_bits,
            max_weight=self.max_weight,
        )

    @property
    def weight_name(self) -> str:
        """The weight key as a string."""
        return self.weight_key.decode("utf-8")

    def protocol_id(self, node_id: int) -> int:
        """The protocol id (1..n) of ``node_id``; ConfigurationError if it is not in the round."""
        return _protocol_id(self.node_ids, node_id)


def _descriptor(
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


def _merged(parameters: bytes, *extras: bytes) -> bytes:
    """The training parameters and the ``secagg.dp.*`` or compression ones as one canonical parameter list."""
    if not any(extras):
        return parameters
    merged = decode_parameters(parameters)
    for extra in (decode_parameters(data) for data in extras if data):
        if set(merged) & set(extra):
            raise ConfigurationError(f"a training parameter has a {sorted(set(merged) & set(extra))[0]!r} name")
        merged.update(extra)
    return encode_parameters(merged)


def _protocol_id(node_ids: tuple[int, ...], node_id: int) -> int:
    """Position of ``node_id`` in the strictly increasing ``node_ids``, plus one."""
    index = int(np.searchsorted(np.array(node_ids, dtype=np.uint64), np.uint64(node_id)))
    if index >= len(node_ids) or node_ids[index] != node_id:
        raise ConfigurationError(f"node {node_id} is not among the round's nodes")
    return index + 1


def _check_round_fields(who: str, node_ids: tuple[int, ...], weight_key: bytes) -> None:
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


def encode_integers(
    delta: npt.NDArray[np.float64], weight: int, config: QuantizationConfig, rng: np.random.Generator
) -> IntArray:
    """``(weight * q(delta), weight)`` as signed int64: one node's contribution before any ring or packing.

    ``q`` is the stochastic quantization of :mod:`secagg.encoding` with ``rng``
    the rounding randomness. Raises ConfigurationError if ``weight`` is not in
    ``1..config.max_weight`` or ``delta`` is not finite.
    """
    if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= config.max_weight:
        raise ConfigurationError(f"weight must be an integer in 1..{config.max_weight}, got {weight}")
    q = quantize_to_integers(delta, config, rng)
    encoded = np.empty(q.shape[0] + 1, dtype=np.int64)
    np.multiply(q, weight, out=encoded[:-1])
    encoded[-1] = weight
    return encoded


def encode_update(
    delta: npt.NDArray[np.float64], weight: int, config: QuantizationConfig, rng: np.random.Generator
) -> RingVector:
    """:func:`encode_integers` in the config's ring: one node's masking contribution."""
    return to_ring(encode_integers(delta, weight, config, rng), config)


def decode_sum(total: RingVector, config: QuantizationConfig, num_summands: int) -> tuple[npt.NDArray[np.float64], int]:
    """The weighted mean update and the weight total from the ring sum of ``num_summands`` encodings.

    Raises OverflowDetectedError if the sum is impossible for that many
    encodings (a fault, never silently wrong numbers).
    """
    return decode_integers(from_ring(config.ring.check(total), config), config, num_summands)


def decode_integers(
    integers: IntArray, config: QuantizationConfig, num_summands: int
) -> tuple[npt.NDArray[np.float64], int]:
    """:func:`decode_sum` for the exact integer sum of ``num_summands`` :func:`encode_integers` outputs."""
    if integers.ndim != 1 or integers.shape[0] < 2 or not 1 <= num_summands <= config.num_clients:
        raise ConfigurationError("an encoded sum has at least two entries and 1..num_clients summands")
    bound = num_summands * config.max_weight
    weight_total = int(integers[-1])
    if not num_summands <= weight_total <= bound:
        raise OverflowDetectedError(
            f"decoded weight total {weight_total} is impossible for {num_summands} nodes "
            f"of weight <= {config.max_weight}"
        )
    sums = integers[:-1]
    # Compare min and max as Python ints: np.abs(-2^63) overflows int64 and stays negative.
    limit = bound * config.qmax
    if sums.size and (int(sums.min()) < -limit or int(sums.max()) > limit):
        raise OverflowDetectedError(f"decoded sum exceeds {limit} in magnitude, the most {num_summands} nodes reach")
    mean: npt.NDArray[np.float64] = sums.astype(np.float64) / (config.scale * weight_total)
    return mean, weight_total


def identity_payload(run_id: int, node_id: int, public_key: bytes) -> bytes:
    """``"secagg/v1/flower-identity" || u64 run id || u64 node id || public key``: what a node signs
    to show the server that it holds the identity key it announces."""
    require_int("run id", run_id, 0, (1 << 64) - 1)
    require_int("node id", node_id, 0, (1 << 64) - 1)
    require_bytes("public key", public_key, max_size=MAX_KEY_BYTES)
    return IDENTITY_LABEL + run_id.to_bytes(8, "big") + node_id.to_bytes(8, "big") + public_key


@dataclass(frozen=True)
class IdentityAnnouncement(wire.Message):
    """Node -> server, ``identify`` stage (active mode): the node's Ed25519 identity public key.

    The signature over :func:`identity_payload` proves possession for this run
    and this node id, so one node cannot announce another's key. The nodes,
    not the server, decide which keys they trust (see :class:`RoundSetup`).
    """

    TAG: ClassVar[int] = 0x0703
    node_id: int = wire_field(U64)
    public_key: bytes = wire_field(FixedBytes(PUBLIC_KEY_SIZE))
    signature: bytes = wire_field(FixedBytes(SIGNATURE_SIZE))

    @classmethod
    def create(cls, identity: SigningKey, run_id: int, node_id: int) -> IdentityAnnouncement:
        """The signed announcement of ``identity``'s public key by ``node_id`` in ``run_id``."""
        payload = identity_payload(run_id, node_id, identity.public)
        return cls(node_id=node_id, public_key=identity.public, signature=identity.sign(payload))

    def verify(self, run_id: int, node_id: int) -> None:
        """AuthenticationError unless this is ``node_id``'s valid announcement in ``run_id``."""
        if self.node_id != node_id:
            raise ProtocolError(f"node {node_id} announced an identity for node {self.node_id}")
        try:
            verify(self.public_key, self.signature, identity_payload(run_id, node_id, self.public_key))
        except (AuthenticationError, DecodeError) as exc:
            raise AuthenticationError(f"node {node_id}: its identity announcement carries no valid signature") from exc


def packed_value_bits(config: QuantizationConfig) -> int:
    """Bits of one signed packed value: ``bitlen(max_weight * qmax) + 1``, so that every entry
    of an :func:`encode_integers` output (``|w q| <= max_weight * qmax``, ``1 <= w <= max_weight``) fits."""
    return (config.max_weight * config.qmax).bit_length() + 1


@dataclass(frozen=True)
class PaillierSetup(wire.Message):
    """Server -> every sampled node, ``encrypt`` stage of a Paillier round (with the training content).

    Attributes:
        server_round: the strategy's round number.
        node_ids: the round's Flower node ids, strictly increasing; node
            ``node_ids[i]`` is client ``i + 1`` of the session's roster.
        key_fingerprint: :attr:`~secagg.paillier.ThresholdPublicKey.fingerprint`
            of the federation's key. Nodes encrypt under the key of their own
            key-share file and refuse a round set up for another key.
        min_contributors: fewest uploads a key-share holder agrees to decrypt the sum of.
        vector_length: values per upload: the model's values, one clipped count per segment, the weight
            (in a DP round the model's values only).
        clip_bits: the quantization clip as IEEE-754 float64 bits.
        bits: quantization bits per value (sign included).
        max_weight: the public bound on a node's weight (its example count).
        weight_key: the MetricRecord key holding that weight (UTF-8).
        arrays_digest: :func:`arrays_digest` of the model the round trains from.
        identity_keys: the nodes' Ed25519 identity keys in node-id order; each
            node checks them against the federation's trusted list, and every
            upload must carry its node's signature.
        parameters: the training content's config records, as in :class:`RoundSetup`.
        segments: the round's segment table with every clip, as in :class:`RoundSetup`
            (empty in a DP round).
        compression: the round's subset and rotation parameters, as in :class:`RoundSetup`.
        dp: a DP round's ``secagg.dp.*`` parameters, as in :class:`RoundSetup` (empty without
            DP); ``min_contributors`` less the colluders of the round's guarantee is then at
            least the plan's h.

    Every field enters the session id (:meth:`session_parameters`, through the round's
    :class:`~secagg.descriptor.SessionDescriptor`; the table's digest is its layout digest).
    """

    TAG: ClassVar[int] = 0x0702
    server_round: int = wire_field(U32)
    node_ids: tuple[int, ...] = wire_field(ListOf(U64, MAX_PACKED_CLIENTS))
    key_fingerprint: bytes = wire_field(FixedBytes(32))
    min_contributors: int = wire_field(U32)
    vector_length: int = wire_field(U32)
    clip_bits: int = wire_field(U64)
    bits: int = wire_field(U8)
    max_weight: int = wire_field(U32)
    weight_key: bytes = wire_field(VarBytes(MAX_KEY_BYTES))
    arrays_digest: bytes = wire_field(FixedBytes(32))
    identity_keys: tuple[bytes, ...] = wire_field(ListOf(FixedBytes(PUBLIC_KEY_SIZE), MAX_PACKED_CLIENTS))
    parameters: bytes = wire_field(VarBytes(MAX_PARAMETERS_BYTES))
    segments: bytes = wire_field(VarBytes(MAX_PARAMETERS_BYTES), default=b"")
    compression: bytes = wire_field(VarBytes(MAX_PARAMETERS_BYTES), default=b"")
    dp: bytes = wire_field(VarBytes(MAX_PARAMETERS_BYTES), default=b"")

    def __post_init__(self) -> None:
        _check_round_fields("paillier setup", self.node_ids, self.weight_key)
        if self.dp and (self.segments or self.compression):
            raise ConfigurationError(
                "paillier setup: a DP round has no segment table (nothing is clipped) and no compression"
            )
        if not self.node_ids:
            raise ConfigurationError("paillier setup: a round needs at least one node")
        if not 2 <= self.min_contributors <= len(self.node_ids):
            raise ConfigurationError(
                f"paillier setup: min_contributors must be in 2..{len(self.node_ids)}, got {self.min_contributors}"
            )
        if len(self.identity_keys) != len(self.node_ids):
            raise ConfigurationError("paillier setup: one identity key per node")
        if self.vector_length < (1 if self.dp else 2):
            raise ConfigurationError("paillier setup: a vector holds at least one value (and the weight, without DP)")

    @classmethod
    def create(
        cls,
        server_round: int,
        node_ids: Sequence[int],
        public: ThresholdPublicKey,
        min_contributors: int,
        quantization: QuantizationConfig,
        vector_length: int,
        weight_key: str,
        digest: bytes,
        identity_keys: Sequence[bytes],
        parameters: bytes = b"",
        segments: bytes = b"",
        compression: bytes = b"",
        dp: bytes = b"",
    ) -> PaillierSetup:
        """The setup message for ``node_ids`` and their ``identity_keys`` (in the same
        order; sorted here by node id) and the clip table ``segments`` or the DP parameters
        ``dp``; ConfigurationError if unsafe."""
        keys = dict(zip(node_ids, identity_keys, strict=True))
        setup = cls(
            server_round=server_round,
            node_ids=tuple(sorted(node_ids)),
            key_fingerprint=public.fingerprint,
            min_contributors=min_contributors,
            vector_length=vector_length,
            clip_bits=_float_bits(quantization.clip),
            bits=quantization.bits,
            max_weight=quantization.max_weight,
            weight_key=weight_key.encode("utf-8"),
            arrays_digest=digest,
            identity_keys=tuple(keys[node] for node in sorted(node_ids)),
            parameters=parameters,
            segments=segments,
            compression=compression,
            dp=dp,
        )
        setup.session_parameters(public, bytes(32), 0)  # every check the nodes will make
        return setup

    @property
    def quantization(self) -> QuantizationConfig:
        """The quantization (int64 sums: ``ring_bits=64`` bounds ``n * max_weight * qmax``)."""
        return QuantizationConfig(
            clip=_bits_float(self.clip_bits),
            bits=self.bits,
            num_clients=len(self.node_ids),
            ring_bits=64,
            max_weight=self.max_weight,
        )

    @property
    def weight_name(self) -> str:
        """The weight key as a string."""
        return self.weight_key.decode("utf-8")

    def layout(self, key_bits: int) -> SlotLayout:
        """The packing layout for this round's nodes; ConfigurationError if sums could carry between slots."""
        return SlotLayout(packed_value_bits(self.quantization), len(self.node_ids), key_bits)

    def descriptor(self, run_id: int) -> SessionDescriptor:
        """The round's session descriptor (as :meth:`RoundSetup.descriptor`, DP parameters included)."""
        return _descriptor(self.quantization, self.weight_name, self.arrays_digest, run_id, self.server_round,
                           _merged(self.parameters, self.dp, self.compression), self.segments)

    def session_parameters(self, public: ThresholdPublicKey, context: bytes, run_id: int) -> SessionParameters:
        """The Paillier session every party derives: roster 1..n with the setup's identity
        keys, this layout, ``context`` and the round's descriptor digest.

        ConfigurationError if ``public`` is not the key the round was set up for,
        or the layout or quantization is unsafe.
        """
        if public.fingerprint != self.key_fingerprint:
            raise ConfigurationError("the round is set up for another Paillier key than this party's")
        return SessionParameters(
            public=public,
            layout=self.layout(public.key.key_bits),
            vector_length=self.vector_length,
            roster=tuple(range(1, len(self.node_ids) + 1)),
            min_contributors=self.min_contributors,
            identity_keys=self.identity_keys,
            context=context,
            descriptor=self.descriptor(run_id).digest(),
        )

    def protocol_id(self, node_id: int) -> int:
        """The roster id (1..n) of ``node_id``; ConfigurationError if it is not in the round."""
        return _protocol_id(self.node_ids, node_id)


@dataclass(frozen=True)
class PaillierUpload(wire.Message):
    """Node -> server, ``encrypt`` stage: the node's encrypted update and the index of its key share.

    ``party`` tells the server whom to ask for a partial decryption; a node
    claiming another's index cannot produce a valid proof for it.
    """

    TAG: ClassVar[int] = 0x0704
    party: int = wire_field(U16)
    upload: EncryptedVector = wire_field(Struct(EncryptedVector))

    def __post_init__(self) -> None:
        if self.party < 1:
            raise ConfigurationError("paillier upload: key-share indices start at 1")
        if not isinstance(self.upload, EncryptedVector):
            raise ConfigurationError("paillier upload: carries an EncryptedVector")


PAILLIER_DOWNLINK: dict[str, type[wire.Message]] = {ENCRYPT: PaillierSetup, DECRYPT: DecryptionRequest}
"""The message a node receives in each Paillier stage."""
PAILLIER_UPLINK: dict[str, type[wire.Message]] = {ENCRYPT: PaillierUpload, DECRYPT: PartialDecryption}
"""The message a node sends back in each Paillier stage."""
