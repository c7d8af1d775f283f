"""The wire format (secagg.wire): round trips through every codec, canonical
encodings, and hostile input (random bytes, truncations, bit flips, trailing
bytes, bad envelopes, non-canonical fields) that must raise only DecodeError.

The Probe* messages below exist only for these tests. They use tags in
0xFF00-0xFFFF, the range reserved for tests, and are defined exactly once, at
module import (a second definition of a tag raises TypeError by design).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from secagg import wire
from secagg.errors import ConfigurationError, DecodeError, EncodeError
from secagg.wire import (
    BOOL,
    U8,
    U16,
    U32,
    U64,
    BigUInt,
    FixedBytes,
    ListOf,
    Message,
    RingArray,
    Struct,
    VarBytes,
    WireStruct,
    wire_field,
)
from secagg.wire_packed import PackedRingArray

HEADER = wire.MAGIC + bytes([wire.VERSION])
UNREGISTERED_TAG = 0xFFFE


@dataclass(frozen=True)
class ProbePoint(WireStruct):
    """A nested record (no envelope)."""

    flag: bool = wire_field(BOOL)
    small: int = wire_field(U8)
    blob: bytes = wire_field(VarBytes(max_size=16))


@dataclass(frozen=True)
class ProbeScalars(Message):
    """Every fixed-width integer codec and BOOL."""

    TAG: ClassVar[int] = 0xFF01
    u8: int = wire_field(U8)
    u16: int = wire_field(U16)
    u32: int = wire_field(U32)
    u64: int = wire_field(U64)
    flag: bool = wire_field(BOOL)


@dataclass(frozen=True)
class ProbeBytes(Message):
    """FixedBytes, VarBytes and BigUInt."""

    TAG: ClassVar[int] = 0xFF02
    key: bytes = wire_field(FixedBytes(32))
    payload: bytes = wire_field(VarBytes(max_size=64))
    big: int = wire_field(BigUInt(max_bytes=40))


@dataclass(frozen=True)
class ProbeNested(Message):
    """ListOf (of ints, structs and big integers), Struct and RingArray."""

    TAG: ClassVar[int] = 0xFF03
    ids: tuple[int, ...] = wire_field(ListOf(U16, max_items=12))
    points: tuple[ProbePoint, ...] = wire_field(ListOf(Struct(ProbePoint), max_items=6))
    head: ProbePoint = wire_field(Struct(ProbePoint))
    vector: np.ndarray = wire_field(RingArray(max_length=40))
    bigs: tuple[int, ...] = wire_field(ListOf(BigUInt(max_bytes=8), max_items=4))


@dataclass(frozen=True)
class ProbeValidated(Message):
    """A message whose __post_init__ rejects content: decoding must turn that
    rejection into DecodeError."""

    TAG: ClassVar[int] = 0xFF04
    even: int = wire_field(U8)

    def __post_init__(self) -> None:
        if self.even % 2:
            raise ConfigurationError(f"ProbeValidated.even must be even, got {self.even}")


@dataclass(frozen=True)
class ProbeEmpty(Message):
    """No fields: the envelope alone."""

    TAG: ClassVar[int] = 0xFF05


PROBE_TYPES: list[type[Message]] = [ProbeScalars, ProbeBytes, ProbeNested, ProbeValidated, ProbeEmpty]


# ---------------------------------------------------------------- helpers and strategies


def same(a: Any, b: Any) -> bool:
    """Field-by-field equality that understands numpy arrays (dataclass == does not)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return bool(a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b))
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return bool(a == b)


def decodes_canonically_or_raises(data: bytes) -> None:
    """The contract for untrusted bytes: DecodeError (and nothing else), or a
    message whose encoding is exactly ``data``."""
    try:
        message = wire.decode_any(data)
    except DecodeError:
        return
    assert wire.encode(message) == data


def uints(bits: int) -> st.SearchStrategy[int]:
    return st.integers(0, (1 << bits) - 1)


points = st.builds(ProbePoint, flag=st.booleans(), small=uints(8), blob=st.binary(max_size=16))
ring_vectors = st.one_of(
    hnp.arrays(dtype=np.dtype("<u4"), shape=st.integers(0, 40)),
    hnp.arrays(dtype=np.dtype("<u8"), shape=st.integers(0, 40)),
)
scalars = st.builds(ProbeScalars, u8=uints(8), u16=uints(16), u32=uints(32), u64=uints(64), flag=st.booleans())
blobs = st.builds(
    ProbeBytes, key=st.binary(min_size=32, max_size=32), payload=st.binary(max_size=64), big=uints(8 * 40)
)
nested = st.builds(
    ProbeNested,
    ids=st.lists(uints(16), max_size=12).map(tuple),
    points=st.lists(points, max_size=6).map(tuple),
    head=points,
    vector=ring_vectors,
    bigs=st.lists(uints(64), max_size=4).map(tuple),
)
messages = st.one_of(
    scalars, blobs, nested, st.builds(ProbeValidated, even=st.integers(0, 127).map(lambda v: 2 * v)),
    st.just(ProbeEmpty()),
)

REFERENCE = ProbeNested(
    ids=(0, 1, 0xFFFF),
    points=(ProbePoint(True, 7, b"ab"), ProbePoint(False, 0, b"")),
    head=ProbePoint(True, 255, b"x" * 16),
    vector=np.array([0, 1, 2**32 - 1], dtype=np.uint32),
    bigs=(0, 1, 2**64 - 1),
)
REFERENCE_MESSAGES: list[Message] = [
    ProbeScalars(0xFF, 0xFFFF, 0xFFFF_FFFF, 2**64 - 1, True),
    ProbeBytes(bytes(range(32)), b"payload", 2**320 - 1),
    REFERENCE,
    ProbeValidated(4),
    ProbeEmpty(),
]


# ---------------------------------------------------------------- round trips and layout


@given(message=messages)
@example(message=ProbeScalars(0, 0, 0, 0, False))
@example(message=ProbeScalars(2**8 - 1, 2**16 - 1, 2**32 - 1, 2**64 - 1, True))
@example(message=ProbeBytes(bytes(32), b"", 0))
@example(message=ProbeBytes(b"\xff" * 32, b"\xff" * 64, 2**320 - 1))
@example(message=ProbeNested((), (), ProbePoint(False, 0, b""), np.zeros(0, dtype=np.uint32), ()))
@example(message=ProbeNested((), (), ProbePoint(False, 0, b""), np.zeros(0, dtype=np.uint64), ()))
@example(message=ProbeNested((), (), ProbePoint(True, 1, b"x"), np.full(40, 2**64 - 1, dtype=np.uint64), ()))
@example(message=ProbeEmpty())
def test_round_trip_is_exact_and_canonical(message: Message) -> None:
    # Execute
    data = wire.encode(message)
    decoded = wire.decode(data, type(message))

    # Assert
    assert same(decoded, message)
    assert wire.encode(decoded) == data
    assert same(wire.decode_any(data), message)


def test_envelope_and_scalar_layout_is_exact() -> None:
    # Execute
    data = wire.encode(ProbeScalars(0x01, 0x0203, 0x04050607, 0x08090A0B0C0D0E0F, True))

    # Assert: magic, version 1, tag u16 BE, then big-endian fields.
    assert data == (
        b"SA" + b"\x01" + b"\xff\x01" + b"\x01" + b"\x02\x03" + b"\x04\x05\x06\x07"
        + bytes(range(8, 16)) + b"\x01"
    )


def test_variable_length_layout_is_exact() -> None:
    # Execute
    data = wire.encode(ProbeBytes(bytes(32), b"hi", 0x0100))
    zero = wire.encode(ProbeBytes(bytes(32), b"", 0))

    # Assert: u32 length + bytes; u16 length + minimal big-endian magnitude.
    assert data == HEADER + b"\xff\x02" + bytes(32) + b"\x00\x00\x00\x02hi" + b"\x00\x02\x01\x00"
    assert zero == HEADER + b"\xff\x02" + bytes(32) + b"\x00\x00\x00\x00" + b"\x00\x00"


def test_ring_array_layout_is_exact() -> None:
    # Prepare
    message = ProbeNested((5,), (), ProbePoint(False, 0, b""), np.array([1, 0x01020304], dtype=np.uint32), ())

    # Execute
    data = wire.encode(message)

    # Assert: ring bits u8, count u32 BE, then little-endian words.
    assert data == (
        HEADER + b"\xff\x03" + b"\x00\x00\x00\x01\x00\x05" + b"\x00\x00\x00\x00" + b"\x00\x00" + b"\x00\x00\x00\x00"
        + b"\x20" + b"\x00\x00\x00\x02" + b"\x01\x00\x00\x00" + b"\x04\x03\x02\x01" + b"\x00\x00\x00\x00"
    )


def test_decoded_ring_array_is_read_only_with_the_ring_dtype() -> None:
    # Execute
    decoded = wire.decode(wire.encode(REFERENCE), ProbeNested)

    # Assert
    assert decoded.vector.dtype == np.dtype("<u4")
    assert not decoded.vector.flags.writeable


def test_big_endian_input_arrays_encode_as_little_endian_words() -> None:
    # Prepare
    little = ProbeNested((), (), ProbePoint(False, 0, b""), np.array([1, 2**40], dtype="<u8"), ())
    big = dataclasses.replace(little, vector=np.array([1, 2**40], dtype=">u8"))

    # Execute / Assert
    assert wire.encode(big) == wire.encode(little)


@pytest.mark.parametrize("container", [bytearray, memoryview])
def test_decode_accepts_other_byte_buffers(container: type) -> None:
    # Execute
    decoded = wire.decode_any(container(wire.encode(REFERENCE)))

    # Assert
    assert same(decoded, REFERENCE)


# ---------------------------------------------------------------- hostile input


@settings(max_examples=200)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    # Execute / Assert
    decodes_canonically_or_raises(data)


@settings(max_examples=300)
@given(tag=st.sampled_from([cls.TAG for cls in PROBE_TYPES]), body=st.binary(max_size=300))
def test_valid_envelope_with_arbitrary_body_raises_only_decode_error(tag: int, body: bytes) -> None:
    # Execute / Assert: past the envelope, so every codec sees hostile bytes.
    decodes_canonically_or_raises(HEADER + tag.to_bytes(2, "big") + body)


@settings(max_examples=150)
@given(message=messages, data=st.data())
def test_mutated_valid_encodings_raise_only_decode_error(message: Message, data: st.DataObject) -> None:
    # Prepare: overwrite a run of bytes of a valid encoding with arbitrary ones.
    encoded = bytearray(wire.encode(message))
    start = data.draw(st.integers(0, len(encoded) - 1))
    patch = data.draw(st.binary(min_size=1, max_size=8))
    encoded[start : start + len(patch)] = patch

    # Execute / Assert
    decodes_canonically_or_raises(bytes(encoded))


@pytest.mark.parametrize("message", REFERENCE_MESSAGES, ids=lambda m: type(m).__name__)
def test_every_truncation_is_a_decode_error(message: Message) -> None:
    # Prepare
    encoded = wire.encode(message)

    for length in range(len(encoded)):
        # Execute / Assert
        with pytest.raises(DecodeError):
            wire.decode_any(encoded[:length])


@settings(max_examples=20)
@given(message=messages)
def test_every_truncation_of_random_messages_is_a_decode_error(message: Message) -> None:
    # Prepare
    encoded = wire.encode(message)

    for length in range(len(encoded)):
        # Execute / Assert
        with pytest.raises(DecodeError):
            wire.decode_any(encoded[:length])


@pytest.mark.parametrize("message", REFERENCE_MESSAGES, ids=lambda m: type(m).__name__)
def test_every_single_bit_flip_decodes_canonically_or_raises(message: Message) -> None:
    # Prepare
    encoded = wire.encode(message)

    for position in range(len(encoded)):
        for bit in range(8):
            flipped = bytearray(encoded)
            flipped[position] ^= 1 << bit

            # Execute / Assert
            decodes_canonically_or_raises(bytes(flipped))


@settings(max_examples=10)
@given(message=messages)
def test_every_single_bit_flip_of_random_messages_decodes_canonically_or_raises(message: Message) -> None:
    # Prepare
    encoded = wire.encode(message)

    for position in range(len(encoded)):
        for bit in range(8):
            flipped = bytearray(encoded)
            flipped[position] ^= 1 << bit

            # Execute / Assert
            decodes_canonically_or_raises(bytes(flipped))


@given(message=messages, trailing=st.binary(min_size=1, max_size=16))
def test_trailing_bytes_are_a_decode_error(message: Message, trailing: bytes) -> None:
    # Execute / Assert
    with pytest.raises(DecodeError, match="trailing"):
        wire.decode_any(wire.encode(message) + trailing)


def replace_at(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new) :]


ENCODED_SCALARS = wire.encode(ProbeScalars(1, 2, 3, 4, True))
ENCODED_BYTES = wire.encode(ProbeBytes(bytes(32), b"hi", 0x0100))
ENCODED_REFERENCE = wire.encode(REFERENCE)
# Offsets into ENCODED_BYTES: header 5, key 32, payload length 4 + 2 bytes, then BigUInt.
BIGUINT_AT = 5 + 32 + 4 + 2
# Offsets into ENCODED_REFERENCE: ids (4 + 3 * 2), points (4 + 2 * (1 + 1 + 4) + 2), head (1 + 1 + 4 + 16).
RING_AT = 5 + 10 + 18 + 22


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b"", "truncated", id="empty"),
        pytest.param(b"XX" + ENCODED_SCALARS[2:], "magic", id="wrong-magic"),
        pytest.param(b"sa" + ENCODED_SCALARS[2:], "magic", id="lowercase-magic"),
        pytest.param(replace_at(ENCODED_SCALARS, 2, b"\x00"), "version", id="version-0"),
        pytest.param(replace_at(ENCODED_SCALARS, 2, b"\x02"), "version", id="version-2"),
        pytest.param(replace_at(ENCODED_SCALARS, 2, b"\xff"), "version", id="version-255"),
        pytest.param(replace_at(ENCODED_SCALARS, 3, UNREGISTERED_TAG.to_bytes(2, "big")), "tag", id="unknown-tag"),
        pytest.param(replace_at(ENCODED_SCALARS, 3, b"\x00\x00"), "tag", id="tag-zero"),
        pytest.param(replace_at(ENCODED_SCALARS, len(ENCODED_SCALARS) - 1, b"\x02"), "boolean", id="bool-2"),
        pytest.param(replace_at(ENCODED_SCALARS, len(ENCODED_SCALARS) - 1, b"\xff"), "boolean", id="bool-255"),
        pytest.param(ENCODED_BYTES[:BIGUINT_AT] + b"\x00\x03\x00\x01\x00", "non-canonical", id="biguint-leading-zero"),
        pytest.param(ENCODED_BYTES[:BIGUINT_AT] + b"\x00\x01\x00", "non-canonical", id="biguint-zero-as-one-byte"),
        pytest.param(ENCODED_BYTES[:BIGUINT_AT] + b"\x00\x29" + b"\x01" * 41, "limit", id="biguint-too-long"),
        pytest.param(replace_at(ENCODED_BYTES, 37, b"\x00\x00\x00\x41"), "limit", id="varbytes-over-max"),
        pytest.param(replace_at(ENCODED_BYTES, 37, b"\xff\xff\xff\xff"), "limit", id="varbytes-huge-length"),
        pytest.param(replace_at(ENCODED_REFERENCE, 5, b"\x00\x00\x00\x0d"), "limit", id="list-over-max"),
        pytest.param(replace_at(ENCODED_REFERENCE, 5, b"\xff\xff\xff\xff"), "limit", id="list-huge-count"),
        pytest.param(replace_at(ENCODED_REFERENCE, RING_AT, b"\x10"), "ring size", id="ring-bits-16"),
        pytest.param(replace_at(ENCODED_REFERENCE, RING_AT, b"\x40"), None, id="ring-bits-64-misaligned"),
        pytest.param(replace_at(ENCODED_REFERENCE, RING_AT + 1, b"\x00\x00\x00\x29"), "limit", id="ring-over-max"),
        pytest.param(replace_at(ENCODED_REFERENCE, RING_AT + 1, b"\xff\xff\xff\xff"), "limit", id="ring-huge-count"),
        pytest.param(HEADER + b"\xff\x04" + b"\x03", "ProbeValidated", id="post-init-rejects"),
    ],
)
def test_specific_malformations_are_decode_errors(data: bytes, reason: str | None) -> None:
    # Prepare
    assert UNREGISTERED_TAG not in {cls.TAG for cls in wire.message_types()}

    # Execute / Assert
    with pytest.raises(DecodeError, match=reason):
        wire.decode_any(data)


def test_offsets_used_by_the_malformation_table_point_at_the_right_fields() -> None:
    # Assert: the table above edits the fields it claims to edit.
    assert ENCODED_BYTES[BIGUINT_AT:] == b"\x00\x02\x01\x00"
    assert ENCODED_BYTES[37:41] == b"\x00\x00\x00\x02"
    assert ENCODED_REFERENCE[5:9] == b"\x00\x00\x00\x03"
    assert ENCODED_REFERENCE[RING_AT : RING_AT + 5] == b"\x20\x00\x00\x00\x03"


def test_decode_refuses_another_message_type() -> None:
    # Execute / Assert
    with pytest.raises(DecodeError, match="ProbeBytes"):
        wire.decode(ENCODED_SCALARS, ProbeBytes)


@pytest.mark.parametrize("data", ["SA", 12345, None, [0x53, 0x41]])
def test_decode_refuses_non_bytes(data: Any) -> None:
    # Execute / Assert
    with pytest.raises(DecodeError):
        wire.decode_any(data)


def test_reader_refuses_negative_and_oversized_takes() -> None:
    # Prepare
    reader = wire.Reader(b"abc")

    # Execute / Assert
    with pytest.raises(DecodeError):
        reader.take(-1)
    with pytest.raises(DecodeError):
        reader.take(4)
    assert reader.take(3) == b"abc"
    reader.finish()


# ---------------------------------------------------------------- encoding errors

OK_POINT = ProbePoint(False, 0, b"")


def unchecked(cls: type[Message], *fields: Any) -> Message:
    """Construct a probe without type checking: these tables pass wrong types on purpose."""
    return cls(*fields)


NO_WORDS = np.zeros(0, dtype=np.uint32)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: unchecked(ProbeScalars, 256, 0, 0, 0, False), id="u8-256"),
        pytest.param(lambda: unchecked(ProbeScalars, -1, 0, 0, 0, False), id="u8-negative"),
        pytest.param(lambda: unchecked(ProbeScalars, 0, 1 << 16, 0, 0, False), id="u16-overflow"),
        pytest.param(lambda: unchecked(ProbeScalars, 0, 0, 1 << 32, 0, False), id="u32-overflow"),
        pytest.param(lambda: unchecked(ProbeScalars, 0, 0, 0, 1 << 64, False), id="u64-overflow"),
        pytest.param(lambda: unchecked(ProbeScalars, True, 0, 0, 0, False), id="u8-given-bool"),
        pytest.param(lambda: unchecked(ProbeScalars, 1.0, 0, 0, 0, False), id="u8-given-float"),
        pytest.param(lambda: unchecked(ProbeBytes, bytes(31), b"", 0), id="fixed-too-short"),
        pytest.param(lambda: unchecked(ProbeBytes, bytes(33), b"", 0), id="fixed-too-long"),
        pytest.param(lambda: unchecked(ProbeBytes, "x" * 32, b"", 0), id="fixed-given-str"),
        pytest.param(lambda: unchecked(ProbeBytes, bytes(32), bytes(65), 0), id="varbytes-over-max"),
        pytest.param(lambda: unchecked(ProbeBytes, bytes(32), "text", 0), id="varbytes-given-str"),
        pytest.param(lambda: unchecked(ProbeBytes, bytes(32), b"", -1), id="biguint-negative"),
        pytest.param(lambda: unchecked(ProbeBytes, bytes(32), b"", 1 << 320), id="biguint-over-max"),
        pytest.param(lambda: unchecked(ProbeNested, tuple(range(13)), (), OK_POINT, NO_WORDS, ()), id="list-over-max"),
        pytest.param(lambda: unchecked(ProbeNested, (1 << 16,), (), OK_POINT, NO_WORDS, ()), id="list-item-overflow"),
        pytest.param(lambda: unchecked(ProbeNested, (), (), "point", NO_WORDS, ()), id="struct-wrong-type"),
        pytest.param(lambda: unchecked(ProbeNested, (), (OK_POINT, 3), OK_POINT, NO_WORDS, ()), id="struct-in-list"),
        pytest.param(lambda: unchecked(ProbeNested, (), (), OK_POINT, np.zeros(41, np.uint32), ()), id="ring-over-max"),
        pytest.param(lambda: unchecked(ProbeNested, (), (), OK_POINT, np.zeros(2, np.int32), ()), id="ring-signed"),
        pytest.param(lambda: unchecked(ProbeNested, (), (), OK_POINT, np.zeros(2, np.uint16), ()), id="ring-uint16"),
        pytest.param(lambda: unchecked(ProbeNested, (), (), OK_POINT, np.zeros(2, np.float64), ()), id="ring-float"),
        pytest.param(lambda: unchecked(ProbeNested, (), (), OK_POINT, np.zeros((2, 2), np.uint32), ()), id="ring-2d"),
        pytest.param(lambda: unchecked(ProbeNested, (), (), OK_POINT, [1, 2], ()), id="ring-list"),
        pytest.param(lambda: unchecked(ProbeNested, (), (), OK_POINT, NO_WORDS, (1 << 64,)), id="biguint-in-list"),
    ],
)
def test_out_of_range_or_mistyped_values_raise_encode_error(make: Any) -> None:
    # Prepare
    message = make()

    # Execute / Assert
    with pytest.raises(EncodeError):
        wire.encode(message)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: unchecked(ProbeScalars, 0, 0, 0, 0, 2), id="bool-given-2"),
        pytest.param(lambda: unchecked(ProbeScalars, 0, 0, 0, 0, "no"), id="bool-given-str"),
        pytest.param(lambda: unchecked(ProbeBytes, bytes(32), b"", 1.5), id="biguint-given-float"),
        pytest.param(lambda: unchecked(ProbeBytes, bytes(32), b"", "7"), id="biguint-given-str"),
        pytest.param(lambda: unchecked(ProbeBytes, bytes(32), b"", "seven"), id="biguint-given-non-numeric-str"),
        pytest.param(lambda: unchecked(ProbeNested, 5, (), OK_POINT, NO_WORDS, ()), id="list-given-int"),
    ],
)
def test_values_that_would_not_round_trip_raise_encode_error(make: Any) -> None:
    # Prepare: each of these encodes today to bytes that decode to a different
    # value (2 -> True, 1.5 -> 1, "7" -> 7) or escapes as TypeError/ValueError.
    message = make()

    # Execute / Assert
    with pytest.raises(EncodeError):
        wire.encode(message)


# ---------------------------------------------------------------- registry


def test_probe_messages_are_registered_in_tag_order() -> None:
    # Execute
    registered = wire.message_types()

    # Assert
    assert [cls for cls in registered if cls in PROBE_TYPES] == PROBE_TYPES
    assert [cls.TAG for cls in registered] == sorted(cls.TAG for cls in registered)


def test_duplicate_tag_raises_type_error_at_class_creation() -> None:
    # Execute / Assert
    with pytest.raises(TypeError, match="ProbeScalars"):

        @dataclass(frozen=True)
        class ProbeDuplicate(Message):
            TAG: ClassVar[int] = ProbeScalars.TAG
            value: int = wire_field(U8)

    assert wire.decode_any(ENCODED_SCALARS).__class__ is ProbeScalars


@pytest.mark.parametrize("tag", [0, -1, 1 << 16])
def test_tag_outside_u16_raises_type_error(tag: int) -> None:
    # Execute / Assert
    with pytest.raises(TypeError):

        @dataclass(frozen=True)
        class ProbeBadTag(Message):
            TAG: ClassVar[int] = tag


def test_subclass_without_its_own_tag_is_not_registered() -> None:
    # Prepare
    before = list(wire.message_types())

    # Execute
    @dataclass(frozen=True)
    class ProbeUntagged(Message):
        value: int = wire_field(U8)

    # Assert
    assert list(wire.message_types()) == before


class _CountingU8(wire.Codec[int]):
    """U8, counting how many items were decoded."""

    description = "counting u8"

    def __init__(self) -> None:
        self.decoded = 0

    def encode(self, value: int, out: wire.Parts) -> None:
        U8.encode(value, out)

    def decode(self, reader: wire.Reader) -> int:
        self.decoded += 1
        return U8.decode(reader)


def test_a_list_count_beyond_the_input_is_refused_before_any_item_is_decoded() -> None:
    # Prepare: a count within max_items but beyond the bytes left (each item takes at least one byte)
    item = _CountingU8()
    data = (1_000_000).to_bytes(4, "big") + b"\x01\x02\x03"
    # Execute / Assert: no work proportional to the claimed count
    with pytest.raises(DecodeError, match="exceeds the limit or the input"):
        ListOf(item, max_items=1 << 24).decode(wire.Reader(data))
    assert item.decoded == 0
    # Zero-byte items: the count alone would conjure a million of them from four bytes
    with pytest.raises(DecodeError):
        ListOf(FixedBytes(0), max_items=1 << 24).decode(wire.Reader((1_000_000).to_bytes(4, "big")))


def test_a_packed_ring_array_over_its_length_limit_is_refused() -> None:
    # Prepare: five 8-bit values, every byte present, under a limit of four
    data = bytes([8]) + (5).to_bytes(4, "big") + bytes(5)
    assert PackedRingArray(max_length=5).decode(wire.Reader(data)).values.shape == (5,)  # control
    # Execute / Assert
    with pytest.raises(DecodeError, match="exceeds the limit 4"):
        PackedRingArray(max_length=4).decode(wire.Reader(data))
