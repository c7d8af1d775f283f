"""The DP parameters a node's training applies are the bound ones (masking, in-process through FakeGrid).

The mod hands the train handler the round's bound DP configuration (``bound_dp(message)``,
the ``secagg.dp`` record it writes into the content the handler sees), refuses a server that
writes that record itself, and refuses an update one patient could not have produced under
the bound ``l2_clip`` (its L2 norm above ``weight * l2_clip``), so a training configuration
that clips at another value never yields a noised sum sized for the bound one.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("dp_accounting")

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from secagg.dp import DPConfig, SeededRandomSource
from secagg.errors import ConfigurationError
from secagg.integrations.flower import NodePolicy, PaillierGrid, PaillierOptions, SecAggGrid, make_paillier_mod
from secagg.integrations.flower._node_errors import DP_UPDATE
from secagg.integrations.flower.bound_plan import BOUND_DP_RECORD, bound_dp
from secagg.integrations.flower.client import make_secagg_mod
from secagg.integrations.flower.keys import read_public_key
from secagg.segments import ClippingWarning

from .flower_harness import TRUSTED_KEYS, FakeGrid, identity_files
from .paillier_keys import PASSPHRASE, key_files
from .test_integrations_flower_clipping_dp import DP, NODES, WEIGHTS, options, per_example_clipped_delta, run

TARGET = NODES[2]


pytestmark = pytest.mark.usefixtures("server_identity")


def seeing_app(node: int, seen: dict[int, DPConfig | None], scale: float = 1.0, share: Path | None = None) -> ClientApp:
    """A node whose handler records ``bound_dp(message)`` and moves by ``scale`` times a
    per-example clipped step (``scale`` > 1: it clipped at more than the bound l2_clip); a
    Paillier node if it holds a key ``share``."""
    noise = SeededRandomSource(node.to_bytes(32, "big"))
    if share is None:
        mod = make_secagg_mod(policy=NodePolicy(allow_semi_honest=True), rng=np.random.default_rng(node),
                              noise_source=noise)  # fmt: skip
    else:
        key_file, trusted_file = identity_files(node)
        mod = make_paillier_mod(key_share_file=share, passphrase=PASSPHRASE, identity_key_file=key_file,
                                trusted_keys_file=trusted_file, rng=np.random.default_rng(node), noise_source=noise,
                                policy=NodePolicy(min_colluders=0))  # fmt: skip
    client = ClientApp(mods=[mod])

    @client.train()
    def train(message: Message, context: Context) -> Message:
        seen[node] = bound_dp(message)
        arrays = message.content["arrays"]
        updated = {
            name: Array((a.numpy() + scale * per_example_clipped_delta(node, name, a.numpy())).astype(a.numpy().dtype))
            for name, a in arrays.items()
        }
        metrics = MetricRecord({"num-examples": WEIGHTS[node]})
        return Message(RecordDict({"arrays": ArrayRecord(updated), "metrics": metrics}), reply_to=message)

    return client


def test_the_train_handler_sees_the_bound_dp_configuration(tmp_path: Path) -> None:
    # Prepare
    seen: dict[int, DPConfig | None] = {}
    grid = FakeGrid({node: seeing_app(node, seen) for node in NODES}, dp_state_dir=tmp_path)
    secure = SecAggGrid(grid, options(dp=DP))
    # Execute
    run(secure)
    # Assert: every handler saw the plan's DPConfig (the server's, with the h it computed)
    assert secure.dp is not None and secure.dp.plan is not None
    assert secure.reports[0].skipped_reason is None
    assert set(seen) == set(NODES)
    assert all(config == secure.dp.plan.config for config in seen.values()), seen
    assert all(config is not None and config.l2_clip == DP.l2_clip for config in seen.values())


def test_outside_a_dp_round_the_handler_sees_no_bound_dp_configuration() -> None:
    seen: dict[int, DPConfig | None] = {}
    secure = SecAggGrid(FakeGrid({node: seeing_app(node, seen) for node in NODES}), options(clipping="fixed"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClippingWarning)
        run(secure)
    assert set(seen) == set(NODES) and all(config is None for config in seen.values())


def forged_record() -> ConfigRecord:
    """A well-formed ``secagg.dp`` record naming l2_clip 100 times the plan's (a server's forgery)."""
    return ConfigRecord({"epsilon": DP.epsilon, "delta": DP.delta, "rounds": DP.rounds, "l2_clip": 100 * DP.l2_clip,
                         "min_honest": 1, "mechanism": DP.mechanism})  # fmt: skip


def with_forged_records(messages: Iterable[Message]) -> list[Message]:
    """``messages``, every training one (content with ``arrays``) now carrying :func:`forged_record`."""
    batch = list(messages)
    for message in batch:
        if message.has_content() and "arrays" in message.content:
            message.content[BOUND_DP_RECORD] = forged_record()
    return batch


class _ForgingGrid(SecAggGrid):
    """A lying server: every node's training content carries its own ``secagg.dp`` record (l2_clip
    100 times the plan's), the same for all, so it is bound into a consistent session."""

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return super().send_and_receive(with_forged_records(messages), timeout=timeout)


class _ForgingTransport(FakeGrid):
    """A lying coordinator past the SecAggGrid's checks: every training message it delivers carries
    its own ``secagg.dp`` record (l2_clip 100 times the plan's)."""

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return super().send_and_receive(with_forged_records(messages), timeout=timeout)


def test_a_server_writing_the_bound_dp_record_itself_is_refused(tmp_path: Path) -> None:
    # Prepare
    seen: dict[int, DPConfig | None] = {}
    transport = _ForgingTransport({node: seeing_app(node, seen) for node in NODES}, dp_state_dir=tmp_path)
    secure = SecAggGrid(transport, options(dp=DP))
    # Execute
    run(secure)
    # Assert: no handler ran on the forged record, every node names it, nothing released
    report = secure.reports[0]
    assert seen == {}
    assert report.aggregate is None and report.skipped_reason is not None
    assert all(BOUND_DP_RECORD in report.errors[node] for node in NODES), report.errors


def test_an_update_beyond_what_the_bound_clip_allows_is_refused_and_costs_only_its_node(tmp_path: Path) -> None:
    # Prepare: the target's handler clipped at 10 x the bound l2_clip (its update's L2 norm is
    # beyond weight x l2_clip); the other nodes clip at the bound one
    seen: dict[int, DPConfig | None] = {}
    apps = {node: seeing_app(node, seen, scale=10.0 if node == TARGET else 1.0) for node in NODES}
    secure = SecAggGrid(FakeGrid(apps, dp_state_dir=tmp_path), options(dp=DP))
    # Execute
    run(secure)
    # Assert: the target is dropped with the reason's code (its update's norm, computed from its data,
    # stays on the node); the round goes on with the others
    report = secure.reports[0]
    assert DP_UPDATE in report.errors[TARGET] and "norm" not in report.errors[TARGET], report.errors
    assert TARGET not in report.included
    assert report.skipped_reason is None and set(report.included) == set(NODES) - {TARGET}


@pytest.mark.slow  # a heavy Flower round: CI runs it in the slow suite, beside the default suite
def test_a_paillier_node_sees_the_bound_dp_and_one_beyond_it_is_refused_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: a 3-of-5 Paillier DP round; the target's handler clipped at 10 x the bound l2_clip
    public_path, shares = key_files(tmp_path / "ceremony", len(NODES), 3)
    seen: dict[int, DPConfig | None] = {}
    apps = {node: seeing_app(node, seen, 10.0 if node == TARGET else 1.0, share)
            for node, share in zip(NODES, shares, strict=True)}  # fmt: skip
    grid = FakeGrid(apps, dp_state_dir=tmp_path)
    secure = PaillierGrid(grid, PaillierOptions(public_key=read_public_key(public_path), dp=DP, stage_timeout=5.0,
                                                trusted_keys=TRUSTED_KEYS, colluders=0))
    # Execute
    with caplog.at_level(logging.ERROR, logger="secagg.flower"):
        run(secure)  # type: ignore[arg-type]
    # Assert: every handler saw the plan's l2_clip; the target alone is dropped, its reply naming
    # the code (never its update's norm), its log the bound
    report = secure.reports[0]
    assert set(seen) == set(NODES) and all(c is not None and c.l2_clip == DP.l2_clip for c in seen.values())
    assert DP_UPDATE in report.errors[TARGET] and "l2_clip" not in report.errors[TARGET], report.errors
    assert "l2_clip" in caplog.text, caplog.text
    assert report.skipped_reason is None and set(report.included) == set(NODES) - {TARGET}


def test_a_plain_training_message_carrying_the_bound_dp_record_is_refused() -> None:
    # Prepare: a node that trains outside secure rounds (by name); the server writes the mod's record
    seen: dict[int, DPConfig | None] = {}
    node = NODES[0]
    client = ClientApp(mods=[make_secagg_mod(allow_plain_train=True)])

    @client.train()
    def train(message: Message, context: Context) -> Message:
        seen[node] = bound_dp(message)
        return Message(RecordDict({"metrics": MetricRecord({"num-examples": 1})}), reply_to=message)

    grid = FakeGrid({node: client})
    forged = RecordDict({"config": ConfigRecord({"lr": 0.1}), BOUND_DP_RECORD: forged_record()})
    # Execute
    (reply,) = grid.send_and_receive([grid.create_message(forged, "train", node, "1")])
    # Assert: refused with the reason, the handler never ran
    assert seen == {} and reply.has_error() and BOUND_DP_RECORD in reply.error.reason


@pytest.mark.parametrize("message_type", ["evaluate", "query"])
def test_a_message_the_mod_passes_through_carrying_the_bound_dp_record_is_refused(message_type: str) -> None:
    # Prepare: an evaluate (or query) message, which the mod passes to the app, with the mod's record
    seen: dict[int, DPConfig | None] = {}
    node = NODES[0]
    client = ClientApp(mods=[make_secagg_mod()])

    def handle(message: Message, context: Context) -> Message:
        seen[node] = bound_dp(message)
        return Message(RecordDict({"metrics": MetricRecord({"num-examples": 1})}), reply_to=message)

    client.evaluate()(handle)
    client.query()(handle)
    grid = FakeGrid({node: client})
    forged = RecordDict({"config": ConfigRecord({"lr": 0.1}), BOUND_DP_RECORD: forged_record()})
    # Execute
    (reply,) = grid.send_and_receive([grid.create_message(forged, message_type, node, "1")])
    # Assert: refused with the reason; no handler saw the server's record as the bound plan
    assert seen == {} and reply.has_error() and BOUND_DP_RECORD in reply.error.reason
    # and without the record the message passes through as before
    (reply,) = grid.send_and_receive([grid.create_message(RecordDict(), message_type, node, "1")])
    assert not reply.has_error() and seen == {node: None}


def test_a_strategy_content_holding_the_bound_dp_record_is_refused_before_anything_is_sent() -> None:
    # The name is the mod's (every node would refuse the round at training, after setup): an
    # honest server's strategy that uses it is told so before anything is sent, as for secagg.run
    seen: dict[int, DPConfig | None] = {}
    grid = FakeGrid({node: seeing_app(node, seen) for node in NODES})
    secure = _ForgingGrid(grid, options(dp=DP))
    with pytest.raises(ConfigurationError, match=BOUND_DP_RECORD):
        run(secure)
    assert grid.sent == [] and seen == {}


def one_patient_app(node: int) -> ClientApp:
    """A node of one patient whose clipped gradient moves the update by exactly the bound l2_clip
    (its tightest honest update), the float32 weights then rounded to their dtype as any handler's are."""
    client = ClientApp(mods=[make_secagg_mod(policy=NodePolicy(allow_semi_honest=True), rng=np.random.default_rng(node),
                                             noise_source=SeededRandomSource(node.to_bytes(32, "big")))])  # fmt: skip

    @client.train()
    def train(message: Message, context: Context) -> Message:
        arrays = {name: a.numpy() for name, a in message.content["arrays"].items()}
        floats = [name for name, a in arrays.items() if a.dtype.kind == "f"]
        direction = np.random.default_rng(node).normal(size=sum(arrays[name].size for name in floats))
        direction *= DP.l2_clip / np.linalg.norm(direction)  # one patient, clipped at exactly l2_clip
        updated, offset = {}, 0
        for name, a in arrays.items():
            step = np.zeros(a.shape)
            if name in floats:
                step = direction[offset : offset + a.size].reshape(a.shape)
                offset += a.size
            updated[name] = Array((a.astype(np.float64) + step).astype(a.dtype))
        metrics = MetricRecord({"num-examples": 1})
        return Message(RecordDict({"arrays": ArrayRecord(updated), "metrics": metrics}), reply_to=message)

    return client


def test_an_honest_update_at_the_bound_is_not_refused_for_its_rounding_to_float32(tmp_path: Path) -> None:
    # Prepare: every node's update is exactly weight x l2_clip in exact arithmetic; rounding the
    # float32 weights to their dtype moves its measured norm by ~1e-8, beyond a 1e-9 tolerance
    grid = FakeGrid({node: one_patient_app(node) for node in NODES}, dp_state_dir=tmp_path)
    secure = SecAggGrid(grid, options(dp=DP))
    # Execute
    run(secure)
    # Assert: no honest node refused (it would have been charged for nothing)
    report = secure.reports[0]
    assert report.errors == {} and set(report.included) == set(NODES), report.errors
