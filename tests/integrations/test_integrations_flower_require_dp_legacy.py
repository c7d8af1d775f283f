"""A node whose policy requires DP refuses Flower's legacy get_parameters and get_properties
messages too, and says so truly.

flwr 1.42 still delivers the legacy message types ``get_parameters`` and ``get_properties`` to a
ClientApp built from a ``client_fn`` (the legacy DefaultWorkflow asks one node for the initial
parameters when the strategy has none), through the app's mods. Under ``require_dp`` the mods
refuse every category without an opt-in of its own (only ``evaluate`` and ``query`` have one), so
these are refused: a ``get_parameters`` reply is the node's model as the client holds it (a stateful
client's locally trained weights), un-noised and charged to no budget. But the refusal said their
replies were "computed on this node's patients from a model the server chose", true of evaluate
and query only, and named no way forward. It now names the message type, says that no mod argument
opts in to it, and why. A node without ``require_dp`` answers them as before.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

pytest.importorskip("flwr")

import flwr.compat.common.recorddict_compat as compat
from flwr.app import Context, Message
from flwr.client import Client, NumPyClient
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod
from flwr.common import GetParametersIns, GetPropertiesIns

from secagg.integrations.flower import NodePolicy, make_paillier_mod
from secagg.integrations.flower.client import make_secagg_mod

from .flower_harness import FakeGrid

pytestmark = pytest.mark.usefixtures("server_identity")

NODE = 5
LEGACY = ["get_parameters", "get_properties"]


def masking(require_dp: bool) -> Mod:
    return make_secagg_mod(policy=NodePolicy(require_dp=require_dp))


def paillier(require_dp: bool) -> Mod:
    return make_paillier_mod(policy=NodePolicy(require_dp=require_dp, min_colluders=0))


MODS = pytest.mark.parametrize("factory", [masking, paillier], ids=["secagg_mod", "paillier_mod"])


class _Hospital(NumPyClient):  # type: ignore[misc]
    """A legacy client whose parameters are its (trained) model and whose properties its own."""

    def __init__(self, called: list[str]) -> None:
        self.called = called

    def get_parameters(self, config: dict[str, object]) -> list[np.ndarray]:
        self.called.append("get_parameters")
        return [np.full(3, 0.25)]

    def get_properties(self, config: dict[str, object]) -> dict[str, object]:
        self.called.append("get_properties")
        return {"patients": 120}


def legacy_node(mod: Mod, called: list[str]) -> FakeGrid:
    def client_fn(context: Context) -> Client:
        return _Hospital(called).to_client()

    return FakeGrid({NODE: ClientApp(client_fn=client_fn, mods=[mod])})


def ask(grid: FakeGrid, message_type: str) -> Message:
    """The legacy instruction, as Flower's DefaultWorkflow builds it."""
    if message_type == "get_parameters":
        content = compat.getparametersins_to_recorddict(GetParametersIns({}))
    else:
        content = compat.getpropertiesins_to_recorddict(GetPropertiesIns({}))
    (reply,) = grid.send_and_receive([grid.create_message(content, message_type, NODE, "1")])
    return reply


@MODS
@pytest.mark.parametrize("message_type", LEGACY)
def test_a_node_requiring_dp_refuses_a_legacy_message_saying_no_opt_in_exists(
    factory: Callable[[bool], Mod], message_type: str
) -> None:
    """Before: refused with the evaluate message's reason ("computed on this node's patients from a
    model the server chose"), which is not what a get_parameters reply is, naming no way forward."""
    # Prepare
    called: list[str] = []
    grid = legacy_node(factory(True), called)
    # Execute
    reply = ask(grid, message_type)
    # Assert: refused, the client never ran; the reason names the type, the missing opt-in and why
    assert called == [] and reply.has_error() and not reply.has_content()
    reason = reply.error.reason
    assert f"{message_type} messages" in reason and "no mod argument opts in" in reason, reason
    assert "a model the server chose" not in reason, reason


@MODS
@pytest.mark.parametrize("message_type", LEGACY)
def test_a_node_without_require_dp_answers_a_legacy_message_as_before(
    factory: Callable[[bool], Mod], message_type: str
) -> None:
    # Prepare
    called: list[str] = []
    grid = legacy_node(factory(False), called)
    # Execute
    reply = ask(grid, message_type)
    # Assert: the client answered
    assert not reply.has_error() and reply.has_content()
    assert called == [message_type]
