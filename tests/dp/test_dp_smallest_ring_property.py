"""``size_encoding(..., ring_bits="smallest")`` over many plans: never too small, never a bit too wide.

For any (n, d, clip, epsilon, samples, h) the DP calibration takes, the picked Z_(2^b) holds the
worst case of the sum the protocols compute: ``n`` hospitals' encodings each at ``qmax`` (every
encoding is refused beyond it, its own noise included: :func:`secagg.dp.encoding.noised_encoding`)
plus the noise tail bound of all ``n`` (not h) contributors, :func:`secagg.dp.noise_tail_bound`
at its stated probability, the same check an explicit width gets; at b - 1 that check refuses.
And the picked ring is bound into the masking session: a hospital that sized its ring another
way (``"word"``) is refused at setup (tests/masking/split_session.py).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fl_core.aggregators.base import ClientUpdate
from fl_core.aggregators.masking import MaskingAggregator
from fl_core.dp_build import make_dp_aggregator
from secagg.dp import DPConfig, noise_tail_bound
from secagg.dp.calibration import TAIL_PROBABILITY
from secagg.dp.encoding import dp_quantization, size_encoding
from secagg.errors import ConfigurationError
from secagg.masking import ACTIVE, MaskingConfig
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.primitives.signing import SigningKey
from tests.masking.split_session import assert_honest_completes, assert_split_fails, bound_config, split_session

Case = tuple[DPConfig, int, int, int]
"""A DP configuration with its (n, d, samples)."""


@st.composite
def _plans(draw: st.DrawFn) -> Case:
    """A DP configuration with its (n, d, samples)."""
    n = draw(st.integers(1, 64))
    config = DPConfig(
        epsilon=draw(st.floats(0.1, 10.0)),
        delta=1e-5,
        rounds=draw(st.integers(1, 8)),
        l2_clip=draw(st.floats(0.01, 10.0)),
        min_honest=draw(st.integers(1, n)),
    )
    return config, n, draw(st.integers(1, 100_000)), draw(st.integers(1, 4096))


@settings(max_examples=20, deadline=None)
@given(_plans())
def test_the_smallest_ring_holds_the_worst_sum_and_one_bit_less_is_refused(case: Case) -> None:
    # Prepare: the plan, sized at the widest ring (a configuration nothing holds is not this test's)
    config, n, d, samples = case
    try:
        plan, widest, tail = dp_quantization(config, num_clients=n, dimension=d, max_samples_per_client=samples,
                                             ring_bits=64)
    except ConfigurationError:
        assume(False)
        raise

    # Execute
    smallest, smallest_tail = size_encoding(plan, num_clients=n, max_samples_per_client=samples, ring_bits="smallest")

    # Verify: the same encoding and tail as any width; the tail is all n contributors' at 2^-40
    b = smallest.ring_bits
    assert dataclasses.replace(widest, ring_bits=b) == smallest
    assert smallest_tail == tail == noise_tail_bound(plan, n, TAIL_PROBABILITY) >= noise_tail_bound(plan, config.honest)
    # the worst sum (n encodings at +-qmax, each refused beyond it) plus the tail fits Z_(2^b) signed
    assert n * smallest.qmax + tail <= (1 << (b - 1)) - 1 and smallest.bits <= b - 1
    assert size_encoding(plan, num_clients=n, max_samples_per_client=samples, ring_bits=b)[0] == smallest
    word = size_encoding(plan, num_clients=n, max_samples_per_client=samples, ring_bits="word")[0].ring_bits
    assert 8 <= b <= word
    if b > 8:  # one past the bound: the explicit width's own check refuses it
        assert n * smallest.qmax + tail > (1 << (b - 2)) - 1 or smallest.bits > b - 2
        with pytest.raises(ConfigurationError, match="DP encoding could overflow"):
            size_encoding(plan, num_clients=n, max_samples_per_client=samples, ring_bits=b - 1)


N, D, SAMPLES = 4, 6, 8
DP = DPConfig(epsilon=3.0, delta=1e-5, rounds=4, l2_clip=1.0, min_honest=2)


def _bound_round(ring_bits: str) -> tuple[MaskingConfig, dict[int, SigningKey]]:
    """The masking configuration an (active) DP secagg round binds with the ring chosen by
    ``ring_bits``, and the hospitals' signing keys (the same hospitals: one deterministic source)."""
    aggregator = make_dp_aggregator(
        "secagg", DP, num_clients=N, dimension=D, max_samples_per_client=SAMPLES, ring_bits=ring_bits, run_id=7,
        mode=ACTIVE, random_bytes=InsecureDeterministicRandom(b"hospitals"),
    )  # fmt: skip
    inner = aggregator.inner
    assert isinstance(inner, MaskingAggregator)
    updates = [ClientUpdate(i, np.random.default_rng(i).uniform(-0.1, 0.1, D), SAMPLES) for i in range(1, N + 1)]
    hospitals = tuple(range(1, N + 1))
    return bound_config(inner, lambda: aggregator.aggregate(updates, {}, rng=np.random.default_rng(0)), hospitals)


def test_a_hospital_that_sized_another_ring_is_refused_at_setup() -> None:
    # Prepare: the round the others bind (the smallest ring) and the one a hospital on "word" binds
    (base, keys), (other, _) = _bound_round("smallest"), _bound_round("word")
    assert base.ring_bits < other.ring_bits

    # Execute / Verify: the split hospital is in another session; the others' sum stays exact
    assert other.digest() != base.digest()
    assert_split_fails(split_session(base, other, signing_keys=keys), base)
    assert_honest_completes(base, signing_keys=keys)
