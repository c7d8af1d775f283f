"""What a hospital's node tells the server when something of its own fails.

The server is untrusted: an error reply gives it a stable reason code (``local configuration
error: ...``, ``refused: ...``) and never a local detail: no file system path, no link target
(another local user may have chosen it), no ``find -samefile`` hint, no system error text, no value
computed from the hospital's data. The full detail reaches the hospital's operator on the node's
logger (``secagg.flower``, at ERROR), nothing lost.
"""

from __future__ import annotations

import logging
import os
import secrets
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("flwr")

from flwr.app import Context, Message, MessageType, RecordDict
from flwr.serverapp.strategy import FedAvg

from secagg import wire
from secagg.errors import SecretFileLinkWarning
from secagg.integrations.flower import AuditRecord, SecAggGrid, SecAggOptions
from secagg.integrations.flower._records import stage_content
from secagg.integrations.flower.protocol import SETUP
from secagg.masking import ACTIVE

from . import test_integrations_flower_clipping_dp as clipping_dp
from . import test_integrations_flower_paillier as paillier
from .flower_harness import FakeGrid, initial_arrays, make_app
from .paillier_keys import PASSPHRASE, identity_files, material
from .test_integrations_flower import setup_for
from .test_integrations_flower_active import NODES, WEIGHTS

NODE = 1

pytestmark = pytest.mark.usefixtures("server_identity")


@pytest.fixture
def secret_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder with a distinctive name, as a hospital's key folder would be."""
    folder = tmp_path / f"hospital-secret-{secrets.token_hex(4)}"
    folder.mkdir(mode=0o700)
    yield folder


def _setup_message() -> Message:
    setup = stage_content(SETUP, wire.encode(setup_for((1, 2, 3))))
    return Message(setup, dst_node_id=NODE, message_type=MessageType.TRAIN)


def _reply(caplog: pytest.LogCaptureFixture, key_file: Path, trusted: Path) -> tuple[str, str]:
    """The reason the node sends the server, and what it logged locally."""
    app = make_app(NODE, 10, identity_key_file=key_file, trusted_keys_file=trusted)
    with caplog.at_level(logging.ERROR, logger="secagg.flower"):
        reply = app(_setup_message(), Context(77, NODE, {}, RecordDict(), {}))  # type: ignore[operator]
    assert reply.has_error()
    return reply.error.reason, caplog.text


def _assert_kept_local(sent: str, logged: str, *details: str) -> None:
    assert sent.startswith(f"secagg: node {NODE}: local configuration error"), sent
    for detail in details:
        assert detail not in sent, sent
        assert detail in logged, logged
    assert "samefile" not in sent and "/" not in sent, sent


def _identity(secret_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    paths, trusted, _ = identity_files(tmp_path, 1)
    key_file = secret_dir / "hospital-secret-XYZ"
    os.replace(paths[0], key_file)
    return key_file, trusted


def test_a_missing_identity_key_is_not_named_to_the_server(
    secret_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: the configured key file does not exist
    key_file, trusted = _identity(secret_dir, tmp_path)
    key_file.unlink()
    # Execute
    sent, logged = _reply(caplog, key_file, trusted)
    # Assert
    _assert_kept_local(sent, logged, secret_dir.name, "hospital-secret-XYZ")


def test_an_identity_key_others_may_read_is_not_named_to_the_server(
    secret_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare
    key_file, trusted = _identity(secret_dir, tmp_path)
    key_file.chmod(0o644)
    # Execute
    sent, logged = _reply(caplog, key_file, trusted)
    # Assert: the mode and the advice stay local too
    _assert_kept_local(sent, logged, secret_dir.name, "0644", "chmod")


def test_a_dangling_link_and_its_target_are_not_named_to_the_server(
    secret_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: the key file is a link to nothing, its target chosen by someone else
    key_file, trusted = _identity(secret_dir, tmp_path)
    key_file.unlink()
    target = tmp_path / f"chosen-by-another-user-{secrets.token_hex(4)}"
    key_file.symlink_to(target)
    # Execute
    sent, logged = _reply(caplog, key_file, trusted)
    # Assert
    _assert_kept_local(sent, logged, secret_dir.name, target.name)


def test_a_second_name_refusal_and_its_find_hint_are_not_sent_to_the_server(
    secret_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: the key has a second name, and the node makes that warning an error
    key_file, trusted = _identity(secret_dir, tmp_path)
    os.link(key_file, secret_dir / "copy")
    # Execute
    with warnings.catch_warnings():
        warnings.simplefilter("error", SecretFileLinkWarning)
        sent, logged = _reply(caplog, key_file, trusted)
    # Assert
    _assert_kept_local(sent, logged, secret_dir.name, "-samefile")


def test_a_malformed_trusted_list_is_not_quoted_to_the_server(
    secret_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: the trusted list in the secret folder holds a line that is no key
    key_file, trusted = _identity(secret_dir, tmp_path)
    listed = secret_dir / "federation.keys"
    listed.write_text(trusted.read_text() + "not-a-key\n")
    listed.chmod(0o600)
    # Execute
    sent, logged = _reply(caplog, key_file, listed)
    # Assert
    _assert_kept_local(sent, logged, secret_dir.name, "line 2")


def test_a_foreign_exception_of_the_nodes_own_hook_is_not_quoted_to_the_server(
    secret_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: five nodes; the first one's audit hook fails writing under its secret folder (an
    # OSError whose text names the path)
    paths, listed, publics = identity_files(tmp_path, len(NODES))
    missing = secret_dir / "audit" / "round-1.json"

    def audit(record: AuditRecord) -> None:
        missing.write_text("{}")

    apps = {
        node: make_app(node, WEIGHTS[node], audit if node == NODES[0] else None, identity_key_file=path,
                       trusted_keys_file=listed)
        for node, path in zip(NODES, paths, strict=True)
    }  # fmt: skip
    secure = SecAggGrid(FakeGrid(apps), SecAggOptions(protocol="secagg", mode=ACTIVE, trusted_keys=frozenset(publics)))
    # Execute
    with caplog.at_level(logging.ERROR, logger="secagg.flower"):
        FedAvg(fraction_evaluate=0.0, min_available_nodes=5).start(
            grid=secure, initial_arrays=initial_arrays(), num_rounds=1
        )
    # Assert: the mod answers (Flower would send an exception escaping it as its type and text); the
    # server learns the exception's type only; the node's log has its text
    sent = secure.reports[0].errors[NODES[0]]
    assert sent.startswith(f"secagg: node {NODES[0]}: ") and "FileNotFoundError" in sent, sent
    assert secret_dir.name not in sent, sent
    assert secret_dir.name in caplog.text


def test_a_missing_key_share_and_a_loose_passphrase_file_are_not_named_to_the_server(
    secret_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: a Paillier node whose key share is missing; another whose passphrase file others may read
    node = paillier.NODES[0]
    share = secret_dir / "hospital-secret-XYZ.share"
    passphrase = secret_dir / "passphrase"
    passphrase.write_text(PASSPHRASE + "\n")
    passphrase.chmod(0o644)
    message = paillier.encrypt_message(node, paillier.setup_for(material(4, 3).public))
    config = {"key-share-passphrase-file": str(passphrase)}
    # Execute
    with caplog.at_level(logging.ERROR, logger="secagg.flower"):
        missing = make_app(node, 10, paillier=True, key_share_file=share, passphrase=PASSPHRASE)(  # type: ignore[operator]
            message, Context(77, node, {}, RecordDict(), {})
        )
        loose = make_app(node, 10, paillier=True, key_share_file=share)(  # type: ignore[operator]
            message, Context(77, node, config, RecordDict(), {})
        )
    # Assert
    for reply, detail in ((missing, share.name), (loose, "0644")):
        sent = reply.error.reason
        assert sent.startswith(f"secagg: node {node}: local configuration error (this node's key share"), sent
        assert secret_dir.name not in sent and detail not in sent and "/" not in sent, sent
        assert detail in caplog.text
    assert secret_dir.name in caplog.text


def test_a_dp_state_file_that_is_a_dangling_link_is_not_named_to_the_server(
    secret_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: five DP nodes with budget files in the secret folder; the first one's is a link to a
    # target another user chose
    pytest.importorskip("dp_accounting")
    grid, _ = clipping_dp.dp_grid(secret_dir)
    target = tmp_path / f"chosen-by-another-user-{secrets.token_hex(4)}"
    budget = grid.budget_file(clipping_dp.NODES[0])
    assert budget is not None
    budget.symlink_to(target)
    secure = SecAggGrid(grid, clipping_dp.options(dp=clipping_dp.DP))
    # Execute
    with caplog.at_level(logging.ERROR, logger="secagg.flower"):
        clipping_dp.run(secure)
    # Assert: the node is left out with the code alone; its log names the file and the link's target
    sent = secure.reports[0].errors[clipping_dp.NODES[0]]
    assert sent.startswith(f"secagg: node {clipping_dp.NODES[0]}: local configuration error (this node's DP budget")
    assert secret_dir.name not in sent and target.name not in sent and "/" not in sent, sent
    assert secret_dir.name in caplog.text and target.name in caplog.text


def test_a_refusal_of_the_servers_message_is_also_logged_on_the_node(caplog: pytest.LogCaptureFixture) -> None:
    # Prepare: a setup whose payload is no setup (a malformed message from the server)
    message = Message(stage_content(SETUP, b"\x00not-a-setup"), dst_node_id=NODE, message_type=MessageType.TRAIN)
    app = make_app(NODE, 10)
    # Execute
    with caplog.at_level(logging.WARNING, logger="secagg.flower"):
        reply = app(message, Context(77, NODE, {}, RecordDict(), {}))  # type: ignore[operator]
    # Assert: the server gets the code and the words; the node's operator sees the same refusal
    sent = reply.error.reason
    assert sent.startswith(f"secagg: node {NODE}: refused (malformed message): "), sent
    words = sent.split(": ", 3)[-1]
    assert words in caplog.text and "refused (malformed message)" in caplog.text, caplog.text
