"""The guarantee tables of docs/masking.md, recomputed: every figure printed there is the code's.

"Choosing parameters" prints, per n and mode, the default configuration's graph, k, t and its
computed guarantee (c colluders, d dropouts, with the failure probability a Harary graph carries),
and the SecAgg+ derivation's (k, t) for a few (n, gamma, delta, mode). Each row is rebuilt here
from the same inputs, so a changed default or derivation fails until the docs say so.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from secagg.guarantee import Guarantee
from secagg.masking import ACTIVE, SEMI_HONEST, MaskingConfig
from secagg.masking.parameters import derive_secagg_plus

DOCS = Path(__file__).resolve().parents[2] / "docs" / "masking.md"


def _table(header: str) -> list[list[str]]:
    """The rows (cells stripped) of the docs/masking.md table whose header line is ``header``."""
    lines = DOCS.read_text(encoding="utf-8").splitlines()
    start = lines.index(header)
    assert set(lines[start + 1].replace("|", "").split()) == {"---"}
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    assert rows, f"no rows under {header!r}"
    return rows


def _figure(count: int, failure_bits: int) -> str:
    """A guarantee's count as the table prints it: exact, or with the probability it fails."""
    return f"{count} (except w.p. 2^-{failure_bits})" if failure_bits else str(count)


def _keys(n: int, mode: str) -> tuple[bytes, ...]:
    return tuple(i.to_bytes(2, "big") * 16 for i in range(n)) if mode == ACTIVE else ()


DEFAULTS = _table("| n | mode | graph | k | t | c | d |")


@pytest.mark.parametrize("row", DEFAULTS, ids=[f"{r[0]}-{r[1]}" for r in DEFAULTS])
def test_the_defaults_table_is_the_computed_guarantee(row: list[str]) -> None:
    # Prepare: the row's n and mode, built as the text above the table says (secagg_plus's defaults)
    n, mode = int(row[0]), row[1]
    assert mode in (SEMI_HONEST, ACTIVE)
    # Execute
    config = MaskingConfig.secagg_plus(n, 2, mode=mode, identity_keys=_keys(n, mode))
    guarantee: Guarantee = config.guarantee
    # Assert: graph, k, t, and c and d as the printed guarantee states them (failure bits included)
    computed = [
        str(n), mode, config.graph, str(config.holders), str(config.threshold),
        _figure(guarantee.colluders, guarantee.privacy_failure_bits),
        _figure(guarantee.dropouts, guarantee.completion_failure_bits),
    ]  # fmt: skip
    assert row == computed
    for figure in (f"{guarantee.colluders} colluding", f"{guarantee.dropouts} dropouts"):
        assert figure in str(guarantee)
    if guarantee.privacy_failure_bits:
        assert f"2^-{guarantee.privacy_failure_bits}" in str(guarantee)


def test_the_defaults_table_covers_both_modes_and_both_graphs() -> None:
    assert {(row[1], row[2]) for row in DEFAULTS} == {
        (mode, graph) for mode in (SEMI_HONEST, ACTIVE) for graph in ("complete", "harary")
    }


DERIVED = _table("| n | \u03b3 | \u03b4 | mode | k | t |")  # gamma, delta


@pytest.mark.parametrize("row", DERIVED, ids=["-".join(r[:4]) for r in DERIVED])
def test_the_secagg_plus_derivation_table_is_the_computed_one(row: list[str]) -> None:
    n, gamma, delta, mode = int(row[0]), float(row[1]), float(row[2]), row[3]
    derived = derive_secagg_plus(n, gamma, delta, active={ACTIVE: True, SEMI_HONEST: False}[mode])
    assert not derived.complete
    assert [row[4], row[5]] == [str(derived.degree), str(derived.threshold)]
