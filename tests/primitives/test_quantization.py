"""Quantization (secagg.encoding): error bounds, unbiased rounding, exact sums,
overflow refusal with an actionable message, and overflow detection."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from secagg.encoding import (
    MAX_BITS,
    WORD_RINGS,
    QuantizationConfig,
    dequantize,
    from_ring,
    quantize,
    quantize_to_integers,
    smallest_ring_bits,
    to_ring,
)
from secagg.errors import ConfigurationError, OverflowDetectedError

# Relative slack for float rounding in bounds that are exact in real arithmetic.
FLOAT_SLACK = 1e-9

clips = st.floats(min_value=1e-3, max_value=1e3, allow_nan=False, allow_infinity=False)


@st.composite
def configs(draw: st.DrawFn, max_clients: int = 16) -> QuantizationConfig:
    """Accepted configurations in both rings. bits stays at most 52 in Z_(2^64) so
    that every quantized integer is exactly representable in a float64."""
    ring_bits = draw(st.sampled_from([32, 64]))
    num_clients = draw(st.integers(1, max_clients))
    max_bits = min(ring_bits - 1, 52)
    bits = draw(st.integers(2, max_bits))
    assume(num_clients * ((1 << (bits - 1)) - 1) <= (1 << (ring_bits - 1)) - 1)
    return QuantizationConfig(clip=draw(clips), bits=bits, num_clients=num_clients, ring_bits=ring_bits)


def float_vectors(clip: float, size: int, factor: float = 1.0) -> st.SearchStrategy[list[float]]:
    bound = clip * factor
    return st.lists(st.floats(-bound, bound, allow_nan=False, allow_infinity=False), min_size=size, max_size=size)


# ---------------------------------------------------------------- config validation


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"clip": 0.0}, id="clip-zero"),
        pytest.param({"clip": -1.0}, id="clip-negative"),
        pytest.param({"clip": math.nan}, id="clip-nan"),
        pytest.param({"clip": math.inf}, id="clip-inf"),
        pytest.param({"bits": 1}, id="bits-1"),
        pytest.param({"bits": 32}, id="bits-equal-ring"),
        pytest.param({"ring_bits": 16}, id="ring-16"),
        pytest.param({"num_clients": 0}, id="no-clients"),
        pytest.param({"max_weight": 0}, id="weight-zero"),
    ],
)
def test_config_refuses_invalid_settings(kwargs: dict[str, float]) -> None:
    # Prepare
    settings: dict[str, float] = {"clip": 1.0, "bits": 16, "num_clients": 4}
    settings.update(kwargs)

    # Execute / Assert
    with pytest.raises(ConfigurationError):
        QuantizationConfig(**settings)  # type: ignore[arg-type]


# ---------------------------------------------------------------- per-client error


@given(config=configs(), data=st.data())
def test_in_range_values_are_within_one_step(config: QuantizationConfig, data: st.DataObject) -> None:
    # Prepare
    values = np.array(data.draw(float_vectors(config.clip, 16)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32)))

    # Execute
    encoded = quantize(values, config, rng)
    decoded = dequantize(encoded, config)

    # Assert
    assert encoded.dtype == config.ring.dtype
    # One step, plus the float64 rounding of the decoded value (visible at ~50 bits).
    rounding = 4 * np.spacing(np.abs(values) + config.clip)
    assert np.all(np.abs(decoded - values) <= config.step * (1 + FLOAT_SLACK) + rounding)


@given(config=configs(), data=st.data())
def test_quantized_integers_never_exceed_qmax(config: QuantizationConfig, data: st.DataObject) -> None:
    # Prepare
    values = np.array(data.draw(float_vectors(config.clip, 16, factor=3.0)))

    # Execute
    integers = quantize_to_integers(values, config, np.random.default_rng(0))

    # Assert
    assert integers.dtype == np.int64
    assert int(np.max(np.abs(integers))) <= config.qmax


@given(config=configs(), data=st.data())
def test_clipped_values_land_at_plus_or_minus_clip(config: QuantizationConfig, data: st.DataObject) -> None:
    # Prepare: magnitudes strictly above clip, both signs.
    magnitudes = data.draw(st.lists(st.floats(1.0, 1e6, exclude_min=True), min_size=1, max_size=8))
    values = np.array([config.clip * m * s for m in magnitudes for s in (1.0, -1.0)])

    # Execute
    integers = quantize_to_integers(values, config, np.random.default_rng(1))
    decoded = dequantize(quantize(values, config, np.random.default_rng(1)), config)

    # Assert
    np.testing.assert_array_equal(integers, np.sign(values).astype(np.int64) * config.qmax)
    np.testing.assert_allclose(decoded, np.sign(values) * config.clip, rtol=1e-12)


@pytest.mark.parametrize("ring_bits", [32, 64])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_refused(ring_bits: int, bad: float) -> None:
    # Prepare
    config = QuantizationConfig(clip=1.0, bits=16, num_clients=2, ring_bits=ring_bits)

    # Execute / Assert
    with pytest.raises(ConfigurationError):
        quantize([0.5, bad, 0.25], config, np.random.default_rng(0))


# ---------------------------------------------------------------- unbiased rounding


@pytest.mark.parametrize("ring_bits", [32, 64])
@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.9])
def test_stochastic_rounding_is_unbiased(ring_bits: int, fraction: float) -> None:
    # Prepare: a value whose scaled form has the given fractional part; bits=8
    # makes a step large so the fraction is far from float noise.
    config = QuantizationConfig(clip=1.0, bits=8, num_clients=1, ring_bits=ring_bits)
    value = (10 + fraction) / config.scale
    scaled = value * config.scale
    f = scaled - math.floor(scaled)
    draws = 200_000

    # Execute
    decoded = dequantize(quantize(np.full(draws, value), config, np.random.default_rng(20240611)), config)

    # Assert: q/scale is floor/scale plus a Bernoulli(f) step, so the mean of N
    # draws has standard deviation sqrt(f(1-f)/N)/scale around the true value.
    sigma = math.sqrt(f * (1 - f) / draws) / config.scale
    assert 0 < f < 1
    assert set(np.unique(decoded * config.scale).round().astype(int)) == {10, 11}
    assert abs(float(np.mean(decoded)) - value) <= 5 * sigma


# ---------------------------------------------------------------- sums


@given(config=configs(), data=st.data())
def test_sum_of_encodings_decodes_within_n_steps(config: QuantizationConfig, data: st.DataObject) -> None:
    # Prepare: some values out of range to exercise clipping in the sum too.
    n = data.draw(st.integers(1, config.num_clients))
    vectors = [np.array(data.draw(float_vectors(config.clip, 8, factor=1.5))) for _ in range(n)]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32)))

    # Execute
    encoded = [quantize(v, config, rng) for v in vectors]
    total = config.ring.sum(encoded, 8)
    decoded = dequantize(total, config, num_summands=n)

    # Assert
    expected = np.sum([np.clip(v, -config.clip, config.clip) for v in vectors], axis=0)
    assert np.all(np.abs(decoded - expected) <= n * config.step * (1 + FLOAT_SLACK))


@given(config=configs(), data=st.data())
def test_sum_decodes_to_the_exact_integer_sum(config: QuantizationConfig, data: st.DataObject) -> None:
    # Prepare: the worst case, every client at +qmax or -qmax.
    sign = data.draw(st.sampled_from([1, -1]))
    integers = np.full(4, sign * config.qmax, dtype=np.int64)
    encoded = [to_ring(integers, config) for _ in range(config.num_clients)]

    # Execute
    total = from_ring(config.ring.sum(encoded, 4), config)

    # Assert
    np.testing.assert_array_equal(total, integers * config.num_clients)
    dequantize(config.ring.sum(encoded, 4), config, num_summands=config.num_clients)


def test_weighted_sum_divides_by_weight_total() -> None:
    # Prepare
    config = QuantizationConfig(clip=1.0, bits=16, num_clients=2, max_weight=10)
    a = to_ring(np.array([3 * 100], dtype=np.int64), config)
    b = to_ring(np.array([7 * 200], dtype=np.int64), config)

    # Execute
    mean = dequantize(config.ring.sum([a, b], 1), config, num_summands=2, weight_total=10)

    # Assert
    assert mean[0] == pytest.approx((300 + 1400) / config.scale / 10)


def test_dequantize_refuses_bad_summand_counts() -> None:
    # Prepare
    config = QuantizationConfig(clip=1.0, bits=16, num_clients=3)
    vector = config.ring.zeros(2)

    # Execute / Assert
    for kwargs in ({"num_summands": 0}, {"num_summands": 4}, {"weight_total": 0}):
        with pytest.raises(ConfigurationError):
            dequantize(vector, config, **kwargs)


# ---------------------------------------------------------------- overflow refusal

MESSAGE_BITS = re.compile(r"bits <= (\d+) for (\d+) clients")
MESSAGE_CLIENTS = re.compile(r"at most (\d+) clients at bits=(\d+)")


@st.composite
def overflowing_settings(draw: st.DrawFn) -> tuple[int, int, int, int]:
    """(ring_bits, bits, num_clients, max_weight) that overflow but for which both a
    smaller bits value and a smaller client count exist."""
    ring_bits = draw(st.sampled_from([32, 64]))
    limit = (1 << (ring_bits - 1)) - 1
    bits = draw(st.integers(3, min(ring_bits - 1, MAX_BITS)))
    qmax = (1 << (bits - 1)) - 1
    max_weight = draw(st.integers(1, 1000))
    safe_clients = limit // (max_weight * qmax)
    assume(safe_clients >= 1)
    num_clients = safe_clients + 1 + draw(st.integers(0, 1000))
    assume(num_clients * max_weight <= limit)  # bits=2 would be safe
    return ring_bits, bits, num_clients, max_weight


@given(setting=overflowing_settings())
def test_overflow_is_refused_with_the_largest_safe_settings(setting: tuple[int, int, int, int]) -> None:
    # Prepare
    ring_bits, bits, num_clients, max_weight = setting
    common = {"clip": 1.0, "ring_bits": ring_bits, "max_weight": max_weight}

    # Execute
    with pytest.raises(ConfigurationError) as refused:
        QuantizationConfig(bits=bits, num_clients=num_clients, **common)  # type: ignore[arg-type]
    message = str(refused.value)
    by_bits, by_clients = MESSAGE_BITS.search(message), MESSAGE_CLIENTS.search(message)

    # Assert: the message names both settings, each accepted, each maximal.
    assert by_bits is not None and by_clients is not None, message
    safe_bits, safe_clients = int(by_bits.group(1)), int(by_clients.group(1))
    assert (int(by_bits.group(2)), int(by_clients.group(2))) == (num_clients, bits)
    QuantizationConfig(bits=safe_bits, num_clients=num_clients, **common)  # type: ignore[arg-type]
    QuantizationConfig(bits=bits, num_clients=safe_clients, **common)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        QuantizationConfig(bits=safe_bits + 1, num_clients=num_clients, **common)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        QuantizationConfig(bits=bits, num_clients=safe_clients + 1, **common)  # type: ignore[arg-type]
    wider = re.search(r"ring_bits >= (\d+)", message)
    if ring_bits < 64 and num_clients * max_weight * ((1 << (bits - 1)) - 1) <= (1 << 63) - 1:
        # the smallest wider ring that fits is named, and it is the smallest
        assert wider is not None, message
        fits = int(wider.group(1))
        QuantizationConfig(bits=bits, num_clients=num_clients, clip=1.0, ring_bits=fits, max_weight=max_weight)
        with pytest.raises(ConfigurationError):
            QuantizationConfig(bits=bits, num_clients=num_clients, clip=1.0, ring_bits=fits - 1, max_weight=max_weight)


def test_overflow_message_for_a_known_case() -> None:
    # Execute
    with pytest.raises(ConfigurationError) as refused:
        QuantizationConfig(clip=1.0, bits=24, num_clients=1000)

    # Assert: 1000 * (2^21 - 1) fits 2^31 - 1, 1000 * (2^22 - 1) does not; 256 * (2^23 - 1) fits.
    assert "bits <= 22 for 1000 clients" in str(refused.value)
    assert "at most 256 clients at bits=24" in str(refused.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        # so many clients that not even bits=2 fits: the message offers "bits <= 1".
        pytest.param({"bits": 2, "num_clients": 1 << 31}, id="no-bits-fit"),
        # weight x qmax alone exceeds the ring: the message offers "at most 0 clients".
        pytest.param({"bits": 31, "num_clients": 1, "max_weight": 3}, id="no-client-count-fits"),
    ],
)
def test_overflow_message_names_only_valid_settings(kwargs: dict[str, int]) -> None:
    # Execute
    with pytest.raises(ConfigurationError) as refused:
        QuantizationConfig(clip=1.0, **kwargs)
    message = str(refused.value)

    # Assert: every setting offered as "largest safe" must itself be accepted.
    weight = kwargs.get("max_weight", 1)
    by_bits, by_clients = MESSAGE_BITS.search(message), MESSAGE_CLIENTS.search(message)
    if by_bits is not None:
        QuantizationConfig(clip=1.0, bits=int(by_bits.group(1)), num_clients=kwargs["num_clients"], max_weight=weight)
    if by_clients is not None:
        QuantizationConfig(clip=1.0, bits=kwargs["bits"], num_clients=int(by_clients.group(1)), max_weight=weight)


@pytest.mark.parametrize("ring_bits", [32, 64])
def test_largest_accepted_bits_at_one_client(ring_bits: int) -> None:
    # Prepare: one client's +-(2^31 - 1) fits Z_(2^32) at 32 bits; in Z_(2^64)
    # float64 precision caps bits at 53.
    largest = 32 if ring_bits == 32 else MAX_BITS

    # Execute
    config = QuantizationConfig(clip=1.0, bits=largest, num_clients=1, ring_bits=ring_bits)

    # Assert
    assert config.qmax * config.num_clients <= config.limit
    with pytest.raises(ConfigurationError):
        QuantizationConfig(clip=1.0, bits=largest + 1, num_clients=1, ring_bits=ring_bits)


# ---------------------------------------------------------------- overflow detection


@given(config=configs(), data=st.data())
def test_forged_out_of_range_sum_is_detected(config: QuantizationConfig, data: st.DataObject) -> None:
    # Prepare: one coordinate just outside what n summands can reach.
    n = data.draw(st.integers(1, config.num_clients))
    bound = n * config.max_weight * config.qmax
    sign = data.draw(st.sampled_from([1, -1]))
    integers = np.zeros(5, dtype=np.int64)
    integers[data.draw(st.integers(0, 4))] = sign * (bound + 1)
    forged = to_ring(integers, config)

    # Execute / Assert
    with pytest.raises(OverflowDetectedError):
        dequantize(forged, config, num_summands=n)


@pytest.mark.parametrize("ring_bits", [32, 64])
def test_most_negative_ring_value_is_detected(ring_bits: int) -> None:
    # Prepare: 2^(ring-1), i.e. -2^(ring-1) in two's complement, which no valid sum
    # reaches (sums stay within +-(2^(ring-1) - 1)).
    config = QuantizationConfig(clip=1.0, bits=16, num_clients=3, ring_bits=ring_bits)
    forged = np.array([0, 1 << (ring_bits - 1), 0], dtype=config.ring.dtype)

    # Execute / Assert
    with pytest.raises(OverflowDetectedError):
        dequantize(forged, config, num_summands=3)


@pytest.mark.parametrize("bits", [54, 55, 60, 63])
def test_64_bit_ring_refuses_bits_beyond_float64_precision(bits: int) -> None:
    # Above 53 bits qmax = 2^(bits-1) - 1 is not a float64, so the clip bound itself
    # would be inexact (bits=63 once gave q = 2^62 > qmax and a wrapped sum).
    with pytest.raises(ConfigurationError, match="float64"):
        QuantizationConfig(clip=1.0, bits=bits, num_clients=1, ring_bits=64)


@pytest.mark.parametrize("bits", [50, 52, MAX_BITS])
def test_64_bit_ring_wide_quantization_stays_within_qmax(bits: int) -> None:
    # Prepare
    config = QuantizationConfig(clip=1.0, bits=bits, num_clients=1, ring_bits=64)

    # Execute
    integers = quantize_to_integers([1.0, -1.0, 5.0], config, np.random.default_rng(0))

    # Assert
    assert int(np.max(np.abs(integers))) <= config.qmax


def test_64_bit_ring_sum_at_largest_accepted_bits_does_not_wrap() -> None:
    # Prepare: 2 clients x (2^52 - 1) at the largest accepted bits.
    config = QuantizationConfig(clip=1.0, bits=MAX_BITS, num_clients=2, ring_bits=64)
    rng = np.random.default_rng(0)
    encoded = [quantize([1.0], config, rng), quantize([1.0], config, rng)]

    # Execute
    decoded = dequantize(config.ring.sum(encoded, 1), config, num_summands=2)

    # Assert
    assert decoded[0] == pytest.approx(2.0)


@pytest.mark.parametrize("ring_bits", [32, 64])
def test_byte_swapped_ring_vector_is_read_by_value_or_refused(ring_bits: int) -> None:
    # Prepare: the same ring elements held in a big-endian array, which Ring.check
    # accepts (unsigned, right itemsize).
    config = QuantizationConfig(clip=1.0, bits=16, num_clients=1, ring_bits=ring_bits)
    little = to_ring(np.array([5, -3, 0], dtype=np.int64), config)
    big = little.astype(little.dtype.newbyteorder(">"))

    # Execute
    try:
        decoded = dequantize(big, config)
    except ConfigurationError:
        return

    # Assert: if accepted, it must mean the same values, not reinterpreted bytes.
    np.testing.assert_array_equal(decoded, dequantize(little, config))


def test_the_ring_follows_the_federation() -> None:
    # Prepare / Execute / Assert: 16 hospitals of <= 4096 rows fit Z_(2^32); a 17th site or a
    # 5,000-row hospital moves to Z_(2^64) instead of being refused
    assert smallest_ring_bits(16, 16, 4096, WORD_RINGS) == 32
    assert smallest_ring_bits(16, 17, 4096, WORD_RINGS) == 64
    assert smallest_ring_bits(16, 3, 5000, WORD_RINGS) == 32 and smallest_ring_bits(16, 16, 5000, WORD_RINGS) == 64


def test_the_smallest_narrow_ring_is_the_overflow_rule_at_equality() -> None:
    # Prepare / Execute / Assert: n * w * qmax <= 2^(b-1) - 1 picks b; 4-bit values (qmax 7) of
    # 18 hospitals fit Z_(2^8) (126 <= 127), a 19th needs Z_(2^9)
    assert smallest_ring_bits(4, 18) == 8 and smallest_ring_bits(4, 19) == 9
    assert smallest_ring_bits(3, 42) == 8 and smallest_ring_bits(3, 43) == 9
    assert smallest_ring_bits(8, 10) == 12  # 10 x 127 = 1270 <= 2047
    assert smallest_ring_bits(16, 16, 4096) == 32 and smallest_ring_bits(16, 17, 4096) == 33
    for bits, n, w in ((2, 1, 1), (5, 100, 1), (12, 7, 33), (30, 1000, 1000)):
        b = smallest_ring_bits(bits, n, w)
        QuantizationConfig(1.0, bits, n, b, max_weight=w)
        if b > 8:
            with pytest.raises(ConfigurationError):
                QuantizationConfig(1.0, bits, n, b - 1, max_weight=w)
    with pytest.raises(ConfigurationError, match="could overflow Z_\\(2\\^64\\)"):
        smallest_ring_bits(53, 1000, 1 << 20)


def test_overflow_message_offers_a_wider_ring_as_a_lower_bound() -> None:
    # Execute: 5 clients at 31 bits overflow Z_(2^32); a wider ring holds them.
    with pytest.raises(ConfigurationError) as refused:
        QuantizationConfig(clip=1.0, bits=31, num_clients=5, ring_bits=32)
    message = str(refused.value)

    # Assert: the ring is advised as a minimum (it was "Largest safe setting: ... ring_bits=34"),
    # and the ring advised is accepted while one bit less is not.
    wider = re.search(r"ring_bits >= (\d+)", message)
    assert wider is not None and "Largest safe" not in message, message
    QuantizationConfig(clip=1.0, bits=31, num_clients=5, ring_bits=int(wider.group(1)))
    with pytest.raises(ConfigurationError):
        QuantizationConfig(clip=1.0, bits=31, num_clients=5, ring_bits=int(wider.group(1)) - 1)
