"""The packing layout of fl_core's Paillier aggregator holds its worst case exactly ("exact or refused").

Worst case: every one of the N hospitals at ``max_samples_per_client`` with every quantized
coordinate at +qmax (or -qmax), so every encoded value is +-max_weight * qmax; in DP mode every
hospital's noised coordinate at the encoding's range qmax (noise included: a hospital refuses to
send a value beyond it). The sum of N such encodings must decode exactly; one more than the
bound (a value, a summand, a count, or a slot one bit narrower) must be refused.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from fl_core.aggregators import ClientUpdate, WeightedQuantizer
from fl_core.aggregators.paillier import PaillierAggregator, join_limbs, packing_layout, split_limbs
from fl_core.aggregators.plain import QuantizedPlainAggregator
from secagg.dp import DPConfig, NoisePlan
from secagg.dp.encoding import size_encoding
from secagg.encoding import QuantizationConfig
from secagg.errors import ConfigurationError, EncodeError, OverflowDetectedError
from secagg.paillier import SlotLayout, pack, unpack
from secagg.primitives.randomness import InsecureDeterministicRandom

from .helpers import threshold_material

KEY_BITS = 3072


def _dp_config(hospitals: int) -> QuantizationConfig:
    # A plan with a given variance (calibrating one takes seconds; the sizing rule is the same)
    config = DPConfig(epsilon=3.0, delta=1e-5, rounds=4, l2_clip=1.0, min_honest=2)
    plan = NoisePlan(config=config, variance=Fraction(11817344), num_clients=hospitals, dimension=31, scale=1024.0)
    quantization, _ = size_encoding(plan, num_clients=hospitals, max_samples_per_client=100)
    assert quantization.max_weight == 1  # a DP encoding is one noised sum: |e| <= qmax, noise included
    return quantization


CONFIGS = {
    "weighted, default bound": lambda: WeightedQuantizer.create(5, clip=0.5, bits=16).config,
    "weighted, 5000 samples": lambda: WeightedQuantizer.create(
        5, clip=0.5, bits=16, max_samples_per_client=5000
    ).config,
    "weighted, 1000 hospitals": lambda: WeightedQuantizer.create(
        1000, clip=0.5, bits=20, max_samples_per_client=100_000
    ).config,
    "DP, noise included": lambda: _dp_config(5),
}


def _summed(values: np.ndarray, layout: SlotLayout, count: int) -> list[int]:
    """The plaintexts of ``count`` hospitals that all packed ``values`` (their sum, as decrypted)."""
    return [count * plaintext for plaintext in pack(values, layout)]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_hospital_at_the_bound_sums_exactly_and_one_past_it_is_refused(name: str) -> None:
    # Prepare: the layout the aggregator (and the byte budget) uses for N hospitals
    config = CONFIGS[name]()
    hospitals = config.num_clients
    layout, split = packing_layout(config, hospitals, KEY_BITS)
    bound = config.max_weight * config.qmax
    assert not split
    assert (layout.value_min, layout.value_max) == (-bound, bound)
    extremes = np.array([bound, -bound, bound, 0, -bound], dtype=np.int64)
    # Execute / Assert: N hospitals at +-B decode exactly (no carry between slots)
    for values in (np.full(5, bound, dtype=np.int64), np.full(5, -bound, dtype=np.int64), extremes):
        np.testing.assert_array_equal(unpack(_summed(values, layout, hospitals), layout, 5, hospitals),
                                      hospitals * values)
    # One past the bound: a value B + 1, an (N+1)-th summand at +B, a slot one bit narrower
    with pytest.raises(EncodeError):
        pack(np.array([bound + 1], dtype=np.int64), layout)
    with pytest.raises(OverflowDetectedError):
        unpack(_summed(np.full(5, bound, dtype=np.int64), layout, hospitals + 1), layout, 5, hospitals)
    with pytest.raises(ConfigurationError, match="could carry"):
        SlotLayout.bounded(bound, hospitals, KEY_BITS, slot_bits=layout.width - 1)


def test_wide_values_split_into_limbs_sum_exactly_at_the_bound() -> None:
    # Prepare: values too wide for one slot (the feature moments' 64-bit ring)
    config = WeightedQuantizer.create(3, clip=4.0, bits=50, ring_bits=64, max_samples_per_client=1000).config
    layout, split = packing_layout(config, 3, KEY_BITS)
    bound = config.max_weight * config.qmax
    assert split
    for value in (bound, -bound):
        limbs = split_limbs(np.full(4, value, dtype=np.int64))
        # Execute: three hospitals at the bound, each limb summed in its own slot
        sums = unpack(_summed(limbs, layout, 3), layout, 8, 3)
        # Assert
        np.testing.assert_array_equal(join_limbs(sums), np.full(4, 3 * value))


@pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")
@pytest.mark.filterwarnings("ignore::secagg.segments.ClippingWarning")
def test_clipped_counts_fill_the_slot_at_the_bound_and_a_longer_segment_is_refused() -> None:
    # Prepare: qmax = 1 and at most 4 samples: B = 4, so a segment's clipped count (one per
    # coordinate) fits a slot up to 4 coordinates; every coordinate of every hospital is clipped
    quantizer = WeightedQuantizer.create(3, clip=0.5, bits=2, max_samples_per_client=4)
    bound = quantizer.config.max_weight * quantizer.config.qmax
    assert bound == 4
    paillier = PaillierAggregator(
        quantizer, insecure_small_key=True, key_material=threshold_material(256, 3, 2),
        random_bytes=InsecureDeterministicRandom(3), clipping="fixed",
    )

    def updates(length: int) -> list[ClientUpdate]:
        return [ClientUpdate(c, np.full(length, 9.0 * (-1) ** c), 4) for c in range(3)]

    # Execute / Assert: at the bound, exactly the plain sum, with 3 x 4 clipped coordinates
    result = paillier.aggregate(updates(bound), {}, rng=np.random.default_rng(0))
    reference = QuantizedPlainAggregator(quantizer).aggregate(updates(bound), {}, rng=np.random.default_rng(0))
    assert result.mean is not None and reference.mean is not None
    np.testing.assert_array_equal(result.mean, reference.mean)
    assert result.clipped_count == 3 * bound
    # One past: a segment of B + 1 coordinates could carry its count into the next slot
    with pytest.raises(ConfigurationError, match="packing slot"):
        paillier.aggregate(updates(bound + 1), {}, rng=np.random.default_rng(0))
