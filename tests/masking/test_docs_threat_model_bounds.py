"""docs/threat-model.md's colluder and dropout formulas, recomputed for every small shape.

"Adversaries" (item 3) and "The self-held seed share" state c and d as formulas of t, n (or k) and
min_contributors; tests/masking/test_docs_guarantee_tables.py ties their worked examples (n = 5, 10,
20). Here each formula is checked against the computed guarantee of every configuration the code
accepts at 3..12 clients, and the phrase is checked to be in the docs, so a changed computation fails
until the docs say so.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from secagg.errors import ConfigurationError
from secagg.masking import ACTIVE, HARARY, SEMI_HONEST, MaskingConfig
from secagg.paillier.parameters import threshold_guarantee
from secagg.primitives.signing import placeholder_public_keys

DOCS = Path(__file__).resolve().parents[2] / "docs" / "threat-model.md"
TEXT = " ".join(DOCS.read_text(encoding="utf-8").split())
SIZES = range(3, 13)


def _keys(n: int) -> tuple[bytes, ...]:
    return placeholder_public_keys(n)


def _complete(n: int, t: int, mode: str) -> MaskingConfig | None:
    try:
        return MaskingConfig(num_clients=n, threshold=t, vector_length=1, mode=mode,
                             identity_keys=_keys(n) if mode == ACTIVE else ())
    except ConfigurationError:
        return None


@pytest.mark.parametrize("n", SIZES)
def test_complete_graph_c_and_d_are_the_formulas_the_threat_model_states(n: int) -> None:
    assert "Semi-honest masking: c = t - 2 on the complete graph" in TEXT
    assert "Active masking on the complete graph: c = min(t - 2, 2t - n - 1)" in TEXT
    assert "d = n - t, and n = 3 with t = 2 survives any one dropout" in TEXT
    accepted = {SEMI_HONEST: 0, ACTIVE: 0}
    for t in range(2, n):
        for mode in (SEMI_HONEST, ACTIVE):
            config = _complete(n, t, mode)
            if config is None:
                # refused exactly where the formula leaves no colluder (c < 0: the lying server itself)
                assert mode == ACTIVE and min(t - 2, 2 * t - n - 1) < 0, (n, t, mode)
                continue
            accepted[mode] += 1
            expected = t - 2 if mode == SEMI_HONEST else min(t - 2, 2 * t - n - 1)
            assert (config.guarantee.colluders, config.guarantee.dropouts) == (expected, n - t), (n, t, mode)
            assert f"{expected} colluding client" in str(config.guarantee)
    assert accepted[SEMI_HONEST] == n - 2 and accepted[ACTIVE] >= 1


@pytest.mark.parametrize("parties", SIZES)
def test_paillier_c_is_the_formula_the_threat_model_states(parties: int) -> None:
    assert "Paillier: c = min(t - 1, min_contributors - 2, 2t - l - 1) for l key shares" in TEXT
    assert "c = min(t - 1, min_contributors - 2, 2t - l - 1) colluding key-share holders" in TEXT
    for t in range(parties // 2 + 1, parties + 1):
        for m in range(2, parties + 1):
            guarantee = threshold_guarantee(parties, t, parties, m)
            assert guarantee.colluders == min(t - 1, m - 2, 2 * t - parties - 1), (parties, t, m)


@pytest.mark.parametrize(("n", "mode"), [(20, SEMI_HONEST), (40, SEMI_HONEST), (20, ACTIVE), (30, ACTIVE)])
def test_a_harary_neighbourhood_holds_at_most_t_minus_1_colluders_and_active_mode_2t_above_k_plus_them(
    n: int, mode: str
) -> None:
    assert "t - 1 per neighbourhood on a Harary graph" in TEXT
    assert "setup enforces `2t > k + corrupt_neighbours`" in TEXT
    config = MaskingConfig.secagg_plus(n, 4, complete_up_to=0, mode=mode, identity_keys=_keys(n) if mode == ACTIVE
                                       else ())
    assert config.graph == HARARY
    assert config.corrupt_neighbours <= config.threshold - 1
    if mode == ACTIVE:
        assert 2 * config.threshold > config.holders + config.corrupt_neighbours


def test_active_harary_defaults_count_every_colluder_in_a_neighbourhood_up_to_the_size_the_docs_name() -> None:
    # "Pairwise masking, active mode": while corrupt_neighbours >= c the split bound 2t > k + c_N covers
    # all c colluders in one neighbourhood, deterministically. Every n in 101..1464 was checked once
    # (about 5 minutes); here the last size where it holds and the first where it does not.
    assert "the active defaults up to 1,464 clients; at 1,465, k = 912, t = 493, 72 corrupt neighbours against " \
           "c = 73" in TEXT
    last, first = (MaskingConfig.secagg_plus(n, 2, mode=ACTIVE, identity_keys=_keys(n)) for n in (1464, 1465))
    assert last.graph == first.graph == HARARY
    assert last.corrupt_neighbours >= last.guarantee.colluders
    assert (first.holders, first.threshold, first.corrupt_neighbours, first.guarantee.colluders) == (912, 493, 72, 73)
