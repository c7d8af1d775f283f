"""Packing: layout arithmetic, exact sums at every slot boundary, refused and detected overflows.

These tests exercise the encoding alone (plaintext integers, no encryption):
the sum of packed plaintexts is what decryption of the aggregate returns.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fl_core.aggregators.paillier import packing_layout
from secagg.encoding import QuantizationConfig, smallest_ring_bits
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
    layout = SlotLayout(value_bits=16, num_clients=clients, key_bits=2048)
    assert layout.headroom_bits == headroom
    assert layout.width == 16 + headroom + 1


def test_bit_range_slot_is_minimal_when_values_are_narrower_than_the_headroom() -> None:
    # 1025 summands of 8-bit values: the slot sum is at most 1025 * 255 (18 bits), so
    # bitlen(1025 * 255) + 1 = 19 bits, one less than 8 + ceil(log2(1025)) + 1.
    layout = SlotLayout(value_bits=8, num_clients=1025, key_bits=2048)
    assert layout.width == 19
    assert layout.headroom_bits == 10


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
    """Paillier slots and narrow masking rings follow the same bits (issue 16): the aggregator's
    slot (offset exactly ``w * qmax``) is ``bitlen(2 n w qmax) + 1`` = b + 1 bits, b being the
    smallest ring Z_(2^b) the overflow rule allows (at most b + 1 when the rule allows less than
    the narrowest ring, Z_(2^8))."""
    # Prepare
    qmax = (1 << (bits - 1)) - 1
    if (2 * clients * weight * qmax).bit_length() + 1 > 64:
        return
    ring_bits = smallest_ring_bits(bits, clients, weight)
    # Execute
    config = QuantizationConfig(1.0, bits, clients, ring_bits=64, max_weight=weight)
    layout, split = packing_layout(config, clients, 4096)
    # Assert
    assert not split
    assert layout == SlotLayout.bounded(weight * qmax, clients, 4096)
    assert layout.width == (2 * clients * weight * qmax).bit_length() + 1 <= ring_bits + 1
    if ring_bits > 8:
        assert layout.width == ring_bits + 1


@given(value_bits=st.integers(2, 40), clients=st.integers(1, 1 << 15), data=st.data())
def test_the_slot_is_the_narrowest_guarded_slot_for_its_range(value_bits: int, clients: int,
                                                               data: st.DataObject) -> None:
    """The minimal slot holds the largest honest sum N * span below its guard bit, exactly; a
    bounded range is never wider than the bit range of the same value bits, and at most one bit
    narrower."""
    # Prepare
    bound = data.draw(st.integers(1 << (value_bits - 2), (1 << (value_bits - 1)) - 1))
    # Execute
    bit_range = SlotLayout(value_bits, clients, 8192, 64)
    bounded = SlotLayout.bounded(bound, clients, 8192, 64)
    # Assert
    assert bit_range.minimal_width - 1 == (clients * ((1 << value_bits) - 1)).bit_length()
    assert bounded.minimal_width - 1 == (clients * 2 * bound).bit_length()
    assert bit_range.minimal_width - 1 <= bounded.minimal_width <= bit_range.minimal_width
    if value_bits >= (clients - 1).bit_length():
        assert bit_range.minimal_width == value_bits + (clients - 1).bit_length() + 1


# --- the bounded range [-B, B] (offset exactly B; issue 16) ----------------------------


@pytest.mark.parametrize(
    ("bits", "weight", "clients", "width", "slots"),
    [(8, 1, 10, 13, 157), (16, 1, 10, 21, 97), (16, 100, 10, 27, 75), (16, 5000, 10, 33, 62), (12, 300, 17, 26, 78)],
)
def test_bounded_slot_is_one_bit_above_the_narrow_ring(
    bits: int, weight: int, clients: int, width: int, slots: int
) -> None:
    # Prepare: the weighted bound W q of a bits-bit quantization
    bound = weight * ((1 << (bits - 1)) - 1)
    # Execute
    layout = SlotLayout.bounded(bound, clients, 2048)
    # Assert: b + 1 for the smallest ring b with N W q <= 2^(b-1) - 1 (the table of docs/paillier.md)
    assert layout.width == width == smallest_ring_bits(bits, clients, weight) + 1
    assert layout.slots_per_plaintext == slots
    assert (layout.offset, layout.value_min, layout.value_max, layout.span) == (bound, -bound, bound, 2 * bound)


@given(
    bound=st.integers(1, (1 << 40) - 1),
    clients=st.integers(1, 64),
    length=st.integers(1, 200),
    data=st.data(),
)
def test_bounded_sum_is_exact_at_the_extremes_and_one_summand_more_is_detected(
    bound: int, clients: int, length: int, data: st.DataObject
) -> None:
    # Prepare: the minimal layout for |v| <= B and N summands (slot bitlen(2 N B) + 1)
    layout = SlotLayout.bounded(bound, clients, 1024)
    assert layout.width == (2 * clients * bound).bit_length() + 1
    top = pack(np.full(length, bound, dtype=np.int64), layout)
    bottom = pack(np.full(length, -bound, dtype=np.int64), layout)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    mixed = [rng.choice(np.array([-bound, bound, 0]), size=length) for _ in range(clients)]
    # Execute / Assert: N summands all at +B, all at -B, and a mix of both extremes decode exactly
    np.testing.assert_array_equal(unpack([clients * p for p in top], layout, length, clients),
                                  np.full(length, clients * bound))
    np.testing.assert_array_equal(unpack([clients * p for p in bottom], layout, length, clients),
                                  np.full(length, -clients * bound))
    np.testing.assert_array_equal(unpack(_packed_sum(mixed, layout), layout, length, clients),
                                  np.sum(mixed, axis=0))
    # N + 1 (up to 2N) summands at +B never carry (2N * 2B < 2^w) and are detected, not decoded
    extra = data.draw(st.integers(clients + 1, 2 * clients))
    with pytest.raises(OverflowDetectedError):
        unpack([extra * p for p in top], layout, length, clients)
    # Declaring N + 1 summands is refused outright
    with pytest.raises(ConfigurationError, match="num_summands"):
        unpack([(clients + 1) * p for p in top], layout, length, clients + 1)


def test_bounded_summands_at_the_bottom_add_nothing() -> None:
    # A summand at -B is u = 0 in every slot: an extra one is invisible to any check
    # (the documented limit of overflow detection); the decoded sum is that of N.
    layout = SlotLayout.bounded(5, 3, 256)
    bottom = pack([-5, -5], layout)
    np.testing.assert_array_equal(unpack([4 * p for p in bottom], layout, 2, 3), [-15, -15])


@pytest.mark.parametrize("value", [6, -6, 1 << 40, -(1 << 40)])
def test_bounded_value_beyond_the_slot_is_refused(value: int) -> None:
    # Prepare: |v| <= 5 (4 value bits, which would hold -8..7 in the bit range)
    layout = SlotLayout.bounded(5, 3, 256)
    # Execute / Assert
    with pytest.raises(EncodeError, match=r"\[-5, 5\]"):
        pack([0, value], layout)


def test_bounded_slot_content_beyond_the_honest_bound_is_detected() -> None:
    # Prepare: a forged plaintext whose slot 0 holds 2B + 1 = 11 for one summand, below the guard bit
    layout = SlotLayout.bounded(5, 3, 256)
    assert layout.width == 6
    assert (1 << (layout.width - 1)) > 11
    # Execute / Assert
    with pytest.raises(OverflowDetectedError, match="slot 0 holds 11"):
        unpack([11], layout, 1, 1)
    with pytest.raises(OverflowDetectedError, match="guard bit"):
        unpack([1 << (layout.width - 1)], layout, 1, 3)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"value_bits": 5, "num_clients": 3, "key_bits": 256, "value_bound": 5},  # bitlen(5) + 1 = 4
        {"value_bits": 2, "num_clients": 3, "key_bits": 256, "value_bound": 0},
        {"value_bits": 4, "num_clients": 3, "key_bits": 256, "value_bound": -5},
        {"value_bits": 4, "num_clients": 3, "key_bits": 256, "value_bound": 5, "slot_bits": 5},  # needs 6
        {"value_bits": 4, "num_clients": 3, "key_bits": 256, "value_bound": 5.0},
    ],
)
def test_invalid_bounded_layouts_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        SlotLayout(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("bound", [0, -1, 1 << 47, 2.5])
def test_bounded_constructor_refuses_bounds_outside_the_value_bits(bound: object) -> None:
    with pytest.raises(ConfigurationError):
        SlotLayout.bounded(bound, 3, 256)  # type: ignore[arg-type]


def test_the_bytes_per_value_table_in_the_docs_is_the_measured_one() -> None:
    # docs/paillier.md, "Slot width against the narrow ring", is the output of benchmarks.paillier_slots
    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("paillier_slots", root / "benchmarks" / "paillier_slots.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    docs = (root / "docs" / "paillier.md").read_text(encoding="utf-8")
    for line in module.table():
        assert line in docs
