"""Range discovery's exact rules (secagg.ranges), as properties over hostile-looking values.

- The digits of every hospital's histogram sum, then recombine, to the plain sum of the
  histograms, bucket for bucket, whatever the values (zeros of either sign, subnormals,
  exact powers of two, values beyond the top bucket, infinities).
- With the default coverage, the discovered clip clips nothing below ``2^max_exponent``:
  quantized under it every such coordinate has a clipped count of 0 and lies within one
  step of its value.
- Every clip a discovery can pick has a finite scale at the round's bits, or the discovery
  round is refused before it runs (a round whose histogram would be revealed for an
  aggregation that must then be refused).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.errors import ConfigurationError, OverflowDetectedError
from secagg.ranges import RangeDiscovery
from secagg.segments import Segment, SegmentTable, check_scales, quantize_segments

TABLE = SegmentTable((Segment("w", 6), Segment("steps", 2, integer=True), Segment("b", 3)))
FLOAT_PARTS = (("w", slice(0, 6)), ("b", slice(8, 11)))

special = st.sampled_from([0.0, -0.0, 5e-324, -2.2250738585072014e-308, 2.0**-24, -(2.0**-25), 1.0, 2.0**40, -np.inf])
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
coordinate = st.one_of(special, finite, finite.map(lambda x: math.ldexp(1.0, int(x) % 120 - 60) if x else 0.0))


def _vector(draw: st.DrawFn, values: st.SearchStrategy[float]) -> np.ndarray:
    floats = draw(st.lists(values, min_size=9, max_size=9))
    return np.array([*floats[:6], 1.0, -1.0, *floats[6:]], dtype=np.float64)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), hospitals=st.integers(1, 5), bits=st.sampled_from([2, 3, 8, 16, 32, 53]))
def test_summed_digits_recombine_to_the_plain_histogram_sum(data: st.DataObject, hospitals: int, bits: int) -> None:
    discovery = RangeDiscovery()
    vectors = [_vector(data.draw, coordinate) for _ in range(hospitals)]
    encodings = [discovery.encode(v, TABLE, bits) for v in vectors]
    qmax = (1 << (bits - 1)) - 1
    assert all(float(e.max()) <= qmax and float(e.min()) >= 0 for e in encodings)  # every digit fits a coordinate
    summed = discovery.decode(np.sum(encodings, axis=0), TABLE, bits, hospitals)
    for name, part in FLOAT_PARTS:
        plain = sum(discovery.histogram(v[part]) for v in vectors)
        assert summed[name].tolist() == plain.tolist()


@settings(max_examples=60, deadline=None)
@given(data=st.data(), hospitals=st.integers(1, 4), bits=st.sampled_from([2, 8, 16, 53]))
def test_the_discovered_clip_clips_nothing_below_the_top_bucket(data: st.DataObject, hospitals: int, bits: int) -> None:
    discovery = RangeDiscovery()
    below_top = st.floats(-(2.0**40), 2.0**40, exclude_min=True, exclude_max=True, allow_nan=False)
    values = st.one_of(below_top, special.filter(lambda x: abs(x) < 2.0**40))
    vectors = [_vector(data.draw, values) for _ in range(hospitals)]
    total = np.sum([discovery.encode(v, TABLE, bits) for v in vectors], axis=0)
    summed = discovery.decode(total, TABLE, bits, hospitals)
    table = TABLE.with_clips(discovery.clips(summed))
    qmax = (1 << (bits - 1)) - 1
    for index, vector in enumerate(vectors):
        integers, counts = quantize_segments(vector, table, bits, np.random.default_rng(index))
        assert counts == (0, 0, 0)
        for name, part in FLOAT_PARTS:
            clip = table.clips[name]
            assert clip is not None and all(abs(x) < clip for x in vector[part])
            step = clip / qmax
            assert np.all(np.abs(integers[part] * step - vector[part]) <= step)


@pytest.mark.parametrize("bits", [32, 40, 53])  # from about 26 bits the bound is above -1000
def test_a_discovery_whose_smallest_clip_has_no_finite_scale_is_refused_before_it_runs(bits: int) -> None:
    qmax = (1 << (bits - 1)) - 1
    # The lowest min_exponent whose clip 2^min_exponent still has a finite scale, and one below it
    lowest = next(e for e in range(-1074, 0) if math.isfinite(qmax / math.ldexp(1.0, e)))
    at_bound = RangeDiscovery(min_exponent=lowest)
    check_scales(SegmentTable((Segment("w", 1, math.ldexp(1.0, lowest)),)), bits)
    assert at_bound.table(TABLE, bits).size > 1
    with pytest.raises(ConfigurationError, match="min_exponent"):
        RangeDiscovery(min_exponent=lowest - 1).table(TABLE, bits)


def test_a_sum_of_no_contributions_is_refused_not_read_as_the_smallest_clips() -> None:
    # Zero contributors "sum" to zeros, which passed both checks (header 0, counts summing to 0)
    # and gave every segment the smallest clip 2^min_exponent: everything clipped next round.
    discovery = RangeDiscovery()
    with pytest.raises(ConfigurationError, match="contributors"):
        discovery.decode(np.zeros(discovery.table(TABLE, 16).size), TABLE, 16, 0)
    with pytest.raises(ConfigurationError, match="contributors"):
        discovery.decode(discovery.encode(np.zeros(11), TABLE, 16), TABLE, 16, True)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "counts",
    [
        [0] * RangeDiscovery().buckets,  # nothing counted: no clip covers "all" of nothing
        [5] * (RangeDiscovery().buckets - 1),  # another discovery's bucket count
        [5, -1] + [0] * (RangeDiscovery().buckets - 2),  # a negative count
    ],
    ids=["empty", "wrong-length", "negative"],
)
def test_a_histogram_no_discovery_sums_to_is_refused_by_clip(counts: list[int]) -> None:
    with pytest.raises(ConfigurationError, match="histogram"):
        RangeDiscovery().clip(counts)


BUCKETS = RangeDiscovery().buckets


@pytest.mark.parametrize(
    "counts",
    [
        [1.5] * BUCKETS,  # read as 1 each: a clip from counts nobody summed
        [0.4] * BUCKETS,  # read as 0 each
        np.array([1e30] + [0.0] * (BUCKETS - 1)),  # no int64: cast to its minimum with a RuntimeWarning
        [True] * BUCKETS,  # flags, not counts
    ],
    ids=["fraction", "below-one", "beyond-int64", "bool"],
)
def test_a_histogram_of_counts_that_are_not_whole_numbers_is_refused_by_clip_never_truncated(counts: object) -> None:
    # Exact or refused: the clip is read from whole counts as decode gives them, never from a cast.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ConfigurationError, match="histogram"):
            RangeDiscovery().clip(counts)  # type: ignore[arg-type]
    # The bound: whole counts, as integers or as exact whole floats, give the clip they count
    assert RangeDiscovery().clip([1] * BUCKETS) == RangeDiscovery().clip([1.0] * BUCKETS) == 2.0**40


@settings(max_examples=80, deadline=None)
@given(
    data=st.data(),
    exponent=st.integers(-60, 60),
    bits=st.integers(2, 53),
)
def test_under_a_power_of_two_clip_the_clipped_count_is_exactly_the_values_beyond_it(
    data: st.DataObject, exponent: int, bits: int
) -> None:
    # Discovered clips are powers of two: their scale qmax * 2^-e is exact, so |x| * scale > qmax
    # (the count's rule, in binary64) holds exactly when |x| > clip, the neighbours of the clip included.
    clip = math.ldexp(1.0, exponent)
    edges = [clip, -clip, float(np.nextafter(clip, np.inf)), float(np.nextafter(-clip, -np.inf)),
             float(np.nextafter(clip, 0.0)), 0.0, -0.0, 5e-324]  # fmt: skip
    scaled = st.floats(-4.0, 4.0, allow_nan=False).map(lambda x: x * clip)
    values = np.array(edges + data.draw(st.lists(st.one_of(scaled, finite), min_size=1, max_size=20)))
    table = SegmentTable((Segment("w", values.shape[0], clip),))
    integers, counts = quantize_segments(values, table, bits, np.random.default_rng(0))
    assert counts == (int(np.count_nonzero(np.abs(values) > clip)),)
    qmax = (1 << (bits - 1)) - 1
    assert np.array_equal(integers[np.abs(values) >= clip], qmax * np.sign(values[np.abs(values) >= clip]))


@pytest.mark.parametrize("bits", [1.5, 0, 1, 54, 100, True])
def test_range_discovery_refuses_bits_outside_2_to_53_with_the_librarys_error(bits: object) -> None:
    discovery = RangeDiscovery()
    with pytest.raises(ConfigurationError, match="bits"):
        discovery.encode(np.zeros(11), TABLE, bits)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="bits"):
        discovery.digits(11, bits)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="bits"):
        discovery.table(TABLE, bits)  # type: ignore[arg-type]


def test_range_discovery_refuses_a_segment_table_or_values_of_the_wrong_kind() -> None:
    discovery = RangeDiscovery()
    with pytest.raises(ConfigurationError, match="segments"):
        discovery.encode(np.zeros(11), "w", 16)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="segments"):
        discovery.table([Segment("w", 3)], 16)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="histogram"):
        discovery.histogram(["a", "b"])


@pytest.mark.parametrize("bad", [math.nan, math.inf, 2.0**53 + 2, -(2.0**60)])
def test_a_histogram_sum_that_is_no_exact_integer_is_detected_not_cast(bad: float) -> None:
    # NaN and inf were cast to int64's minimum (a RuntimeWarning) and beyond 2^53 a binary64 is
    # not every integer: such a sum is refused as impossible before any count is read from it.
    discovery = RangeDiscovery()
    total = 2 * discovery.encode(np.zeros(11), TABLE, 16)
    total[3] = bad
    with pytest.raises(OverflowDetectedError, match="exact integer"):
        discovery.decode(total, TABLE, 16, 2)
    with pytest.raises(ConfigurationError, match="summed entries"):
        discovery.decode(total[:-1], TABLE, 16, 2)
