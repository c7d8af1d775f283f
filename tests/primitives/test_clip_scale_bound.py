"""A clip so small that its scale ``qmax / clip`` leaves binary64 is refused, never encoded.

With ``scale = inf`` a zero coordinate scales to ``0 * inf = NaN`` and becomes int64's most
negative value (numpy's cast of NaN), silently: the encodings are garbage that sometimes even
cancels in the ring. A lying server can hand such a clip (any positive finite float is a valid
segment clip) in a Flower round's table, so the node must refuse it before it trains. The bound
is computed: the smallest clip whose scale is finite is accepted and encodes exactly, the float
just below it is refused.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from fl_core.aggregators import ClientUpdate, make_aggregator
from secagg.encoding import QuantizationConfig, quantize_to_integers
from secagg.errors import ConfigurationError
from secagg.integrations.flower.clipping import node_table
from secagg.segments import Segment, SegmentTable, quantize_segments

BITS = (2, 16, 53)


def _float(bits: int) -> float:
    return float(struct.unpack(">d", bits.to_bytes(8, "big"))[0])


def smallest_clip(bits: int) -> float:
    """The smallest positive double ``c`` with ``qmax / c`` finite (bisection over the doubles' order)."""
    qmax = (1 << (bits - 1)) - 1
    low, high = 1, int.from_bytes(struct.pack(">d", 1.0), "big")
    while low < high:
        middle = (low + high) // 2
        if math.isfinite(qmax / _float(middle)):
            high = middle
        else:
            low = middle + 1
    return _float(low)


@pytest.mark.parametrize("bits", BITS)
def test_the_smallest_clip_with_a_finite_scale_encodes_exactly(bits: int) -> None:
    clip = smallest_clip(bits)
    qmax = (1 << (bits - 1)) - 1
    values = np.array([0.0, -0.0, clip, -clip, 5e-324, 1.0])
    table = SegmentTable((Segment("w", 6, clip),))
    integers, counts = quantize_segments(values, table, bits, np.random.default_rng(0))
    assert integers[:4].tolist() == [0, 0, qmax, -qmax]
    assert integers[5] == qmax and counts[0] >= 1  # 1.0 is far beyond the clip: clipped and counted
    assert 0 <= integers[4] <= 1
    config = QuantizationConfig(clip, bits, 1, 64)
    assert quantize_to_integers(values, config, np.random.default_rng(0))[:4].tolist() == [0, 0, qmax, -qmax]


@pytest.mark.parametrize("bits", BITS)
def test_one_float_below_it_the_clip_is_refused_not_encoded_as_garbage(bits: int) -> None:
    clip = float(np.nextafter(smallest_clip(bits), 0.0))
    assert not math.isfinite(((1 << (bits - 1)) - 1) / clip)
    table = SegmentTable((Segment("w", 3, clip), Segment("steps", 1, integer=True)))
    with pytest.raises(ConfigurationError, match="scale"):
        quantize_segments(np.zeros(4), table, bits, np.random.default_rng(0))
    with pytest.raises(ConfigurationError, match="scale"):
        QuantizationConfig(clip, bits, 1, 64)


def test_a_subnormal_clip_in_an_aggregators_table_is_refused_for_everyone() -> None:
    # Three hospitals with zero updates: each zero encoded as -2^63 summed to -2^63 (or, in pairs,
    # to a wrapped 0 that looked right); the round must be refused before anything is encoded.
    aggregator = make_aggregator("plain-quantized", num_clients=3, clipping="fixed", ring_bits=64)
    table = SegmentTable((Segment("w", 4, 5e-324),))
    updates = [ClientUpdate(k, np.zeros(4), 1) for k in range(3)]
    with pytest.raises(ConfigurationError, match="scale"):
        aggregator.aggregate(updates, rng=np.random.default_rng(0), segments=table)


def test_a_flower_node_refuses_a_servers_table_whose_clip_has_no_finite_scale() -> None:
    # A lying server's table: a valid encoding (a positive finite clip), but one no node can quantize under.
    config = QuantizationConfig(0.5, 16, 3)
    table = SegmentTable((Segment("model/w", 4, 1e-310), Segment("model/b", 2, 0.5)))
    with pytest.raises(ConfigurationError, match="scale"):
        node_table(table.describe(), config, None)
