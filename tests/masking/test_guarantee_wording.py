"""The printed guarantee reads as English at every count: one colluding client, one dropout."""

from __future__ import annotations

import pytest

from secagg.guarantee import Guarantee


@pytest.mark.parametrize(
    ("colluders", "dropouts", "expected"),
    [
        (1, 1, "plus up to 1 colluding client; completes with up to 1 dropout"),
        (0, 0, "plus up to 0 colluding clients; completes with up to 0 dropouts"),
        (2, 3, "plus up to 2 colluding clients; completes with up to 3 dropouts"),
    ],
)
def test_the_guarantee_line_counts_in_the_singular_and_the_plural(colluders: int, dropouts: int, expected: str) -> None:
    line = str(Guarantee(colluders=colluders, dropouts=dropouts, lying_server=True))
    assert line == f"private against a lying server {expected}"
