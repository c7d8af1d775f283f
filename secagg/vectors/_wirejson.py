"""Wire messages <-> JSON, driven by the codecs each message declares.

Field names become camelCase; integers stay JSON integers; byte strings
(fixed or length-prefixed) are hex; big unsigned integers are the hex of their
minimal big-endian bytes ("" for zero); ring vectors are
``{"ringBits": b, "words": hex of the little-endian words}`` (32- or 64-bit container
words; a packed ring vector has b in 8..64, the others 32 or 64); lists are
arrays; nested records are objects.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from secagg import wire
from secagg.ring import NarrowRing, PackedVector, Ring
from secagg.vectors._format import Json, VectorError, from_hex, ring_from_hex, ring_to_hex
from secagg.wire_packed import PackedRingArray

__all__ = ["camel", "message_class", "message_from_json", "message_to_json", "struct_from_json", "struct_to_json"]


def camel(name: str) -> str:
    """``encryption_key`` -> ``encryptionKey``."""
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def message_class(name: str) -> type[wire.Message]:
    """The registered message type called ``name``."""
    for cls in wire.message_types():
        if cls.__name__ == name:
            return cls
    raise VectorError(f"no wire message type named {name!r}")


def _big_to_json(number: int) -> str:
    return number.to_bytes((number.bit_length() + 7) // 8, "big").hex()


def _ring_from_json(value: Json) -> np.ndarray:
    Ring(int(value["ringBits"]))
    vector: np.ndarray = ring_from_hex(value["words"], int(value["ringBits"]))
    return vector


def _packed_from_json(value: Json) -> PackedVector:
    bits = int(value["ringBits"])
    return PackedVector(bits, ring_from_hex(value["words"], NarrowRing(bits).container.bits))


def _to_json(codec: wire.Codec[Any], value: Any) -> Any:
    if isinstance(codec, wire.ListOf):
        return [_to_json(codec.item, item) for item in value]
    if isinstance(codec, wire.Struct):
        return struct_to_json(value)
    converters: list[tuple[type[Any], Any]] = [
        (wire.UInt, int), (wire.Bool, bool), (wire.FixedBytes, lambda v: bytes(v).hex()),
        (wire.VarBytes, lambda v: bytes(v).hex()), (wire.BigUInt, lambda v: _big_to_json(int(v))),
        (wire.RingArray, lambda v: {"ringBits": 8 * v.dtype.itemsize, "words": ring_to_hex(v)}),
        (PackedRingArray, lambda v: {"ringBits": v.bits, "words": ring_to_hex(v.values)}),
    ]
    for kind, convert in converters:
        if isinstance(codec, kind):
            return convert(value)
    raise VectorError(f"no JSON form for codec {type(codec).__name__}")


def _from_json(codec: wire.Codec[Any], value: Any) -> Any:
    if isinstance(codec, wire.ListOf):
        return tuple(_from_json(codec.item, item) for item in value)
    if isinstance(codec, wire.Struct):
        return struct_from_json(codec.cls, value)
    converters: list[tuple[type[Any], Any]] = [
        (wire.UInt, int), (wire.Bool, bool), (wire.FixedBytes, from_hex), (wire.VarBytes, from_hex),
        (wire.BigUInt, lambda v: int.from_bytes(from_hex(v), "big")), (wire.RingArray, _ring_from_json),
        (PackedRingArray, _packed_from_json),
    ]
    for kind, convert in converters:
        if isinstance(codec, kind):
            return convert(value)
    raise VectorError(f"no JSON form for codec {type(codec).__name__}")


def struct_to_json(value: wire.WireStruct) -> Json:
    """The fields of a record (or message body) as a JSON object."""
    return {camel(name): _to_json(codec, getattr(value, name)) for name, codec in type(value).wire_fields()}


def struct_from_json(cls: type[Any], data: Json) -> Any:
    """Build the record ``cls`` from its JSON object (every field required, no others)."""
    names = {camel(name): (name, codec) for name, codec in cls.wire_fields()}
    if set(data) != set(names):
        raise VectorError(f"{cls.__name__} fields {sorted(data)} differ from {sorted(names)}")
    return cls(**{names[key][0]: _from_json(names[key][1], value) for key, value in data.items()})


def message_to_json(message: wire.Message) -> Json:
    """The fields of a message as a JSON object."""
    return struct_to_json(message)


def message_from_json(cls: type[wire.Message], data: Json) -> wire.Message:
    """The message ``cls`` with the given JSON fields."""
    message: wire.Message = struct_from_json(cls, data)
    return message
