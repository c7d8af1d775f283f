"""No silent clipping (issue 14, item 2): counts inside the secure sum, a warning, an adaptive clip."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fl_core.aggregators import (
    AdaptiveClip,
    ClientUpdate,
    DropoutStage,
    FixedClip,
    WeightedQuantizer,
    make_aggregator,
)
from fl_core.aggregators.clipping import ClipSchedule
from secagg.encoding import QuantizationConfig, quantize_to_integers
from secagg.errors import ConfigurationError, OverflowDetectedError
from secagg.segments import (
    CLIPPING_WARNING_LEVEL,
    ClippingWarning,
    Segment,
    SegmentTable,
    clipping_report,
    quantize_segments,
)


def _updates(vectors: list[np.ndarray], counts: list[int] | None = None) -> list[ClientUpdate]:
    counts = counts or [1 + 3 * k for k in range(len(vectors))]
    return [ClientUpdate(k, v.astype(np.float64), n) for k, (v, n) in enumerate(zip(vectors, counts, strict=True))]


def test_a_mean_of_1_8_is_reported_clipped_with_a_warning_then_comes_back_1_8() -> None:
    # Prepare: three hospitals whose every coordinate is 1.8 (the default starting clip is 0.5)
    updates = _updates([np.full(50, 1.8)] * 3)
    aggregator = make_aggregator("secagg", num_clients=3)
    # Execute / Assert: round 1 clips everything and says so
    with pytest.warns(ClippingWarning, match="150 of 150 coordinates clipped"):
        first = aggregator.aggregate(updates, rng=np.random.default_rng(0))
    assert first.clipped_count == 150 and first.clipped_fraction == 1.0
    # the adaptive clip grows from the securely summed count; within a few rounds 1.8 comes back
    for _ in range(4):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ClippingWarning)
            result = aggregator.aggregate(updates, rng=np.random.default_rng(1))
    assert result.mean is not None and result.clipping is not None
    step = result.clipping.table.segments[0].clip / aggregator.quantizer.config.qmax
    assert result.clipped_fraction == 0.0
    np.testing.assert_allclose(result.mean, 1.8, rtol=0, atol=step)


def test_a_fixed_clip_above_the_values_is_exact_within_a_step_and_silent() -> None:
    updates = _updates([np.full(20, 1.8), np.full(20, -1.2), np.full(20, 0.3)])
    aggregator = make_aggregator("plain-quantized", num_clients=3, clip=2.0, clipping="fixed")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClippingWarning)
        result = aggregator.aggregate(updates, rng=np.random.default_rng(0))
    expected = (1 * 1.8 + 4 * -1.2 + 7 * 0.3) / 12
    assert result.mean is not None and result.clipped_fraction == 0.0
    np.testing.assert_allclose(result.mean, expected, rtol=0, atol=2.0 / 32767)


@pytest.mark.parametrize("name", ["secagg", "secagg+"])
def test_clipped_counts_summed_securely_equal_the_plain_count(name: str) -> None:
    # Prepare: five hospitals, heavy tails; one drops before uploading
    rng = np.random.default_rng(7)
    vectors = [rng.standard_t(2, size=300) * 0.3 for _ in range(5)]
    updates = _updates(vectors)
    dropouts = {3: DropoutStage.UPLOAD}
    # Execute
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClippingWarning)
        secure = make_aggregator(name, num_clients=5).aggregate(updates, dropouts, rng=np.random.default_rng(1))
        clear = make_aggregator("plain-quantized", num_clients=5).aggregate(
            updates, dropouts, rng=np.random.default_rng(1)
        )
    # Assert: the total equals the count of |x| > clip over the included hospitals, and the clear reference
    plain_count = sum(int(np.count_nonzero(np.abs(vectors[k]) > 0.5)) for k in sorted(secure.included))
    assert secure.clipped_count == plain_count == clear.clipped_count > 0
    assert secure.clipped_fraction == pytest.approx(plain_count / (300 * len(secure.included)))
    assert secure.mean is not None and clear.mean is not None
    assert np.array_equal(secure.mean, clear.mean)


def test_the_warning_fires_only_above_the_stated_level() -> None:
    # 1% is the level: 1 clipped coordinate of 100 stays silent, 2 of 100 warn
    assert CLIPPING_WARNING_LEVEL == 0.01
    quiet, loud = np.zeros(100), np.zeros(100)
    quiet[0] = 9.0
    loud[:2] = 9.0
    for vector, expect in ((quiet, False), (loud, True)):
        aggregator = make_aggregator("plain-quantized", num_clients=1, clipping="fixed")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            aggregator.aggregate(_updates([vector]), rng=np.random.default_rng(0))
        assert any(issubclass(w.category, ClippingWarning) for w in caught) == expect


@pytest.mark.parametrize(("target", "quantile"), [(0.05, 1.959964), (0.001, 3.290527)])
def test_the_adaptive_clip_converges_to_the_target_quantile_on_a_synthetic_stream(
    target: float, quantile: float
) -> None:
    # Prepare: a stationary stream of N(0, 1) updates, 4 hospitals x 5000 coordinates per round
    rng = np.random.default_rng(11)
    aggregator = make_aggregator("plain-quantized", num_clients=4, clipping=AdaptiveClip(target=target))
    fractions = []
    # Execute
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClippingWarning)
        for _ in range(400):
            result = aggregator.aggregate(_updates([rng.standard_normal(5000) for _ in range(4)]), rng=rng)
            fractions.append(result.clipped_fraction)
    # Assert: the clip sits at the (1 - target) quantile of |x|, and the clipped fraction at the target
    clip = aggregator.schedule.clips[""]
    assert clip == pytest.approx(quantile, rel=0.05)
    assert np.mean(fractions[-100:]) == pytest.approx(target, rel=0.25)


def test_the_fixed_clip_never_moves_and_unknown_policies_are_refused() -> None:
    schedule = ClipSchedule(FixedClip(), 0.5)
    table = schedule.table(4)
    _, counts = quantize_segments(np.full(4, 3.0), table, 16, np.random.default_rng(0))
    with pytest.warns(ClippingWarning):
        schedule.observe(clipping_report(table, counts, 1))
    assert schedule.table(4).segments[0].clip == 0.5
    with pytest.raises(ConfigurationError, match="unknown clipping"):
        make_aggregator("secagg", num_clients=3, clipping="sometimes")
    with pytest.raises(ConfigurationError):
        AdaptiveClip(target=1.5)


def test_per_segment_clips_counts_and_exact_integer_segments() -> None:
    # Prepare: a small float tensor, a wide one and an integer counter
    table = SegmentTable((Segment("small", 3, 0.1), Segment("wide", 3, 10.0), Segment("steps", 2, integer=True)))
    quantizer = WeightedQuantizer.create(2, clip=0.5)
    a = ClientUpdate(0, np.array([0.05, 0.2, -0.3, 7.0, -11.0, 2.0, 20.0, 20.0]), 3)
    b = ClientUpdate(1, np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 20.0, 20.0]), 1)
    # Execute
    encodings = quantizer.encode_all_integers([a, b], np.random.default_rng(0), table)
    with pytest.warns(ClippingWarning, match="small 33.3%"):
        decoded = quantizer.decode_sum(encodings[0] + encodings[1], 2, table)
    # Assert: counts per segment (2 in "small", 1 in "wide", none for integers); integers exact
    assert decoded.clipping.counts == (2, 1, 0)
    assert decoded.weight_total == 4
    assert np.array_equal(decoded.mean[6:], [20.0, 20.0])
    np.testing.assert_allclose(
        decoded.mean[3:6], [(3 * 7 + 1) / 4, (-3 * 10 + 1) / 4, (3 * 2 + 1) / 4], atol=10 / 32767
    )


def test_integer_segments_refuse_rather_than_clip() -> None:
    table = SegmentTable((Segment("steps", 2, integer=True),))
    quantizer = WeightedQuantizer.create(2, bits=8)
    with pytest.raises(ConfigurationError, match=r"client 0: integer segment 'steps'.*refused rather than clipped"):
        quantizer.encode_integers(ClientUpdate(0, np.array([128.0, 0.0]), 1), np.random.default_rng(0), table)
    with pytest.raises(ConfigurationError, match="whole numbers"):
        quantizer.encode_integers(ClientUpdate(0, np.array([1.5, 0.0]), 1), np.random.default_rng(0), table)


def test_an_integer_segment_given_a_clip_is_refused_not_stripped_of_it() -> None:
    # The caller meant a clip the exact segment cannot have: refused, never dropped silently
    with pytest.raises(ConfigurationError, match="integer segment is exact and takes no clip"):
        Segment("steps", 4, 5.0, integer=True)
    assert Segment("steps", 4, integer=True).clip is None


def test_the_overflow_check_covers_the_count_coordinates() -> None:
    quantizer = WeightedQuantizer.create(3, ring_bits=32)
    # 3 clients x a segment of 2^30 coordinates could wrap Z_(2^32)'s signed range
    with pytest.raises(ConfigurationError, match="clipped counts could overflow"):
        quantizer.check_table(SegmentTable.flat(1 << 30, 0.5))
    # a forged count beyond n * length is detected at decoding, never reported as a fraction
    total = quantizer.encode_integers(ClientUpdate(0, np.zeros(4), 2), np.random.default_rng(0))
    total[4] = 5
    with pytest.raises(OverflowDetectedError, match="clipped count 5 is impossible"):
        quantizer.decode_sum(total, 1)


def test_the_segment_table_with_its_clips_is_bound_into_the_descriptor() -> None:
    quantizer = WeightedQuantizer.create(3)
    one = SegmentTable((Segment("a", 2, 0.5), Segment("b", 2, 0.5)))
    other = one.with_clips({"b": 0.25})
    assert quantizer.descriptor(1, one) != quantizer.descriptor(1, other)
    assert quantizer.descriptor(1, one) == quantizer.descriptor(1, SegmentTable(one.segments))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lengths=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    clips=st.lists(st.sampled_from([0.05, 0.5, 3.0]), min_size=3, max_size=3),
    scale=st.sampled_from([0.1, 1.0, 10.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_secure_decode_equals_plain_quantized_decode_including_counts(
    lengths: list[int], clips: list[float], scale: float, seed: int
) -> None:
    # Prepare: random per-segment clips and values around and beyond them
    table = SegmentTable(tuple(Segment(f"t{i}", n, clips[i]) for i, n in enumerate(lengths)))
    rng = np.random.default_rng(seed)
    updates = _updates([rng.standard_normal(table.size) * scale for _ in range(3)])
    secure = make_aggregator("secagg", num_clients=3, clipping="fixed")
    clear = make_aggregator("plain-quantized", num_clients=3, clipping="fixed")
    # Execute
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClippingWarning)
        got = secure.aggregate(updates, rng=np.random.default_rng(seed), segments=table)
        want = clear.aggregate(updates, rng=np.random.default_rng(seed), segments=table)
    # Assert: bit for bit, counts included, and the counts are the plain counts
    assert got.mean is not None and want.mean is not None and got.clipping is not None
    assert np.array_equal(got.mean, want.mean)
    assert got.clipping == want.clipping
    expected = [
        sum(int(np.count_nonzero(np.abs(u.vector[part]) * (32767 / seg.clip) > 32767)) for u in updates)
        for seg, part in table.slices()
    ]
    assert list(got.clipping.counts) == expected


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=40),
    clip=st.sampled_from([1e-3, 0.5, 7.0]),
    bits=st.integers(2, 53),
    seed=st.integers(0, 2**32 - 1),
)
def test_one_flat_segment_quantizes_exactly_as_secagg_encoding(
    values: list[float], clip: float, bits: int, seed: int
) -> None:
    # The flat case of secagg.segments is section 3 of the spec, draw for draw.
    config = QuantizationConfig(clip, bits, 1, 64)
    q, (count,) = quantize_segments(values, SegmentTable.flat(len(values), clip), bits, np.random.default_rng(seed))
    assert np.array_equal(q, quantize_to_integers(values, config, np.random.default_rng(seed)))
    assert count == sum(abs(v) * config.scale > config.qmax for v in values)


def test_plain_reports_nothing_clipped_and_no_table() -> None:
    result = make_aggregator("plain").aggregate(_updates([np.full(3, 9.0)]), rng=np.random.default_rng(0))
    assert result.clipping is None and result.clipped_count == 0 and result.clipped_fraction == 0.0
