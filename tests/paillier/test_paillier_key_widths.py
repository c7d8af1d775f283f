"""Keys whose bit length is not a multiple of 8 (e.g. 2050 bits, accepted by the policy and the dealer).

Ciphertext words are ``2 * ceil(|n|/8)`` bytes on the wire, which for
``|n| = 1..4 mod 8`` is one byte more than ``ceil(bits(n^2)/8)``: every kernel
must cut blobs at the wire width, not at the width of n^2.
"""

from __future__ import annotations

import numpy as np
import pytest

from secagg.paillier import (
    SingleKeyMaterial,
    ThresholdKeyMaterial,
    deal_threshold_key_from_primes,
    insecure_key_sizes_for_testing,
    single_key_from_primes,
)
from secagg.paillier._compute import ints_to_blob, multiexp_chunk, power_chunk, product_chunk
from secagg.paillier.session import Mode, PaillierConfig, run_session
from secagg.primitives.randomness import InsecureDeterministicRandom

# Safe primes of 69 bits (top two bits set): n has 138 bits, 2 * ceil(138/8) = 36 > ceil(276/8) = 35.
SAFE_138 = (442721857769029239503, 442721857769029241387)
# Ordinary primes of 69 bits for the single-key mode: n has 138 bits too.
PRIMES_138 = (442721857769029238797, 442721857769029239901)


def _material(mode: Mode) -> ThresholdKeyMaterial | SingleKeyMaterial:
    with insecure_key_sizes_for_testing():
        if mode is Mode.THRESHOLD:
            return deal_threshold_key_from_primes(
                *SAFE_138, num_parties=3, threshold=2, random_bytes=InsecureDeterministicRandom(1)
            )
        return single_key_from_primes(*PRIMES_138, random_bytes=InsecureDeterministicRandom(1))


@pytest.mark.parametrize("mode", [Mode.THRESHOLD, Mode.SINGLE_KEY])
def test_a_session_under_a_key_of_138_bits_gives_the_exact_sum(mode: Mode) -> None:
    # Prepare
    material = _material(mode)
    key = material.public.key
    assert key.key_bits == 138 and key.ciphertext_bytes == 36 and (key.nsquare.bit_length() + 7) // 8 == 35
    config = PaillierConfig(
        num_clients=3, vector_length=9, value_bits=8, key_bits=138, mode=mode, allow_insecure_key_bits_for_testing=True
    )
    inputs = {c: np.arange(9, dtype=np.int64) * c - 60 for c in (1, 2, 3)}
    # Execute
    result = run_session(config, inputs, key_material=material, random_bytes=InsecureDeterministicRandom(2))
    # Assert
    assert result.aggregate.tolist() == sum(inputs.values()).tolist()


def test_kernels_cut_blobs_at_the_wire_width_of_a_138_bit_key() -> None:
    # Prepare: words below n^2 written at the wire width, 36 bytes
    key = _material(Mode.THRESHOLD).public.key
    nsquare, width = key.nsquare, key.ciphertext_bytes
    a = [nsquare - 2, 3, nsquare // 3]
    b = [5, nsquare - 7, 11]
    # Execute
    product = product_chunk((nsquare, [ints_to_blob(a, width), ints_to_blob(b, width)]))
    power = power_chunk((nsquare, 65537, ints_to_blob(a, width), False))
    weights = bytes(15) + b"\x02" + bytes(15) + b"\x03" + bytes(15) + b"\x05"
    multiexp = multiexp_chunk((nsquare, ints_to_blob(a, width), weights, 16))
    # Assert
    assert product == ints_to_blob([x * y % nsquare for x, y in zip(a, b, strict=True)], width)
    assert power == ints_to_blob([pow(x, 65537, nsquare) for x in a], width)
    expected = pow(a[0], 2, nsquare) * pow(a[1], 3, nsquare) * pow(a[2], 5, nsquare) % nsquare
    assert int.from_bytes(multiexp, "big") == expected and len(multiexp) == width
