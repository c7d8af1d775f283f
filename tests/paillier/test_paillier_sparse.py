"""Partial updates through the Paillier aggregator: fewer ciphertexts, the same exact sum."""

from __future__ import annotations

import numpy as np
import pytest

from fl_core.aggregators import ClientUpdate, DropoutStage, WeightedQuantizer
from fl_core.aggregators.paillier import PaillierAggregator
from fl_core.aggregators.plain import QuantizedPlainAggregator
from fl_core.budget import choose
from fl_core.compression import CompressionConfig, SparseAggregator, protected_update_bytes
from secagg.errors import ConfigurationError
from secagg.primitives.randomness import InsecureDeterministicRandom

from .helpers import threshold_material


def _paillier(quantizer: WeightedQuantizer) -> PaillierAggregator:
    return PaillierAggregator(
        quantizer, insecure_small_key=True, key_material=threshold_material(512, 5, 4),
        random_bytes=InsecureDeterministicRandom(3),
    )  # fmt: skip


@pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")
def test_sparse_paillier_equals_sparse_plain_quantized_bit_for_bit() -> None:
    quantizer = WeightedQuantizer.create(5)
    compression = CompressionConfig(fraction=0.25)
    secure = SparseAggregator(_paillier(quantizer), compression)
    plain = SparseAggregator(QuantizedPlainAggregator(quantizer), compression)
    rng = np.random.default_rng(0)
    for round_ in range(2):
        updates = [ClientUpdate(c, rng.normal(0, 0.05, size=400), 20 + c) for c in range(5)]
        dropouts = {1: DropoutStage.UPLOAD} if round_ else {}
        a = secure.aggregate(updates, dropouts, rng=np.random.default_rng(round_))
        b = plain.aggregate(updates, dropouts, rng=np.random.default_rng(round_))
        assert a.mean is not None and b.mean is not None and a.included == b.included
        np.testing.assert_array_equal(a.mean, b.mean)
        assert np.count_nonzero(a.mean) <= 100
    # Fewer ciphertexts than the full vector needs: 101 values instead of 401.
    assert protected_update_bytes(secure, 100) < protected_update_bytes(secure.inner, 400)


@pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")
def test_a_budget_below_one_ciphertext_is_refused() -> None:
    sparse = SparseAggregator(
        _paillier(WeightedQuantizer.create(5)),
        CompressionConfig(bytes_per_parameter=1.0, option="--bytes-per-parameter"),
    )
    # One 512-bit-key ciphertext is 128 bytes: more than a 31-parameter model's 31-byte budget.
    with pytest.raises(ConfigurationError, match=r"--bytes-per-parameter 1 cannot be met with paillier.*128 bytes"):
        sparse.count(31)
    assert protected_update_bytes(sparse, sparse.count(4000)) <= 4000


@pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")
def test_a_budget_chosen_for_paillier_is_met_in_ciphertexts_and_sums_bit_exact() -> None:
    # Prepare: the budget's choice for a 512-bit key (ciphertexts of 128 bytes), applied to Paillier and to
    # the same encoding in the clear
    choice = choose(1.0, 2000, aggregation="paillier", num_clients=5, key_bits=512, option="--bytes-per-parameter")
    quantizer = WeightedQuantizer.create(5, bits=choice.bits, ring_bits=choice.ring_bits)
    secure = choice.wrap(_paillier(quantizer))
    clear = choice.wrap(QuantizedPlainAggregator(quantizer))
    rng = np.random.default_rng(0)
    for round_ in range(2):
        updates = [ClientUpdate(c, rng.normal(0, 0.05, size=2000), 20 + c) for c in range(5)]
        # Execute
        a = secure.aggregate(updates, rng=np.random.default_rng(round_))
        b = clear.aggregate(updates, rng=np.random.default_rng(round_))
        # Assert: bit for bit, and the ciphertexts are what the choice counted
        assert a.mean is not None and b.mean is not None
        np.testing.assert_array_equal(a.mean, b.mean)
    assert (choice.bits, choice.rotate) == (8, True) and choice.count < 2000
    assert protected_update_bytes(secure, choice.count) == choice.protected_bytes <= 2000
    assert choice.protected_bytes % 128 == 0
