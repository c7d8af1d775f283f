"""Packing: layout arithmetic, exact sums at every slot boundary, refused and detected overflows.

These tests exercise the encoding alone (plaintext integers, no encryption):
the sum of packed plaintexts is what decryption of the aggregate returns.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.encoding import smallest_ring_bits
from secagg.errors import ConfigurationError, EncodeError, OverflowDetectedError
from secagg.paillier import SlotLayout, pack, unpack


def _packed_sum(vectors: list[np.ndarray], layout: SlotLayout) -> list[int]:
    plaintexts = [pack(vector, layout) for vector in vectors]
    return [sum(column) for column in zip(*plaintexts, strict=True)]


def test_worked_example_layout() -> None:
    # Prepare / Execute
    layout = SlotLayout(value_bits=16, num_clients=10, key_bits=2048)
    # Assert: 16 value + 4 headroom + 1 guard; floor(2047 / 21) slots
    assert layout.width == 21
    assert layout.headroom_bits == 4
    assert layout.slots_per_plaintext == 97
    assert layout.num_plaintexts(1_000_000) == 10310
    assert layout.offset == 1 << 15


@pytest.mark.parametrize(("clients", "headroom"), [(1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (1024, 10), (1025, 11)])
def test_headroom_is_ceil_log2_of_clients(clients: int, headroom: int) -> None:
    layout = SlotLayout(value_bits=8, num_clients=clients, key_bits=2048)
    assert layout.headroom_bits == headroom
    assert layout.width == 8 + headroom + 1


def test_layout_that_could_carry_is_refused() -> None:
    # Prepare: 10 clients of 16-bit values need 21 bits per slot
    # Execute / Assert
    with pytest.raises(ConfigurationError, match="could carry"):
        SlotLayout(value_bits=16, num_clients=10, key_bits=2048, slot_bits=20)
    assert SlotLayout(value_bits=16, num_clients=10, key_bits=2048, slot_bits=24).slots_per_plaintext == 85


@pytest.mark.parametrize(
    "kwargs",
    [
        {"value_bits": 1, "num_clients": 2, "key_bits": 2048},
        {"value_bits": 49, "num_clients": 2, "key_bits": 2048},
        {"value_bits": 16, "num_clients": 0, "key_bits": 2048},
        {"value_bits": 16, "num_clients": (1 << 15) + 1, "key_bits": 2048},
        {"value_bits": 48, "num_clients": 1 << 15, "key_bits": 2048, "slot_bits": 65},  # 64-bit slot limit
        {"value_bits": 16, "num_clients": 10, "key_bits": 21},  # not one slot fits
        {"value_bits": 16.0, "num_clients": 10, "key_bits": 2048},
    ],
)
def test_invalid_layouts_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        SlotLayout(**kwargs)  # type: ignore[arg-type]


@given(
    value_bits=st.integers(2, 40),
    clients=st.integers(1, 40),
    key_bits=st.integers(128, 1024),
    length=st.integers(1, 300),
    data=st.data(),
)
def test_sum_of_packed_vectors_is_exact(
    value_bits: int, clients: int, key_bits: int, length: int, data: st.DataObject
) -> None:
    # Prepare: k <= clients vectors mixing random values with both extremes
    layout = SlotLayout(value_bits, clients, key_bits)
    summands = data.draw(st.integers(1, clients))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    vectors = []
    for _ in range(summands):
        vector = rng.integers(layout.value_min, layout.value_max, size=length, endpoint=True, dtype=np.int64)
        extremes = rng.random(length)
        vector[extremes < 0.2] = layout.value_min
        vector[extremes > 0.8] = layout.value_max
        vectors.append(vector)
    # Execute
    total = unpack(_packed_sum(vectors, layout), layout, length, summands)
    # Assert
    np.testing.assert_array_equal(total, np.sum(vectors, axis=0))


@pytest.mark.parametrize("extreme", ["min", "max"])
def test_every_slot_boundary_with_all_clients_at_the_extreme(extreme: str) -> None:
    # Prepare: every slot of three plaintexts (and a partial fourth) holds the extreme
    # value for all 10 clients, the largest honest slot sum; neighbours must not change.
    layout = SlotLayout(value_bits=16, num_clients=10, key_bits=512)
    length = 3 * layout.slots_per_plaintext + 5
    value = layout.value_min if extreme == "min" else layout.value_max
    vectors = [np.full(length, value, dtype=np.int64) for _ in range(10)]
    # Execute
    total = unpack(_packed_sum(vectors, layout), layout, length, 10)
    # Assert
    np.testing.assert_array_equal(total, np.full(length, 10 * value))


def test_alternating_extremes_at_slot_boundaries() -> None:
    # Prepare: max next to min in every pair of neighbouring slots, also across plaintexts
    layout = SlotLayout(value_bits=12, num_clients=7, key_bits=256)
    length = 4 * layout.slots_per_plaintext
    vector = np.where(np.arange(length) % 2 == 0, layout.value_max, layout.value_min).astype(np.int64)
    vectors = [vector, np.roll(vector, 1), vector, vector, np.roll(vector, 1), vector, vector]
    # Execute
    total = unpack(_packed_sum(vectors, layout), layout, length, 7)
    # Assert
    np.testing.assert_array_equal(total, np.sum(vectors, axis=0))


def test_value_out_of_range_is_refused_at_packing() -> None:
    layout = SlotLayout(value_bits=8, num_clients=3, key_bits=256)
    with pytest.raises(EncodeError):
        pack(np.array([0, 128]), layout)
    with pytest.raises(EncodeError):
        pack(np.array([-129]), layout)
    with pytest.raises(EncodeError):
        pack(np.array([0.5]), layout)


def test_forced_overflow_more_summands_than_declared_is_detected() -> None:
    # Prepare: a layout for 2 clients (1 headroom bit), but 4 maximal vectors are summed
    layout = SlotLayout(value_bits=8, num_clients=2, key_bits=256)
    vectors = [np.full(20, layout.value_max, dtype=np.int64) for _ in range(4)]
    total = _packed_sum(vectors, layout)
    # Execute / Assert: the guard bit (or the slot bound) catches it
    with pytest.raises(OverflowDetectedError):
        unpack(total, layout, 20, 2)


def test_forced_overflow_beyond_the_bound_for_the_declared_summands_is_detected() -> None:
    # Prepare: 3 maximal vectors, but the decoder is told 2 summands
    layout = SlotLayout(value_bits=8, num_clients=4, key_bits=256)
    vectors = [np.full(10, layout.value_max, dtype=np.int64) for _ in range(3)]
    total = _packed_sum(vectors, layout)
    # Execute / Assert
    with pytest.raises(OverflowDetectedError, match="more than 2 summands"):
        unpack(total, layout, 10, 2)
    np.testing.assert_array_equal(unpack(total, layout, 10, 3), np.full(10, 3 * layout.value_max))


def test_bits_above_the_last_slot_are_detected() -> None:
    layout = SlotLayout(value_bits=8, num_clients=2, key_bits=256)
    plaintexts = pack(np.zeros(layout.slots_per_plaintext, dtype=np.int64), layout)
    with pytest.raises(OverflowDetectedError, match="above its last slot"):
        unpack([plaintexts[0] + (1 << layout.used_bits)], layout, layout.slots_per_plaintext, 1)
    with pytest.raises(OverflowDetectedError):
        unpack([-1], layout, layout.slots_per_plaintext, 1)


def test_nonzero_padding_slot_is_detected() -> None:
    layout = SlotLayout(value_bits=8, num_clients=2, key_bits=256)
    plaintext = pack(np.zeros(3, dtype=np.int64), layout)[0]
    with pytest.raises(OverflowDetectedError, match="padding"):
        unpack([plaintext + (1 << (4 * layout.width))], layout, 3, 1)


def test_unpack_refuses_wrong_shapes() -> None:
    layout = SlotLayout(value_bits=8, num_clients=2, key_bits=256)
    with pytest.raises(ConfigurationError):
        unpack([0, 0], layout, 3, 1)
    with pytest.raises(ConfigurationError):
        unpack([0], layout, 3, 3)


@given(bits=st.integers(2, 30), clients=st.integers(1, 1000), weight=st.integers(1, 5000))
def test_slots_follow_the_narrow_ring_of_the_same_quantization(bits: int, clients: int, weight: int) -> None:
    """Paillier slots and narrow masking rings follow the same bits: the aggregator's slot
    (``value_bits = bitlen(w * qmax) + 1``, plus ceil(log2 n) headroom and a guard bit) is
    b + 1 or b + 2 bits, b being the smallest ring Z_(2^b) the overflow rule allows (at most
    b + 2 when the rule allows less than the narrowest ring, Z_(2^8))."""
    # Prepare
    qmax = (1 << (bits - 1)) - 1
    if clients * weight * qmax > (1 << 63) - 1:
        return
    ring_bits = smallest_ring_bits(bits, clients, weight)
    # Execute
    layout = SlotLayout((weight * qmax).bit_length() + 1, clients, 2048)
    # Assert
    assert layout.width <= ring_bits + 2
    if ring_bits > 8:
        assert layout.width >= ring_bits + 1


@given(bits=st.integers(2, 30), clients=st.integers(1, 1000), weight=st.integers(1, 5000))
def test_the_slot_is_the_narrowest_guarded_slot_for_its_value_bits(bits: int, clients: int, weight: int) -> None:
    """docs/paillier.md, "Slot width against the narrow ring": with the power-of-two offset the
    slot is exactly wide enough for n <= 2^v (the largest honest sum n (2^v - 1) fills all but the
    guard bit);
    an offset of exactly w * qmax would need b + 1 bits; unweighted sums already get b + 1."""
    # Prepare
    qmax = (1 << (bits - 1)) - 1
    if clients * weight * qmax > (1 << 62) or (weight * qmax).bit_length() + 1 > 48:
        return
    value_bits = (weight * qmax).bit_length() + 1
    ring_bits = smallest_ring_bits(bits, clients, weight)
    # Execute
    layout = SlotLayout(value_bits, clients, 4096)
    # Assert
    if clients <= 1 << value_bits:
        assert layout.width - 1 == (clients * ((1 << value_bits) - 1)).bit_length()
    if ring_bits > 8:
        assert (2 * clients * weight * qmax).bit_length() + 1 == ring_bits + 1
        if weight == 1 and clients <= 1 << (bits - 1):
            assert layout.width == ring_bits + 1
