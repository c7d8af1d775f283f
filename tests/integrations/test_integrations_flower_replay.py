"""A node's masking state against a server that replays: one session per setup, never two.

A reused session id (same configuration, run, round and model) would let the server
replay the previous attempt's signed public keys of peers whose mask keys it
recovered there (docs/threat-model.md, "Freshness and binding"), so a node starts
each session at most once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("flwr")

from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.clientapp import ClientApp

from secagg.encoding import QuantizationConfig
from secagg.integrations.flower import NodePolicy
from secagg.integrations.flower import _paillier_history as paillier_history
from secagg.integrations.flower import client as client_module
from secagg.integrations.flower._records import stage_content, training_parameters
from secagg.integrations.flower.clipping import encoded_length, layout_table
from secagg.integrations.flower.protocol import ENCRYPT, SETUP, PaillierSetup, RoundSetup, arrays_digest, flatten_arrays
from secagg.masking import MaskingConfig
from secagg.wire import encode

from .flower_harness import (
    RUN_ID,
    initial_arrays,
    make_app,
    node_identity_key,
)
from .paillier_keys import PASSPHRASE, key_files, material

pytestmark = pytest.mark.usefixtures("server_identity")


NODES = (1, 2, 3, 4, 5)
PAILLIER_NODES = (1_000_000_007, 2**63 + 11, 42, 9_999_999_999)


def setup_of_round(server_round: int, max_weight: int = 4096) -> RoundSetup:
    vector, layout = flatten_arrays([("arrays", k, v.numpy()) for k, v in initial_arrays().items()])
    table = layout_table(layout, {name: 0.5 for name in layout_table(layout).clips})
    config = MaskingConfig.secagg(num_clients=len(NODES), vector_length=encoded_length(table), mode="semi-honest")
    quantization = QuantizationConfig(0.5, 16, len(NODES), max_weight=max_weight)
    return RoundSetup.create(server_round, NODES, config, quantization, "num-examples", arrays_digest(vector, layout),
                             RUN_ID, segments=table.describe())


def deliver(app: object, context: Context, setup: RoundSetup) -> Message:
    message = Message(stage_content(SETUP, encode(setup)), dst_node_id=1, message_type=MessageType.TRAIN)
    return app(message, context)  # type: ignore[operator, no-any-return]


def test_a_node_refuses_a_second_setup_of_the_same_session() -> None:
    # Prepare: one node that keeps its state between messages, as a SuperNode does
    app = make_app(1, 10, policy=NodePolicy(allow_semi_honest=True))
    context = Context(RUN_ID, 1, {}, RecordDict(), {})
    # Execute: the round's setup, the same setup again, then the next round's
    first = deliver(app, context, setup_of_round(1))
    again = deliver(app, context, setup_of_round(1))
    later = deliver(app, context, setup_of_round(2))
    # Assert: the repeat is refused (the session id would be reused); a new round is not
    assert not first.has_error()
    assert again.has_error() and "already took part in round 1" in again.error.reason
    assert not later.has_error()


def test_more_setups_than_the_node_remembers_never_evict_an_old_session(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: a node that remembers 4 session ids; the server floods it with later rounds
    monkeypatch.setattr(client_module, "HISTORY_SIZE", 4)
    app = make_app(1, 10, policy=NodePolicy(allow_semi_honest=True))
    context = Context(RUN_ID, 1, {}, RecordDict(), {})
    first = deliver(app, context, setup_of_round(1))
    flood = [deliver(app, context, setup_of_round(server_round)) for server_round in range(2, 8)]
    # Execute: the first round's setup again, and a round before the latest
    again = deliver(app, context, setup_of_round(1))
    earlier = deliver(app, context, setup_of_round(6))
    # Assert: both refused; the node never goes back to a round before its latest
    assert not first.has_error() and not any(reply.has_error() for reply in flood)
    assert again.has_error() and "already took part in round 7" in again.error.reason
    assert earlier.has_error() and "already took part in round 7" in earlier.error.reason


def test_a_round_flooded_with_setups_is_refused_once_the_node_cannot_remember_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: a node that remembers 2 session ids, whose policy takes many sessions a round by name;
    # three setups of one round with distinct sessions
    monkeypatch.setattr(client_module, "HISTORY_SIZE", 2)
    app = make_app(1, 10, policy=NodePolicy(allow_semi_honest=True, max_sessions_per_round=1024))
    context = Context(RUN_ID, 1, {}, RecordDict(), {})
    setups = [setup_of_round(3, max_weight) for max_weight in (4096, 2048, 1024)]
    # Execute
    replies = [deliver(app, context, setup) for setup in setups]
    replayed = deliver(app, context, setups[0])
    # Assert: two sessions of the round are taken, the third refused (never by forgetting one)
    assert [reply.has_error() for reply in replies] == [False, False, True]
    assert "refuses more setups of round 3" in replies[2].error.reason
    assert replayed.has_error()


def encrypt_of_round(node: int, server_round: int, max_weight: int = 4096) -> Message:
    vector, layout = flatten_arrays([("arrays", k, v.numpy()) for k, v in initial_arrays().items()])
    quantization = QuantizationConfig(0.5, 16, len(PAILLIER_NODES), ring_bits=64, max_weight=max_weight)
    table = layout_table(layout).with_clips({"arrays/w": 0.5, "arrays/b": 0.5})
    content = RecordDict({"arrays": initial_arrays(), "config": ConfigRecord({"server-round": server_round})})
    setup = PaillierSetup.create(
        server_round, PAILLIER_NODES, material(4, 3).public, 3, quantization, encoded_length(table), "num-examples",
        arrays_digest(vector, layout), [node_identity_key(n).public for n in PAILLIER_NODES],
        segments=table.describe(), parameters=training_parameters(content),
    )
    return Message(stage_content(ENCRYPT, encode(setup), content), dst_node_id=node, message_type=MessageType.TRAIN)


def paillier_node_remembering_two(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, ClientApp, Context]:
    """The first Paillier node (a 3-of-4 ceremony's first key share under ``tmp_path``) that remembers
    2 sessions, with its context, which it keeps between messages as a SuperNode does. Its policy
    takes many uploads a round, and one model again, by name (every round here sends one model)."""
    monkeypatch.setattr(paillier_history, "HISTORY_SIZE", 2)
    _, shares = key_files(tmp_path / "ceremony", 4, 3)
    node = PAILLIER_NODES[0]
    policy = NodePolicy(max_sessions_per_round=1024, allow_repeat_model=True)
    app = make_app(node, 10, paillier=True, key_share_file=shares[0], passphrase=PASSPHRASE, policy=policy)
    return node, app, Context(RUN_ID, node, {}, RecordDict(), {})


def test_a_paillier_node_never_uploads_twice_in_a_session_however_many_rounds_follow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a Paillier node that remembers 2 sessions; rounds 1 to 4, then round 1's encrypt again
    node, app, context = paillier_node_remembering_two(tmp_path, monkeypatch)
    rounds = [app(encrypt_of_round(node, server_round), context) for server_round in (1, 2, 3, 4)]
    # Execute
    again = app(encrypt_of_round(node, 1), context)
    # Assert: the later rounds never evict round 1: its second upload is refused
    assert not any(reply.has_error() for reply in rounds)
    assert again.has_error() and "round 4" in again.error.reason


def test_a_round_flooded_with_paillier_setups_is_refused_once_the_node_cannot_remember_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a Paillier node that makes 2 uploads in a round at most; three setups of one round, distinct sessions
    node, app, context = paillier_node_remembering_two(tmp_path, monkeypatch)
    # Execute
    replies = [app(encrypt_of_round(node, 3, max_weight), context) for max_weight in (4096, 2048, 1024)]
    again = app(encrypt_of_round(node, 3), context)
    # Assert: two sessions of the round are uploaded to, the third refused (never by forgetting one)
    assert [reply.has_error() for reply in replies] == [False, False, True]
    assert "refuses more uploads in round 3: it made 2" in replies[2].error.reason
    assert again.has_error() and "already uploaded its update in this session" in again.error.reason
