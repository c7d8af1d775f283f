"""The message type of a masking round's messages is bound: it picks the node's train handler.

Flower routes a ``train.<action>`` message to the ClientApp's ``@app.train("<action>")`` handler,
so the message type shapes a node's contribution as much as its training config does. A lying
coordinator that sent one node its rounds as ``train.zero`` (a handler that sends back the model
unchanged, or any other the app registers) and the rest as ``train`` got that node's
contribution under another handler, unseen. Now:

- a round whose messages are not plain ``train`` binds their type into its descriptor, so a node
  sent another type than the server's setup names refuses the setup (another session);
- a node refuses a stage whose message type is not its setup's (a switch at ``masked-input``);
- an honest round of any one action runs as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from secagg.integrations.flower import NodePolicy, SecAggGrid, SecAggOptions
from secagg.integrations.flower.protocol import MASKED_INPUT, SETUP

from .flower_harness import Audit, FakeGrid, initial_arrays, make_app, stage_of
from .test_integrations_flower_malformed import FAULTY, NODES, WEIGHTS, assert_exact_masking_sum

pytestmark = pytest.mark.usefixtures("server_identity")

ZERO = "train.zero"


def with_zero_action(app: ClientApp, ran: list[int], node: int, weight: int) -> ClientApp:
    """``app`` with a second train handler, ``train.zero``: the model back unchanged (a zero update)
    of ``weight`` examples; each call appends ``node`` to ``ran``."""

    @app.train("zero")
    def zero(message: Message, context: Context) -> Message:
        ran.append(node)
        metrics = MetricRecord({"num-examples": weight})
        return Message(RecordDict({"arrays": message.content["arrays"], "metrics": metrics}), reply_to=message)

    return app


BOTH = NodePolicy(allow_semi_honest=True, train_message_types=("train", ZERO))
"""Nodes that train for both types, train.zero by name (the binding tests: the node would run either)."""


def two_action_grid(ran: list[int], policy: NodePolicy = BOTH) -> tuple[FakeGrid, Audit]:
    audit = Audit()
    apps = {node: with_zero_action(make_app(node, WEIGHTS[node], audit, policy=policy), ran, node, WEIGHTS[node])
            for node in NODES}  # fmt: skip
    return FakeGrid(apps), audit


def retype(grid: FakeGrid, lie: Callable[[Message], bool]) -> None:
    """A lying coordinator: each message ``lie`` picks goes out as ``train.zero``."""
    original = grid.push_messages

    def push(messages: Iterable[Message]) -> Iterable[str]:
        batch = list(messages)
        for message in batch:
            if lie(message):
                message.metadata.__dict__["_message_type"] = ZERO
        return original(batch)

    grid.push_messages = push  # type: ignore[method-assign]


def instructions(message_type: str) -> list[Message]:
    content = RecordDict({"arrays": initial_arrays(), "config": ConfigRecord({"server-round": 1})})
    return [Message(content, dst_node_id=node, message_type=message_type, group_id="1") for node in NODES]


@pytest.mark.parametrize(("stage", "split"), [(SETUP, "every stage"), (MASKED_INPUT, "masked-input only")])
def test_a_node_sent_another_train_action_than_the_rounds_refuses_it(stage: str, split: str) -> None:
    # Prepare: every node has a second train handler; the coordinator sends node 42 (the whole
    # session, or only its masked-input message) as train.zero, the others as train
    ran: list[int] = []
    grid, audit = two_action_grid(ran)
    secure = SecAggGrid(grid, SecAggOptions(mode="semi-honest"))
    first = SETUP if split == "every stage" else MASKED_INPUT
    started: set[int] = set()

    def lie(message: Message) -> bool:
        node = message.metadata.dst_node_id
        if node == FAULTY and stage_of(message) == first:
            started.add(node)
        return node in started

    retype(grid, lie)
    # Execute
    reply = secure.secure_round(instructions("train"))
    # Assert: node 42 refuses in that stage, naming the type; its train.zero handler never ran;
    # the others' round goes on and sums exactly
    (report,) = secure.reports
    assert reply is not None and report.skipped_reason is None, report.skipped_reason
    assert report.dropped == {FAULTY: stage}, report.dropped
    expected = "a 'train.zero' message in a session set up for 'train' messages"
    assert expected in report.errors[FAULTY], report.errors[FAULTY]
    assert ran == []
    assert report.included == frozenset(NODES) - {FAULTY}
    assert_exact_masking_sum(report, audit)


def test_a_node_sent_plain_train_for_a_round_of_another_action_names_the_type_it_was_sent() -> None:
    # Prepare: the strategy's messages are all train.zero; the coordinator sends node 42's setup as
    # plain train. The setup names no type on the wire (its descriptor digest binds it), so the node
    # cannot tell which one it binds, only that it is not this message's, nor plain train's.
    ran: list[int] = []
    grid, audit = two_action_grid(ran)
    secure = SecAggGrid(grid, SecAggOptions(mode="semi-honest"))
    original = grid.push_messages

    def push(messages: Iterable[Message]) -> Iterable[str]:
        batch = list(messages)
        for message in batch:
            if message.metadata.dst_node_id == FAULTY and stage_of(message) == SETUP:
                message.metadata.__dict__["_message_type"] = "train"
        return original(batch)

    grid.push_messages = push  # type: ignore[method-assign]
    # Execute
    reply = secure.secure_round(instructions(ZERO))
    # Assert: node 42 refuses the setup, naming the type it was sent; the others sum exactly
    (report,) = secure.reports
    assert reply is not None and report.skipped_reason is None, report.skipped_reason
    assert report.dropped == {FAULTY: SETUP}, report.dropped
    assert "binds another setup than the one sent in this 'train' message" in report.errors[FAULTY], report.errors
    assert FAULTY not in ran
    assert_exact_masking_sum(report, audit)


def test_an_honest_round_of_one_action_runs_that_handler_on_every_node() -> None:
    # Prepare: the strategy's messages are all train.zero
    ran: list[int] = []
    grid, _ = two_action_grid(ran)
    secure = SecAggGrid(grid, SecAggOptions(mode="semi-honest"))
    # Execute
    reply = secure.secure_round(instructions(ZERO))
    # Assert: every node ran train.zero and is summed: the mean update is zero
    (report,) = secure.reports
    assert reply is not None and report.skipped_reason is None, report.errors
    assert report.included == frozenset(NODES) and sorted(ran) == sorted(NODES)
    assert report.weight_total == sum(WEIGHTS.values())


def test_a_round_of_another_train_action_is_refused_at_setup_by_the_default_policy() -> None:
    # Prepare: every node registers train.zero too, but its policy names only plain train (the
    # default); the coordinator sends the whole round as train.zero, its setup bound to it
    ran: list[int] = []
    grid, _ = two_action_grid(ran, NodePolicy(allow_semi_honest=True))
    secure = SecAggGrid(grid, SecAggOptions(mode="semi-honest"))
    # Execute
    reply = secure.secure_round(instructions(ZERO))
    # Assert: every node refuses at setup, naming its policy field and the type; no handler ran
    (report,) = secure.reports
    assert reply is None and report.skipped_reason is not None
    assert report.dropped == dict.fromkeys(NODES, SETUP), report.dropped
    assert all("train_message_types" in report.errors[n] and f"{ZERO!r}" in report.errors[n] for n in NODES)
    assert ran == []
