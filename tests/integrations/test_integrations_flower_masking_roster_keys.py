"""A masking node against a server whose active-mode record lists one trusted key twice, or a key
of small order: which check refuses it (docs/threat-model.md, "What a node accepts from the server").

The masking mod rebuilds the record (``MaskingConfig.from_record``) before its own identity checks,
so the core's refusal (ConfigurationError) comes first; the mod's own no-key-twice check
(AuthenticationError, "one key for two nodes") is the second layer.
"""

from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("flwr")

from flwr.app import Context, Message, MessageType, RecordDict

from secagg.encoding import QuantizationConfig
from secagg.integrations.flower._records import stage_content
from secagg.integrations.flower.clipping import encoded_length, layout_table
from secagg.integrations.flower.protocol import SETUP, RoundSetup, arrays_digest, flatten_arrays
from secagg.masking import ACTIVE, MaskingConfig
from secagg.wire import encode

from .flower_harness import RUN_ID, identity_files, initial_arrays, make_app, node_identity_key

pytestmark = pytest.mark.usefixtures("server_identity")

NODES = (7, 42, 99, 1000, 1_000_000_007)
TARGET = NODES[0]
KEYS = tuple(node_identity_key(node).public for node in NODES)


def reply_to(keys: tuple[bytes, ...]) -> Message:
    """TARGET's reply to an honest setup whose masking record then lists ``keys``."""
    vector, layout = flatten_arrays([("arrays", k, v.numpy()) for k, v in initial_arrays().items()])
    table = layout_table(layout, {name: 0.5 for name in layout_table(layout).clips})
    config = MaskingConfig.secagg(len(NODES), encoded_length(table), mode=ACTIVE, identity_keys=KEYS)
    setup = RoundSetup.create(1, NODES, config, QuantizationConfig(0.5, 16, len(NODES), max_weight=4096),
                              "num-examples", arrays_digest(vector, layout), RUN_ID, segments=table.describe())
    lied = dataclasses.replace(setup, masking=dataclasses.replace(setup.masking, identity_keys=keys))
    key_file, trusted_file = identity_files(TARGET)
    app = make_app(TARGET, 10, identity_key_file=key_file, trusted_keys_file=trusted_file)
    message = Message(stage_content(SETUP, encode(lied)), dst_node_id=TARGET, message_type=MessageType.TRAIN)
    return app(message, Context(RUN_ID, TARGET, {}, RecordDict(), {}))  # type: ignore[no-any-return]


def test_control_the_honest_record_is_taken() -> None:
    assert not reply_to(KEYS).has_error()


def test_a_trusted_key_listed_twice_is_refused_by_the_core_first() -> None:
    reply = reply_to((*KEYS[:-1], KEYS[1]))
    assert reply.has_error()
    assert "identity key of client 5 is listed twice (also for client 2)" in reply.error.reason


def test_a_key_of_small_order_is_refused() -> None:
    reply = reply_to((*KEYS[:-1], (1).to_bytes(32, "little")))
    assert reply.has_error()
    assert "identity key of client 5 is a point of small order" in reply.error.reason
