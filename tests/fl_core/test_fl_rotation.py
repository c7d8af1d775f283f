"""Rotation before quantization through fl_core's aggregators: exact sums, binding, error."""

from __future__ import annotations

import numpy as np
import pytest

from fl_core.aggregators import ClientUpdate, DropoutStage, make_aggregator
from fl_core.aggregators.base import mean_of
from fl_core.compression import CompressionConfig, SparseAggregator
from fl_core.rotated import RotatedAggregator
from secagg.errors import ConfigurationError
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.segments import Segment, SegmentTable


def _spiky_updates(length: int = 300, seed: int = 0) -> list[ClientUpdate]:
    """Small coordinates and one large one per hospital: the case the rotation is for."""
    rng = np.random.default_rng(seed)
    updates = []
    for client in range(1, 6):
        vector = rng.normal(0, 0.01, size=length)
        vector[client * 7] = 0.45
        updates.append(ClientUpdate(client, vector, 10 + 3 * client))
    return updates


@pytest.mark.parametrize("name", ["secagg", "secagg+"])
@pytest.mark.parametrize("dropouts", [{}, {3: DropoutStage.UPLOAD}, {5: DropoutStage.FINALIZE}])
def test_the_secure_sum_of_rotated_encodings_equals_the_plain_sum_bit_for_bit(
    name: str, dropouts: dict[int, DropoutStage]
) -> None:
    secure = RotatedAggregator(make_aggregator(name, num_clients=5, random_bytes=InsecureDeterministicRandom(2)))
    plain = RotatedAggregator(make_aggregator("plain-quantized", num_clients=5))
    for round_ in range(2):
        updates = _spiky_updates(seed=round_)
        a = secure.aggregate(updates, dropouts, rng=np.random.default_rng(round_))
        b = plain.aggregate(updates, dropouts, rng=np.random.default_rng(round_))
        assert a.mean is not None and b.mean is not None
        assert a.included == b.included
        assert np.array_equal(a.mean, b.mean)


def test_rotated_mean_is_within_the_quantization_bound_and_beats_no_rotation_at_few_bits() -> None:
    # Prepare: 6-bit quantization, fixed clip 0.5: one step is 0.5 / 31
    updates = _spiky_updates()
    options = {"num_clients": 5, "bits": 6, "clip": 0.5, "clipping": "fixed"}
    expected = mean_of(updates)

    # Execute
    rotated = RotatedAggregator(make_aggregator("plain-quantized", **options)).aggregate(
        updates, {}, rng=np.random.default_rng(4)
    )
    unrotated = make_aggregator("plain-quantized", **options).aggregate(updates, {}, rng=np.random.default_rng(4))

    # Assert: L2 error at most one step per padded coordinate, and smaller than without rotation
    assert rotated.mean is not None and unrotated.mean is not None
    step, padded = 0.5 / 31, 512
    error = float(np.linalg.norm(rotated.mean - expected))
    assert error <= step * np.sqrt(padded)
    assert error < float(np.linalg.norm(unrotated.mean - expected))


def test_each_round_binds_its_rotation_and_another_seed_is_another_session() -> None:
    aggregator = RotatedAggregator(make_aggregator("plain-quantized", num_clients=5))
    updates = _spiky_updates()
    aggregator.aggregate(updates, {}, rng=np.random.default_rng(0))
    first = aggregator.last_rotation
    digest_first = aggregator.quantizer.descriptor(1)
    names = {name for name, _ in aggregator.quantizer.parameters}
    assert {"secagg.rotation.seed", "secagg.rotation.dimension"} <= names

    aggregator.aggregate(updates, {}, rng=np.random.default_rng(1))
    assert aggregator.last_rotation is not None and first is not None
    assert aggregator.last_rotation.seed != first.seed
    assert aggregator.quantizer.descriptor(1) != digest_first  # same round number, other rotation: other session


def test_rotation_and_sparsity_compose_and_both_are_bound() -> None:
    inner = make_aggregator("secagg", num_clients=5, random_bytes=InsecureDeterministicRandom(3))
    aggregator = SparseAggregator(RotatedAggregator(inner), CompressionConfig(fraction=0.5))
    result = aggregator.aggregate(_spiky_updates(), {}, rng=np.random.default_rng(0))
    assert result.mean is not None and result.mean.shape == (300,)
    prefixes = {name.split(".")[1] for name, _ in inner.quantizer.parameters}  # type: ignore[attr-defined]
    assert {"rotation", "sparsity"} <= prefixes


def test_refusals() -> None:
    inner = make_aggregator("plain-quantized", num_clients=5)
    with pytest.raises(ConfigurationError, match="rotated once"):
        RotatedAggregator(RotatedAggregator(inner))
    table = SegmentTable((Segment("a", 150, 0.5), Segment("b", 150, 0.5)))
    with pytest.raises(ConfigurationError, match="flat float segment"):
        RotatedAggregator(inner).aggregate(_spiky_updates(), {}, rng=np.random.default_rng(0), segments=table)


def test_a_rotated_round_refuses_an_exact_integer_segment_rather_than_rotate_and_clip_it() -> None:
    # Prepare: one integer segment (exact: scale 1, whole values within qmax or refused, never clipped)
    inner = make_aggregator("plain-quantized", num_clients=5)
    updates = [ClientUpdate(c, np.arange(300, dtype=np.float64) * c, 10) for c in range(1, 6)]
    table = SegmentTable((Segment("steps", 300, integer=True),))
    plain = make_aggregator("plain-quantized", num_clients=5)
    unrotated = plain.aggregate(updates, {}, rng=np.random.default_rng(0), segments=table)
    np.testing.assert_array_equal(unrotated.mean, np.arange(300) * 3.0)  # unrotated: the exact mean
    # Execute / Assert: the rotation would mix the counters into floats and clip them at the round's clip
    with pytest.raises(ConfigurationError, match="integer"):
        RotatedAggregator(inner).aggregate(updates, {}, rng=np.random.default_rng(0), segments=table)


def test_a_rotated_round_keeps_the_name_and_clip_of_its_one_float_segment() -> None:
    # Prepare: one float segment with its own clip (it was dropped for the aggregator's default clip)
    inner = make_aggregator("plain-quantized", num_clients=5, clipping="fixed")
    table = SegmentTable((Segment("w", 300, 8.0),))

    # Execute
    result = RotatedAggregator(inner).aggregate(_spiky_updates(), {}, rng=np.random.default_rng(0), segments=table)

    # Assert: the round's clipping report is over the padded length, under the table's name and clip
    assert result.clipping is not None
    assert result.clipping.table.segments == (Segment("w", 512, 8.0),)


def test_partial_updates_with_error_feedback_under_a_rotation_are_refused() -> None:
    # A residual under the rotation is kept in that round's rotated basis, and the next round's rotation
    # is another: added there, it is delivered as other values than the ones held back (30 rounds of one
    # update then zeros delivered a vector 0.32 away from that update, of norm 0.38). Refused, naming the
    # order that keeps the residual in the model's basis
    inner = make_aggregator("plain-quantized", num_clients=5)
    with pytest.raises(ConfigurationError, match=r"SparseAggregator\(RotatedAggregator"):
        RotatedAggregator(SparseAggregator(inner, CompressionConfig(fraction=0.5)))


def test_error_feedback_delivers_the_held_back_mass_with_the_rotation_inside() -> None:
    # Prepare: the order that works (and, without a residual, the other order is allowed)
    inner = make_aggregator("plain-quantized", num_clients=5, bits=24, clip=1.0, clipping="fixed")
    aggregator = SparseAggregator(RotatedAggregator(inner), CompressionConfig(fraction=0.5))
    update = np.random.default_rng(5).normal(0, 0.05, 64)
    RotatedAggregator(SparseAggregator(make_aggregator("plain-quantized", num_clients=5),
                                       CompressionConfig(fraction=0.5, error_feedback=False)))  # fmt: skip
    # Execute: one update, then zeros: the residuals deliver the rest
    delivered = np.zeros(64)
    for round_ in range(30):
        vector = update if round_ == 0 else np.zeros(64)
        result = aggregator.aggregate([ClientUpdate(c, vector.copy(), 10) for c in range(1, 6)], {},
                                      rng=np.random.default_rng(round_))  # fmt: skip
        assert result.mean is not None
        delivered += result.mean
    # Assert
    np.testing.assert_allclose(delivered, update, atol=1e-5)
