"""The Paillier round's messages: :class:`PaillierSetup` (server -> node) and
:class:`PaillierUpload` (node -> server), ``encrypt`` stage.

The setup fixes the federation's key, the roster with its identity keys, the
packing layout and the quantization, and binds the session to the run, the round
and the model as :class:`~secagg.integrations.flower.protocol.RoundSetup` does.
:func:`paillier_layout` is the round's packing layout, which the server and every
node derive from the setup's quantization and node count alone.
Re-exported by :mod:`secagg.integrations.flower.protocol`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from secagg import wire
from secagg.descriptor import MAX_PARAMETERS_BYTES, SessionDescriptor
from secagg.encoding import QuantizationConfig
from secagg.errors import ConfigurationError, ConfigurationTypeError
from secagg.integrations.flower._round_binding import (
    MAX_KEY_BYTES,
    MAX_TYPE_BYTES,
    TRAIN,
    bits_float,
    check_message_type,
    check_round_fields,
    float_bits,
    merged_parameters,
    message_type_parameters,
    protocol_id_of,
    round_descriptor,
)
from secagg.paillier.keys import ThresholdPublicKey
from secagg.paillier.messages import EncryptedVector
from secagg.paillier.packing import MAX_CLIENTS as MAX_PACKED_CLIENTS
from secagg.paillier.packing import MAX_VALUE_BITS, SlotLayout
from secagg.paillier.protocol import SessionParameters
from secagg.primitives.signing import PUBLIC_KEY_SIZE
from secagg.wire import U8, U16, U32, U64, FixedBytes, ListOf, Struct, VarBytes, wire_field

__all__ = ["PaillierSetup", "PaillierUpload", "paillier_layout"]


def paillier_layout(quantization: QuantizationConfig, num_nodes: int, key_bits: int) -> SlotLayout:
    """The packing layout of a Flower Paillier round of ``num_nodes`` nodes: the bounded range
    ``[-B, B]`` with ``B = max_weight * qmax`` (offset exactly B; slot ``bitlen(2 n B) + 1`` bits,
    one above the smallest narrow ring of the quantization).

    B covers every coordinate a node encodes: ``|w q| <= max_weight * qmax``, a clipped count
    ``0 <= c_s <= length_s <= max_weight * qmax`` (the clip table's check), the weight
    ``1 <= w <= max_weight``, and in a DP round (``max_weight`` 1) ``|round(x scale) + noise| <=
    qmax``; packing refuses any value beyond it. ConfigurationError if B needs more than
    :data:`~secagg.paillier.packing.MAX_VALUE_BITS` bits or slots could carry or not fit the key.
    """
    bound = quantization.max_weight * quantization.qmax
    if bound.bit_length() + 1 > MAX_VALUE_BITS:
        raise ConfigurationError(
            f"packed values up to max_weight * qmax = {bound} need {bound.bit_length() + 1} bits, above the "
            f"packing limit of {MAX_VALUE_BITS}: lower bits or max_weight"
        )
    return SlotLayout.bounded(bound, num_nodes, key_bits)


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
        message_type: the Flower message type of the round's messages (UTF-8; the server's
            batch's): ``train.<action>`` picks the node's train handler. A node sent the setup in
            a message of another type refuses it before it trains (:meth:`check_message_type`).

    Every field enters the session id (:meth:`session_parameters`, through the round's
    :class:`~secagg.descriptor.SessionDescriptor`; the table's digest is its layout digest; the
    message type unless it is plain ``train``).
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
    message_type: bytes = wire_field(VarBytes(MAX_TYPE_BYTES), default=TRAIN.encode())

    def __post_init__(self) -> None:
        check_round_fields("paillier setup", self.node_ids, self.weight_key)
        if not isinstance(self.message_type, bytes) or len(self.message_type) > MAX_TYPE_BYTES:
            raise ConfigurationError(f"paillier setup: the message type is at most {MAX_TYPE_BYTES} bytes")
        try:
            self.message_type.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigurationError("paillier setup: the message type is not UTF-8") from exc
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
        *,
        message_type: str = TRAIN,
    ) -> PaillierSetup:
        """The setup message for ``node_ids`` and their ``identity_keys`` (in the same
        order; sorted here by node id), the clip table ``segments`` or the DP parameters
        ``dp``, for messages of ``message_type``; ConfigurationError if unsafe."""
        if not isinstance(message_type, str):
            raise ConfigurationTypeError(f"a message type must be a string, got {type(message_type).__name__}")
        keys = dict(zip(node_ids, identity_keys, strict=True))
        setup = cls(
            server_round=server_round,
            node_ids=tuple(sorted(node_ids)),
            key_fingerprint=public.fingerprint,
            min_contributors=min_contributors,
            vector_length=vector_length,
            clip_bits=float_bits(quantization.clip),
            bits=quantization.bits,
            max_weight=quantization.max_weight,
            weight_key=weight_key.encode("utf-8"),
            arrays_digest=digest,
            identity_keys=tuple(keys[node] for node in sorted(node_ids)),
            parameters=parameters,
            segments=segments,
            compression=compression,
            dp=dp,
            message_type=message_type.encode("utf-8"),
        )
        setup.session_parameters(public, bytes(32), 0)  # every check the nodes will make
        return setup

    @property
    def quantization(self) -> QuantizationConfig:
        """The quantization (int64 sums: ``ring_bits=64`` bounds ``n * max_weight * qmax``)."""
        return QuantizationConfig(
            clip=bits_float(self.clip_bits),
            bits=self.bits,
            num_clients=len(self.node_ids),
            ring_bits=64,
            max_weight=self.max_weight,
        )

    @property
    def weight_name(self) -> str:
        """The weight key as a string."""
        return self.weight_key.decode("utf-8")

    @property
    def type_name(self) -> str:
        """The round's message type as a string."""
        return self.message_type.decode("utf-8")

    def check_message_type(self, message_type: str) -> None:
        """ProtocolError unless ``message_type``, the type of the message a node was sent this
        setup in, is the round's: the type picks the train handler, so a node checks it before it
        trains (an upload made under another type is in another session and could only be dropped)."""
        check_message_type(message_type, self.type_name)

    def layout(self, key_bits: int) -> SlotLayout:
        """The packing layout for this round's nodes (:func:`paillier_layout` of the setup's
        quantization); ConfigurationError if sums could carry between slots."""
        return paillier_layout(self.quantization, len(self.node_ids), key_bits)

    def descriptor(self, run_id: int) -> SessionDescriptor:
        """The round's session descriptor (as :meth:`RoundSetup.descriptor`, DP parameters included,
        and, unless it is plain ``train``, the round's :attr:`message_type`, which picks the train
        handler: :func:`~secagg.integrations.flower._round_binding.message_type_parameters`)."""
        parameters = merged_parameters(self.parameters, self.dp, self.compression,
                                       message_type_parameters(self.type_name))
        return round_descriptor(self.quantization, self.weight_name, self.arrays_digest, run_id, self.server_round,
                                parameters, self.segments)

    def session_parameters(self, public: ThresholdPublicKey, context: bytes, run_id: int) -> SessionParameters:
        """The Paillier session every party derives: roster 1..n with the setup's identity
        keys, this layout, ``context`` and the round's descriptor digest (its message type included).

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
        return protocol_id_of(self.node_ids, node_id)


@dataclass(frozen=True)
class PaillierUpload(wire.Message):
    """Node -> server, ``encrypt`` stage: the node's encrypted update and the index of its key share.

    ``party`` tells the server whom to ask for a partial decryption; a node
    claiming another's index cannot produce a valid proof for it, and the server
    asks every claimant, so the holder's answer still counts.
    """

    TAG: ClassVar[int] = 0x0704
    party: int = wire_field(U16)
    upload: EncryptedVector = wire_field(Struct(EncryptedVector))

    def __post_init__(self) -> None:
        if self.party < 1:
            raise ConfigurationError("paillier upload: key-share indices start at 1")
        if not isinstance(self.upload, EncryptedVector):
            raise ConfigurationError("paillier upload: carries an EncryptedVector")
