"""``ring_bits="smallest"`` with ``dp=``: the smallest Z_(2^b), b in 8..64, that holds the noised sum.

It was refused by name ("with dp, ring_bits takes an int in 8..64 or 'word'") though any b in
8..64 was taken as an int, so the caller had to work out by hand the ring the DP sizing checks.
The pick is exact: at b the sum of ``num_clients`` encodings at ``qmax`` plus the noise's tail
bound (:func:`secagg.dp.noise_tail_bound`, at the stated per-coordinate tail probability) fits
``2^(b-1) - 1``; at b - 1 it does not, and an explicit ``ring_bits=b - 1`` is refused as an
overflow. Without dp, ``"smallest"`` was already taken (docs/fedavg.md, "Narrow rings").
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fl_core.aggregators import make_aggregator
from fl_core.aggregators.base import ClientUpdate
from fl_core.dp import DPAggregator
from secagg.dp import DPConfig, SeededRandomSource, noise_tail_bound
from secagg.dp.encoding import dp_quantization, size_encoding
from secagg.errors import ConfigurationError

DP = DPConfig(epsilon=3.0, delta=1e-5, rounds=4, l2_clip=1.0, min_honest=4)
N, D, SAMPLES = 4, 6, 8  # 4 x qmax = 2^(bits+1) - 4: any tail above 3 needs one bit more


def _fits(total: int, bits: int, ring_bits: int) -> bool:
    return total <= (1 << (ring_bits - 1)) - 1 and bits <= ring_bits - 1


def test_size_encoding_smallest_is_the_least_ring_holding_the_noised_sum() -> None:
    # Prepare: a plan and the word ring's encoding of the same sum
    plan, word, tail = dp_quantization(DP, num_clients=N, dimension=D, max_samples_per_client=SAMPLES)

    # Execute
    smallest, smallest_tail = size_encoding(plan, num_clients=N, max_samples_per_client=SAMPLES, ring_bits="smallest")

    # Verify: the same encoding but its ring; the noise tail counted; the bound and one past it
    b = smallest.ring_bits
    total = N * smallest.qmax + noise_tail_bound(plan, N)
    assert smallest_tail == tail == noise_tail_bound(plan, N) > 0
    assert dataclasses.replace(word, ring_bits=b) == smallest
    assert 8 <= b < word.ring_bits
    assert _fits(total, smallest.bits, b) and not _fits(total, smallest.bits, b - 1)
    with pytest.raises(ConfigurationError, match="DP encoding could overflow"):
        size_encoding(plan, num_clients=N, max_samples_per_client=SAMPLES, ring_bits=b - 1)


def test_the_noise_tail_alone_can_decide_the_smallest_ring() -> None:
    # Prepare: four hospitals, whose clipped sums alone fill Z_(2^b) to 3 below its top
    plan, _, _ = dp_quantization(DP, num_clients=N, dimension=D, max_samples_per_client=SAMPLES)
    smallest, tail = size_encoding(plan, num_clients=N, max_samples_per_client=SAMPLES, ring_bits="smallest")
    unnoised = next(b for b in range(8, 65) if _fits(N * smallest.qmax, smallest.bits, b))

    # Verify: the ring that holds the un-noised sum would wrap on the noise; the pick is one bit wider
    assert tail > 3 and not _fits(N * smallest.qmax + tail, smallest.bits, unnoised)
    assert smallest.ring_bits == unnoised + 1


def test_make_aggregator_takes_smallest_with_dp_and_sums_exactly() -> None:
    # Prepare: the same DP round in the word ring and in the smallest, the same noise and rounding
    def build(ring_bits: str) -> DPAggregator:
        aggregator = make_aggregator(
            "plain-quantized", num_clients=N, dimension=D, dp=DP, max_samples_per_client=SAMPLES,
            ring_bits=ring_bits, noise_source=SeededRandomSource(bytes(32)),
        )  # fmt: skip
        assert isinstance(aggregator, DPAggregator)
        return aggregator

    word, smallest = build("word"), build("smallest")
    updates = [ClientUpdate(i, np.random.default_rng(i).uniform(-0.1, 0.1, D), SAMPLES) for i in range(1, N + 1)]

    # Execute
    a = word.aggregate(updates, {}, rng=np.random.default_rng(0))
    b = smallest.aggregate(updates, {}, rng=np.random.default_rng(0))

    # Verify: a narrower ring, the same noised mean to the bit (no wrap), each round charged once
    assert smallest.quantizer.config.ring_bits < word.quantizer.config.ring_bits
    assert a.mean is not None and b.mean is not None
    assert np.array_equal(a.mean, b.mean)
    assert smallest.accountant.num_releases == 1


def test_with_dp_another_ring_name_is_refused_naming_what_is_taken() -> None:
    # Execute / Verify: a name that is neither is refused, the message listing both names
    taken = r"ring_bits takes an int in 8\.\.64, 'word' .* or 'smallest'"
    with pytest.raises(ConfigurationError, match=f"with dp, {taken}"):
        make_aggregator("plain-quantized", num_clients=N, dimension=D, dp=DP, ring_bits="narrowest")
    plan, _, _ = dp_quantization(DP, num_clients=N, dimension=D, max_samples_per_client=SAMPLES)
    with pytest.raises(ConfigurationError, match=taken):
        size_encoding(plan, num_clients=N, max_samples_per_client=SAMPLES, ring_bits="64")
