"""The rings Z_(2^32) and Z_(2^64) (secagg.ring)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import ConfigurationError
from secagg.ring import RING32, RING64, Ring, ring_from_bits

RINGS = [pytest.param(RING32, id="ring32"), pytest.param(RING64, id="ring64")]


@pytest.mark.parametrize("bits", [0, 8, 16, 31, 33, 128])
def test_only_32_and_64_bit_rings_exist(bits: int) -> None:
    # Execute / Assert
    with pytest.raises(ConfigurationError):
        Ring(bits)
    with pytest.raises(ConfigurationError):
        ring_from_bits(bits)


@pytest.mark.parametrize(("ring", "modulus", "size", "dtype"), [
    (RING32, 2**32, 4, np.dtype("<u4")),
    (RING64, 2**64, 8, np.dtype("<u8")),
])
def test_ring_properties(ring: Ring, modulus: int, size: int, dtype: np.dtype) -> None:
    # Execute
    zeros = ring.zeros(5)

    # Assert
    assert (ring.modulus, ring.element_size, ring.dtype) == (modulus, size, dtype)
    assert zeros.dtype == dtype and zeros.shape == (5,) and not zeros.any()
    assert ring_from_bits(ring.bits) == ring


@pytest.mark.parametrize("ring", RINGS)
def test_check_accepts_a_matching_vector(ring: Ring) -> None:
    # Prepare
    vector = ring.zeros(3)

    # Execute / Assert
    assert ring.check(vector) is vector
    assert ring.check(vector, 3) is vector


@pytest.mark.parametrize("ring", RINGS)
@pytest.mark.parametrize(
    ("make", "length"),
    [
        pytest.param(lambda ring: [0, 1, 2], None, id="list"),
        pytest.param(lambda ring: np.zeros((2, 2), dtype=ring.dtype), None, id="2-d"),
        pytest.param(lambda ring: np.array(0, dtype=ring.dtype), None, id="0-d"),
        pytest.param(lambda ring: np.zeros(3, dtype=np.int32 if ring.bits == 32 else np.int64), None, id="signed"),
        pytest.param(lambda ring: np.zeros(3, dtype=RING64.dtype if ring.bits == 32 else RING32.dtype), None,
                     id="other-ring"),
        pytest.param(lambda ring: np.zeros(3, dtype=np.uint16), None, id="uint16"),
        pytest.param(lambda ring: np.zeros(3, dtype=np.float64), None, id="float"),
        pytest.param(lambda ring: ring.zeros(3), 4, id="wrong-length"),
    ],
)
def test_check_rejects_wrong_shape_dtype_or_length(ring: Ring, make: object, length: int | None) -> None:
    # Prepare
    vector = make(ring)  # type: ignore[operator]

    # Execute / Assert
    with pytest.raises(ConfigurationError):
        ring.check(vector, length)


@pytest.mark.parametrize("ring", RINGS)
def test_sum_rejects_a_vector_of_another_length(ring: Ring) -> None:
    # Execute / Assert
    with pytest.raises(ConfigurationError):
        ring.sum([ring.zeros(3), ring.zeros(4)], 3)


@pytest.mark.parametrize("ring", RINGS)
def test_sum_of_nothing_is_zero(ring: Ring) -> None:
    # Execute
    total = ring.sum([], 4)

    # Assert
    np.testing.assert_array_equal(total, ring.zeros(4))


@pytest.mark.parametrize("ring", RINGS)
@given(data=st.data())
def test_sum_wraps_modulo_the_ring(ring: Ring, data: st.DataObject) -> None:
    # Prepare: values biased towards the top of the ring so sums wrap.
    length = data.draw(st.integers(1, 6))
    element = st.one_of(st.integers(0, ring.modulus - 1), st.integers(ring.modulus - 4, ring.modulus - 1))
    rows = data.draw(st.lists(st.lists(element, min_size=length, max_size=length), min_size=1, max_size=6))
    vectors = [np.array(row, dtype=ring.dtype) for row in rows]

    # Execute
    total = ring.sum(vectors, length)

    # Assert: Python integers do not wrap; reduce them explicitly.
    expected = [sum(row[i] for row in rows) % ring.modulus for i in range(length)]
    assert [int(v) for v in total] == expected
    assert total.dtype == ring.dtype


@pytest.mark.parametrize("ring", RINGS)
def test_sum_does_not_modify_its_inputs(ring: Ring) -> None:
    # Prepare
    first = np.full(3, ring.modulus - 1, dtype=ring.dtype)
    second = np.full(3, 2, dtype=ring.dtype)

    # Execute
    total = ring.sum([first, second], 3)

    # Assert
    assert [int(v) for v in total] == [1, 1, 1]
    assert int(first[0]) == ring.modulus - 1 and int(second[0]) == 2
