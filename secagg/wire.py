"""Versioned, canonical, length-checked binary encoding of protocol messages.

Every message travels in an envelope::

    magic "SA" (2 bytes) | version (u8) | type tag (u16, big-endian) | body

The body is the message's fields in declaration order, each encoded by the codec
named in its dataclass field metadata (see :func:`wire_field`). All integers are
big-endian and fixed width; variable-length fields carry a u32 length or count
prefix; ring vectors carry their ring size and are little-endian words. The
encoding is canonical: there is exactly one byte string per message, so
``encode(decode(b)) == b`` for every accepted ``b``. Decoding never reads past
the input, never allocates more than the input's size, rejects trailing bytes
and raises only :class:`~secagg.errors.DecodeError`.

Never use pickle for anything that crosses a trust boundary; this module is the
only way messages enter or leave the library. (Declare messages with plain
``@dataclass(frozen=True)``: ``slots=True`` re-creates the class, which would
register its tag twice.)
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from secagg.errors import DecodeError, EncodeError, SecAggError
from secagg.ring import Ring

__all__ = [
    "BOOL",
    "MAGIC",
    "U8",
    "U16",
    "U32",
    "U64",
    "VERSION",
    "BigUInt",
    "Codec",
    "FixedBytes",
    "ListOf",
    "Message",
    "Parts",
    "Reader",
    "RingArray",
    "Struct",
    "VarBytes",
    "WireStruct",
    "decode",
    "decode_any",
    "encode",
    "wire_field",
]

MAGIC = b"SA"
VERSION = 1
HEADER_SIZE = len(MAGIC) + 1 + 2

T = TypeVar("T")
S = TypeVar("S", bound="WireStruct")
M = TypeVar("M", bound="Message")


class Reader:
    """A cursor over untrusted bytes that raises DecodeError instead of overrunning."""

    def __init__(self, data: bytes) -> None:
        # bytes are immutable, so a view is safe; anything mutable is copied once.
        self._bytes = data if isinstance(data, bytes) else bytes(data)
        self._data = memoryview(self._bytes).cast("B")
        self._pos = 0

    @property
    def remaining(self) -> int:
        """Bytes not yet consumed."""
        return len(self._data) - self._pos

    def take(self, size: int) -> bytes:
        """Consume exactly ``size`` bytes (a copy)."""
        end = self._pos + size
        if size < 0 or end > len(self._bytes):
            raise DecodeError(f"truncated input: need {size} bytes at offset {self._pos}, have {self.remaining}")
        chunk = self._bytes[self._pos : end]
        self._pos = end
        return chunk

    def take_view(self, size: int) -> memoryview:
        """Consume exactly ``size`` bytes as a read-only view of the input (no copy)."""
        if size < 0 or size > self.remaining:
            raise DecodeError(f"truncated input: need {size} bytes at offset {self._pos}, have {self.remaining}")
        view = self._data[self._pos : self._pos + size]
        self._pos += size
        return view.toreadonly()

    def finish(self) -> None:
        """Require that every byte was consumed."""
        if self.remaining:
            raise DecodeError(f"{self.remaining} trailing bytes after the message")


Parts = list["bytes | memoryview"]
"""Encoded pieces in order; :func:`encode` joins them once (no repeated copying)."""


class Codec(ABC, Generic[T]):
    """Encodes one field value to bytes and decodes it back from a Reader."""

    description: str = ""

    @abstractmethod
    def encode(self, value: T, out: Parts) -> None:
        """Append the encoding of ``value`` to ``out``; EncodeError if it does not fit."""

    @abstractmethod
    def decode(self, reader: Reader) -> T:
        """Consume one value from ``reader``; DecodeError on malformed input."""


class UInt(Codec[int]):
    """An unsigned big-endian integer of ``size`` bytes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.description = f"u{8 * size}"

    def encode(self, value: int, out: Parts) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise EncodeError(f"{self.description} field needs an int, got {type(value).__name__}")
        if not 0 <= int(value) < 1 << (8 * self.size):
            raise EncodeError(f"{value} does not fit in {self.description}")
        out.append(int(value).to_bytes(self.size, "big"))

    def decode(self, reader: Reader) -> int:
        return int.from_bytes(reader.take(self.size), "big")


class Bool(Codec[bool]):
    """One byte, 0 or 1; any other value is rejected."""

    description = "bool (u8 0 or 1)"

    def encode(self, value: bool, out: Parts) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise EncodeError(f"bool field needs a bool, got {type(value).__name__}")
        out.append(b"\x01" if value else b"\x00")

    def decode(self, reader: Reader) -> bool:
        byte = reader.take(1)[0]
        if byte > 1:
            raise DecodeError(f"boolean byte must be 0 or 1, got {byte}")
        return byte == 1


U8, U16, U32, U64 = UInt(1), UInt(2), UInt(4), UInt(8)
BOOL = Bool()


class FixedBytes(Codec[bytes]):
    """Exactly ``size`` raw bytes (keys, nonces, hashes)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.description = f"{size} bytes"

    def encode(self, value: bytes, out: Parts) -> None:
        if not isinstance(value, (bytes, bytearray)) or len(value) != self.size:
            raise EncodeError(f"field needs exactly {self.size} bytes")
        out.append(bytes(value))

    def decode(self, reader: Reader) -> bytes:
        return reader.take(self.size)


class VarBytes(Codec[bytes]):
    """A u32 length followed by that many bytes, at most ``max_size``."""

    def __init__(self, max_size: int = 1 << 30) -> None:
        self.max_size = max_size
        self.description = f"u32 length + bytes (at most {max_size})"

    def encode(self, value: bytes, out: Parts) -> None:
        if not isinstance(value, (bytes, bytearray)) or len(value) > self.max_size:
            raise EncodeError(f"field needs bytes of at most {self.max_size} bytes")
        U32.encode(len(value), out)
        out.append(bytes(value))

    def decode(self, reader: Reader) -> bytes:
        size = U32.decode(reader)
        if size > self.max_size:
            raise DecodeError(f"byte string of {size} bytes exceeds the limit {self.max_size}")
        return reader.take(size)


class BigUInt(Codec[int]):
    """A non-negative integer: u16 byte length, then big-endian magnitude with no
    leading zero byte (zero is the empty string), at most ``max_bytes`` bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.description = f"u16 length + big-endian integer (at most {max_bytes} bytes, minimal)"

    def encode(self, value: int, out: Parts) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise EncodeError(f"integer field needs an int, got {type(value).__name__}")
        value = int(value)
        size = (value.bit_length() + 7) // 8
        if value < 0 or size > self.max_bytes:
            raise EncodeError(f"integer does not fit in {self.max_bytes} bytes")
        U16.encode(size, out)
        out.append(value.to_bytes(size, "big"))

    def decode(self, reader: Reader) -> int:
        size = U16.decode(reader)
        if size > self.max_bytes:
            raise DecodeError(f"integer of {size} bytes exceeds the limit {self.max_bytes}")
        raw = reader.take(size)
        if raw[:1] == b"\x00":
            raise DecodeError("non-canonical integer: leading zero byte")
        return int.from_bytes(raw, "big")


class ListOf(Codec[tuple[T, ...]]):
    """A u32 count followed by that many items, at most ``max_items``."""

    def __init__(self, item: Codec[T], max_items: int = 1 << 20) -> None:
        self.item = item
        self.max_items = max_items
        self.description = f"u32 count + items of ({item.description}), at most {max_items}"

    def encode(self, value: tuple[T, ...], out: Parts) -> None:
        if not isinstance(value, (tuple, list)):
            raise EncodeError(f"list field needs a tuple or list, got {type(value).__name__}")
        if len(value) > self.max_items:
            raise EncodeError(f"list of {len(value)} items exceeds the limit {self.max_items}")
        U32.encode(len(value), out)
        for item in value:
            self.item.encode(item, out)

    def decode(self, reader: Reader) -> tuple[T, ...]:
        count = U32.decode(reader)
        if count > self.max_items or count > reader.remaining:
            raise DecodeError(f"list of {count} items exceeds the limit or the input")
        return tuple(self.item.decode(reader) for _ in range(count))


class RingArray(Codec[np.ndarray]):
    """A ring vector: u8 ring bits (32 or 64), u32 element count, then the
    elements as little-endian words. Decodes to a read-only numpy array."""

    def __init__(self, max_length: int = 1 << 30) -> None:
        self.max_length = max_length
        self.description = "u8 ring bits + u32 count + little-endian words"

    def encode(self, value: np.ndarray, out: Parts) -> None:
        if not isinstance(value, np.ndarray) or value.ndim != 1 or value.dtype.kind != "u":
            raise EncodeError("ring array field needs a 1-D unsigned numpy array")
        if value.dtype.itemsize not in (4, 8) or value.shape[0] > self.max_length:
            raise EncodeError("ring array must hold 32- or 64-bit words within the length limit")
        ring = Ring(8 * value.dtype.itemsize)
        U8.encode(ring.bits, out)
        U32.encode(value.shape[0], out)
        out.append(np.ascontiguousarray(value, dtype=ring.dtype).data.cast("B"))

    def decode(self, reader: Reader) -> np.ndarray:
        bits = U8.decode(reader)
        if bits not in (32, 64):
            raise DecodeError(f"ring array has ring size 2^{bits}; expected 2^32 or 2^64")
        ring = Ring(bits)
        length = U32.decode(reader)
        if length > self.max_length:
            raise DecodeError(f"ring array of {length} elements exceeds the limit {self.max_length}")
        # A read-only view of the message bytes: no copy of a large vector.
        return np.frombuffer(reader.take_view(length * ring.element_size), dtype=ring.dtype)


class Struct(Codec[S]):
    """A nested record: the fields of a :class:`WireStruct` with no envelope."""

    def __init__(self, cls: type[S]) -> None:
        self.cls = cls
        self.description = cls.__name__

    def encode(self, value: S, out: Parts) -> None:
        if not isinstance(value, self.cls):
            raise EncodeError(f"field needs a {self.cls.__name__}")
        value._encode_body(out)

    def decode(self, reader: Reader) -> S:
        return self.cls._decode_body(reader)


def wire_field(codec: Codec[Any], **kwargs: Any) -> Any:
    """A dataclass field encoded with ``codec``."""
    return dataclasses.field(metadata={"wire": codec}, **kwargs)


_FIELDS: dict[type, tuple[tuple[str, Codec[Any]], ...]] = {}


class WireStruct:
    """Base of frozen dataclasses whose fields all carry a codec (:func:`wire_field`)."""

    @classmethod
    def wire_fields(cls) -> tuple[tuple[str, Codec[Any]], ...]:
        """The (name, codec) pairs in encoding order (computed once per class)."""
        cached = _FIELDS.get(cls)
        if cached is None:
            cached = tuple((f.name, f.metadata["wire"]) for f in dataclasses.fields(cls))  # type: ignore[arg-type]
            _FIELDS[cls] = cached
        return cached

    def _encode_body(self, out: Parts) -> None:
        for name, codec in self.wire_fields():
            codec.encode(getattr(self, name), out)

    @classmethod
    def _decode_body(cls: type[S], reader: Reader) -> S:
        values = {name: codec.decode(reader) for name, codec in cls.wire_fields()}
        try:
            return cls(**values)
        except DecodeError:
            raise
        except (SecAggError, ValueError, TypeError) as exc:
            # __post_init__ validation of untrusted content: report it as a decode error.
            raise DecodeError(f"invalid {cls.__name__}: {exc}") from exc


class Message(WireStruct):
    """A top-level wire message; subclasses set a unique ``TAG`` (u16)."""

    TAG: ClassVar[int]
    _registry: ClassVar[dict[int, type[Message]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        tag = cls.__dict__.get("TAG")
        if tag is None:
            return
        if not 0 < tag < 1 << 16:
            raise TypeError(f"{cls.__name__}.TAG must be a u16 greater than zero")
        if tag in Message._registry:
            raise TypeError(f"wire tag {tag:#06x} of {cls.__name__} is taken by {Message._registry[tag].__name__}")
        Message._registry[tag] = cls


def encode(message: Message) -> bytes:
    """The canonical envelope + body encoding of ``message``."""
    out: Parts = [MAGIC]
    U8.encode(VERSION, out)
    U16.encode(type(message).TAG, out)
    message._encode_body(out)
    return b"".join(out)


def decode_any(data: bytes) -> Message:
    """Decode an envelope holding any registered message type."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    reader = Reader(data if isinstance(data, bytes) else bytes(data))
    if reader.take(len(MAGIC)) != MAGIC:
        raise DecodeError("bad magic: not a secagg message")
    version = U8.decode(reader)
    if version != VERSION:
        raise DecodeError(f"unsupported wire version {version} (this library speaks {VERSION})")
    tag = U16.decode(reader)
    cls = Message._registry.get(tag)
    if cls is None:
        raise DecodeError(f"unknown message tag {tag:#06x}")
    message = cls._decode_body(reader)
    reader.finish()
    return message


def decode(data: bytes, expected: type[M]) -> M:
    """Decode ``data`` and require that it is a message of type ``expected``."""
    message = decode_any(data)
    if not isinstance(message, expected):
        raise DecodeError(f"expected a {expected.__name__} message, got {type(message).__name__}")
    return message


def message_types() -> Sequence[type[Message]]:
    """Every registered message type, ordered by tag (for docs and vectors)."""
    return [Message._registry[tag] for tag in sorted(Message._registry)]
