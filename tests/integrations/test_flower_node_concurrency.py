"""Two messages handled at once in one process on one node's context.

Flower's SuperNode hands a node one message at a time (its loop pulls a message and waits for the
reply before the next), but a mod is a plain function: an integrator's own loop, or a simulation's
worker threads sharing one ``Context``, can call it from two threads at once. Every check a node
makes against ``context.state`` and the record it then writes (one aggregate decrypted per Paillier
session, one upload per session, a masking session's step) must then be one step: the node handles
the secure stages of one context one message at a time. The test makes the worst interleaving
happen without any timing: the first request waits inside its decryption until the second one has
either passed the node's checks too (the race) or is waiting for the first to finish.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flwr")

from flwr.app import Context, Message, MessageType
from flwr.clientapp import ClientApp
from flwr.common.serde import recorddict_from_proto, recorddict_to_proto

from secagg import wire
from secagg.integrations.flower import PaillierGrid, PaillierOptions, _node
from secagg.integrations.flower._records import read_stage, stage_content
from secagg.integrations.flower.keys import read_public_key
from secagg.integrations.flower.protocol import DECRYPT
from secagg.paillier import DecryptingParty
from secagg.paillier.messages import DecryptionRequest

from .flower_harness import RUN_ID, TRUSTED_KEYS, FakeGrid
from .test_integrations_flower import FAST_TIMEOUT
from .test_integrations_flower_paillier import NODES, keys, paillier_apps, run_fedavg  # noqa: F401  (keys: a fixture)

pytestmark = pytest.mark.usefixtures("server_identity")

HANG_GUARD_S = 600.0
"""Not a timing: a bound on a wait that the second message always ends (it arrives at the lock, or
passes the checks, or finishes), so that a regression fails the test instead of hanging it."""


class _Signalling:
    """The lock the node makes per context, saying when a second message starts waiting for it."""

    def __init__(self, first_inside: threading.Event, second_arrived: threading.Event) -> None:
        self._lock = threading.RLock()
        self._first_inside, self._second_arrived = first_inside, second_arrived

    def __enter__(self) -> _Signalling:
        if self._first_inside.is_set():
            self._second_arrived.set()  # the second message waits here for the first one
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def test_two_concurrent_requests_for_different_aggregates_get_one_answer(
    keys: tuple[Path, list[Path]], monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    # Prepare: a round in which the target uploaded but gave no partial decryption yet
    public_path, shares = keys
    target = NODES[0]
    grid = FakeGrid(paillier_apps(shares), silent={(target, DECRYPT)})
    options = PaillierOptions(trusted_keys=TRUSTED_KEYS, public_key=read_public_key(public_path), **FAST_TIMEOUT)
    run_fedavg(PaillierGrid(grid, options), rounds=1)  # the silent target: the stage waits 0.3 s, not 60
    sent = next(m for m in grid.sent if m.metadata.dst_node_id == target and read_stage(m.content)[0] == DECRYPT)
    request = wire.decode(read_stage(sent.content)[1], DecryptionRequest)
    smaller = DecryptionRequest(request.session_id, request.recipient, request.uploads[1:])
    app: ClientApp = grid.apps[target]  # type: ignore[assignment]
    # One context for both threads, its state as the node's records left it (a fresh object, as a
    # new process would load it)
    state = recorddict_from_proto(recorddict_to_proto(grid.states[target]))
    context = Context(RUN_ID, target, {}, state, {})
    # The first request to decrypt waits inside its decryption until the second one has passed the
    # node's checks (the race) or waits for the first to finish (one message at a time)
    first_inside, second_arrived = threading.Event(), threading.Event()
    calls = itertools.count()
    respond = DecryptingParty.respond

    def waiting_respond(self: DecryptingParty, asked: DecryptionRequest) -> Any:
        if next(calls) == 0:
            first_inside.set()
            second_arrived.wait(timeout=HANG_GUARD_S)
        else:
            second_arrived.set()
        return respond(self, asked)

    monkeypatch.setattr(DecryptingParty, "respond", waiting_respond)
    monkeypatch.setattr(_node, "RLock", lambda: _Signalling(first_inside, second_arrived), raising=False)
    replies: dict[str, Message] = {}

    def ask(name: str, asked: DecryptionRequest) -> None:
        message = Message(stage_content(DECRYPT, wire.encode(asked)), dst_node_id=target,
                          message_type=MessageType.TRAIN)  # fmt: skip
        try:
            replies[name] = app(message, context)
        finally:
            second_arrived.set()  # a message that ended early never leaves the first one waiting

    # Execute
    first = threading.Thread(target=ask, args=("full", request))
    second = threading.Thread(target=ask, args=("smaller", smaller))
    first.start()
    first_inside.wait()
    second.start()
    first.join()
    second.join()
    # Assert: the node decrypts one aggregate of its session; the other request is refused
    answered = [name for name, reply in replies.items() if not reply.has_error()]
    assert answered == ["full"], {name: reply.error.reason for name, reply in replies.items() if reply.has_error()}
    assert "already decrypted a different aggregate" in replies["smaller"].error.reason
