"""Narrow rings Z_(2^b), b in 8..64, through encoding, the wire codec and a masking session.

The session-level property (random b, n, d and dropouts) is in
test_exactness_property.py; this file pins the codec's bytes, the refusals and
the quantization round trip at narrow widths.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg import bitpack, wire
from secagg.encoding import QuantizationConfig, dequantize, from_ring, quantize_to_integers, to_ring
from secagg.errors import ConfigurationError, DecodeError, EncodeError, SecAggError
from secagg.masking import MaskingConfig, Round, run_session
from secagg.masking.messages import MaskedInput
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.ring import NarrowRing, PackedVector
from secagg.wire import U32, FixedBytes, RingArray
from secagg.wire_packed import PackedRingArray

SESSION = bytes(range(32))


def masked(bits: int, values: np.ndarray) -> bytes:
    return wire.encode(MaskedInput(7, SESSION, PackedVector(bits, values)))


def uniform(bits: int, length: int, seed: int = 0) -> np.ndarray:
    ring = NarrowRing(bits)
    words = np.random.default_rng(seed).integers(0, ring.container.modulus, length, dtype=ring.dtype)
    return ring.reduce(words)


@pytest.mark.parametrize("bits", [32, 64])
def test_word_rings_keep_the_ring_array_bytes(bits: int) -> None:
    # Prepare: the codec MaskedInput used before packing
    values = uniform(bits, 37)
    out: list[bytes | memoryview] = []
    U32.encode(7, out)
    FixedBytes(32).encode(SESSION, out)
    RingArray().encode(values, out)
    # Execute
    data = masked(bits, values)
    # Assert: the body after the 5-byte envelope is what RingArray wrote
    assert data[5:] == b"".join(bytes(part) for part in out)


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(8, 64), length=st.integers(0, 70), seed=st.integers(0, 2**32 - 1))
def test_packed_masked_input_round_trips_at_every_width(bits: int, length: int, seed: int) -> None:
    values = uniform(bits, length, seed)
    data = masked(bits, values)
    assert len(data) == 5 + 4 + 32 + 1 + 4 + bitpack.packed_size(length, bits)
    decoded = wire.decode(data, MaskedInput)
    assert decoded.vector.bits == bits
    assert decoded.vector.values.dtype == NarrowRing(bits).dtype
    np.testing.assert_array_equal(decoded.vector.values, values)
    assert wire.encode(decoded) == data  # canonical


def test_b12_is_one_and_a_half_bytes_a_coordinate() -> None:
    # 10^6 values of 12 bits: 1,500,000 bytes plus the 46-byte header
    assert len(masked(12, NarrowRing(12).zeros(1_000_000))) == 1_500_046


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d[:-1] + bytes([d[-1] | 0x80]), "nonzero padding"),
        (lambda d: d[:-1] + bytes([d[-1] | 0x10]), "nonzero padding"),
        (lambda d: d[:-1], "needs"),
        (lambda d: d + b"\x00", "trailing"),
        (lambda d: d[:41] + b"\x07" + d[42:], "ring size"),
        (lambda d: d[:41] + b"\x41" + d[42:], "ring size"),
        (lambda d: d[:41] + b"\x0d" + d[42:], "needs"),  # 5 x 13 bits need 9 bytes, 8 given
        (lambda d: d[:42] + (6).to_bytes(4, "big") + d[46:], "needs"),
    ],
)
def test_bad_packed_vectors_are_decode_errors(change: object, reason: str) -> None:
    # Prepare: 5 values of 12 bits = 60 bits in 8 bytes, 4 padding bits
    data = masked(12, uniform(12, 5))
    assert len(data) == 46 + 8
    # Execute / Assert
    with pytest.raises(DecodeError, match=reason):
        wire.decode(change(data), MaskedInput)  # type: ignore[operator]


def test_values_at_or_above_2_to_the_b_are_refused_before_the_wire() -> None:
    with pytest.raises(ConfigurationError, match="not an element of Z_\\(2\\^12\\)"):
        PackedVector(12, np.array([1, 4096], dtype=np.uint32))
    with pytest.raises(ConfigurationError):
        PackedVector(12, np.array([1, 2], dtype=np.uint64))  # not the container
    with pytest.raises(ConfigurationError):
        PackedVector(7, np.array([1], dtype=np.uint32))
    with pytest.raises(EncodeError):
        PackedRingArray().encode("not a vector", [])  # type: ignore[arg-type]


@pytest.mark.parametrize("bits", [7, 0, 65, 128])
def test_masking_config_refuses_rings_outside_8_to_64(bits: int) -> None:
    with pytest.raises(ConfigurationError, match=r"b in 8\.\.64"):
        MaskingConfig(num_clients=5, threshold=3, vector_length=4, ring_bits=bits, mode="semi-honest")


def test_the_ring_width_is_bound_in_the_config_digest() -> None:
    digests = {
        MaskingConfig(num_clients=5, threshold=3, vector_length=4, ring_bits=b, mode="semi-honest").digest()
        for b in range(8, 65)
    }
    assert len(digests) == 57


def test_a_client_input_of_2_to_the_b_is_refused() -> None:
    # Prepare
    config = MaskingConfig(num_clients=4, threshold=3, vector_length=3, ring_bits=12, mode="semi-honest")
    inputs = {c: uniform(12, 3, c) for c in range(1, 5)}
    inputs[2] = np.array([0, 4096, 1], dtype=np.uint32)
    # Execute / Assert: a library error, naming the client
    with pytest.raises(SecAggError, match="client 2"):
        run_session(config, inputs, random_bytes=InsecureDeterministicRandom(1))


def test_server_refuses_a_masked_input_of_another_width() -> None:
    # Prepare: client 3 repacks its masked input at b = 13 (same values, one more bit each)
    config = MaskingConfig(num_clients=5, threshold=3, vector_length=6, ring_bits=12, mode="semi-honest")
    inputs = {c: uniform(12, 6, c) for c in range(1, 6)}

    def tamper(round_: Round, direction: str, client: int, data: bytes) -> bytes:
        if round_ == Round.MASKED_INPUT and direction == "up" and client == 3:
            message = wire.decode(data, MaskedInput)
            return wire.encode(MaskedInput(message.sender, message.session_id, PackedVector(13, message.vector.values)))
        return data

    # Execute
    result = run_session(config, inputs, random_bytes=InsecureDeterministicRandom(2), tamper=tamper)
    # Assert: client 3 is treated as dropped, the others sum exactly mod 2^12
    assert 3 not in result.included
    expected = sum(inputs[c].astype(np.int64) for c in result.included) % 4096
    np.testing.assert_array_equal(result.aggregate, expected.astype(np.uint32))


@pytest.mark.parametrize("ring_bits", [8, 12, 20, 33, 47])
def test_narrow_encodings_sign_extend_and_sum_exactly(ring_bits: int) -> None:
    # Prepare: the largest federation the overflow rule allows at 4-bit values
    bits = 4
    clients = ((1 << (ring_bits - 1)) - 1) // 7
    clients = min(clients, 50)
    config = QuantizationConfig(1.0, bits, clients, ring_bits)
    rng = np.random.default_rng(ring_bits)
    integers = [quantize_to_integers(rng.uniform(-2, 2, 40), config, rng) for _ in range(clients)]
    # Execute
    encodings = [to_ring(q, config) for q in integers]
    total = config.ring.sum(encodings, 40)
    # Assert: each encoding is an element of Z_(2^b) and decodes to itself; the sum to the integer sum
    for q, encoding in zip(integers, encodings, strict=True):
        config.ring.check(encoding)
        np.testing.assert_array_equal(from_ring(encoding, config), q)
    np.testing.assert_array_equal(from_ring(total, config), np.sum(integers, axis=0))
    np.testing.assert_allclose(dequantize(total, config, clients), np.sum(integers, axis=0) / config.scale)


def test_extremes_of_a_narrow_ring_sign_extend() -> None:
    config = QuantizationConfig(1.0, 12, 1, 12)
    values = np.array([0, 1, 2047, -1, -2047], dtype=np.int64)
    encoded = to_ring(values, config)
    np.testing.assert_array_equal(encoded, np.array([0, 1, 2047, 4095, 2049], dtype=np.uint32))
    np.testing.assert_array_equal(from_ring(encoded, config), values)
    np.testing.assert_array_equal(from_ring(np.array([2048], dtype=np.uint32), config), [-2048])
    with pytest.raises(ConfigurationError):
        from_ring(np.array([4096], dtype=np.uint32), config)
