"""The communication graph: the Harary permutation and each client's neighbours.

A client derives its neighbours from the session id alone, in O(k) hash
evaluations; the server derives the whole graph at once. Both must agree, the
graph must be a k-regular undirected graph, and the permutation uniform enough
that no position is favoured.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import ConfigurationError
from secagg.masking import HARARY, MaskingConfig
from secagg.masking.session import (
    GRAPH_ROUNDS,
    HararyPermutation,
    _harary_neighbours,
    graph_neighbours,
    harary_order,
    neighbour_table,
    session_id,
)

sessions = st.binary(min_size=32, max_size=32)


@given(num_clients=st.integers(3, 400), session=sessions)
def test_permutation_is_a_bijection_with_its_inverse(num_clients: int, session: bytes) -> None:
    permutation = HararyPermutation(num_clients, session)
    positions = [permutation.position(value) for value in range(num_clients)]
    assert sorted(positions) == list(range(num_clients))
    assert [permutation.at(position) for position in positions] == list(range(num_clients))


@given(num_clients=st.integers(5, 120), half=st.integers(1, 6), session=sessions)
def test_harary_graph_is_regular_symmetric_and_agrees_with_the_servers_table(
    num_clients: int, half: int, session: bytes
) -> None:
    # Prepare
    degree = min(2 * half, num_clients - 1 - (num_clients - 1) % 2)
    config = MaskingConfig(
        num_clients=num_clients, threshold=2, vector_length=1, graph=HARARY, degree=degree, mode="semi-honest"
    )
    # Execute
    table = neighbour_table(config, session)
    clients = range(1, num_clients + 1)
    # Assert: every client computes alone what the server computes for all
    assert {c: graph_neighbours(config, session, c) for c in clients} == table
    for client, neighbours in table.items():
        assert len(set(neighbours)) == degree and client not in neighbours
        assert all(client in table[v] for v in neighbours)


def test_neighbours_follow_the_ring_order() -> None:
    # H(4, 10): the neighbours of the client at position p sit at p +- 1 and p +- 2.
    config = MaskingConfig(num_clients=10, threshold=2, vector_length=1, graph=HARARY, degree=4, mode="semi-honest")
    session = session_id(config, bytes(32))
    order = harary_order(10, session)
    for p, client in enumerate(order):
        ring = {order[(p + j) % 10] for j in (-2, -1, 1, 2)}
        assert set(graph_neighbours(config, session, client)) == ring


def test_position_is_near_uniform_over_sessions() -> None:
    # Prepare: where client 1 lands among n = 7 positions over 7,000 sessions.
    n, trials = 7, 7000
    counts = [0] * n
    for trial in range(trials):
        session = hashlib.sha256(trial.to_bytes(4, "big")).digest()
        counts[HararyPermutation(n, session).position(0)] += 1
    # Assert: chi-square with 6 degrees of freedom; 22.46 is its 0.999 quantile.
    expected = trials / n
    chi_square = sum((count - expected) ** 2 / expected for count in counts)
    assert chi_square < 22.46, counts


def test_a_clients_neighbours_cost_does_not_grow_with_n(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: count round-function evaluations for one client's neighbours.
    calls = 0
    original = HararyPermutation._round

    def counting(self: HararyPermutation, index: int, value: int) -> int:
        nonlocal calls
        calls += 1
        return original(self, index, value)

    monkeypatch.setattr(HararyPermutation, "_round", counting)
    # The neighbours are cached per (session, client) since 293c8f2: measured cold, or a second run
    # in one process counted 0 evaluations for both n and failed (0 < 2 * 0), measuring nothing.
    _harary_neighbours.cache_clear()
    per_n = {}
    for n in (100, 60_000):
        config = MaskingConfig(num_clients=n, threshold=2, vector_length=1, graph=HARARY, degree=8, mode="semi-honest")
        calls = 0
        for client in range(1, 51):
            graph_neighbours(config, session_id(config, bytes(32)), client)
        per_n[n] = calls / 50
    # Assert: (k + 1) evaluations, each a few cycle-walking steps of 8 rounds, whatever n is
    # (sorting all n clients would cost at least n rounds).
    for calls_per_client in per_n.values():
        assert 0 < calls_per_client < 9 * GRAPH_ROUNDS * 4
    assert per_n[60_000] < 2 * per_n[100]


def test_session_id_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="32 bytes"):
        HararyPermutation(10, bytes(16))


@pytest.mark.parametrize("kind", [bytearray, lambda data: memoryview(bytearray(data))], ids=["bytearray", "memoryview"])
def test_a_bytes_like_session_id_gives_the_neighbours_of_its_bytes(kind: object) -> None:
    # Prepare: a Harary graph; since 293c8f2 its neighbours are cached by session id, and a
    # bytearray or writable memoryview (no hash) raised a TypeError/ValueError, as no other graph did
    config = MaskingConfig(num_clients=9, threshold=3, vector_length=7, graph=HARARY, degree=4, mode="semi-honest")
    session = session_id(config, bytes(32))
    assert callable(kind)
    # Execute / Assert: the same neighbours as for the bytes, for every client
    for client in range(1, 10):
        assert graph_neighbours(config, kind(session), client) == graph_neighbours(config, session, client)
