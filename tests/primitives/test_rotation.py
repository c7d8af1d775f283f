"""Randomized Walsh-Hadamard rotation (secagg.rotation): inverse, isometry, linearity, exact spec."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.descriptor import SessionDescriptor, encode_parameters
from secagg.encoding import QuantizationConfig, dequantize, quantize
from secagg.errors import ConfigurationError
from secagg.rotation import Rotation, flip_signs, hadamard_in_place, hadamard_into, normalisation, sign_bits, signs

SEED = bytes(range(32))
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


def _sylvester(size: int) -> np.ndarray:
    matrix = np.ones((1, 1))
    while matrix.shape[0] < size:
        matrix = np.block([[matrix, matrix], [matrix, -matrix]])
    return matrix


def _vectors(draw: st.DrawFn, count: int) -> tuple[int, list[np.ndarray]]:
    d = draw(st.integers(1, 300))
    return d, [np.array(draw(st.lists(finite, min_size=d, max_size=d))) for _ in range(count)]


@st.composite
def one_vector(draw: st.DrawFn) -> np.ndarray:
    return _vectors(draw, 1)[1][0]


@st.composite
def three_vectors(draw: st.DrawFn) -> list[np.ndarray]:
    return _vectors(draw, 3)[1]


@given(x=one_vector(), block=st.sampled_from([None, 1, 2, 8, 64]))
def test_inverse_recovers_the_input(x: np.ndarray, block: int | None) -> None:
    # Prepare
    rotation = Rotation(SEED, x.shape[0], block)

    # Execute
    back = rotation.inverse(rotation.forward(x))

    # Assert
    scale = max(1.0, float(np.max(np.abs(x))))
    assert back.shape == x.shape
    assert float(np.max(np.abs(back - x))) <= 1e-12 * scale


@given(x=one_vector())
def test_rotation_preserves_the_l2_norm(x: np.ndarray) -> None:
    # Execute
    y = Rotation(SEED, x.shape[0]).forward(x)

    # Assert
    assert math.isclose(float(np.linalg.norm(y)), float(np.linalg.norm(x)), rel_tol=1e-12, abs_tol=1e-300)


@given(vectors=three_vectors())
def test_sum_of_rotations_is_the_rotation_of_the_sum(vectors: list[np.ndarray]) -> None:
    # Prepare: what lets the server invert once, on the aggregate
    rotation = Rotation(SEED, vectors[0].shape[0])

    # Execute
    summed = sum(rotation.forward(x) for x in vectors)
    recovered = rotation.inverse(summed)

    # Assert
    total = sum(vectors)
    scale = max(1.0, *(float(np.max(np.abs(x))) for x in vectors))
    assert np.allclose(summed, rotation.forward(total), rtol=0, atol=1e-12 * scale * 3)
    assert np.allclose(recovered, total, rtol=0, atol=1e-12 * scale * 3)


@pytest.mark.parametrize("d", [1, 2, 3, 5, 8, 100, 4096, 5000])
def test_forward_is_the_normalised_hadamard_matrix_times_the_signs(d: int) -> None:
    # Prepare
    rotation = Rotation(SEED, d)
    x = np.random.default_rng(d).normal(size=d)
    size = rotation.padded_dimension
    padded = np.concatenate([x, np.zeros(size - d)])

    # Execute
    y = rotation.forward(x)

    # Assert
    assert size == 1 << (d - 1).bit_length()
    expected = _sylvester(size) @ (signs(SEED, size) * padded) / math.sqrt(size)
    assert np.allclose(y, expected, rtol=0, atol=1e-12 * float(np.max(np.abs(x))) * math.sqrt(size))


@pytest.mark.parametrize("width", [1, 2, 4, 8, 1 << 11, 1 << 12, 1 << 13, 1 << 15, 1 << 17])
def test_fast_butterflies_are_bit_identical_to_the_radix_2_stages_in_order(width: int) -> None:
    # Prepare: the spec's order, one stage at a time, h = 1, 2, 4, ...
    rows = np.random.default_rng(width).normal(size=(3, width))
    expected = rows.copy()
    h = 1
    while h < width:
        view = expected.reshape(-1, 2, h)
        a, b = view[:, 0, :].copy(), view[:, 1, :].copy()
        view[:, 0, :], view[:, 1, :] = a + b, a - b
        h *= 2

    # Execute
    hadamard_in_place(rows)

    # Assert
    assert rows.tobytes() == expected.tobytes()


def _stage_by_stage(rows: np.ndarray) -> np.ndarray:
    """The spec's order, one stage at a time, h = 1, 2, 4, ... (section 18, step 3)."""
    expected = rows.copy()
    h = 1
    while h < rows.shape[1]:
        view = expected.reshape(-1, 2, h)
        a, b = view[:, 0, :].copy(), view[:, 1, :].copy()
        view[:, 0, :], view[:, 1, :] = a + b, a - b
        h *= 2
    return expected


@pytest.mark.parametrize(("rows", "width"), [(1, 1), (5, 2), (2000, 64), (3, 1 << 16), (2, 1 << 17), (1, 1 << 18)])
def test_out_of_place_scaled_transform_is_bit_identical_and_leaves_its_source(rows: int, width: int) -> None:
    # Prepare: what Rotation.inverse runs (source = the aggregate, target = a new buffer)
    source = np.random.default_rng(width + rows).normal(size=(rows, width))
    before = source.tobytes()
    target = np.empty_like(source)
    scale = normalisation(width)

    # Execute
    hadamard_into(source, target, scale)

    # Assert: every stage in the spec's order, then one product per coordinate
    assert target.tobytes() == (_stage_by_stage(source) * scale).tobytes()
    assert source.tobytes() == before


def test_signs_flip_exactly_the_sign_bit_of_the_set_bits() -> None:
    # Prepare: zeros, subnormals, infinities of either sign
    values = np.array([0.0, -0.0, 5e-324, -1.5, np.inf, -np.inf, 3.0, 1e308] * 5)
    expected = np.where(sign_bits(SEED, values.shape[0]), -values, values)

    # Execute
    flipped = values.copy()
    flip_signs(flipped, SEED)

    # Assert
    assert flipped.tobytes() == expected.tobytes()


@pytest.mark.parametrize("k", range(0, 21))
def test_normalisation_is_the_double_nearest_to_one_over_sqrt_b(k: int) -> None:
    # Execute
    scale = normalisation(1 << k)

    # Assert: exact for even k, correctly rounded 2^-k/2 for odd k
    exact_square = Fraction(1, 1 << k)
    neighbours = [np.nextafter(scale, 0.0), scale, np.nextafter(scale, 1.0)]
    errors = [abs(Fraction(float(c)) ** 2 - exact_square) for c in neighbours]
    assert errors[1] == min(errors)


def test_blocks_bound_the_padding_and_rotate_each_block_alone() -> None:
    # Prepare
    d = 10_000
    x = np.random.default_rng(1).normal(size=d)
    rotation = Rotation(SEED, d, block=1 << 10)

    # Execute
    y = rotation.forward(x)

    # Assert: 10 blocks of 1024, so 240 padded coordinates rather than 6384
    assert rotation.padded_dimension == 10_240 == y.shape[0]
    assert Rotation(SEED, d).padded_dimension == 16_384
    first_block = _sylvester(1024) @ (signs(SEED, 1024) * x[:1024]) / 32
    assert np.allclose(y[:1024], first_block, rtol=0, atol=1e-10)
    assert np.allclose(rotation.inverse(y), x, rtol=0, atol=1e-12)


def test_rotation_spreads_a_spike_over_every_coordinate() -> None:
    # Prepare: the reason to rotate; one coordinate carries the whole update
    x = np.zeros(1000)
    x[7] = 10.0

    # Execute
    y = Rotation(SEED, 1000).forward(x)

    # Assert
    assert np.allclose(np.abs(y), 10.0 / 32)


def test_quantized_rotated_sums_decode_to_the_plain_sum() -> None:
    # Prepare: 5 hospitals with uneven updates, 16-bit quantization of rotated vectors
    d, clients = 3000, 5
    rng = np.random.default_rng(3)
    updates = [rng.normal(size=d) * (rng.random(d) < 0.01) * 5 for _ in range(clients)]
    rotation = Rotation(bytes(32), d)
    clip = 3.0
    config = QuantizationConfig(clip=clip, bits=16, num_clients=clients)

    # Execute: each client rotates and quantizes; the ring sum is decoded and un-rotated once
    rotated = [rotation.forward(x) for x in updates]
    assert max(float(np.max(np.abs(y))) for y in rotated) < clip  # nothing was clipped
    encoded = [quantize(y, config, np.random.default_rng(10 + i)) for i, y in enumerate(rotated)]
    total = config.ring.sum(encoded, rotation.padded_dimension)
    mean = rotation.inverse(dequantize(total, config, num_summands=clients)) / clients

    # Assert: each coordinate of the rotated sum is off by < one step per client; the inverse
    # is orthogonal, so the L2 error of the mean is at most step * sqrt(D)
    plain = sum(updates) / clients
    bound = config.step * math.sqrt(rotation.padded_dimension)
    assert float(np.linalg.norm(mean - plain)) <= bound
    assert float(np.max(np.abs(mean - plain))) < 20 * config.step


def test_different_seeds_give_different_signs() -> None:
    # Execute / Assert
    assert not np.array_equal(signs(bytes(32), 256), signs(SEED, 256))
    assert set(np.unique(signs(SEED, 256)).tolist()) == {-1.0, 1.0}


def test_descriptor_parameters_bind_seed_dimension_and_block() -> None:
    # Prepare
    rotation = Rotation(SEED, 1000)

    # Execute
    parameters = rotation.descriptor_parameters()

    # Assert
    assert parameters == {
        "secagg.rotation.transform": "walsh-hadamard/v1",
        "secagg.rotation.seed": SEED,
        "secagg.rotation.dimension": 1000,
        "secagg.rotation.block": 1024,
    }
    assert encode_parameters(parameters) != encode_parameters(Rotation(SEED, 1000, 512).descriptor_parameters())
    assert Rotation(SEED, 1000) == Rotation(SEED, 1000, 1024)


def test_a_different_rotation_gives_a_different_session_descriptor_digest() -> None:
    # Prepare: the same round, training parameters beside the rotation's entries
    config = QuantizationConfig(clip=1.0, bits=8, num_clients=3)
    training = {"config/lr": 0.1}

    def digest(rotation: Rotation) -> bytes:
        parameters = {**training, **rotation.descriptor_parameters()}
        return SessionDescriptor.create(config, server_round=4, parameters=parameters).digest()

    # Execute
    base = digest(Rotation(SEED, 1000))

    # Assert: a server that rotated one hospital differently puts it in another session
    assert digest(Rotation(SEED, 1000)) == base
    assert digest(Rotation(bytes(32), 1000)) != base
    assert digest(Rotation(SEED, 1000, 256)) != base
    assert digest(Rotation(SEED, 999)) != base


@pytest.mark.parametrize(
    ("seed", "dimension", "block"),
    [
        (bytes(31), 10, None),
        (bytes(32), 0, None),
        (bytes(32), 10, 3),
        (bytes(32), 10, 0),
        (bytes(32), 1 << 32, None),
    ],
)
def test_bad_parameters_are_refused(seed: bytes, dimension: int, block: int | None) -> None:
    # Execute / Assert
    with pytest.raises(ConfigurationError):
        Rotation(seed, dimension, block)


@pytest.mark.parametrize(
    "value",
    [np.zeros(9), np.zeros((2, 4)), np.array([1.0, np.nan, 0, 0, 0, 0, 0, 0]), ["a"] * 8],
)
def test_bad_vectors_are_refused(value: object) -> None:
    # Prepare
    rotation = Rotation(SEED, 8)

    # Execute / Assert
    with pytest.raises(ConfigurationError):
        rotation.forward(value)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        rotation.inverse(value)  # type: ignore[arg-type]
