"""The PRG (secagg.primitives.prg): pinned output, independent re-derivation of
the construction in the module docstring, and add_expansion == expand across
chunk boundaries in both rings."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import ConfigurationError
from secagg.primitives import prg
from secagg.ring import RING32, RING64, Ring

RINGS = [pytest.param(RING32, id="ring32"), pytest.param(RING64, id="ring64")]

PIN_SEED = bytes(range(32))
PIN_LABEL = b"test-vector"
# Computed once with secagg.primitives.prg.expand(PIN_SEED, PIN_LABEL, 6, RING32);
# test_pinned_bytes_follow_the_documented_construction checks it against the spec.
PIN_KEYSTREAM_24_BYTES = "1ffeb749593de67acd51f288a6fbb8885a4961ed491fc31e"
PIN_RING32 = [0x49B7FE1F, 0x7AE63D59, 0x88F251CD, 0x88B8FBA6, 0xED61495A, 0x1EC31F49]
PIN_RING64 = [0x7AE63D5949B7FE1F, 0x88B8FBA688F251CD, 0x1EC31F49ED61495A]


def reference_keystream(seed: bytes, label: bytes, nbytes: int) -> bytes:
    """The docstring's construction, written directly against ``cryptography``:
    key = HKDF-SHA256(seed, salt=b"", info=b"secagg/v1/prg:" || label, 16),
    stream = AES-128-CTR(key, 16 zero bytes) applied to zeros."""
    key = HKDF(algorithm=hashes.SHA256(), length=16, salt=b"", info=b"secagg/v1/prg:" + label).derive(seed)
    encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    return encryptor.update(bytes(nbytes)) + encryptor.finalize()


def reference_expand(seed: bytes, label: bytes, length: int, ring: Ring) -> np.ndarray:
    dtype = "<u4" if ring.bits == 32 else "<u8"
    return np.frombuffer(reference_keystream(seed, label, length * ring.bits // 8), dtype=dtype)


def chunk_lengths(ring: Ring) -> list[int]:
    """Lengths around the chunk size: empty, one, and either side of 1 and 2 chunks."""
    per_chunk = prg.CHUNK_BYTES // ring.element_size
    return [0, 1, 3, per_chunk - 1, per_chunk, per_chunk + 1, 2 * per_chunk + 5]


def test_pinned_bytes_follow_the_documented_construction() -> None:
    # Execute
    reference = reference_keystream(PIN_SEED, PIN_LABEL, 24)

    # Assert
    assert reference.hex() == PIN_KEYSTREAM_24_BYTES


def test_expand_matches_the_pinned_output_in_both_rings() -> None:
    # Execute
    words32 = prg.expand(PIN_SEED, PIN_LABEL, 6, RING32)
    words64 = prg.expand(PIN_SEED, PIN_LABEL, 3, RING64)

    # Assert
    assert words32.dtype == np.dtype("<u4")
    assert words64.dtype == np.dtype("<u8")
    assert [int(w) for w in words32] == PIN_RING32
    assert [int(w) for w in words64] == PIN_RING64
    assert words32.tobytes().hex() == PIN_KEYSTREAM_24_BYTES


@pytest.mark.parametrize("ring", RINGS)
@pytest.mark.parametrize("length", [0, 1, 3, 4, 5, 1000, 70_001])
def test_expand_equals_independent_reference(ring: Ring, length: int) -> None:
    # Prepare
    seed = bytes(range(100, 132))

    # Execute
    words = prg.expand(seed, b"mask", length, ring)

    # Assert
    assert words.shape == (length,)
    assert words.dtype == ring.dtype
    np.testing.assert_array_equal(words, reference_expand(seed, b"mask", length, ring))


@given(seed=st.binary(min_size=32, max_size=32), label=st.binary(min_size=1, max_size=40),
       length=st.integers(0, 300))
def test_expand_equals_reference_for_random_seeds_and_labels(seed: bytes, label: bytes, length: int) -> None:
    # Execute
    words = prg.expand(seed, label, length, RING32)

    # Assert
    np.testing.assert_array_equal(words, reference_expand(seed, label, length, RING32))


@pytest.mark.parametrize("ring", RINGS)
def test_shorter_expansion_is_a_prefix_of_a_longer_one(ring: Ring) -> None:
    # Execute
    short = prg.expand(PIN_SEED, b"mask", 17, ring)
    long = prg.expand(PIN_SEED, b"mask", 1000, ring)

    # Assert
    np.testing.assert_array_equal(short, long[:17])


def test_labels_and_seeds_separate_the_streams() -> None:
    # Prepare
    other_seed = bytes(31) + b"\x01"

    # Execute
    base = prg.expand(PIN_SEED, b"mask", 8, RING32)
    other_label = prg.expand(PIN_SEED, b"self-mask", 8, RING32)
    other_stream = prg.expand(other_seed, b"mask", 8, RING32)

    # Assert
    assert not np.array_equal(base, other_label)
    assert not np.array_equal(base, other_stream)


@pytest.mark.parametrize("ring", RINGS)
@pytest.mark.parametrize("subtract", [False, True], ids=["add", "subtract"])
def test_add_expansion_equals_expand_across_chunk_boundaries(ring: Ring, subtract: bool) -> None:
    for length in chunk_lengths(ring):
        # Prepare
        rng = np.random.default_rng(length)
        start = rng.integers(0, ring.modulus, size=length, dtype=ring.dtype)
        target = start.copy()
        mask = prg.expand(PIN_SEED, b"mask", length, ring)

        # Execute
        prg.add_expansion(target, PIN_SEED, b"mask", subtract=subtract)

        # Assert: numpy unsigned arithmetic wraps mod 2^bits, as the ring does.
        expected = start - mask if subtract else start + mask
        np.testing.assert_array_equal(target, expected, err_msg=f"length {length}")


@pytest.mark.parametrize("ring", RINGS)
def test_add_then_subtract_restores_the_target(ring: Ring) -> None:
    # Prepare
    length = 2 * prg.CHUNK_BYTES // ring.element_size + 7
    original = np.arange(length, dtype=ring.dtype)
    target = original.copy()

    # Execute
    prg.add_expansion(target, PIN_SEED, b"mask")
    masked = target.copy()
    prg.add_expansion(target, PIN_SEED, b"mask", subtract=True)

    # Assert
    assert not np.array_equal(masked, original)
    np.testing.assert_array_equal(target, original)


@pytest.mark.parametrize(
    ("seed", "label", "length"),
    [
        pytest.param(bytes(31), b"mask", 4, id="short-seed"),
        pytest.param(bytes(33), b"mask", 4, id="long-seed"),
        pytest.param(bytes(32), b"", 4, id="empty-label"),
        pytest.param(bytes(32), b"mask", -1, id="negative-length"),
    ],
)
def test_expand_refuses_bad_arguments(seed: bytes, label: bytes, length: int) -> None:
    # Execute / Assert
    with pytest.raises(ConfigurationError):
        prg.expand(seed, label, length, RING32)


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(np.zeros((2, 3), dtype=np.uint32), id="2-d"),
        pytest.param(np.zeros(8, dtype=np.uint32)[::2], id="non-contiguous"),
        pytest.param(np.zeros(4, dtype=np.int32), id="signed"),
        pytest.param(np.zeros(4, dtype=np.float64), id="float"),
        pytest.param(np.zeros(4, dtype=np.uint16), id="uint16"),
    ],
)
def test_add_expansion_refuses_bad_targets(target: np.ndarray) -> None:
    # Execute / Assert
    with pytest.raises(ConfigurationError):
        prg.add_expansion(target, PIN_SEED, b"mask")


def test_add_expansion_refuses_a_read_only_target() -> None:
    # Prepare
    target = np.zeros(4, dtype=np.uint32)
    target.setflags(write=False)

    # Execute / Assert
    with pytest.raises(ConfigurationError):
        prg.add_expansion(target, PIN_SEED, b"mask")


def test_add_expansion_refuses_a_bad_seed() -> None:
    # Prepare
    target = np.zeros(4, dtype=np.uint64)

    # Execute / Assert
    with pytest.raises(ConfigurationError):
        prg.add_expansion(target, bytes(16), b"mask")
    np.testing.assert_array_equal(target, 0)
