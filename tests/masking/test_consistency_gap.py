"""Active mode: a client signs one survivor list per session, and unmasks only that one.

A lying server that wants both shares of client 7 needs client 1 to answer a list without 7 after it
signed one with 7 (or the reverse). test_lying_server.py covers an unmask request over another list;
here the server goes back a round instead: a second SurvivorList after the first was signed (the
same list or another), and one after the session finished. Each is a replay that leaves the state
as it was and sends nothing, and the honest request still gets the one response.
"""

from __future__ import annotations

from secagg import wire
from secagg.errors import ReplayError, UnsafeRequestError
from secagg.masking import ClientPhase
from secagg.masking.messages import ConsistencySignature, SignedBy, SurvivorList, UnmaskRequest

from .harness import edit, revealed, unmask_responses
from .test_lying_server import active_run, assert_never_both_shares, refuse

EVERYONE = (1, 2, 3, 4, 5, 6, 7)
WITHOUT_7 = (1, 2, 3, 4, 5, 6)


def test_a_second_survivor_list_after_signing_is_a_replay_and_the_signed_list_still_unmasks() -> None:
    # Prepare: n = 7, t = 4; client 1 signs the list in which client 7 survived. Clients 2, 3, 4
    # collude: the server keeps their states, so they can sign both lists.
    run = active_run(ClientPhase.AWAIT_SURVIVORS, num_clients=7, threshold=4)
    colluders = {client: (run.states[client], run.pending[client]) for client in (2, 3, 4)}
    honest = run.pending[1]
    run.step(1, honest)
    signed_state = run.states[1]

    # Execute / Assert: the server asks client 1 to sign again, a list where 7 dropped, or the same list
    refuse(run, 1, edit(honest, SurvivorList, survivors=WITHOUT_7), ReplayError)
    refuse(run, 1, honest, ReplayError)
    assert run.states[1] is signed_state and signed_state.survivors == EVERYONE
    assert sum(isinstance(wire.decode_any(m), ConsistencySignature) for m in run.sent[1]) == 1

    # ... and an unmask request over the other list, with t valid signatures of clients 2..6 on it
    others = []
    for client in range(2, 7):
        reply = run.step(client, edit(run.pending[client], SurvivorList, survivors=WITHOUT_7))
        others.append(SignedBy(client, wire.decode(reply, ConsistencySignature).signature))
    refuse(run, 1, wire.encode(UnmaskRequest(1, run.session(), WITHOUT_7, tuple(others))), UnsafeRequestError)
    assert unmask_responses(run.sent[1]) == []

    # The list it signed, with t signatures (its own and the colluders'), unmasks, once
    signatures = [SignedBy(1, wire.decode(run.sent[1][-1], ConsistencySignature).signature)]
    for client, (state, survivor_list) in colluders.items():
        run.states[client] = state
        reply = run.step(client, survivor_list)
        signatures.append(SignedBy(client, wire.decode(reply, ConsistencySignature).signature))
    run.step(1, wire.encode(UnmaskRequest(1, run.session(), EVERYONE, tuple(signatures))))
    assert run.states[1].phase == ClientPhase.DONE
    refuse(run, 1, honest, ReplayError)  # and no list after the session finished
    self_owners, key_owners = revealed(run.sent[1])
    assert 7 in self_owners and not key_owners
    assert_never_both_shares(run)
