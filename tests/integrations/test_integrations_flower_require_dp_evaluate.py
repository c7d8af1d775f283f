"""A node whose policy requires DP answers no evaluate or query message unless it opts in by name.

Outside a secure round an evaluate (or query) message goes to the app's handler, whose reply
(loss, accuracy, example count on the hospital's own patients) leaves un-noised and uncharged.
The server chooses the model it sends for evaluation, so a crafted one (a constant output except
on one patient's features) turns those metrics into a query on one patient, round after round.
A node built with ``NodePolicy(require_dp=True)`` therefore refuses both kinds (an error reply
naming the rule and the opt-in; the handler never runs) unless built with
``allow_plain_evaluate=True`` / ``allow_plain_query=True``; a node without ``require_dp``
answers them as before. Masking and Paillier mods alike.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod

from secagg.errors import ConfigurationError
from secagg.integrations.flower import NodePolicy, make_paillier_mod
from secagg.integrations.flower.bound_plan import BOUND_DP_RECORD
from secagg.integrations.flower.client import make_secagg_mod

from .flower_harness import FakeGrid
from .test_integrations_flower_bound_dp import forged_record

pytestmark = pytest.mark.usefixtures("server_identity")

NODE = 5
FLAGS = {"evaluate": "allow_plain_evaluate", "query": "allow_plain_query"}


def masking(require_dp: bool, **flags: object) -> Mod:
    return make_secagg_mod(policy=NodePolicy(require_dp=require_dp), **flags)  # type: ignore[arg-type]


def paillier(require_dp: bool, **flags: object) -> Mod:
    # No key share or identity is read outside a secure round: the policy decides alone.
    return make_paillier_mod(policy=NodePolicy(require_dp=require_dp, min_colluders=0), **flags)  # type: ignore[arg-type]


MODS = pytest.mark.parametrize("factory", [masking, paillier], ids=["secagg_mod", "paillier_mod"])


def answering_node(mod: Mod, called: list[str]) -> FakeGrid:
    """A one-node grid whose evaluate and query handlers (default and ``custom`` actions) record
    each call and answer with the node's metrics on its patients."""
    client = ClientApp(mods=[mod])

    def handle(message: Message, context: Context) -> Message:
        called.append(message.metadata.message_type)
        return Message(RecordDict({"metrics": MetricRecord({"accuracy": 0.75, "num-examples": 12})}),
                       reply_to=message)  # fmt: skip

    for register in (client.evaluate, client.query):
        register()(handle)
        register("custom")(handle)
    return FakeGrid({NODE: client})


def ask(grid: FakeGrid, message_type: str, content: RecordDict | None = None) -> Message:
    content = RecordDict({"config": ConfigRecord({"server-round": 1})}) if content is None else content
    (reply,) = grid.send_and_receive([grid.create_message(content, message_type, NODE, "1")])
    return reply


@MODS
@pytest.mark.parametrize("message_type", ["evaluate", "query", "evaluate.custom", "query.custom"])
def test_a_node_requiring_dp_refuses_to_answer_outside_a_secure_round(
    factory: Callable[..., Mod], message_type: str
) -> None:
    # Prepare: a node that requires DP, with the default settings otherwise
    called: list[str] = []
    grid = answering_node(factory(True), called)
    # Execute: the server asks for the node's metrics on a model it chose
    reply = ask(grid, message_type)
    # Assert: an error reply naming the rule and the opt-in; the handler never ran
    assert called == []
    assert reply.has_error() and not reply.has_content()
    flag = FLAGS[message_type.partition(".")[0]]
    assert "require_dp" in reply.error.reason and f"{flag}=True" in reply.error.reason, reply.error.reason


@MODS
@pytest.mark.parametrize("message_type", ["evaluate", "query", "query.custom"])
def test_the_opt_in_passes_its_own_kind_through_and_no_other(factory: Callable[..., Mod], message_type: str) -> None:
    # Prepare: a node that requires DP and opts in, by name, to answering this kind of message
    category = message_type.partition(".")[0]
    other = "query" if category == "evaluate" else "evaluate"
    called: list[str] = []
    grid = answering_node(factory(True, **{FLAGS[category]: True}), called)
    # Execute
    reply = ask(grid, message_type)
    refused = ask(grid, other)
    # Assert: the handler answered the opted-in kind, as a node without require_dp does; the other kind is refused
    assert not reply.has_error() and reply.content["metrics"]["accuracy"] == 0.75
    assert refused.has_error() and FLAGS[other] in refused.error.reason
    assert called == [message_type]


@MODS
def test_the_opt_in_still_refuses_the_record_only_the_mod_writes(factory: Callable[..., Mod]) -> None:
    # Prepare: an opted-in node; the server writes the mod's bound-DP record into an evaluate message
    called: list[str] = []
    grid = answering_node(factory(True, allow_plain_evaluate=True), called)
    # Execute
    reply = ask(grid, "evaluate", RecordDict({BOUND_DP_RECORD: forged_record()}))
    # Assert: refused as before the opt-in existed, the handler never ran
    assert called == [] and reply.has_error() and BOUND_DP_RECORD in reply.error.reason


@MODS
@pytest.mark.parametrize("message_type", ["evaluate", "query", "evaluate.custom"])
def test_a_node_without_require_dp_answers_as_before(factory: Callable[..., Mod], message_type: str) -> None:
    # Prepare: the default policy (no DP promised); no opt-in
    called: list[str] = []
    grid = answering_node(factory(False), called)
    # Execute
    reply = ask(grid, message_type)
    # Assert: unchanged, the handler answers
    assert not reply.has_error() and reply.content["metrics"]["num-examples"] == 12
    assert called == [message_type]


@MODS
@pytest.mark.parametrize("flag", sorted(FLAGS.values()))
@pytest.mark.parametrize("value", ["true", 1, np.bool_(True), None])
def test_an_opt_in_that_is_not_a_bool_is_refused(factory: Callable[..., Mod], flag: str, value: object) -> None:
    # Execute / Assert: refused when the mod is built, naming the argument
    with pytest.raises(ConfigurationError, match=flag):
        factory(True, **{flag: value})


@MODS
@pytest.mark.parametrize("require_dp", [True, False])
def test_both_opt_ins_are_accepted_with_or_without_require_dp(factory: Callable[..., Mod], require_dp: bool) -> None:
    # Execute: unlike allow_plain_train, neither opt-in contradicts require_dp (it names what it gives up)
    mod = factory(require_dp, allow_plain_evaluate=True, allow_plain_query=True)
    called: list[str] = []
    grid = answering_node(mod, called)
    # Assert
    assert not ask(grid, "evaluate").has_error() and not ask(grid, "query").has_error()
    assert called == ["evaluate", "query"]
