"""The session descriptor: everything outside the protocol that shapes a contribution.

A secure sum is only as private as its weakest unbound input. A server that sent
one hospital a clip of 0.5 and every other hospital a clip of 1e300 would make
the others contribute exact zeros, and the "sum" would be that one hospital's
update. So every value that changes what a client sends, or how the result is
decoded, goes into one canonical record, :class:`SessionDescriptor`, whose
digest enters the protocol's configuration digest
(:attr:`secagg.masking.MaskingConfig.descriptor`,
:attr:`secagg.paillier.SessionParameters.descriptor`). Every session id, key
derivation, AEAD associated data and active-mode signature is bound to that
digest, so two clients holding different descriptors are in different
sessions: their keys, shares and masks do not meet, and no aggregate ever mixes
contributions made under different descriptors.

What belongs in it (docs/spec.md, "Session descriptor"):

- the encoding: clip, bits, ring, rounding, the weight bound and the name of
  the weight (:class:`~secagg.encoding.QuantizationConfig`);
- the application's layout (how arrays map to the vector) and the digest of
  the model the round trains from;
- the run and the round;
- every training parameter the server sends with the model (learning rate,
  local epochs, ...): a server that sent every node but one ``local-epochs =
  0`` would mount the same attack as the split clip;
- differential-privacy and compression parameters, as entries of ``parameters``
  named ``secagg.dp.*`` (:meth:`secagg.dp.DPConfig.descriptor_parameters`),
  ``secagg.sparsity.*`` (:meth:`secagg.sparsity.Subset.descriptor_parameters`) and
  ``secagg.rotation.*`` (:meth:`secagg.rotation.Rotation.descriptor_parameters`).

Integrators fill it once per round (:meth:`SessionDescriptor.create`); the
adapters in :mod:`secagg.integrations` and the aggregators in ``fl_core`` do.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from secagg import wire
from secagg.encoding import QuantizationConfig
from secagg.errors import ConfigurationError, DecodeError
from secagg.wire import U8, U32, U64, FixedBytes, VarBytes, wire_field

__all__ = [
    "DESCRIPTOR_DIGEST_SIZE",
    "MAX_PARAMETERS_BYTES",
    "NO_DESCRIPTOR",
    "ROUNDING_STOCHASTIC",
    "Parameter",
    "SessionDescriptor",
    "decode_parameters",
    "encode_parameters",
]

DESCRIPTOR_DIGEST_SIZE = 32
NO_DESCRIPTOR = bytes(DESCRIPTOR_DIGEST_SIZE)
"""The descriptor digest of a session that sums raw ring vectors (no application encoding)."""
ROUNDING_STOCHASTIC = 0
"""Rounding code: unbiased stochastic rounding (:func:`secagg.encoding.quantize_to_integers`)."""
MAX_PARAMETERS_BYTES = 1 << 20
MAX_WEIGHT_KEY_BYTES = 256
DESCRIPTOR_LABEL = b"secagg/v1/descriptor"

Parameter = bool | int | float | str | bytes
"""A training parameter's value (what Flower's ConfigRecord scalars hold)."""

_TYPE_CODES: dict[type, int] = {bool: 1, int: 2, float: 3, str: 4, bytes: 5}


def _utf8(text: str, what: str) -> bytes:
    """``text`` in UTF-8; ConfigurationError if it has none (a lone surrogate)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigurationError(f"{what} is not valid Unicode (it has no UTF-8 encoding): {text!r}") from exc


def _encode_value(name: str, value: Parameter) -> bytes:
    kind = type(value)
    if kind not in _TYPE_CODES:
        raise ConfigurationError(f"parameter {name!r}: {kind.__name__} values cannot be bound (use a scalar)")
    if isinstance(value, bool):
        data = bytes((int(value),))
    elif isinstance(value, int):
        if not -(1 << 63) <= value < 1 << 63:
            raise ConfigurationError(f"parameter {name!r}: integers must fit 64 bits")
        data = value.to_bytes(8, "big", signed=True)
    elif isinstance(value, float):
        if math.isnan(value):
            raise ConfigurationError(f"parameter {name!r}: NaN cannot be bound (it has many encodings)")
        data = struct.pack(">d", value)
    elif isinstance(value, str):
        data = _utf8(value, f"parameter {name!r}: the value")
    else:
        data = value
    return bytes((_TYPE_CODES[kind],)) + len(data).to_bytes(4, "big") + data


def encode_parameters(parameters: Mapping[str, Parameter]) -> bytes:
    """Canonical bytes of ``parameters``: sorted by UTF-8 name; per entry
    ``u32 len || name || u8 type || u32 len || value`` (bool 1 byte, int 8 bytes
    signed big-endian, float IEEE-754 binary64 big-endian, str UTF-8, bytes raw)."""
    out = bytearray()
    names: dict[str, bytes] = {}
    for name in parameters:
        if not isinstance(name, str):
            raise ConfigurationError(f"parameter names must be strings, got {name!r}")
        names[name] = _utf8(name, "a parameter name")
    for name in sorted(parameters, key=names.__getitem__):
        key = names[name]
        out += len(key).to_bytes(4, "big") + key + _encode_value(name, parameters[name])
    if len(out) > MAX_PARAMETERS_BYTES:
        raise ConfigurationError(f"bound parameters take {len(out)} bytes, more than {MAX_PARAMETERS_BYTES}")
    return bytes(out)


def decode_parameters(data: bytes) -> dict[str, Parameter]:
    """The inverse of :func:`encode_parameters`; DecodeError unless ``data`` is its canonical output."""
    out: dict[str, Parameter] = {}
    view, offset = memoryview(data), 0

    def take(size: int) -> bytes:
        nonlocal offset
        if size < 0 or offset + size > len(view):
            raise DecodeError("bound parameters are truncated")
        chunk = bytes(view[offset : offset + size])
        offset += size
        return chunk

    while offset < len(view):
        try:
            name = take(int.from_bytes(take(4), "big")).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError("a bound parameter name is not UTF-8") from exc
        code = take(1)[0]
        value = take(int.from_bytes(take(4), "big"))
        kind = {v: k for k, v in _TYPE_CODES.items()}.get(code)
        parsed: Parameter
        if kind is bool and len(value) == 1 and value[0] in (0, 1):
            parsed = bool(value[0])
        elif kind is int and len(value) == 8:
            parsed = int.from_bytes(value, "big", signed=True)
        elif kind is float and len(value) == 8:
            parsed = float(struct.unpack(">d", value)[0])
        elif kind is str:
            try:
                parsed = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DecodeError(f"parameter {name!r}: not UTF-8") from exc
        elif kind is bytes:
            parsed = value
        else:
            raise DecodeError(f"parameter {name!r}: bad type code {code} or length {len(value)}")
        out[name] = parsed
    try:
        canonical = encode_parameters(out)
    except ConfigurationError as exc:
        raise DecodeError(f"bound parameters: {exc}") from exc
    if canonical != bytes(data):
        raise DecodeError("bound parameters are not in canonical form (order or duplicates)")
    return out


def _float_bits(value: float) -> int:
    return int.from_bytes(struct.pack(">d", value), "big")


@dataclass(frozen=True)
class SessionDescriptor(wire.Message):
    """The canonical record of what shapes a contribution or its decoding.

    Attributes:
        clip_bits: the quantization clip as IEEE-754 binary64 bits (0: no quantization).
        bits: quantization bits per value, sign included (0: no quantization).
        ring_bits: the ring of the encodings (32 or 64; 0: no quantization).
        rounding: rounding code (:data:`ROUNDING_STOCHASTIC`).
        max_weight: the public bound on one client's integer weight.
        weight_key: the name of the weight in the application (UTF-8).
        layout_digest: the application's array layout (32 bytes, e.g. SHA-256 of its description).
        model_digest: the model the round trains from (32 bytes).
        run_id: the run (u64).
        server_round: the round (u32).
        parameters: :func:`encode_parameters` of the training parameters sent with the model.
    """

    TAG: ClassVar[int] = 0x0120
    clip_bits: int = wire_field(U64)
    bits: int = wire_field(U8)
    ring_bits: int = wire_field(U8)
    rounding: int = wire_field(U8)
    max_weight: int = wire_field(U32)
    weight_key: bytes = wire_field(VarBytes(MAX_WEIGHT_KEY_BYTES))
    layout_digest: bytes = wire_field(FixedBytes(32))
    model_digest: bytes = wire_field(FixedBytes(32))
    run_id: int = wire_field(U64)
    server_round: int = wire_field(U32)
    parameters: bytes = wire_field(VarBytes(MAX_PARAMETERS_BYTES))

    def __post_init__(self) -> None:
        if self.rounding != ROUNDING_STOCHASTIC:
            raise ConfigurationError(f"unknown rounding code {self.rounding}")
        try:
            self.weight_key.decode("utf-8")
        except (AttributeError, UnicodeDecodeError) as exc:
            raise ConfigurationError("the descriptor's weight key must be UTF-8 bytes") from exc

    @classmethod
    def create(
        cls,
        quantization: QuantizationConfig | None,
        *,
        weight_key: str = "",
        layout_digest: bytes = bytes(32),
        model_digest: bytes = bytes(32),
        run_id: int = 0,
        server_round: int = 0,
        parameters: Mapping[str, Parameter] | None = None,
    ) -> SessionDescriptor:
        """The descriptor of one round; ConfigurationError if a value cannot be bound."""
        for name, digest in (("layout_digest", layout_digest), ("model_digest", model_digest)):
            if not isinstance(digest, bytes) or len(digest) != 32:
                raise ConfigurationError(f"{name} must be 32 bytes")
        for name, value, bound in (("run_id", run_id, 1 << 64), ("server_round", server_round, 1 << 32)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < bound:
                raise ConfigurationError(f"{name} must be an int in 0..{bound - 1}, got {value!r}")
        if not isinstance(weight_key, str):
            raise ConfigurationError(f"weight_key must be a str, got {type(weight_key).__name__}")
        key = _utf8(weight_key, "weight_key")
        if len(key) > MAX_WEIGHT_KEY_BYTES:
            raise ConfigurationError(f"weight_key takes more than {MAX_WEIGHT_KEY_BYTES} bytes")
        q = quantization
        return cls(
            clip_bits=0 if q is None else _float_bits(q.clip),
            bits=0 if q is None else q.bits,
            ring_bits=0 if q is None else q.ring_bits,
            rounding=ROUNDING_STOCHASTIC,
            max_weight=0 if q is None else q.max_weight,
            weight_key=key,
            layout_digest=layout_digest,
            model_digest=model_digest,
            run_id=run_id,
            server_round=server_round,
            parameters=encode_parameters(parameters or {}),
        )

    def digest(self) -> bytes:
        """SHA-256(``"secagg/v1/descriptor"`` || the record's fields): what the session binds."""
        out: wire.Parts = [DESCRIPTOR_LABEL]
        self._encode_body(out)
        return hashlib.sha256(b"".join(out)).digest()
