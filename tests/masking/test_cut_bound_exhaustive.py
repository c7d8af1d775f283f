"""The cut term's union bound, checked against every placement of colluders on tiny rings.

spec 12.6, step 2.5 bounds a lying server's cut of a Harary ring H(k, n) (positions i +- 1..k/2
adjacent) by ``n (n - k - 1) / 2 x P[X1 >= m and X2 >= m]``, m = t - k/2. Two claims rest on it,
both checked here over all C(n, B) colluder sets, with exact integer counts:

1. The reduction (docs/threat-model.md, "Declared dropouts and a lying server"): a partial sum is
   released only if some set S of honest survivors splits into two or more components of the graph
   on S, one of which, A, has every member endorsed, i.e. with at least t neighbours that are in S
   or colluding (a client answers only a list signed by t of its neighbours, signers must be on
   the list, and an honest client signs only a list naming it; spec 12.8, rounds 3 and 4). Every
   such (S, A), for every S the server may choose, implies two disjoint windows of k/2
   consecutive positions with at least m colluders each and both arcs between them non-empty.
   This abstract condition is weaker than the protocol's (it asks nothing of the dropped clients'
   share holders), so the implication checked is the stronger one. It is also tight: some
   placements with no window pair holding m + 1 colluders each leak.
2. The union bound: those window pairs number exactly n (n - k - 1) / 2, and the exact
   probability that one of them holds m colluders in each window is at most the bound that
   :func:`secagg.masking.cut_bound.cut_log_bounds` computes.
"""

from __future__ import annotations

import itertools
import math

import pytest

from secagg.masking.cut_bound import cut_log_bounds


def _neighbours(n: int, k: int) -> list[int]:
    """Bitmask of each position's Harary neighbours."""
    half = k // 2
    return [sum(1 << ((i + d) % n) for d in range(-half, half + 1) if d != 0) for i in range(n)]


def _window_pairs(n: int, half: int) -> set[frozenset[int]]:
    """Unordered pairs of disjoint windows of ``half`` consecutive positions, both arcs between non-empty."""
    pairs = set()
    for first in range(n):
        for second in range(first + half + 1, first + n - half):
            windows = [sum(1 << ((start + x) % n) for x in range(half)) for start in (first, second)]
            assert windows[0] & windows[1] == 0
            pairs.add(frozenset(windows))
    return pairs


def _components(members: int, neighbours: list[int]) -> list[int]:
    out = []
    while members:
        seed = members & -members
        component, frontier = seed, seed
        while frontier:
            low = frontier & -frontier
            frontier ^= low
            grown = neighbours[low.bit_length() - 1] & members & ~component
            component |= grown
            frontier |= grown
        out.append(component)
        members &= ~component
    return out


def _leaks(n: int, threshold: int, colluders: int, neighbours: list[int]) -> bool:
    honest = [i for i in range(n) if not colluders >> i & 1]
    for size in range(2, len(honest) + 1):
        for chosen in itertools.combinations(honest, size):
            survivors = sum(1 << i for i in chosen)
            components = _components(survivors, neighbours)
            if len(components) < 2:
                continue
            answering = survivors | colluders
            for component in components:
                members = [i for i in range(n) if component >> i & 1]
                if all((neighbours[u] & answering).bit_count() >= threshold for u in members):
                    return True
    return False


@pytest.mark.parametrize(
    ("n", "k", "bad", "t"),
    [
        (12, 4, 5, 4),
        (12, 6, 6, 5),
        (12, 6, 6, 6),
        (11, 6, 6, 5),
        (12, 4, 4, 4),
        (12, 8, 5, 5),
        (10, 6, 5, 5),
        (12, 4, 6, 4),
    ],
)
def test_every_leak_needs_the_cut_and_the_cut_is_below_its_union_bound(n: int, k: int, bad: int, t: int) -> None:
    # Prepare
    half, least = k // 2, t - k // 2
    neighbours = _neighbours(n, k)
    pairs = _window_pairs(n, half)
    assert len(pairs) == n * (n - k - 1) // 2

    # Act: every placement of the colluders
    cuts = leaks_without_cut = tight = 0
    for placed in itertools.combinations(range(n), bad):
        colluders = sum(1 << i for i in placed)
        cut = any(all((window & colluders).bit_count() >= least for window in pair) for pair in pairs)
        wider = any(all((window & colluders).bit_count() > least for window in pair) for pair in pairs)
        cuts += cut
        leaks = (not wider or not cut) and _leaks(n, t, colluders, neighbours)
        leaks_without_cut += leaks and not cut
        tight += leaks and cut and not wider

    # Assert: no leak without the cut, some with exactly t - k/2 colluders (the count is tight), and the
    # cut's exact probability within the bound
    assert leaks_without_cut == 0
    assert tight > 0
    bound = math.exp(float(cut_log_bounds(n, k, bad, least)[least]))
    assert cuts / math.comb(n, bad) <= bound * (1 + 1e-12)
