"""A segment's length is a u64 in the table's canonical bytes (docs/spec.md, 3.1): the bound is
checked when the segment is made (ConfigurationError), not found by ``int.to_bytes`` when the
table is described or hashed (a Python OverflowError out of the library's API)."""

from __future__ import annotations

import pytest

from secagg.errors import ConfigurationError
from secagg.segments import Segment, SegmentTable

U64_MAX = (1 << 64) - 1


def test_a_segment_of_the_largest_u64_length_is_described_and_hashed() -> None:
    table = SegmentTable((Segment("w", U64_MAX, 0.5),))
    assert table.describe()[-17:-9] == b"\xff" * 8 and len(table.digest()) == 32


@pytest.mark.parametrize("integer", [False, True])
def test_one_past_it_the_segment_is_refused_with_the_librarys_error(integer: bool) -> None:
    with pytest.raises(ConfigurationError, match="length"):
        Segment("w", U64_MAX + 1, None, integer)


def test_a_segment_name_without_utf_8_is_refused_with_the_librarys_error() -> None:
    # A lone surrogate (what decoding bytes that are not UTF-8 with surrogateescape gives) has no
    # UTF-8 form, so the table could not be described: refused, not a UnicodeEncodeError.
    with pytest.raises(ConfigurationError, match="UTF-8"):
        Segment("w\udcff", 3, 0.5)
    assert Segment("w\u00ff", 3, 0.5).name == "wÿ"
