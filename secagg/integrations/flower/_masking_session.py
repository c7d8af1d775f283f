"""The masking mod's session on a node: the round's setup and the protocol state it keeps in
``context.state`` between stages (:data:`STATE_KEY`; private keys, it never leaves the node), and
the most bytes an honest server message of each stage has, which the stored setup fixes.
"""

from __future__ import annotations

from flwr.app import ConfigRecord, Context

from secagg import wire
from secagg.errors import ProtocolError
from secagg.integrations.flower._limits import masking_message_limit
from secagg.integrations.flower._records import stored_round
from secagg.integrations.flower.protocol import IDENTIFY, MAX_NODES, SETUP, RoundSetup
from secagg.masking import ClientState

__all__ = ["STATE_KEY", "load_session", "message_limit", "save_session"]

STATE_KEY = "secagg.state"
"""Key of the ConfigRecord in ``context.state`` holding the round setup and the protocol state."""


def message_limit(context: Context, max_nodes: int | None, stage: str) -> int:
    """The most payload bytes an honest server message of ``stage`` has: a setup's for any round
    of up to the policy's ``max_nodes`` (the node knows none yet), later ones' for the round of
    the stored setup."""
    if stage in (IDENTIFY, SETUP):
        return masking_message_limit(stage, MAX_NODES if max_nodes is None else max_nodes)
    record = context.state.get(STATE_KEY)
    setup = record.get("setup") if isinstance(record, ConfigRecord) else None
    if not isinstance(setup, bytes):
        raise ProtocolError("no secure round in progress on this node")
    return masking_message_limit(stage, wire.decode(setup, RoundSetup).masking.num_clients)


def save_session(context: Context, setup: bytes, state: ClientState, message_type: str) -> None:
    """Keep the round's setup, the protocol state and the setup's message type for the next stage."""
    context.state[STATE_KEY] = ConfigRecord({"setup": setup, "client": state.to_bytes(), "type": message_type})


def load_session(context: Context, message_type: str) -> tuple[bytes, RoundSetup, ClientState]:
    """The stored session; ProtocolError if there is none, or if ``message_type`` (this stage's
    message's) is not its setup's: the type picks the train handler and the setup binds it."""
    setup_bytes, state_bytes = stored_round(context, STATE_KEY, "client", message_type, "secure round")
    return setup_bytes, wire.decode(setup_bytes, RoundSetup), ClientState.from_bytes(state_bytes)
