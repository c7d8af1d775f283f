"""The masking configuration's vocabulary and wire form.

The graph and mode names a :class:`~secagg.masking.config.MaskingConfig` accepts,
their one-byte codes, the roster ceiling, and :class:`ConfigRecord`: the operative
parameters as a wire struct, whose hash is the config digest every party agrees on,
with the conversions between a config and its record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from secagg import wire
from secagg.descriptor import DESCRIPTOR_DIGEST_SIZE
from secagg.errors import ConfigurationError
from secagg.primitives.signing import PUBLIC_KEY_SIZE
from secagg.wire import U8, U32, FixedBytes, ListOf, wire_field

if TYPE_CHECKING:
    from secagg.masking.config import MaskingConfig

__all__ = [
    "ACTIVE",
    "COMPLETE",
    "HARARY",
    "MAX_CLIENTS",
    "SEMI_HONEST",
    "ConfigRecord",
    "config_from_record",
    "config_to_record",
]

COMPLETE = "complete"
HARARY = "harary"
SEMI_HONEST = "semi-honest"
ACTIVE = "active"
GRAPH_CODES = {COMPLETE: 0, HARARY: 1}
MODE_CODES = {SEMI_HONEST: 0, ACTIVE: 1}
MAX_CLIENTS = 1 << 16


@dataclass(frozen=True)
class ConfigRecord(wire.WireStruct):
    """The operative parameters in wire form; their hash is the config digest."""

    num_clients: int = wire_field(U32)
    threshold: int = wire_field(U32)
    degree: int = wire_field(U32)
    vector_length: int = wire_field(U32)
    graph: int = wire_field(U8)
    mode: int = wire_field(U8)
    ring_bits: int = wire_field(U8)
    colluders: int = wire_field(U32)
    dropouts: int = wire_field(U32)
    descriptor: bytes = wire_field(FixedBytes(DESCRIPTOR_DIGEST_SIZE))
    identity_keys: tuple[bytes, ...] = wire_field(ListOf(FixedBytes(PUBLIC_KEY_SIZE), MAX_CLIENTS))


def config_to_record(config: MaskingConfig) -> ConfigRecord:
    """The operative parameters of ``config`` as a wire struct."""
    return ConfigRecord(
        num_clients=config.num_clients,
        threshold=config.threshold,
        degree=config.degree,
        vector_length=config.vector_length,
        graph=GRAPH_CODES[config.graph],
        mode=MODE_CODES[config.mode],
        ring_bits=config.ring_bits,
        colluders=config.colluders,
        dropouts=config.guarantee.dropouts,
        descriptor=config.descriptor,
        identity_keys=config.identity_keys,
    )


def config_from_record(cls: type[MaskingConfig], record: ConfigRecord) -> MaskingConfig:
    """Rebuild a ``cls`` config from its wire record, validating it again
    (:meth:`~secagg.masking.config.MaskingConfig.from_record`)."""
    graphs = {code: name for name, code in GRAPH_CODES.items()}
    modes = {code: name for name, code in MODE_CODES.items()}
    if record.graph not in graphs or record.mode not in modes:
        raise ConfigurationError("unknown graph or mode code in config record")
    n = record.num_clients
    if not 3 <= n <= MAX_CLIENTS or record.colluders >= n or record.dropouts >= n:
        raise ConfigurationError("config record: colluders and dropouts must be below n")
    graph = graphs[record.graph]
    config = cls(
        num_clients=n,
        threshold=record.threshold,
        vector_length=record.vector_length,
        graph=graph,
        degree=record.degree,
        ring_bits=record.ring_bits,
        mode=modes[record.mode],
        identity_keys=record.identity_keys,
        corrupt_fraction=record.colluders / n,
        dropout_fraction=record.dropouts / n if graph == HARARY else 0.0,
        descriptor=record.descriptor,
    )
    rebuilt = config.record()
    if (rebuilt.colluders, rebuilt.dropouts) != (record.colluders, record.dropouts):
        raise ConfigurationError(
            f"config record claims {record.colluders} colluders and {record.dropouts} dropouts; "
            f"its threshold supports {rebuilt.colluders} and {rebuilt.dropouts}"
        )
    return config
