"""Flower mods: a node whose train handler raises a foreign exception replies without its text.

The node's error reply goes to the server, into the round's report (``errors``). Before, the
handler's exception left the mod and Flower's runtime replied with its text
("<class 'RuntimeError'>:<'...'>"), which can carry the hospital's tensor shapes and values. The
mod now replies with the exception's type only and logs the text, with its traceback, at ERROR on
the node (logger ``secagg.flower``): the node's operator sees its own training crash, as Flower
showed it before, and nothing of it leaves the node.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import FedAvg

from secagg.errors import ConfigurationError
from secagg.integrations.flower import (
    NodePolicy,
    PaillierGrid,
    PaillierOptions,
    SecAggGrid,
    SecAggOptions,
    make_paillier_mod,
    make_secagg_mod,
)
from secagg.integrations.flower._node_errors import NODE_UPDATE
from secagg.integrations.flower.keys import read_public_key
from secagg.integrations.flower.protocol import MASKED_INPUT

from .flower_harness import (
    TRUSTED_KEYS,
    FakeGrid,
    identity_files,
    initial_arrays,
    make_app,
)
from .paillier_keys import PASSPHRASE, key_files

SECRET = "patient 4711 glucose=183.2"
NODES = (7, 42, 99, 1000)
FAILING = 42
FAST_TIMEOUT = {"stage_timeout": 0.3, "poll_interval": 0.05}
NOT_REPORTED = "(its message is not reported)"


pytestmark = pytest.mark.usefixtures("server_identity")


def _leaky_app(mod: object) -> ClientApp:
    """A ClientApp behind ``mod`` whose training raises with a patient's value in the message."""
    app = ClientApp(mods=[mod])  # type: ignore[list-item]

    @app.train()
    def train(message: Message, context: Context) -> Message:
        raise RuntimeError(f"batch of {SECRET}: mat1 and mat2 shapes cannot be multiplied (20x5 and 4x3)")

    return app


def _assert_reported_by_type_only(report: object, caplog: pytest.LogCaptureFixture) -> None:
    reason = report.errors[FAILING]  # type: ignore[attr-defined]
    assert reason == f"secagg: node {FAILING}: the train handler raised RuntimeError {NOT_REPORTED}"
    text = repr(report)
    assert "4711" not in text and "183.2" not in text and "20x5" not in text
    assert SECRET in caplog.text and f"hospital {FAILING}" in caplog.text


def test_a_secagg_node_s_training_error_text_stays_on_the_node(caplog: pytest.LogCaptureFixture) -> None:
    # Prepare: node 42's train handler raises with a patient's value in its message
    # (before: its error reply was Flower's "<class 'RuntimeError'>:<'batch of patient 4711 ...'>")
    policy = NodePolicy(allow_semi_honest=True, min_colluders=0)
    apps = {node: make_app(node, 10, policy=policy) for node in NODES if node != FAILING}
    apps[FAILING] = _leaky_app(make_secagg_mod(rng=np.random.default_rng(FAILING), policy=policy))
    secure = SecAggGrid(FakeGrid(apps), SecAggOptions(mode="semi-honest", protocol="secagg", threshold=2,
                                                      **FAST_TIMEOUT))  # fmt: skip
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)
    # Execute
    with caplog.at_level(logging.ERROR, logger="secagg.flower"):
        strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=1)
    # Assert: the others' round went on; the node's reason names the type only
    report = secure.reports[0]
    assert report.dropped == {FAILING: MASKED_INPUT}
    assert report.included == frozenset(NODES) - {FAILING}
    _assert_reported_by_type_only(report, caplog)


def test_a_paillier_node_s_training_error_text_stays_on_the_node(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: a 3-of-4 key; node 42's train handler raises with a patient's value in its message
    public_path, shares = key_files(tmp_path / "ceremony", 4, 3)
    apps: dict[int, ClientApp] = {}
    for node, share in zip(NODES, shares, strict=True):
        key_file, trusted_file = identity_files(node)
        options = {"key_share_file": share, "passphrase": PASSPHRASE, "identity_key_file": key_file,
                   "trusted_keys_file": trusted_file}  # fmt: skip
        apps[node] = (
            _leaky_app(make_paillier_mod(**options))  # type: ignore[arg-type]
            if node == FAILING
            else make_app(node, 10, paillier=True, **options)
        )
    options = PaillierOptions(public_key=read_public_key(public_path), trusted_keys=TRUSTED_KEYS, **FAST_TIMEOUT)
    secure = PaillierGrid(FakeGrid(apps), options)
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=2, min_available_nodes=2)
    # Execute
    with caplog.at_level(logging.ERROR, logger="secagg.flower"):
        strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=1)
    # Assert
    report = secure.reports[0]
    assert report.included == frozenset(NODES) - {FAILING}
    _assert_reported_by_type_only(report, caplog)


def _raising_app(error: BaseException, policy: NodePolicy) -> ClientApp:
    app = ClientApp(mods=[make_secagg_mod(rng=np.random.default_rng(FAILING), policy=policy)])

    @app.train()
    def train(message: Message, context: Context) -> Message:
        raise error

    return app


@pytest.mark.parametrize("error", [MemoryError("out of memory"), KeyboardInterrupt()])
def test_a_memory_error_or_an_interrupt_in_training_is_not_turned_into_the_mod_s_reply(error: BaseException) -> None:
    # Prepare: node 42's training runs out of memory, or is interrupted
    policy = NodePolicy(allow_semi_honest=True, min_colluders=0)
    apps = {node: make_app(node, 10, policy=policy) for node in NODES if node != FAILING}
    apps[FAILING] = _raising_app(error, policy)
    secure = SecAggGrid(FakeGrid(apps), SecAggOptions(mode="semi-honest", protocol="secagg", threshold=2,
                                                      **FAST_TIMEOUT))  # fmt: skip
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)
    # Execute / Assert: it leaves the mod (the in-process grid stands in for Flower's runtime,
    # which replies for an Exception and lets a KeyboardInterrupt end the process)
    if isinstance(error, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=1)
        return
    strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=1)
    assert secure.reports[0].errors[FAILING] == "MemoryError('out of memory')"


def test_a_library_error_in_training_is_sent_as_a_code_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    # Prepare: node 42's training raises the library's own error (the hospital's code using the
    # library on its own files or values: its words are the hospital's, as a foreign exception's are)
    policy = NodePolicy(allow_semi_honest=True, min_colluders=0)
    apps = {node: make_app(node, 10, policy=policy) for node in NODES if node != FAILING}
    apps[FAILING] = _raising_app(ConfigurationError("the library's own words, about local data"), policy)
    secure = SecAggGrid(FakeGrid(apps), SecAggOptions(mode="semi-honest", protocol="secagg", threshold=2,
                                                      **FAST_TIMEOUT))  # fmt: skip
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)
    # Execute
    with caplog.at_level(logging.ERROR, logger="secagg.flower"):
        strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=1)
    # Assert: the server gets the code (test_flower_node_data_replies.py); the node's log has the
    # words; the others' round went on
    report = secure.reports[0]
    assert NODE_UPDATE in report.errors[FAILING], report.errors
    assert "about local data" not in report.errors[FAILING]
    assert "about local data" in caplog.text
    assert report.included == frozenset(NODES) - {FAILING}
