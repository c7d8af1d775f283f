"""Aggregators: the plain mean, the quantized mean, and secure sums that equal it bit for bit."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fl_core.aggregators import (
    AggregationResult,
    Aggregator,
    ClientUpdate,
    DropoutStage,
    MaskingAggregator,
    WeightedQuantizer,
    make_aggregator,
)
from fl_core.aggregators.base import check_round
from fl_core.aggregators.binding import check_lengths, check_models
from fl_core.aggregators.masking import MASKING_MODES
from secagg.errors import ConfigurationError, OverflowDetectedError
from secagg.primitives.randomness import InsecureDeterministicRandom

SECURE = ("secagg", "secagg+")


def make_updates(sizes: tuple[int, ...] = (30, 5, 120, 64, 9), length: int = 50, seed: int = 0) -> list[ClientUpdate]:
    rng = np.random.default_rng(seed)
    return [ClientUpdate(client, rng.uniform(-0.4, 0.4, size=length), size) for client, size in enumerate(sizes)]


def weighted_mean(updates: list[ClientUpdate], ids: set[int]) -> np.ndarray:
    chosen = [u for u in updates if u.client_id in ids]
    weights = np.array([u.num_samples for u in chosen], dtype=np.float64)
    mean: np.ndarray = weights @ np.stack([u.vector for u in chosen]) / weights.sum()
    return mean


def secure(name: str, num_clients: int = 5, seed: int = 1, **options: object) -> Aggregator:
    return make_aggregator(name, num_clients=num_clients, random_bytes=InsecureDeterministicRandom(seed), **options)


def test_every_aggregator_satisfies_the_protocol() -> None:
    for name in ("plain", "plain-quantized", *SECURE):
        aggregator = make_aggregator(name, num_clients=5)
        assert isinstance(aggregator, Aggregator)
        assert aggregator.name == name


def test_plain_is_the_weighted_mean_of_the_uploaders() -> None:
    # Prepare: client 1 never uploads, client 3 uploads then drops in the last step.
    updates = make_updates()
    dropouts = {1: DropoutStage.UPLOAD, 3: DropoutStage.FINALIZE}
    # Execute
    result = make_aggregator("plain").aggregate(updates, dropouts, rng=np.random.default_rng(0))
    # Assert
    assert result.included == frozenset({0, 2, 3, 4})
    assert result.mean is not None
    np.testing.assert_allclose(result.mean, weighted_mean(updates, {0, 2, 3, 4}), rtol=1e-12)


def test_plain_mean_of_large_finite_updates_is_finite_not_infinity() -> None:
    # Prepare: hospital 1's finite update times its 3 patients leaves binary64 (3e308)
    updates = [
        ClientUpdate(0, np.full(4, 1.0), 2),
        ClientUpdate(1, np.full(4, 1e308), 3),
        ClientUpdate(2, np.zeros(4), 5),
    ]
    # Execute
    result = make_aggregator("plain").aggregate(updates, rng=np.random.default_rng(0))
    # Assert: the weighted mean (finite: a convex combination of finite updates), never inf
    assert result.mean is not None and np.all(np.isfinite(result.mean))
    np.testing.assert_allclose(result.mean, 0.2 * 1.0 + 0.3 * 1e308, rtol=1e-12)


def test_plain_mean_keeps_its_arithmetic_for_ordinary_updates() -> None:
    # The fallback is taken only on overflow: ordinary rounds keep sum n_k u_k / sum n_k bit for bit
    updates = make_updates()
    result = make_aggregator("plain").aggregate(updates, rng=np.random.default_rng(0))
    weights = np.array([u.num_samples for u in updates], dtype=np.float64)
    expected = weights @ np.stack([u.vector for u in updates]) / weights.sum()
    assert result.mean is not None and np.array_equal(result.mean, expected)


def test_quantized_mean_is_within_one_step_of_the_float_mean() -> None:
    # Prepare
    updates = make_updates()
    quantizer = WeightedQuantizer.create(5, clip=0.5, bits=16)
    # Execute
    result = make_aggregator("plain-quantized", num_clients=5, clip=0.5, bits=16).aggregate(
        updates, rng=np.random.default_rng(0)
    )
    # Assert: a weighted mean of values each within one step is within one step.
    assert result.mean is not None
    error = np.abs(result.mean - weighted_mean(updates, {0, 1, 2, 3, 4}))
    assert error.max() < quantizer.config.step
    assert error.max() > 0  # quantization did happen


@pytest.mark.parametrize("name", SECURE)
def test_secure_mean_equals_plain_quantized_bit_for_bit(name: str) -> None:
    # Prepare: the same round, the same round generator state for both aggregators.
    updates = make_updates()
    reference = make_aggregator("plain-quantized", num_clients=5).aggregate(updates, rng=np.random.default_rng(42))
    # Execute
    result = secure(name).aggregate(updates, rng=np.random.default_rng(42))
    # Assert
    assert result.mean is not None and reference.mean is not None
    assert result.included == reference.included == frozenset(range(5))
    np.testing.assert_array_equal(result.mean, reference.mean)
    assert result.bytes_per_client > reference.bytes_per_client  # keys and shares cost bytes


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(SECURE),
    mode=st.sampled_from(MASKING_MODES),
    stages=st.dictionaries(st.integers(0, 5), st.sampled_from(list(DropoutStage)), max_size=3),
    seed=st.integers(0, 2**31),
)
def test_secure_mean_equals_plain_quantized_under_dropouts(
    name: str, mode: str, stages: dict[int, DropoutStage], seed: int
) -> None:
    # Prepare: six clients; any dropout pattern of up to three of them. SecAgg+ is sized for the
    # most dropouts the mode allows at n = 6: 3 semi-honest (t = 3), 2 active (2t > n: t = 4).
    updates = make_updates(sizes=(30, 5, 120, 64, 9, 17), seed=seed % 1000)
    aggregator = (
        secure(name, num_clients=6, seed=seed, mode=mode, dropout_fraction=0.5 if mode == "semi-honest" else 0.34)
        if name == "secagg+"
        else secure(name, num_clients=6, seed=seed, mode=mode)
    )
    # Execute
    result = aggregator.aggregate(updates, stages, rng=np.random.default_rng(seed))
    # Assert: either skipped with a reason, or exactly the plain-quantized mean of the
    # clients the protocol included, which are the uploaders.
    if result.mean is None:
        assert result.skipped_reason and result.included == frozenset()
        return
    last = DropoutStage.FINALIZE
    uploaders = {u.client_id for u in updates if stages.get(u.client_id, last) == last}
    assert result.included == frozenset(uploaders)
    reference = make_aggregator("plain-quantized", num_clients=6).aggregate(
        updates, stages, rng=np.random.default_rng(seed)
    )
    assert reference.mean is not None
    np.testing.assert_array_equal(result.mean, reference.mean)


@pytest.mark.parametrize("name", SECURE)
def test_too_few_survivors_skips_the_round_with_a_reason(name: str) -> None:
    # Prepare: three of five clients never join; no threshold admits two.
    updates = make_updates()
    dropouts = {0: DropoutStage.JOIN, 1: DropoutStage.JOIN, 2: DropoutStage.SETUP}
    # Execute
    result = secure(name).aggregate(updates, dropouts, rng=np.random.default_rng(0))
    # Assert
    assert result.skipped and result.mean is None
    assert result.skipped_reason is not None and name in result.skipped_reason
    assert "protocol ids 1..5 are clients [0, 1, 2, 3, 4]" in result.skipped_reason
    assert "clients that dropped: 0 at join, 1 at join, 2 at setup;" in result.skipped_reason
    assert result.included == frozenset()


@pytest.mark.parametrize("name", SECURE)
@pytest.mark.parametrize("num_clients", [3, 4])
def test_three_or_four_hospitals_survive_any_one_dropout_exactly(name: str, num_clients: int) -> None:
    # Prepare: hospitals 1..n (protocol ids = their ids), the default configuration
    updates = make_updates(sizes=(30, 5, 120, 64)[:num_clients], seed=1)
    updates = [dataclasses.replace(u, client_id=i) for i, u in enumerate(updates, start=1)]
    aggregator = secure(name, num_clients=num_clients)
    reference = make_aggregator("plain-quantized", num_clients=num_clients)
    for client in range(1, num_clients + 1):
        for stage in DropoutStage:
            # Execute
            result = aggregator.aggregate(updates, {client: stage}, rng=np.random.default_rng(3))
            # Assert: completed, with exactly the uploaders, bit for bit the plain quantized mean
            assert result.skipped_reason is None, result.skipped_reason
            uploaders = {u.client_id for u in updates if u.client_id != client or stage == DropoutStage.FINALIZE}
            assert result.included == frozenset(uploaders)
            expected = reference.aggregate(updates, {client: stage}, rng=np.random.default_rng(3))
            assert result.mean is not None and expected.mean is not None
            np.testing.assert_array_equal(result.mean, expected.mean)


@pytest.mark.parametrize("name", SECURE)
def test_three_hospitals_skip_a_round_with_two_dropouts_and_say_who_and_why(name: str) -> None:
    # Prepare: three hospitals 1..3; hospital 2 never sets up, hospital 3 drops after its upload.
    updates = make_updates(sizes=(30, 5, 120), seed=1)
    updates = [dataclasses.replace(u, client_id=i) for i, u in enumerate(updates, start=1)]
    # Execute
    result = secure(name, num_clients=3).aggregate(
        updates, {2: DropoutStage.SETUP, 3: DropoutStage.FINALIZE}, rng=np.random.default_rng(0)
    )
    # Assert: the reason names the hospitals that dropped, and what three tolerate
    assert result.skipped_reason is not None
    assert result.skipped_reason.startswith(
        f"{name} (active mode): round skipped, clients that dropped: 2 at setup, 3 at finalize;"
    )
    assert "completes with up to 1 dropout" in result.skipped_reason


@pytest.mark.parametrize("name", SECURE)
@pytest.mark.parametrize("num_clients", [5, 10])
def test_default_aggregators_survive_any_one_dropout(name: str, num_clients: int) -> None:
    # Prepare
    sizes = tuple(range(10, 10 + num_clients))
    updates = make_updates(sizes=sizes, seed=2)
    aggregator = secure(name, num_clients=num_clients)
    for client in (u.client_id for u in updates):
        for stage in DropoutStage:
            # Execute
            result = aggregator.aggregate(updates, {client: stage}, rng=np.random.default_rng(3))
            # Assert
            assert result.skipped_reason is None, result.skipped_reason


def test_client_ids_and_their_order_do_not_matter() -> None:
    # Prepare: ids that are not 0..n-1 and arrive unsorted.
    ids = (40, 7, 19, 3, 88)
    updates = [ClientUpdate(cid, u.vector, u.num_samples) for cid, u in zip(ids, make_updates(), strict=True)]
    # Execute
    secure_result = secure("secagg").aggregate(updates, rng=np.random.default_rng(5))
    plain_result = make_aggregator("plain-quantized", num_clients=5).aggregate(
        list(reversed(updates)), rng=np.random.default_rng(5)
    )
    # Assert
    assert secure_result.mean is not None and plain_result.mean is not None
    assert secure_result.included == frozenset({40, 7, 19, 3, 88})
    np.testing.assert_array_equal(secure_result.mean, plain_result.mean)


def test_sample_count_above_the_public_bound_is_refused() -> None:
    # The client's own refusal: it is withheld (tests/fl_core/test_fl_encode_withhold.py), the others go on.
    updates = make_updates(sizes=(10, 20, 5000))
    aggregator = make_aggregator("plain-quantized", num_clients=3, max_samples_per_client=4096)
    result = aggregator.aggregate(updates, rng=np.random.default_rng(0))
    assert result.withheld == ((2, "5000 samples exceeds the declared bound max_samples_per_client=4096"),)
    assert result.included == frozenset({0, 1})
    with pytest.raises(ConfigurationError, match="client 2: 5000 samples exceeds"):
        aggregator.quantizer.encode_integers(updates[2], np.random.default_rng(0))


def test_quantization_that_could_overflow_is_refused_for_the_client_count() -> None:
    # 17 clients x 4096 samples x 32767 exceeds 2^31 - 1: an explicit 32-bit ring is refused,
    # with what would fit; by default the ring follows the federation.
    with pytest.raises(ConfigurationError, match="ring_bits=64"):
        make_aggregator("secagg", num_clients=17, ring_bits=32)
    assert make_aggregator("secagg", num_clients=17).quantizer.config.ring_bits == 64


def test_decode_detects_an_impossible_sum() -> None:
    quantizer = WeightedQuantizer.create(3, max_samples_per_client=10)
    forged = quantizer.encode(ClientUpdate(0, np.full(4, 0.5), 10), np.random.default_rng(0))
    forged[-1] = 31  # more samples than 3 clients can have
    with pytest.raises(OverflowDetectedError, match="sample total"):
        quantizer.decode(forged, 3)
    forged[-1] = 10
    forged[0] = np.uint32(2**31 - 1)  # beyond 3 x 10 x qmax
    with pytest.raises(OverflowDetectedError, match="exceeds"):
        quantizer.decode(forged, 3)


def test_make_aggregator_refuses_unknown_names_and_options() -> None:
    with pytest.raises(ConfigurationError, match="unknown aggregation"):
        make_aggregator("fedprox")
    with pytest.raises(ConfigurationError, match="takes no options"):
        make_aggregator("plain", random_bytes=None)
    with pytest.raises(ConfigurationError, match="needs num_clients"):
        make_aggregator("secagg")
    with pytest.raises(ConfigurationError, match="does not take \\['key_bits'\\]"):
        make_aggregator("secagg+", num_clients=5, key_bits=2048)
    with pytest.raises(ConfigurationError, match="not both"):
        make_aggregator("secagg", num_clients=5, dropout_fraction=0.2, dropout_per_round=0.1)
    with pytest.raises(ConfigurationError, match="at least 3"):
        make_aggregator("secagg+", num_clients=2)


@pytest.mark.skipif(
    importlib.util.find_spec("fl_core.aggregators.paillier") is not None, reason="the Paillier aggregator exists"
)
def test_paillier_reports_that_it_is_unavailable() -> None:
    with pytest.raises(ConfigurationError, match="not available"):
        make_aggregator("paillier", num_clients=5)


def test_round_inputs_are_validated() -> None:
    updates, rng = make_updates(sizes=(3, 4)), np.random.default_rng(0)
    with pytest.raises(ConfigurationError, match="at least one"):
        check_round([], None, rng=rng)
    with pytest.raises(ConfigurationError, match="distinct"):
        check_round([updates[0], updates[0]], None, rng=rng)
    with pytest.raises(ConfigurationError, match="not in the round"):
        check_round(updates, {9: DropoutStage.JOIN}, rng=rng)
    # Lengths are not the round's inputs' fault until nothing decides between them (after the models).
    mixed = [updates[0], ClientUpdate(1, np.zeros(3), 2)]
    assert check_round(mixed, None, rng=rng) == {}
    with pytest.raises(ConfigurationError, match="different lengths"):
        check_lengths(mixed, check_models(mixed, None))
    with pytest.raises(ConfigurationError, match="set up for 1"):
        check_round(updates, None, max_clients=1, rng=rng)
    with pytest.raises(ConfigurationError, match="at least 3 clients"):
        secure("secagg").aggregate(updates, rng=np.random.default_rng(0))


def test_client_update_and_result_are_validated() -> None:
    with pytest.raises(ConfigurationError, match="NaN"):
        ClientUpdate(0, np.array([1.0, np.nan]), 3)
    with pytest.raises(ConfigurationError, match="float64"):
        ClientUpdate(0, np.array([1, 2]), 3)
    with pytest.raises(ConfigurationError, match="num_samples"):
        ClientUpdate(0, np.zeros(2), 0)
    with pytest.raises(ConfigurationError, match="either a mean or a skipped_reason"):
        AggregationResult(mean=None, included=frozenset(), bytes_per_client=0.0, seconds=0.0)


def test_masking_aggregator_rejects_an_unknown_graph() -> None:
    with pytest.raises(ConfigurationError, match="graph"):
        MaskingAggregator(WeightedQuantizer.create(5), graph="ring")


def test_decode_detects_the_most_negative_ring_value() -> None:
    # -2^63 read from Z_(2^64): np.abs would overflow and let it through.
    quantizer = WeightedQuantizer.create(3, ring_bits=64, bits=20, max_samples_per_client=10)
    total = quantizer.encode(ClientUpdate(0, np.full(2, 0.1), 10), np.random.default_rng(0))
    total[0] = np.uint64(1 << 63)
    with pytest.raises(OverflowDetectedError, match="exceeds"):
        quantizer.decode(total, 3)


def test_the_default_quantizer_chooses_the_ring_for_the_federation() -> None:
    assert WeightedQuantizer.create(16).config.ring_bits == 32
    assert WeightedQuantizer.create(17).config.ring_bits == 64
    assert WeightedQuantizer.create(3, max_samples_per_client=5000).config.ring_bits == 32
    assert WeightedQuantizer.create(17, ring_bits=32, bits=12).config.ring_bits == 32


@pytest.mark.parametrize("name", ["secagg", "secagg+"])
def test_a_narrow_ring_gives_the_word_ring_mean_for_fewer_bytes(name: str) -> None:
    # Prepare: 8-bit values of at most 256-sample hospitals; the smallest safe ring for 5 is Z_(2^19)
    updates = make_updates()
    options = {"num_clients": 5, "bits": 8, "max_samples_per_client": 256, "clipping": "fixed"}
    word = make_aggregator(name, **options)
    narrow = make_aggregator(name, ring_bits="smallest", **options)
    assert (word.quantizer.config.ring_bits, narrow.quantizer.config.ring_bits) == (32, 19)
    # Execute
    reference = word.aggregate(updates, rng=np.random.default_rng(7))
    result = narrow.aggregate(updates, rng=np.random.default_rng(7))
    # Assert: the same integers, so the same mean; the masked upload shrinks from 32 to 19 bits a coordinate
    assert result.mean is not None and reference.mean is not None
    np.testing.assert_array_equal(result.mean, reference.mean)
    assert result.bytes_per_client < reference.bytes_per_client


def test_ring_bits_options_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="'word' or 'smallest'"):
        make_aggregator("secagg", num_clients=5, ring_bits="12")
    with pytest.raises(ConfigurationError):
        make_aggregator("secagg", num_clients=5, ring_bits=7)
    with pytest.raises(ConfigurationError, match="could overflow"):
        make_aggregator("secagg", num_clients=5, ring_bits=20)  # 5 x 4096 x 32767 needs 32 bits
