"""SessionDescriptor.create (what integrators call once per round) refuses a weight key it cannot
bind with the library's error, never Python's AttributeError or UnicodeEncodeError."""

from __future__ import annotations

import pytest

from secagg.descriptor import MAX_WEIGHT_KEY_BYTES, SessionDescriptor
from secagg.errors import ConfigurationError


@pytest.mark.parametrize("key", ["n\ud800", 5, b"num_samples", None], ids=["lone-surrogate", "int", "bytes", "none"])
def test_a_weight_key_that_is_no_utf_8_string_is_refused(key: object) -> None:
    with pytest.raises(ConfigurationError, match="weight_key"):
        SessionDescriptor.create(None, weight_key=key)  # type: ignore[arg-type]


def test_a_weight_key_at_its_byte_bound_is_bound_and_one_past_it_refused() -> None:
    at_bound = SessionDescriptor.create(None, weight_key="é" * (MAX_WEIGHT_KEY_BYTES // 2))
    assert len(at_bound.weight_key) == MAX_WEIGHT_KEY_BYTES
    with pytest.raises(ConfigurationError, match="weight_key"):
        SessionDescriptor.create(None, weight_key="é" * (MAX_WEIGHT_KEY_BYTES // 2) + "x")
