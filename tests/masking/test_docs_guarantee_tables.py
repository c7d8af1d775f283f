"""The guarantee tables of docs/masking.md, recomputed: every figure printed there is the code's.

"Choosing parameters" prints, per n and mode, the default configuration's graph, k, t and its
computed guarantee (c colluders, d dropouts, with the failure probability a Harary graph carries),
and the SecAgg+ derivation's (k, t) for a few (n, gamma, delta, mode). Each row is rebuilt here
from the same inputs, so a changed default or derivation fails until the docs say so.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from secagg.dp.floors import masking_floor
from secagg.guarantee import Guarantee
from secagg.masking import ACTIVE, SEMI_HONEST, MaskingConfig
from secagg.masking.parameters import derive_secagg_plus
from secagg.primitives.signing import placeholder_public_keys

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
    return placeholder_public_keys(n) if mode == ACTIVE else ()


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
    for figure in (f"{guarantee.colluders} colluding", f"{guarantee.dropouts} dropout"):
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


# --- the worked examples in the prose, each rebuilt from the code -----------------------------------


def _text(name: str) -> str:
    """docs/``name`` with its whitespace collapsed (prose wraps anywhere)."""
    return " ".join((DOCS.parent / name).read_text(encoding="utf-8").split())


def _active(n: int) -> MaskingConfig:
    return MaskingConfig.secagg(n, 2, mode=ACTIVE, identity_keys=_keys(n, ACTIVE))


def _semi_honest(n: int) -> MaskingConfig:
    return MaskingConfig.secagg(n, 2, mode=SEMI_HONEST)


def _count(value: int, noun: str) -> str:
    return f"{value} {noun}{'' if value == 1 else 's'}"


def _masking_examples() -> list[tuple[str, str]]:
    a5, a6, a10, a20 = (_active(n) for n in (5, 6, 10, 20))
    s5 = _semi_honest(5)
    c10, d10 = a10.guarantee.colluders, a10.guarantee.dropouts
    t5_of_6 = MaskingConfig(num_clients=6, threshold=5, vector_length=2, mode=ACTIVE, identity_keys=_keys(6, ACTIVE))
    large = MaskingConfig.secagg_plus(200, 2, mode=ACTIVE, identity_keys=_keys(200, ACTIVE))
    plus5 = MaskingConfig.secagg_plus(5, 2, mode=ACTIVE, identity_keys=_keys(5, ACTIVE))
    floors = [f"{masking_floor(_active(n))} / {masking_floor(_semi_honest(n))}" for n in (5, 10, 20)]
    survived = ["no", "one", "two", "three"][s5.guarantee.dropouts]
    return [
        ("threat-model.md",
         f"n = 10, t = {a10.threshold} (the default, c = {c10}) protects against {c10} colluders, not {c10 + 1}, "
         f"and survives {_count(d10, 'dropout')}"),
        ("threat-model.md",
         f"n = 5: c = {a5.colluders} declared, t = {a5.threshold}, protects against "
         f"{_count(a5.guarantee.colluders, 'colluder')}"),
        ("threat-model.md",
         f"n = 20: c = {a20.colluders}, t = {a20.threshold} against {_count(a20.guarantee.colluders, 'colluder')} "
         f"(before 2), {_count(a20.guarantee.dropouts, 'dropout')}"),
        ("privacy.md", f"{masking_floor(a6)} for 6 nodes (t = {a6.threshold}), {masking_floor(a10)} for 10 "
                       f"(t = {a10.threshold})"),
        ("privacy.md", f"200 nodes in active mode, t = {large.threshold}, h = {masking_floor(large)} rather than "
                       f"{200 - large.guarantee.colluders - large.guarantee.dropouts}"),
        ("privacy.md", f"t = 5 instead of {a6.threshold} to 6 active nodes: c = {t5_of_6.guarantee.colluders}, "
                       f"a sum of 5 may hold {masking_floor(t5_of_6)} honest"),
        ("privacy.md", f"5 hospitals, t = {plus5.threshold} and c = {plus5.guarantee.colluders}"),
        ("privacy.md", f"secagg+ at 5 hospitals h = {min(4, masking_floor(plus5))}"),
        ("privacy.md", f"semi-honest masking): 5 hospitals {floors[0]}, 10: {floors[1]}, 20: {floors[2]};"),
        ("fedavg.md", f"With 5 hospitals, `secagg` uses the complete graph with t = {a5.threshold} in active mode"),
        ("fedavg.md", f"t = {s5.threshold} and {survived} dropouts are survived"),
    ]  # fmt: skip


@pytest.mark.parametrize(("doc", "phrase"), _masking_examples(), ids=lambda value: value[:40])
def test_a_worked_example_in_the_docs_is_what_the_code_computes(doc: str, phrase: str) -> None:
    assert phrase in _text(doc), f"docs/{doc} no longer says what the code computes: {phrase!r}"
