"""A Paillier round skipped because of a rejected upload or partial decryption names the node.

The masking rounds' aborted reports lacked the aborting step's rejections in ``dropped`` and
``errors`` (tests/integrations/test_integrations_flower_abort_report.py). The Paillier workflow
records each rejection in those fields as it happens, before deciding to skip, so a skipped round
names the rejected node with its stage and reason exactly as a completed one does. These tests pin
that (they passed on the code before the masking fix: a check, not a regression found).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("flwr")

from flwr.app import Message

from secagg import wire
from secagg.integrations.flower import PaillierGrid, PaillierOptions
from secagg.integrations.flower._records import read_stage, stage_content
from secagg.integrations.flower.keys import read_public_key
from secagg.integrations.flower.protocol import DECRYPT, ENCRYPT
from secagg.paillier.messages import PartialDecryption

from .flower_harness import TRUSTED_KEYS, FakeGrid
from .test_integrations_flower_malformed import replace_reply
from .test_integrations_flower_paillier import FAST_TIMEOUT, NODES, paillier_apps, run_fedavg

pytestmark = pytest.mark.usefixtures("server_identity")
FAULTY = 42


def test_a_rejected_partial_decryption_that_leaves_too_few_is_in_dropped_and_errors(
    paillier_keys: tuple[Path, list[Path]],
) -> None:
    # Prepare: a 3-of-4 key; node 42's partial decryption is altered in transit and another node
    # goes silent at decrypt: two valid partial decryptions, three needed
    public_path, shares = paillier_keys
    silent = next(node for node in NODES if node != FAULTY)
    grid = FakeGrid(paillier_apps(shares), silent={(silent, DECRYPT)})
    secure = PaillierGrid(grid, PaillierOptions(public_key=read_public_key(public_path), trusted_keys=TRUSTED_KEYS,
                                                **FAST_TIMEOUT))
    original = grid.send_and_receive

    def forge(messages, *, timeout=None):  # type: ignore[no-untyped-def]
        replies = list(original(messages, timeout=timeout))
        for index, reply in enumerate(replies):
            if reply.metadata.src_node_id != FAULTY or reply.has_error():
                continue
            if read_stage(reply.content)[0] == DECRYPT:
                partial = wire.decode(read_stage(reply.content)[1], PartialDecryption)
                values = bytes(partial.values[:-1]) + bytes([partial.values[-1] ^ 1])
                forged = PartialDecryption(partial.session_id, partial.party, partial.aggregate_digest, values,
                                           partial.proof)
                replacement = Message(stage_content(DECRYPT, wire.encode(forged)), reply_to=messages[0])
                replacement.metadata.__dict__["_src_node_id"] = FAULTY
                replies[index] = replacement
        return replies

    grid.send_and_receive = forge  # type: ignore[method-assign]

    # Execute
    run_fedavg(secure, rounds=1)

    # Assert: skipped; 42 a dropout of decrypt with the proof's reason, the silent node without one
    report = secure.reports[0]
    assert report.aggregate is None and report.skipped_reason is not None
    assert report.dropped == {FAULTY: DECRYPT, silent: DECRYPT}, report.dropped
    assert set(report.errors) == {FAULTY}, report.errors
    assert "proof of correct decryption does not verify" in report.errors[FAULTY], report.errors


def test_a_rejected_upload_that_leaves_too_few_is_in_dropped_and_errors(paillier_keys: tuple[Path, list[Path]]) -> None:
    # Prepare: min_contributors 4; node 42's upload is a payload the decoder rejects
    public_path, shares = paillier_keys
    grid = FakeGrid(paillier_apps(shares))
    secure = PaillierGrid(grid, PaillierOptions(public_key=read_public_key(public_path), min_contributors=4,
                                                trusted_keys=TRUSTED_KEYS, **FAST_TIMEOUT))
    replace_reply(grid, FAULTY, ENCRYPT, stage_content(ENCRYPT, b"SA\x01\x01\x03garbage"))

    # Execute
    run_fedavg(secure, rounds=1)

    # Assert
    report = secure.reports[0]
    assert report.aggregate is None and "3 nodes uploaded; at least 4" in str(report.skipped_reason)
    assert report.dropped == {FAULTY: ENCRYPT}, report.dropped
    assert set(report.errors) == {FAULTY}, report.errors
