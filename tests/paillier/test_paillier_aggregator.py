"""fl_core's Paillier aggregator: bit-for-bit equal to the plain quantized aggregator."""

from __future__ import annotations

import numpy as np
import pytest

from fl_core.aggregators import Aggregator, ClientUpdate, DropoutStage, WeightedQuantizer, make_aggregator
from fl_core.aggregators.paillier import PaillierAggregator, paillier_shape
from fl_core.aggregators.plain import QuantizedPlainAggregator
from secagg.encoding import smallest_ring_bits
from secagg.errors import ConfigurationError
from secagg.primitives.randomness import InsecureDeterministicRandom

from .helpers import threshold_material


def _updates(sizes: tuple[int, ...] = (30, 5, 120, 64, 9), length: int = 50, seed: int = 0) -> list[ClientUpdate]:
    rng = np.random.default_rng(seed)
    return [ClientUpdate(client, rng.uniform(-0.6, 0.6, size=length), size) for client, size in enumerate(sizes)]


def _aggregators(quantizer: WeightedQuantizer, key_bits: int = 512, **options: object) -> tuple[Aggregator, Aggregator]:
    parties = quantizer.config.num_clients
    threshold, _ = paillier_shape(parties, options.get("threshold"), None)  # type: ignore[arg-type]
    paillier = PaillierAggregator(
        quantizer,
        insecure_small_key=True,
        key_material=threshold_material(key_bits, parties, threshold),
        random_bytes=InsecureDeterministicRandom(3),
        **options,  # type: ignore[arg-type]
    )
    return paillier, QuantizedPlainAggregator(quantizer)


@pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")
@pytest.mark.parametrize(
    "dropouts",
    [
        {},
        {1: DropoutStage.UPLOAD, 3: DropoutStage.FINALIZE},
        {0: DropoutStage.JOIN, 4: DropoutStage.SETUP},
    ],
)
def test_paillier_mean_equals_plain_quantized_bit_for_bit(dropouts: dict[int, DropoutStage]) -> None:
    # Prepare: the same round, the same generator state for both aggregators; 3-of-5 (not the
    # default 4-of-5, which survives one dropout) so that two hospitals can drop
    quantizer = WeightedQuantizer.create(5, clip=0.5, bits=16)
    paillier, plain = _aggregators(quantizer, threshold=3)
    updates = _updates()
    # Execute
    secure = paillier.aggregate(updates, dropouts, rng=np.random.default_rng(7))
    reference = plain.aggregate(updates, dropouts, rng=np.random.default_rng(7))
    # Assert
    assert secure.mean is not None and reference.mean is not None
    assert secure.included == reference.included
    np.testing.assert_array_equal(secure.mean, reference.mean)
    assert secure.bytes_per_client > 0


@pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")
def test_wide_values_are_split_into_limbs_and_still_exact() -> None:
    # Prepare: 64-bit-ring moments-style quantization (values far wider than one slot)
    quantizer = WeightedQuantizer.create(3, clip=4.0, bits=50, ring_bits=64, max_samples_per_client=1000)
    paillier, plain = _aggregators(quantizer, key_bits=384)
    assert isinstance(paillier, PaillierAggregator) and paillier.split
    updates = [ClientUpdate(c, np.linspace(-5, 5, 17) * (c + 1), 1000 - c) for c in range(3)]
    # Execute
    secure = paillier.aggregate(updates, {}, rng=np.random.default_rng(1))
    reference = plain.aggregate(updates, {}, rng=np.random.default_rng(1))
    # Assert
    assert secure.mean is not None and reference.mean is not None
    np.testing.assert_array_equal(secure.mean, reference.mean)


@pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")
def test_too_few_decrypting_hospitals_skip_the_round_with_a_reason() -> None:
    quantizer = WeightedQuantizer.create(5, clip=0.5, bits=16)
    paillier, _ = _aggregators(quantizer)
    dropouts = {0: DropoutStage.FINALIZE, 1: DropoutStage.FINALIZE}
    result = paillier.aggregate(_updates(), dropouts, rng=np.random.default_rng(0))
    assert result.skipped
    assert "4 partial decryptions are needed" in str(result.skipped_reason)


def test_insecure_small_key_warns_and_make_aggregator_builds_it() -> None:
    # Execute: a real (small) ceremony through the factory, as the demo does
    with pytest.warns(UserWarning, match="NOT secure"):
        aggregator = make_aggregator("paillier", num_clients=3, insecure_small_key=True, key_bits=256)
    # Assert
    assert isinstance(aggregator, PaillierAggregator)
    assert aggregator.name == "paillier"
    assert aggregator.describe()["key_bits"] == 256
    result = aggregator.aggregate(_updates(sizes=(3, 4, 5), length=10), rng=np.random.default_rng(0))
    assert result.mean is not None


@pytest.mark.production_policy
def test_small_keys_need_the_insecure_option() -> None:
    quantizer = WeightedQuantizer.create(3)
    with pytest.raises(ConfigurationError, match="below the minimum"):
        PaillierAggregator(quantizer, key_bits=1024)


@pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")
@pytest.mark.filterwarnings("ignore::secagg.segments.ClippingWarning")
def test_weighted_slots_are_one_bit_above_the_ring_and_exact_at_the_extremes() -> None:
    # Prepare: weighted FedAvg, max_samples_per_client = 5000; every hospital at the weight bound
    # with every coordinate clipped to +clip or -clip, so every encoding is +W q or -W q
    quantizer = WeightedQuantizer.create(5, clip=0.5, bits=16, max_samples_per_client=5000)
    paillier, plain = _aggregators(quantizer)
    assert isinstance(paillier, PaillierAggregator) and not paillier.split
    config = quantizer.config
    assert paillier.layout.width == smallest_ring_bits(16, 5, 5000) + 1 == 32
    assert paillier.layout.offset == config.max_weight * config.qmax
    signs = np.where(np.arange(40) % 3 == 0, -1.0, 1.0)
    updates = [ClientUpdate(c, signs * 9.0, 5000) for c in range(5)]
    # Execute
    secure = paillier.aggregate(updates, {}, rng=np.random.default_rng(2))
    reference = plain.aggregate(updates, {}, rng=np.random.default_rng(2))
    # Assert
    assert secure.mean is not None and reference.mean is not None
    np.testing.assert_array_equal(secure.mean, reference.mean)
    np.testing.assert_array_equal(secure.mean, signs * 0.5)


@pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")
def test_a_round_of_fewer_hospitals_than_min_contributors_is_skipped_with_the_reason() -> None:
    # Prepare: a 4-of-5 key (min_contributors 4); only three hospitals take part in this round
    paillier, _ = _aggregators(WeightedQuantizer.create(5), key_bits=256, threshold=4)
    assert isinstance(paillier, PaillierAggregator) and paillier.min_contributors == 4
    # Execute: the session's roster is the three (round_parameters caps min_contributors at the roster)
    result = paillier.aggregate(_updates(sizes=(30, 5, 120), length=6), rng=np.random.default_rng(1))
    # Assert: skipped for the round with why, not refused as a malformed session of 3 needing 4
    assert result.mean is None
    assert result.skipped_reason == "paillier: 3 hospitals uploaded; at least 4 are needed"
