"""A Paillier node against a server that puts another trusted hospital's key at the node's protocol id.

The setup's identity keys are in the session id and each is on the federation's trusted list, but
which key stands at this node's own protocol id is the server's word until the node checks it. The
Paillier mod checks it with the setup's other checks, before it trains or charges anything
(:func:`~secagg.integrations.flower._node_identity.check_identities`); ``secagg.paillier.Client``
checks it again only when it encrypts, after the train handler ran and, in a DP round, after the
charge. So a roster with two hospitals' keys swapped costs the node nothing: its train handler
never runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("flwr")

from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict

from secagg.encoding import QuantizationConfig
from secagg.integrations.flower._records import stage_content, training_parameters
from secagg.integrations.flower.clipping import encoded_length, layout_table
from secagg.integrations.flower.protocol import ENCRYPT, PaillierSetup, arrays_digest, flatten_arrays
from secagg.wire import encode

from .flower_harness import RUN_ID, initial_arrays, make_app, node_identity_key
from .paillier_keys import PASSPHRASE, key_files, material

pytestmark = pytest.mark.usefixtures("server_identity")

NODES = (42, 1_000_000_007, 9_999_999_999, 2**63 + 11)
TARGET = NODES[1]
ROUND = 3


def encrypt_message(keys: dict[int, bytes]) -> Message:
    """The ``encrypt`` message to TARGET of a 3-of-4 round whose roster names ``keys[node]`` for each node."""
    vector, layout = flatten_arrays([("arrays", k, v.numpy()) for k, v in initial_arrays().items()])
    quantization = QuantizationConfig(0.5, 16, len(NODES), ring_bits=64, max_weight=4096)
    table = layout_table(layout).with_clips({"arrays/w": 0.5, "arrays/b": 0.5})
    content = RecordDict({"arrays": initial_arrays(), "config": ConfigRecord({"server-round": ROUND})})
    setup = PaillierSetup.create(
        ROUND, NODES, material(4, 3).public, 3, quantization, encoded_length(table), "num-examples",
        arrays_digest(vector, layout), [keys[node] for node in NODES],
        segments=table.describe(), parameters=training_parameters(content),
    )  # fmt: skip
    return Message(stage_content(ENCRYPT, encode(setup), content), dst_node_id=TARGET, message_type=MessageType.TRAIN)


def test_a_roster_with_another_trusted_key_at_the_nodes_id_is_refused_before_training(tmp_path: Path) -> None:
    # Prepare: TARGET's node, whose train handler crashes if it ever runs in this round (so a refusal
    # after training would name the handler); a roster with TARGET's and node 42's keys swapped:
    # every key trusted, none twice, TARGET's own key at node 42's protocol id
    _, shares = key_files(tmp_path / "ceremony", 4, 3)
    app = make_app(TARGET, 10, failing_rounds=(ROUND,), paillier=True, key_share_file=shares[1], passphrase=PASSPHRASE)
    honest = {node: node_identity_key(node).public for node in NODES}
    swapped = honest | {TARGET: honest[NODES[0]], NODES[0]: honest[TARGET]}
    # Execute
    reply = app(encrypt_message(swapped), Context(RUN_ID, TARGET, {}, RecordDict(), {}))
    # Assert: refused by the setup's own check, naming the key at its id; the handler never ran
    assert reply.has_error()
    assert "another identity key at this node's protocol id" in reply.error.reason


def test_the_honest_roster_reaches_the_train_handler(tmp_path: Path) -> None:
    # Prepare: the same node and round with the honest roster
    _, shares = key_files(tmp_path / "ceremony", 4, 3)
    app = make_app(TARGET, 10, failing_rounds=(ROUND,), paillier=True, key_share_file=shares[1], passphrase=PASSPHRASE)
    honest = {node: node_identity_key(node).public for node in NODES}
    # Execute
    reply = app(encrypt_message(honest), Context(RUN_ID, TARGET, {}, RecordDict(), {}))
    # Assert: the setup passes; the refusal is the crashing handler's (so the test above would see it)
    assert reply.has_error()
    assert "RuntimeError" in reply.error.reason
