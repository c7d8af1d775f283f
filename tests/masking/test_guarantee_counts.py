"""A guarantee never states a negative count: ``Guarantee`` refuses one (ConfigurationError).

A negative c or d (or a negative failure exponent) printed as "up to -1 colluding clients"
would read as a guarantee while stating none; every caller computes its counts, so a negative
one is a bug to surface, not a line to print.
"""

from __future__ import annotations

import pytest

from secagg.errors import ConfigurationError
from secagg.guarantee import Guarantee


@pytest.mark.parametrize("field", ["colluders", "dropouts", "privacy_failure_bits", "completion_failure_bits"])
def test_a_negative_count_is_refused_naming_the_field(field: str) -> None:
    # Prepare: every count at its bound, 0, except ``field`` one past it.
    counts = {"colluders": 0, "dropouts": 0, "privacy_failure_bits": 0, "completion_failure_bits": 0}
    counts[field] = -1

    # Act / Assert
    with pytest.raises(ConfigurationError, match=rf"{field} must be >= 0, got -1"):
        Guarantee(lying_server=True, **counts)


def test_zero_counts_are_a_guarantee() -> None:
    # The bound itself: every count 0 is accepted and printed.
    line = str(Guarantee(0, 0, lying_server=True, privacy_failure_bits=0, completion_failure_bits=0))
    assert line == "private against a lying server plus up to 0 colluding clients; completes with up to 0 dropouts"
