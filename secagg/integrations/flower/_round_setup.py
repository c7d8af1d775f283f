"""The masking round's setup message (:class:`RoundSetup`, ``setup`` stage).

It maps Flower's 64-bit node ids to protocol ids 1..n, carries the masking
configuration, the quantization, the clip table, the DP and compression
parameters, and binds the session to the run, the round and the model through
its descriptor (:mod:`~secagg.integrations.flower._round_binding`).
Re-exported by :mod:`secagg.integrations.flower.protocol`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from secagg import wire
from secagg.descriptor import MAX_PARAMETERS_BYTES, SessionDescriptor
from secagg.encoding import QuantizationConfig
from secagg.errors import ConfigurationError
from secagg.integrations.flower._round_binding import (
    MAX_KEY_BYTES,
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
from secagg.masking.config import ConfigRecord, MaskingConfig
from secagg.wire import U8, U32, U64, FixedBytes, ListOf, Struct, VarBytes, wire_field

__all__ = ["MAX_NODES", "RoundSetup"]

MAX_NODES = 1 << 16


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
        check_round_fields("round setup", self.node_ids, self.weight_key)
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
        message_type: str = TRAIN,
    ) -> RoundSetup:
        """The setup message for ``node_ids`` (sorted here) and validated configurations;
        ``masking`` gets this round's descriptor digest (:meth:`descriptor`) for its messages'
        ``message_type``."""
        if quantization.ring_bits != masking.ring_bits or quantization.num_clients != masking.num_clients:
            raise ConfigurationError("quantization and masking must agree on the ring and the number of clients")
        unbound = cls(
            server_round=server_round,
            node_ids=tuple(sorted(node_ids)),
            masking=masking.record(),
            clip_bits=float_bits(quantization.clip),
            bits=quantization.bits,
            max_weight=quantization.max_weight,
            weight_key=weight_key.encode("utf-8"),
            arrays_digest=digest,
            parameters=parameters,
            segments=segments,
            dp=dp,
            compression=compression,
        )
        bound = dataclasses.replace(masking, descriptor=unbound.descriptor(run_id, message_type).digest())
        return dataclasses.replace(unbound, masking=bound.record())

    def descriptor(self, run_id: int, message_type: str = TRAIN) -> SessionDescriptor:
        """The round's session descriptor: quantization, weight key, run, round, the segment
        table's digest as layout digest (the arrays digest in a DP round), the arrays digest
        as model digest, and the training parameters with the DP and compression parameters and,
        unless it is plain ``train``, the messages' ``message_type`` (it picks the train handler:
        :func:`~secagg.integrations.flower._round_binding.message_type_parameters`)."""
        parameters = merged_parameters(self.parameters, self.dp, self.compression,
                                       message_type_parameters(message_type))
        return round_descriptor(self.quantization, self.weight_name, self.arrays_digest, run_id, self.server_round,
                                parameters, self.segments)

    def bound_masking_config(self, run_id: int, message_type: str = TRAIN) -> MaskingConfig:
        """:attr:`masking_config` after checking that its record binds this setup's descriptor,
        for messages of ``message_type`` (what this node was sent).

        ConfigurationError if the record names another descriptor digest: the
        server's fields and the session it set up disagree. ProtocolError, naming both types, if
        it binds this setup for plain ``train`` messages and this one is of another type
        (:func:`~secagg.integrations.flower._round_binding.check_message_type`). The setup names
        no type on the wire (its digest binds it), so a record bound to another ``train.<action>``
        is refused as another setup, naming only the type this message has.
        """
        masking = self.masking_config
        if masking.descriptor != self.descriptor(run_id, message_type).digest():
            if message_type != TRAIN and masking.descriptor == self.descriptor(run_id, TRAIN).digest():
                check_message_type(message_type, TRAIN)
            raise ConfigurationError(
                "the round setup's masking record binds another setup than the one sent in this "
                f"{message_type!r} message"
            )
        return masking

    @property
    def masking_config(self) -> MaskingConfig:
        """The masking configuration, validated (ConfigurationError if unsafe)."""
        return MaskingConfig.from_record(self.masking)

    @property
    def quantization(self) -> QuantizationConfig:
        """The quantization, validated against overflow for all the round's nodes."""
        return QuantizationConfig(
            clip=bits_float(self.clip_bits),
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
        return protocol_id_of(self.node_ids, node_id)
