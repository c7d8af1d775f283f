"""A lying server that declares fewer dropouts (delta = 0) than it then causes gains no partial sum.

Audit question: on a Harary graph the degree k and threshold t follow the declared delta, and
no node checks the declared delta against a floor or counts the dropouts of a round against
floor(delta n). A server that declares delta = 0 gets a sparser graph (n = 200, gamma = 0.05,
active: k = 12 instead of 42 at delta = 0.1) and may then drop, or call dropped, clients of
its choice. What stops it from releasing the sum of an arc of the ring is not delta but t:

- To release an arc's sum apart from the rest, the server must cut the ring twice, at two
  windows of k/2 consecutive clients none of which is an honest survivor. The arc's edge
  survivor then has at most k/2 honest neighbours answering (its side of the arc), and it
  answers only a list signed by t of its neighbours (spec 12.8, round 4), and its seed needs t
  shares: so each window holds at least ``t - k/2`` colluders, whatever the server drops.
- At delta = 0 there are no declared dropouts, so the surviving-neighbour quantile is k and
  the derivation gives t = k at the audit's n = 200: a window needs k/2 colluders of k/2, the
  all-colluder cut the connectivity term (B = floor(gamma n), 2^-41) already bounds, and a
  single honest dropout in a neighbourhood aborts the round (every neighbour of it refuses).

These tests pin that: the derived numbers, and the protocol refusing a cut made of dropouts.
"""

from __future__ import annotations

import pytest

from secagg import wire
from secagg.errors import SecAggError, ThresholdError
from secagg.masking import HARARY, ClientPhase
from secagg.masking.messages import ConsistencySignature, SignedBy, SurvivorList, UnmaskRequest
from secagg.masking.parameters import derive_secagg_plus, dropout_count
from secagg.masking.session import harary_order

from .harness import StepRun, active_setup, unmask_responses


def _colluders_per_cut_window(degree: int, threshold: int) -> int:
    """The colluders each of the two cutting windows of k/2 clients must hold (module docstring)."""
    return threshold - degree // 2


@pytest.mark.parametrize(
    ("dropout_fraction", "degree", "threshold"),
    [(0.0, 12, 12), (0.1, 42, 27)],
)
def test_the_audits_declared_delta_shapes_k_and_t_but_no_cut_fits_the_colluders(
    dropout_fraction: float, degree: int, threshold: int
) -> None:
    # Prepare: the audit's federation, n = 200, gamma = 0.05 (10 colluders), active mode.
    n, gamma = 200, 0.05

    # Act
    parameters = derive_secagg_plus(n, gamma, dropout_fraction, active=True)

    # Assert: delta = 0 gives the sparser graph, but t = k there, so a cutting window must be
    # all colluders (6 of 6; 6 of 21 at delta = 0.1); two windows need 12 > 10 colluders.
    assert (parameters.degree, parameters.threshold) == (degree, threshold)
    needed = _colluders_per_cut_window(degree, threshold)
    assert needed == 6
    assert 2 * needed > dropout_count(n, gamma) == 10


@pytest.mark.parametrize("num_clients", [101, 150, 200, 300, 500, 1000])
def test_declaring_no_dropouts_makes_every_neighbour_necessary(num_clients: int) -> None:
    # At delta = 0 the derivation's t is k (the surviving-neighbour quantile is k), so a cut
    # needs k/2 colluders per window: the event the connectivity term bounds with B = floor(gamma n).
    parameters = derive_secagg_plus(num_clients, 0.05, 0.0, active=True)
    assert not parameters.complete
    assert parameters.threshold == parameters.degree
    assert _colluders_per_cut_window(parameters.degree, parameters.threshold) == parameters.degree // 2


def _lying_round(threshold: int, dropped: tuple[int, ...]) -> tuple[StepRun, dict[int, BaseException | bytes]]:
    """Active H(6, 14) declaring delta = 0; the server drops ``dropped`` (by ring position) before
    their masked inputs, then shows every survivor one list of the rest, signed by all of them."""
    config, identities = active_setup(14, threshold, graph=HARARY, degree=6, dropout_fraction=0.0)
    run = StepRun(config, identities=identities, seed=5)
    run.run_until(ClientPhase.AWAIT_SHARES)
    order = harary_order(14, run.session())
    gone = {order[position] for position in dropped}
    run.to_clients(skip=gone)  # the dropped clients never send a masked input
    survivors = tuple(c for c in range(1, 15) if c not in gone)
    signed = []
    for client in survivors:
        reply = run.step(client, wire.encode(SurvivorList(client, run.session(), survivors)))
        signed.append(SignedBy(client, wire.decode(reply, ConsistencySignature).signature))
    outcomes: dict[int, BaseException | bytes] = {}
    for client in survivors:
        request = UnmaskRequest(client, run.session(), survivors, tuple(signed))
        try:
            outcomes[client] = run.step(client, wire.encode(request))
        except SecAggError as exc:
            outcomes[client] = exc
    return run, outcomes


def test_declared_no_dropouts_one_honest_dropout_aborts_its_neighbourhood() -> None:
    # Prepare / Act: declared delta = 0 and t = k = 6; the server drops one client (more than
    # floor(0 * 14) = 0) and asks the other 13 to unmask.
    run, outcomes = _lying_round(6, dropped=(0,))
    order = harary_order(14, run.session())
    neighbours = {order[(0 + j) % 14] for j in (-3, -2, -1, 1, 2, 3)}

    # Assert: each of its six neighbours refuses (5 of its neighbours signed, t = 6); nothing
    # of theirs is revealed, so the dropped client's mask key and their seeds stay hidden.
    for client in neighbours:
        assert isinstance(outcomes[client], ThresholdError), client
        assert "fewer than the threshold 6" in str(outcomes[client])
        assert unmask_responses(run.sent[client]) == []


@pytest.mark.parametrize("threshold", [4, 6])
def test_a_cut_made_of_dropouts_releases_no_arc(threshold: int) -> None:
    # Prepare / Act: the server cuts the ring at two windows of k/2 = 3 honest clients (positions
    # 0-2 and 7-9, leaving arcs 3-6 and 10-13), more dropouts than the declared 0, no colluder.
    # t = 6 is delta = 0's t = k; t = 4 is the smallest active t (2t > k), which needs
    # t - k/2 = 1 colluder per window.
    run, outcomes = _lying_round(threshold, dropped=(0, 1, 2, 7, 8, 9))

    # Assert: every survivor is an arc's edge or next to one and has at most 3 < t answering
    # neighbours: all eight refuse, and no share of any client leaves an honest one.
    assert len(outcomes) == 8
    assert all(isinstance(outcome, ThresholdError) for outcome in outcomes.values()), outcomes
    assert all(unmask_responses(run.sent[client]) == [] for client in outcomes)
