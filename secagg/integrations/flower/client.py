"""Client side: a Flower mod through which a node takes part in secure rounds.

``ClientApp(mods=[secagg_mod])`` is the whole change on a node. The mod sees
every message before the app's handlers:

- ``setup``: validates the round (its own node among the round's nodes, the
  masking and quantization settings safe by this node's own checks, at least
  ``min_nodes`` nodes and a threshold of at least ``min_threshold``), draws
  fresh keys and answers with its public keys;
- ``share-keys``, ``consistency-check``, ``unmask``: one step of the masking
  protocol (:func:`secagg.masking.client_step`); the protocol state between
  stages lives in ``context.state`` (it holds private keys and never leaves
  the node);
- ``masked-input``: checks that the model it is asked to train is the one the
  round was set up for, runs the app's train handler on the strategy's
  content, and answers with its update ``local - global``, quantized, weighted
  by the example count the handler reported, and masked. Nothing of the
  handler's reply leaves the node in the clear.

Training messages outside a secure round are refused (an error reply), so a
node with the mod installed never sends its update in the clear unless built
with ``allow_plain_train=True``. Evaluation and query messages pass through.
Any protocol error makes the node answer with an error reply (the server
treats it as a dropout) and forget the session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from flwr.app import ConfigRecord, Context, Error, Message, MessageType, RecordDict
from flwr.clientapp.typing import ClientAppCallable, Mod
from flwr.common.constant import ErrorCode

from secagg import wire
from secagg.errors import ConfigurationError, ProtocolError, SecAggError
from secagg.integrations.flower._records import has_stage, model_arrays, read_stage, stage_content, without_stage
from secagg.integrations.flower.protocol import (
    DOWNLINK,
    MASKED_INPUT,
    SETUP,
    RoundSetup,
    arrays_digest,
    encode_update,
    flatten_arrays,
    round_context,
)
from secagg.masking import ClientPhase, ClientState, client_start, client_step
from secagg.primitives.randomness import RandomBytes, system_random
from secagg.ring import RingVector

__all__ = ["STATE_KEY", "AuditRecord", "make_secagg_mod", "secagg_mod"]

STATE_KEY = "secagg.state"
"""Key of the ConfigRecord in ``context.state`` holding the round setup and the protocol state."""


@dataclass(frozen=True)
class AuditRecord:
    """What this node put into one secure round, for its own records; it stays on the node.

    Attributes:
        run_id: the Flower run.
        server_round: the round number the server announced.
        node_id: this node's Flower id.
        protocol_id: its id in the masking session (1..n).
        weight: the example count it reported (its weight in the mean).
        encoded: its unmasked contribution ``(weight * q(update), weight)`` in the ring.
    """

    run_id: int
    server_round: int
    node_id: int
    protocol_id: int
    weight: int
    encoded: RingVector


class _TrainingFailedError(Exception):
    """The app's train handler answered with an error: pass that reply on."""

    def __init__(self, reply: Message) -> None:
        super().__init__("train handler failed")
        self.reply = reply


@dataclass(frozen=True)
class _Settings:
    min_nodes: int
    min_threshold: int
    allow_plain_train: bool
    rng: np.random.Generator | None
    audit: Callable[[AuditRecord], None] | None
    random_bytes: RandomBytes


def make_secagg_mod(
    *,
    min_nodes: int = 3,
    min_threshold: int = 2,
    allow_plain_train: bool = False,
    rng: np.random.Generator | None = None,
    audit: Callable[[AuditRecord], None] | None = None,
    random_bytes: RandomBytes = system_random,
) -> Mod:
    """A secure-aggregation mod with this node's own safety floor.

    Args:
        min_nodes: refuse rounds with fewer nodes (at least 3).
        min_threshold: refuse sessions whose Shamir threshold is lower (at least 2).
        allow_plain_train: pass training messages outside a secure round to the
            handler (their replies then leave in the clear). Off by default.
        rng: the quantization's rounding randomness (not secret); fresh OS
            entropy per round if None.
        audit: called with an :class:`AuditRecord` after each masked update
            is computed (for the node's own logs; runs locally).
        random_bytes: the source of every secret (keys, masks, shares).
    """
    if min_nodes < 3 or min_threshold < 2:
        raise ConfigurationError(f"min_nodes must be >= 3 and min_threshold >= 2, got {min_nodes}, {min_threshold}")
    settings = _Settings(min_nodes, min_threshold, allow_plain_train, rng, audit, random_bytes)

    def secagg_mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        """Take part in a secure round (see :mod:`secagg.integrations.flower.client`)."""
        return _handle(message, context, call_next, settings)

    return secagg_mod


def _handle(message: Message, context: Context, call_next: ClientAppCallable, settings: _Settings) -> Message:
    if message.metadata.message_type.split(".")[0] != MessageType.TRAIN:
        return call_next(message, context)
    if not has_stage(message.content):
        if settings.allow_plain_train:
            return call_next(message, context)
        return _error(message, f"node {context.node_id}: refusing to train outside a secure round")
    try:
        stage, payload = read_stage(message.content)
        if stage == SETUP:
            reply = _setup(message, context, payload, settings)
        else:
            reply = _step(message, context, call_next, stage, payload, settings)
    except SecAggError as exc:
        _forget(context)
        return _error(message, f"node {context.node_id}: {exc}")
    except _TrainingFailedError as failed:
        _forget(context)
        return failed.reply
    return Message(stage_content(stage, reply), reply_to=message)


def _error(message: Message, reason: str) -> Message:
    return Message(Error(code=ErrorCode.MOD_FAILED_PRECONDITION, reason=f"secagg: {reason}"), reply_to=message)


def _forget(context: Context) -> None:
    if STATE_KEY in context.state:
        del context.state[STATE_KEY]


def _save(context: Context, setup: bytes, state: ClientState) -> None:
    context.state[STATE_KEY] = ConfigRecord({"setup": setup, "client": state.to_bytes()})


def _setup(message: Message, context: Context, payload: bytes, settings: _Settings) -> bytes:
    setup = wire.decode(payload, RoundSetup)
    masking = setup.masking_config  # validated again here: the server's word is not enough
    quantization = setup.quantization
    protocol_id = setup.protocol_id(message.metadata.dst_node_id)
    if masking.num_clients < settings.min_nodes:
        raise ConfigurationError(f"round of {masking.num_clients} nodes, this node requires {settings.min_nodes}")
    if masking.threshold < settings.min_threshold:
        raise ConfigurationError(f"threshold {masking.threshold}, this node requires {settings.min_threshold}")
    assert quantization.num_clients == masking.num_clients  # RoundSetup derives one from the other
    session_context = round_context(message.metadata.run_id, setup.server_round, setup.arrays_digest)
    state, advertise = client_start(
        masking, protocol_id, context=session_context, random_bytes=settings.random_bytes
    )
    _save(context, payload, state)
    return advertise


def _load(context: Context) -> tuple[bytes, RoundSetup, ClientState]:
    record = context.state.get(STATE_KEY)
    if not isinstance(record, ConfigRecord):
        raise ProtocolError("no secure round in progress on this node")
    setup_bytes, state_bytes = record.get("setup"), record.get("client")
    if not isinstance(setup_bytes, bytes) or not isinstance(state_bytes, bytes):
        raise ProtocolError("the stored secure-round state is incomplete")
    return setup_bytes, wire.decode(setup_bytes, RoundSetup), ClientState.from_bytes(state_bytes)


def _step(
    message: Message, context: Context, call_next: ClientAppCallable, stage: str, payload: bytes, settings: _Settings
) -> bytes:
    setup_bytes, setup, state = _load(context)
    inbound = wire.decode_any(payload)
    if not isinstance(inbound, DOWNLINK[stage]):
        raise ProtocolError(f"stage {stage!r} carries a {type(inbound).__name__}")
    vector = None
    if stage == MASKED_INPUT:
        vector = _train_and_encode(message, context, call_next, setup, state, settings)
    state, reply = client_step(state, payload, input_vector=vector, random_bytes=settings.random_bytes)
    if state.phase == ClientPhase.DONE:
        _forget(context)
    else:
        _save(context, setup_bytes, state)
    return reply


def _train_and_encode(
    message: Message,
    context: Context,
    call_next: ClientAppCallable,
    setup: RoundSetup,
    state: ClientState,
    settings: _Settings,
) -> RingVector:
    training = without_stage(message.content)
    base, layout = flatten_arrays(model_arrays(training))
    if arrays_digest(base, layout) != setup.arrays_digest:
        raise ProtocolError("the model sent for training is not the one the round was set up for")
    if layout.size + 1 != state.config.vector_length:
        raise ProtocolError(f"the session is for {state.config.vector_length - 1} values, the model has {layout.size}")
    message.content = training  # the handler sees exactly the strategy's content
    reply = call_next(message, context)
    if reply.has_error():
        raise _TrainingFailedError(reply)
    local, local_layout = flatten_arrays(model_arrays(reply.content))
    shapes = [(s.record, s.name, s.shape) for s in layout.specs]
    if [(s.record, s.name, s.shape) for s in local_layout.specs] != shapes:
        raise ConfigurationError("the train handler's arrays differ from the model's (names or shapes)")
    weight = _weight(reply.content, setup.weight_name)
    quantization = setup.quantization
    rng = settings.rng if settings.rng is not None else np.random.default_rng()
    encoded = encode_update(local - base, weight, quantization, rng)
    if settings.audit is not None:
        settings.audit(
            AuditRecord(
                run_id=message.metadata.run_id,
                server_round=setup.server_round,
                node_id=message.metadata.dst_node_id,
                protocol_id=state.client,
                weight=weight,
                encoded=encoded,
            )
        )
    return encoded


def _weight(content: RecordDict, key: str) -> int:
    """The integer weight under ``key`` in the handler's one MetricRecord that has it."""
    values = [record[key] for record in content.metric_records.values() if key in record]
    if len(values) != 1:
        raise ConfigurationError(f"the train handler must report {key!r} in exactly one MetricRecord")
    value = values[0]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{key!r} must be an integer count, got {value!r}")
    return value


secagg_mod: Mod = make_secagg_mod()
"""The mod with default settings: ``ClientApp(mods=[secagg_mod])``."""
