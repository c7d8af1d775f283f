"""Bit packing of b-bit values (secagg.bitpack): exact length, LSB-first order, canonical form."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg import bitpack
from secagg.errors import ConfigurationError, DecodeError, EncodeError
from secagg.ring import NarrowRing


def _reference_pack(values: list[int], bits: int) -> bytes:
    """The spec's definition, one integer: value i occupies bits [i*b, (i+1)*b) of a little-endian number."""
    number = sum(value << (i * bits) for i, value in enumerate(values))
    return number.to_bytes((len(values) * bits + 7) // 8, "little")


def _dtype(bits: int) -> type[np.unsignedinteger]:  # type: ignore[type-arg]
    return np.uint32 if bits <= 32 else np.uint64


@given(data=st.data(), bits=st.integers(1, 64), length=st.integers(0, 40))
def test_pack_matches_the_reference_and_round_trips(data: st.DataObject, bits: int, length: int) -> None:
    # Prepare
    values = data.draw(st.lists(st.integers(0, (1 << bits) - 1), min_size=length, max_size=length))
    array = np.array(values, dtype=_dtype(bits))

    # Execute
    packed = bitpack.pack(array, bits)
    unpacked = bitpack.unpack(packed, length, bits)

    # Assert
    assert packed == _reference_pack(values, bits)
    assert len(packed) == bitpack.packed_size(length, bits) == (length * bits + 7) // 8
    assert unpacked.dtype == np.dtype(_dtype(bits)) and unpacked.tolist() == values


@pytest.mark.parametrize("bits", range(1, 65))
def test_every_width_round_trips_on_a_long_vector(bits: int) -> None:
    # Prepare: many groups of 8, a length that is no multiple of 8, extreme values
    length = 70_013
    rng = np.random.default_rng(bits)
    values = (
        rng.integers(0, 1 << bits, length, dtype=np.uint64, endpoint=False)
        if bits < 64
        else (rng.integers(0, 1 << 63, length, dtype=np.uint64) * np.uint64(2) + np.uint64(1))
    )
    values[:3] = [0, (1 << bits) - 1, 1]
    array = values.astype(_dtype(bits))

    # Execute
    packed = bitpack.pack(array, bits)

    # Assert
    assert len(packed) == (length * bits + 7) // 8
    assert np.array_equal(bitpack.unpack(packed, length, bits), array)


@pytest.mark.parametrize("bits", [8, 16, 32, 64])
def test_whole_byte_widths_are_the_little_endian_words(bits: int) -> None:
    # Prepare
    values = np.array([1, 2, 0x7F, 0xFF], dtype=_dtype(bits))

    # Execute / Assert
    assert bitpack.pack(values, bits) == b"".join(int(v).to_bytes(bits // 8, "little") for v in values)


@pytest.mark.parametrize("dtype", ["<u4", ">u4", "<u8", ">u8"])
@pytest.mark.parametrize("bits", range(1, 65))
def test_any_container_dtype_packs_to_the_reference(bits: int, dtype: str) -> None:
    # Prepare: pack takes uint32 or uint64 values, either byte order, whatever the width (values fit both)
    top = min(bits, 8 * np.dtype(dtype).itemsize)
    rng = np.random.default_rng(bits)
    values = [0, (1 << top) - 1, *(int(v) >> (64 - top) for v in rng.integers(0, 1 << 63, 17, dtype=np.uint64) * 2)]

    # Execute
    packed = bitpack.pack(np.array(values, dtype=dtype), bits)

    # Assert: the spec's bytes, of the spec's length (uint32 at 40, 48 or 56 bits gave 4 bytes a value)
    assert packed == _reference_pack(values, bits)
    assert bitpack.unpack(packed, len(values), bits).tolist() == values


def test_uint64_input_packs_to_narrow_widths() -> None:
    # Execute / Assert: the input dtype is a container, not the width
    assert bitpack.pack(np.array([5, 3], dtype=np.uint64), 3) == bytes([0b011101])


@pytest.mark.parametrize("bits", [1, 7, 12, 31, 33, 63])
def test_pack_refuses_a_value_that_does_not_fit(bits: int) -> None:
    # Prepare
    values = np.array([0, 1 << bits], dtype=np.uint64)

    # Execute / Assert
    with pytest.raises(EncodeError, match=f"does not fit in {bits} bits"):
        bitpack.pack(values, bits)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(np.array([1, 2], dtype=np.int64), id="signed"),
        pytest.param(np.array([1.0]), id="float"),
        pytest.param(np.zeros((2, 2), dtype=np.uint32), id="2-d"),
        pytest.param([1, 2], id="list"),
        pytest.param(np.array([1], dtype=np.uint16), id="uint16"),
    ],
)
def test_pack_refuses_arrays_that_are_not_1d_uint32_or_uint64(values: object) -> None:
    # Execute / Assert
    with pytest.raises(ConfigurationError):
        bitpack.pack(values, 8)  # type: ignore[arg-type]


@pytest.mark.parametrize("bits", [0, 65, -1])
def test_widths_outside_1_to_64_are_refused(bits: int) -> None:
    # Execute / Assert
    with pytest.raises(ConfigurationError):
        bitpack.pack(np.zeros(1, dtype=np.uint64), bits)
    with pytest.raises(ConfigurationError):
        bitpack.unpack(b"\x00", 1, bits)


@pytest.mark.parametrize(("length", "bits", "size"), [(3, 5, 1), (3, 5, 3), (8, 8, 7), (8, 8, 9), (0, 12, 1)])
def test_unpack_refuses_a_wrong_length(length: int, bits: int, size: int) -> None:
    # Execute / Assert
    with pytest.raises(DecodeError, match="must be"):
        bitpack.unpack(bytes(size), length, bits)


@pytest.mark.parametrize(("length", "bits", "spare"), [(1, 1, 7), (3, 5, 1), (1, 12, 4), (5, 63, 1)])
def test_unpack_refuses_every_nonzero_padding_bit(length: int, bits: int, spare: int) -> None:
    # Prepare
    packed = bytearray(bitpack.pack(np.zeros(length, dtype=np.uint64), bits))

    for bit in range(8 - spare, 8):
        forged = bytearray(packed)
        forged[-1] |= 1 << bit

        # Execute / Assert
        with pytest.raises(DecodeError, match="padding"):
            bitpack.unpack(bytes(forged), length, bits)


def test_the_last_value_bit_is_not_padding() -> None:
    # Prepare: 3 values of 5 bits = 15 bits; bit 14 (bit 6 of byte 1) belongs to value 2
    data = bytes([0, 0x40])

    # Execute / Assert
    assert bitpack.unpack(data, 3, 5).tolist() == [0, 0, 16]


@given(bits=st.integers(8, 64), data=st.data())
def test_narrow_ring_sum_in_the_container_equals_the_sum_mod_2_to_the_b(bits: int, data: st.DataObject) -> None:
    # Prepare
    ring = NarrowRing(bits)
    vectors = data.draw(st.lists(st.lists(st.integers(0, ring.mask), min_size=4, max_size=4), min_size=1, max_size=6))

    # Execute
    total = ring.sum((np.array(v, dtype=ring.dtype) for v in vectors), 4)

    # Assert
    assert total.tolist() == [sum(column) % ring.modulus for column in zip(*vectors, strict=True)]
    assert ring.unpack(ring.pack(total), 4).tolist() == total.tolist()
    assert len(ring.pack(total)) == ring.packed_size(4) == (4 * bits + 7) // 8


@pytest.mark.parametrize("bits", [8, 12, 32, 33, 64])
def test_masking_over_a_narrow_ring_cancels_and_hides(bits: int) -> None:
    # Prepare: input + self-mask + pair mask - pair mask, computed in the container
    ring = NarrowRing(bits)
    rng = np.random.default_rng(bits)
    x = rng.integers(0, 1 << min(bits, 63), 64, dtype=np.uint64).astype(ring.dtype)
    self_mask = rng.integers(0, 1 << 63, 64, dtype=np.uint64).astype(ring.dtype)  # full words
    pair = rng.integers(0, 1 << 63, 64, dtype=np.uint64).astype(ring.dtype)

    # Execute
    masked_a = ring.reduce(x + self_mask + pair)  # what client a sends (packed)
    masked_b = ring.reduce(ring.zeros(64) - pair)  # client b's input is 0
    total = ring.sum([ring.unpack(ring.pack(m), 64) for m in (masked_a, masked_b)], 64)
    unmasked = ring.reduce(total - self_mask)

    # Assert
    assert np.array_equal(unmasked, ring.reduce(x.copy()))


@pytest.mark.parametrize("bits", [7, 65, 0])
def test_narrow_rings_span_8_to_64_bits(bits: int) -> None:
    # Execute / Assert
    with pytest.raises(ConfigurationError):
        NarrowRing(bits)


def test_narrow_ring_check_refuses_values_outside_the_ring() -> None:
    # Prepare
    ring = NarrowRing(12)

    # Execute / Assert
    with pytest.raises(ConfigurationError, match="not an element"):
        ring.check(np.array([1 << 12], dtype=np.uint32))
    with pytest.raises(ConfigurationError):
        ring.check(np.array([1], dtype=np.uint64))  # container of 12 bits is uint32
    assert ring.container.bits == 32 and NarrowRing(33).container.bits == 64
