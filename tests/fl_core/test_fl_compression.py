"""Partial updates through fl_core's aggregators: exact secure sums, binding, error feedback, budgets."""

from __future__ import annotations

import numpy as np
import pytest

from fl_core.aggregators import ClientUpdate, DropoutStage, WeightedQuantizer, make_aggregator
from fl_core.aggregators.plain import QuantizedPlainAggregator
from fl_core.compression import CompressionConfig, SparseAggregator, protected_update_bytes, restrict
from fl_core.fedavg import FedAvgConfig, run_fedavg
from fl_core.models import LogisticRegression
from secagg.descriptor import SessionDescriptor
from secagg.errors import ConfigurationError
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.segments import Segment, SegmentTable
from secagg.sparsity import Subset


def _updates(length: int = 200, seed: int = 0) -> list[ClientUpdate]:
    rng = np.random.default_rng(seed)
    return [ClientUpdate(c, rng.normal(0, 0.05, size=length), 10 + 7 * c) for c in range(1, 6)]


@pytest.mark.parametrize("name", ["secagg", "secagg+"])
@pytest.mark.parametrize("dropouts", [{}, {2: DropoutStage.UPLOAD}, {4: DropoutStage.FINALIZE}])
def test_the_secure_sum_of_sparse_encodings_equals_the_plain_sum_bit_for_bit(
    name: str, dropouts: dict[int, DropoutStage]
) -> None:
    # Prepare: the same compression around the secure and the in-the-clear arithmetic
    compression = CompressionConfig(fraction=0.2)
    secure = SparseAggregator(
        make_aggregator(name, num_clients=5, random_bytes=InsecureDeterministicRandom(1)), compression
    )
    plain = SparseAggregator(make_aggregator("plain-quantized", num_clients=5), compression)
    # Execute: three rounds, so residuals are carried and reused
    for round_ in range(3):
        updates = _updates(seed=round_)
        a = secure.aggregate(updates, dropouts, rng=np.random.default_rng(round_))
        b = plain.aggregate(updates, dropouts, rng=np.random.default_rng(round_))
        # Assert
        assert a.mean is not None and b.mean is not None and a.included == b.included
        np.testing.assert_array_equal(a.mean, b.mean)
        assert np.count_nonzero(a.mean) <= 40
        assert secure.last_subset is not None and secure.last_subset.count == 40
        assert np.all(a.mean[np.setdiff1d(np.arange(200), secure.last_subset.indices)] == 0)
        for client in range(1, 6):
            r1, r2 = secure.residual(client), plain.residual(client)
            assert r1 is not None and r2 is not None and np.array_equal(r1, r2)


def test_the_subset_is_bound_in_the_rounds_descriptor() -> None:
    inner = make_aggregator("secagg", num_clients=5)
    sparse = SparseAggregator(inner, CompressionConfig(fraction=0.5))
    sparse.aggregate(_updates(20), rng=np.random.default_rng(0))
    subset = sparse.last_subset
    assert subset is not None
    expected = SessionDescriptor.create(
        inner.quantizer.config, weight_key="num_samples", server_round=1, parameters=subset.descriptor_parameters()
    ).digest()
    assert inner.quantizer.descriptor(1) == expected
    assert WeightedQuantizer(inner.quantizer.config).descriptor(1) != expected


def test_residuals_stay_with_each_hospital_and_conserve_its_mass() -> None:
    sparse = SparseAggregator(make_aggregator("plain-quantized", num_clients=5), CompressionConfig(fraction=0.3))
    sent_sum = {c: np.zeros(50) for c in range(1, 6)}
    update_sum = {c: np.zeros(50) for c in range(1, 6)}
    for round_ in range(5):
        updates = _updates(50, seed=round_)
        # Hospital 3 does not upload in round 2: its residual must not change that round.
        dropouts = {3: DropoutStage.UPLOAD} if round_ == 2 else {}
        before = sparse.residual(3)
        before = None if before is None else before.copy()
        sparse.aggregate(updates, dropouts, rng=np.random.default_rng(round_))
        subset = sparse.last_subset
        assert subset is not None
        for update in updates:
            if update.client_id in dropouts:
                after = sparse.residual(3)
                assert before is not None and after is not None and np.array_equal(before, after)
                continue
            update_sum[update.client_id] += update.vector
        for c in range(1, 6):
            if c in dropouts:
                continue
            residual = sparse.residual(c)
            assert residual is not None
            assert np.all(residual[subset.indices] == 0)
            sent_sum[c] = update_sum[c] - residual  # what went out so far, by conservation
    for c in range(1, 6):
        residual = sparse.residual(c)
        assert residual is not None
        np.testing.assert_allclose(sent_sum[c] + residual, update_sum[c], atol=1e-12)


def test_fedavg_trains_with_a_quarter_of_the_coordinates_per_round(federation: tuple) -> None:  # type: ignore[type-arg]
    clients, x, y = federation
    model = LogisticRegression(x.shape[1], 2)
    config = FedAvgConfig(rounds=8, local_epochs=2, learning_rate=0.1, seed=1)
    full = run_fedavg(model, clients, make_aggregator("secagg+", num_clients=5), x, y, config)
    sparse = SparseAggregator(make_aggregator("secagg+", num_clients=5), CompressionConfig(fraction=0.25))
    result = run_fedavg(model, clients, sparse, x, y, config)
    assert result.final_accuracy >= full.final_accuracy - 0.03
    assert result.final_accuracy > 0.9


@pytest.mark.parametrize(("budget", "count"), [(1.0, 248), (0.5, 123), (4.0, 998), (100.0, 1000)])
def test_a_byte_budget_picks_the_largest_subset_whose_masked_vector_fits(budget: float, count: int) -> None:
    sparse = SparseAggregator(make_aggregator("secagg", num_clients=5), CompressionConfig(bytes_per_parameter=budget))
    assert sparse.count(1000) == count
    assert protected_update_bytes(sparse, count) <= budget * 1000
    assert count == 1000 or protected_update_bytes(sparse, count + 1) > budget * 1000


def test_a_budget_that_cannot_be_met_is_refused_naming_the_option_as_typed() -> None:
    sparse = SparseAggregator(
        make_aggregator("secagg", num_clients=5),
        CompressionConfig(bytes_per_parameter=0.2, option="--bytes-per-parameter"),
    )
    with pytest.raises(ConfigurationError, match=r"--bytes-per-parameter 0.2 cannot be met with secagg.*12 bytes"):
        sparse.count(31)
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ConfigurationError, match="bytes_per_parameter must be a positive"):
            CompressionConfig(bytes_per_parameter=bad)
    with pytest.raises(ConfigurationError, match="one of a fraction, a number of coordinates or"):
        CompressionConfig(fraction=0.5, bytes_per_parameter=1.0)


def test_plain_and_quantized_bytes_follow_their_encodings() -> None:
    plain = make_aggregator("plain")
    quantized = QuantizedPlainAggregator(WeightedQuantizer.create(5, ring_bits=64))
    # float64 values and the count; ring words for the values, one clipped count and the sample count
    assert protected_update_bytes(plain, 10) == 88
    assert protected_update_bytes(quantized, 10) == 96
    assert protected_update_bytes(make_aggregator("secagg", num_clients=5), 10) == 48


def test_named_segments_follow_the_subset_and_stay_exact() -> None:
    table = SegmentTable((Segment("w", 150, 0.5), Segment("b", 50, 0.25)))
    subset = Subset.random(bytes(32), 200, count=40)
    short = restrict(table, subset)
    assert short.size == 40 and short.names == ("w", "b")
    assert short.segments[0].length == int((subset.indices < 150).sum())
    secure = SparseAggregator(make_aggregator("secagg", num_clients=5), CompressionConfig(fraction=0.2))
    clear = SparseAggregator(make_aggregator("plain-quantized", num_clients=5), CompressionConfig(fraction=0.2))
    a = secure.aggregate(_updates(), rng=np.random.default_rng(4), segments=table)
    b = clear.aggregate(_updates(), rng=np.random.default_rng(4), segments=table)
    assert a.mean is not None and b.mean is not None
    np.testing.assert_array_equal(a.mean, b.mean)
    assert a.clipping is not None and a.clipping.table.names == ("w", "b")


def test_a_residual_handed_out_is_a_copy_the_caller_cannot_change_the_state_through() -> None:
    # Prepare: one round leaves hospital 3 a non-zero residual
    sparse = SparseAggregator(make_aggregator("plain-quantized", num_clients=5), CompressionConfig(fraction=0.3))
    sparse.aggregate(_updates(50, seed=0), rng=np.random.default_rng(0))
    handed = sparse.residual(3)
    assert handed is not None and np.any(handed)
    kept = handed.copy()
    # Execute: the caller writes into what it was handed
    handed[:] = np.nan
    # Assert: the hospital's state is unchanged
    again = sparse.residual(3)
    assert again is not None and np.array_equal(again, kept)


@pytest.mark.parametrize("flag", ["false", "no", 0, 1, np.bool_(False)])
def test_error_feedback_takes_a_bool_only(flag: object) -> None:
    # "false" is truthy: it turned error feedback on, silently. Refused, as every flag of the library is
    with pytest.raises(ConfigurationError, match="error_feedback must be True or False"):
        CompressionConfig(fraction=0.5, error_feedback=flag)  # type: ignore[arg-type]
