"""The byte budget: its rule (bits, ring, rotation, sparsity), its bytes, its exactness and its binding."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fl_core import ClientUpdate, make_aggregator
from fl_core.budget import (
    MIN_BITS,
    BudgetChoice,
    budget_aggregator,
    choose,
    protected_bytes,
    rotation_block,
    subset_block,
)
from fl_core.compression import SparseAggregator, protected_update_bytes
from fl_core.rotated import RotatedAggregator
from fl_core.wrapping import innermost
from secagg.encoding import smallest_ring_bits
from secagg.errors import ConfigurationError
from secagg.masking import ACTIVE, SEMI_HONEST
from secagg.rotation import PARAMETER_PREFIX as ROTATION
from secagg.sparsity import PARAMETER_PREFIX as SPARSITY
from tests.masking import test_session_binding as binding

DIGITS, BREAST_CANCER = 2410, 62


def _choose(budget: float, dimension: int = DIGITS, **options: object) -> BudgetChoice:
    return choose(budget, dimension, aggregation="secagg+", num_clients=5, **options)  # type: ignore[arg-type]


def _full_bytes(bits: int, dimension: int) -> int:
    """Bytes of every coordinate at ``bits``, in the smallest ring, padded to the rotation's block below 16 bits."""
    ring = smallest_ring_bits(bits, 5, 4096)
    block = rotation_block(dimension)
    sent = dimension if bits == 16 else -(-dimension // block) * block
    return -(-ring * (sent + 2) // 8)


def test_a_generous_budget_keeps_16_bits_every_coordinate_and_no_rotation_in_the_smallest_ring() -> None:
    choice = _choose(4.0)
    assert (choice.bits, choice.rotate, choice.count) == (16, False, DIGITS)
    assert choice.ring_bits == smallest_ring_bits(16, 5, 4096) == 31  # not the word ring's 32
    assert choice.protected_bytes == -(-31 * (DIGITS + 2) // 8)


def test_bits_drop_before_coordinates_and_the_first_bits_that_fit_are_taken() -> None:
    # 3.8 bytes per parameter: 16 bits need 3.878, 14 bits (rotated, padded) 3.854, 13 bits 3.72
    choice = _choose(3.8)
    assert (choice.bits, choice.count, choice.rotate) == (13, DIGITS, True)
    assert _full_bytes(14, DIGITS) > 3.8 * DIGITS >= _full_bytes(13, DIGITS) == choice.protected_bytes
    assert choice.ring_bits == smallest_ring_bits(13, 5, 4096)
    assert choice.block == rotation_block(DIGITS) == 512  # 2,560 sent: 6% padding, within an eighth


def test_below_8_bits_the_budget_sends_a_subset_in_whole_rotation_blocks() -> None:
    choice = _choose(1.0)
    assert (choice.bits, choice.ring_bits, choice.rotate) == (MIN_BITS, 23, True)
    assert choice.count < DIGITS and choice.block is not None and choice.count % choice.block == 0
    # the largest count that fits unpadded is 836; whole blocks of 256 send 768 (at most an eighth fewer)
    assert -(-23 * (836 + 2) // 8) <= DIGITS < -(-23 * (837 + 2) // 8)
    assert (choice.count, choice.block) == (768, 256) and subset_block(836) == 256
    assert choice.protected_bytes == -(-23 * (768 + 2) // 8) <= DIGITS


@pytest.mark.parametrize("dimension", [BREAST_CANCER, DIGITS, 100_000])
def test_more_budget_never_buys_fewer_coordinates_or_bits(dimension: int) -> None:
    budgets = [0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 2.9, 3.0, 3.3, 3.6, 3.8, 4.0, 4.2, 8.0]
    choices = [_choose(budget, dimension) for budget in budgets]
    keys = [(c.count, c.bits) for c in choices]
    assert keys == sorted(keys)
    for budget, choice in zip(budgets, choices, strict=True):
        assert choice.protected_bytes <= budget * dimension
        assert choice.rotate == (choice.bits < 16) and choice.bits >= MIN_BITS
        if choice.count < dimension:
            assert choice.bits == MIN_BITS


def test_rotation_blocks_bound_padding_and_left_out_coordinates_by_an_eighth() -> None:
    assert [rotation_block(n) for n in (1, 62, 64, 65, 2410, 1_000_000)] == [1, 64, 64, 8, 512, 1 << 20]
    assert [subset_block(n) for n in (1, 18, 19, 826, 347_826)] == [1, 16, 2, 256, 65536]
    for n in range(1, 3000, 7):
        block = rotation_block(n)
        assert -(-n // block) * block - n <= n / 8
        assert n // subset_block(n) * subset_block(n) >= 7 * n / 8


def test_a_budget_not_even_one_coordinate_fits_is_refused_naming_the_option() -> None:
    with pytest.raises(ConfigurationError, match=r"--bytes-per-parameter 0\.1 cannot be met with secagg\+: even one "
                       r"coordinate at 8 bits in Z_\(2\^23\).*takes 9 bytes, 0\.145 bytes per parameter"):  # fmt: skip
        _choose(0.1, BREAST_CANCER, option="--bytes-per-parameter")
    for bad in (0, -1.0, float("nan"), float("inf"), True):
        with pytest.raises(ConfigurationError, match="bytes_per_parameter must be a positive"):
            _choose(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="applies to the quantized aggregations"):
        choose(1.0, DIGITS, aggregation="plain", num_clients=5)
    with pytest.raises(ConfigurationError, match="picks bits and ring_bits; do not give bits"):
        budget_aggregator("secagg+", 1.0, DIGITS, num_clients=5, bits=8)


def test_paillier_budgets_count_whole_ciphertexts_and_a_small_model_is_refused() -> None:
    pytest.importorskip("gmpy2")
    with pytest.raises(ConfigurationError, match=r"cannot be met with paillier: .*takes 768 bytes"):
        choose(1.0, BREAST_CANCER, aggregation="paillier", num_clients=5, key_bits=3072)
    choice = choose(1.0, DIGITS, aggregation="paillier", num_clients=5, key_bits=3072)
    # 3 ciphertexts of 768 bytes fit 2,410 bytes; 8-bit values take 24-bit slots, 127 to a plaintext
    assert choice.protected_bytes == 3 * 768 and choice.bits == MIN_BITS
    cost = protected_bytes("paillier", 8, 23, num_clients=5, max_samples_per_client=4096, key_bits=3072)
    assert cost(choice.count + 2) == 3 * 768 < cost(3 * 127 + 1)


def _updates(dimension: int, seed: int = 0) -> list[ClientUpdate]:
    rng = np.random.default_rng(seed)
    return [ClientUpdate(k, rng.normal(0, 0.05, dimension), num_samples=100 + k) for k in range(1, 6)]


@pytest.mark.parametrize("budget", [1.0, 3.0])
def test_the_secure_sum_is_bit_exact_against_the_same_compressed_encodings_in_the_clear(budget: float) -> None:
    # Prepare
    secure, choice = budget_aggregator("secagg+", budget, DIGITS, num_clients=5)
    clear, same = budget_aggregator("plain-quantized", budget, DIGITS, num_clients=5)
    assert choice == same and choice.rotate
    assert isinstance(secure, SparseAggregator) == (choice.count < DIGITS)
    # Execute: three rounds, so that residuals and the adaptive clip move
    for round_seed in range(3):
        updates = _updates(DIGITS, round_seed)
        a = secure.aggregate(updates, rng=np.random.default_rng(round_seed))
        b = clear.aggregate(updates, rng=np.random.default_rng(round_seed))
        # Assert: bit for bit, and the masked vector is what the choice said
        assert a.mean is not None and b.mean is not None and np.array_equal(a.mean, b.mean)
        assert b.bytes_per_client == choice.protected_bytes == protected_update_bytes(secure, choice.count)
        assert choice.protected_bytes <= budget * DIGITS < a.bytes_per_client
    assert 0 < np.count_nonzero(a.mean) <= choice.count


def test_every_chosen_value_is_bound_in_the_round_descriptor() -> None:
    secure, choice = budget_aggregator("secagg+", 1.0, DIGITS, num_clients=5)
    secure.aggregate(_updates(DIGITS), rng=np.random.default_rng(0))
    quantizer = secure.quantizer  # type: ignore[attr-defined]
    entries = dict(quantizer.parameters)
    assert entries[ROTATION + "block"] == choice.block and entries[ROTATION + "dimension"] == choice.count
    assert entries[SPARSITY + "count"] == choice.count and entries[SPARSITY + "dimension"] == DIGITS
    assert (quantizer.config.bits, quantizer.config.ring_bits) == (choice.bits, choice.ring_bits)
    true = quantizer.descriptor(1)
    splits = {
        "bits": dataclasses.replace(quantizer, config=dataclasses.replace(quantizer.config, bits=7)),
        "ring": dataclasses.replace(quantizer, config=dataclasses.replace(quantizer.config, ring_bits=24)),
        "block": dataclasses.replace(quantizer, parameters=_with(quantizer.parameters, ROTATION + "block", 128)),
        "count": dataclasses.replace(quantizer, parameters=_with(quantizer.parameters, SPARSITY + "count", 767)),
    }
    for name, split in splits.items():
        assert split.descriptor(1) != true, name


def _with(parameters: tuple[tuple[str, object], ...], name: str, value: object) -> tuple[tuple[str, object], ...]:
    return tuple((key, value if key == name else old) for key, old in parameters)


@pytest.mark.parametrize("mode", [SEMI_HONEST, ACTIVE])
def test_a_hospital_given_other_budget_choices_is_never_in_the_others_aggregate(mode: str) -> None:
    # Prepare: the round's descriptor under the budget's choice, and one with 7 bits instead of 8
    secure, _ = budget_aggregator("secagg+", 1.0, DIGITS, num_clients=5)
    secure.aggregate(_updates(DIGITS), rng=np.random.default_rng(0))
    quantizer = secure.quantizer  # type: ignore[attr-defined]
    true = quantizer.descriptor(2)
    split = dataclasses.replace(quantizer, config=dataclasses.replace(quantizer.config, bits=7)).descriptor(2)
    configs = {1: binding._config(mode, true)} | {c: binding._config(mode, split) for c in range(2, binding.N + 1)}
    # Execute: the server runs the others' session
    outcome = binding._run(configs, binding._config(mode, split))
    # Assert: hospital 1 is left out of it
    assert outcome is None or 1 not in outcome[0]


def test_a_choice_is_applied_only_to_an_aggregator_built_with_its_bits_and_ring() -> None:
    choice = _choose(1.0)
    with pytest.raises(ConfigurationError, match="build the aggregator with them"):
        choice.wrap(make_aggregator("secagg+", num_clients=5))
    wrapped = choice.wrap(make_aggregator("secagg+", num_clients=5, bits=8, ring_bits=23))
    assert isinstance(wrapped, SparseAggregator) and isinstance(wrapped.inner, RotatedAggregator)
    assert wrapped.inner.block == choice.block
    with pytest.raises(ConfigurationError, match="exceed the budget"):
        dataclasses.replace(choice, protected_bytes=DIGITS + 1)


@pytest.mark.parametrize(("budget", "dimension"), [(3.0, 2_000_000), (3.2, 2_000_000), (2.0, 5_000_000)])
def test_the_chosen_ring_holds_the_clipped_count_of_the_segment_sent(budget: float, dimension: int) -> None:
    # Prepare: a large model whose rotated segment is long: its clipped count, summed over 5 hospitals,
    # outgrows the ring sized for the quantized values alone (Z_(2^23) at 8 bits holds 8,388,607)
    choice = _choose(budget, dimension)
    sent = choice.count if choice.block is None else -(-choice.count // choice.block) * choice.block
    aggregator = budget_aggregator("secagg+", budget, dimension, num_clients=5)[0]
    quantizer = aggregator.quantizer
    table = quantizer.flat_table(sent)  # type: ignore[union-attr]

    # Execute / Assert: the round's table encodes (the choice was refused by every round before), within budget
    assert quantizer.check_table(table) is table  # type: ignore[union-attr]
    assert 5 * sent <= (1 << (choice.ring_bits - 1)) - 1
    assert choice.protected_bytes <= budget * dimension



@pytest.mark.parametrize("budget", [3.5, 4.0, 6.0, 1.0])
def test_a_paillier_budget_sends_no_segment_past_the_packing_slots_bound(budget: float) -> None:
    # Prepare: a million parameters at 8 bits: a clipped count must also fit the Paillier packing slot,
    # max_samples_per_client * qmax = 4096 * 127 = 520,192 coordinates, which every round checks
    pytest.importorskip("gmpy2")
    aggregator, choice = budget_aggregator("paillier", budget, 1_000_000, num_clients=5, insecure_small_key=True)
    sent = choice.count if choice.block is None else -(-choice.count // choice.block) * choice.block
    protocol = innermost(aggregator)

    # Execute / Assert: the round's table passes the round's check (every round refused it before), within budget
    table = protocol.quantizer.flat_table(sent)  # type: ignore[attr-defined]
    assert protocol.check_table(table) is table  # type: ignore[attr-defined]
    assert sent <= 4096 * ((1 << (choice.bits - 1)) - 1)
    assert choice.protected_bytes <= budget * 1_000_000
