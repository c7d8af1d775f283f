"""What the masking and Paillier mods share: settings, stage dispatch, error replies, local training,
the node's weight, audit records (the node's identity and key files: :mod:`._node_identity`)."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from threading import RLock
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
from flwr.app import Context, Message, MessageType, RecordDict
from flwr.clientapp.typing import ClientAppCallable

from secagg._validate import require_bool, require_callable, require_instance, require_optional_path, require_rng
from secagg.dp.sampler import RandomSource
from secagg.errors import ConfigurationError, ConfigurationTypeError
from secagg.integrations.flower._local_training import train_locally
from secagg.integrations.flower._node_errors import (
    AUDIT_HOOK,
    IDENTITY_FILES,
    TrainingFailedError,
    error_reply,
    failure_reply,
    kept_local,
)
from secagg.integrations.flower._node_identity import (
    IDENTITY_KEY_FILE,
    TRUSTED_KEYS_FILE,
    NodeIdentity,
    announce_identity,
    check_identities,
    config_path,
    node_identity,
)
from secagg.integrations.flower._records import (
    has_stage,
    read_stage,
    stage_content,
)
from secagg.integrations.flower.bound_plan import BOUND_DP_RECORD
from secagg.integrations.flower.policy import NodePolicy
from secagg.integrations.flower.protocol import (
    IDENTIFY,
)
from secagg.primitives.randomness import RandomBytes

__all__ = [
    "IDENTITY_KEY_FILE",
    "PLAIN_REPLY_FLAGS",
    "TRUSTED_KEYS_FILE",
    "AuditRecord",
    "ModRoute",
    "NodeIdentity",
    "NodeSettings",
    "NodeStageHandler",
    "StageHandler",
    "TrainingFailedError",
    "announce_identity",
    "check_identities",
    "config_path",
    "error_reply",
    "forget",
    "node_identity",
    "run_stage",
    "serve_node",
    "state_lock",
    "train_locally",
]


@dataclass(frozen=True)
class AuditRecord:
    """What this node put into one secure round, for its own records; it stays on the node.

    Attributes:
        run_id: the Flower run.
        server_round: the round number the server announced.
        node_id: this node's Flower id.
        protocol_id: its id in the session (1..n).
        weight: the example count it reported (its weight in the mean).
        encoded: its contribution ``(weight * q(update), weight)`` before protection:
            ring elements for masking, int64 integers for Paillier.
    """

    run_id: int
    server_round: int
    node_id: int
    protocol_id: int
    weight: int
    encoded: npt.NDArray[Any]


Audit = Callable[[AuditRecord], None]

PLAIN_REPLY_FLAGS: Mapping[str, str] = MappingProxyType(
    {MessageType.EVALUATE: "allow_plain_evaluate", MessageType.QUERY: "allow_plain_query"}
)
"""The mod argument that opts a node whose policy requires DP in to answering messages of each
category outside a secure round (:meth:`NodeSettings.plain_refusal`)."""

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class NodeSettings:
    """What every secure mod is built with (each mod's own settings add to these)."""

    policy: NodePolicy
    allow_plain_train: bool
    allow_plain_evaluate: bool
    allow_plain_query: bool
    rng: np.random.Generator | None
    audit: Audit | None
    random_bytes: RandomBytes
    identity_key_file: PathLike | None
    trusted_keys_file: PathLike | None
    noise_source: RandomSource | None
    dp_state_file: PathLike | None

    def __post_init__(self) -> None:
        """Check every argument of the mod factory now, so a wrong type never waits for a round."""
        require_instance("policy", self.policy, NodePolicy)
        for flag in ("allow_plain_train", *PLAIN_REPLY_FLAGS.values()):
            require_bool(flag, getattr(self, flag))
        if self.allow_plain_train and self.policy.require_dp:
            # A plain training reply is the node's update in the clear: a release no accountant charges.
            raise ConfigurationError(
                "policy require_dp=True refuses every round without differential privacy, but allow_plain_train=True "
                "would send this node's un-noised update for any training message outside a secure round: choose one"
            )
        if self.rng is not None:
            require_rng("rng", self.rng)
        if self.audit is not None:
            require_callable("audit", self.audit)
        require_callable("random_bytes", self.random_bytes)
        for name in ("identity_key_file", "trusted_keys_file", "dp_state_file"):
            require_optional_path(name, getattr(self, name))
        if self.noise_source is not None and not callable(getattr(self.noise_source, "random_bytes", None)):
            raise ConfigurationTypeError(
                f"noise_source must have a random_bytes(n) method (secagg.dp.RandomSource) or be None, "
                f"got {type(self.noise_source).__name__}"
            )

    def plain_refusal(self, category: str) -> str | None:
        """Why this node refuses a message of ``category`` (``train``, ``evaluate``, ``query``)
        outside a secure round; None: the app answers it.

        A plain training message is refused unless ``allow_plain_train``. Under
        ``policy.require_dp`` every other message is refused too, unless its category's opt-in
        (:data:`PLAIN_REPLY_FLAGS`) is set: its reply (say, the loss and accuracy on this node's
        patients of a model the server chose, which can single out one patient) would leave
        un-noised and charged to no budget. A category without an opt-in (Flower's legacy
        ``get_parameters``, whose reply is the client's model as it holds it, and
        ``get_properties``) is always refused under ``require_dp``. Without ``require_dp`` they go
        to the app, as the node promised no DP.
        """
        if category == MessageType.TRAIN:
            return None if self.allow_plain_train else "refusing to train outside a secure round"
        flag = PLAIN_REPLY_FLAGS.get(category)
        if not self.policy.require_dp or (flag is not None and getattr(self, flag)):
            return None
        if flag is None:  # Flower's legacy get_parameters / get_properties (a client_fn app), or another
            return (
                f"policy require_dp=True refuses to answer {category} messages outside a secure round: their "
                "replies (a legacy client's parameters, its model as it holds it, or its properties) would leave "
                "un-noised and uncharged, and no mod argument opts in to them (only evaluate and query messages "
                "have one); give the strategy its initial parameters on the server"
            )
        return (
            f"policy require_dp=True refuses to answer {category} messages outside a secure round: their replies, "
            f"computed on this node's patients from a model the server chose, would leave un-noised and "
            f"uncharged; the mod's {flag}=True opts in to answering them anyway"
        )

    def rounding_rng(self) -> np.random.Generator:
        """The quantization's rounding randomness (not secret): ``rng``, else fresh OS entropy."""
        return self.rng if self.rng is not None else np.random.default_rng()

    def record(
        self, message: Message, server_round: int, protocol_id: int, weight: int, encoded: npt.NDArray[Any]
    ) -> None:
        """Hand the node's contribution to ``audit`` as an :class:`AuditRecord`, if the mod has one (a
        library error it raises is the node's own failure: its code is sent, its words logged)."""
        if self.audit is None:
            return
        with kept_local(AUDIT_HOOK):  # the hook's words name the node's records and folders
            self.audit(
                AuditRecord(
                    run_id=message.metadata.run_id,
                    server_round=server_round,
                    node_id=message.metadata.dst_node_id,
                    protocol_id=protocol_id,
                    weight=weight,
                    encoded=encoded,
                )
            )


StageHandler = Callable[[str, bytes], bytes]
"""Runs one stage of a mod's protocol: ``(stage, inbound payload) -> reply payload``."""


@dataclass(frozen=True)
class ModRoute:
    """Which stages a mod serves, where it keeps its session state, and what it accepts.

    ``limit(stage)``: the most payload bytes an honest server message of that stage has
    (:mod:`~secagg.integrations.flower._limits`; it may raise a SecAggError, e.g. with no round
    in progress); ``training``: the stages whose messages also carry the strategy's content
    (any other message holds the stage records alone); ``plain_refusal(category)``: why a
    message of that category outside a secure round is refused, None if it goes to the app
    (:meth:`NodeSettings.plain_refusal`).
    """

    name: str
    stages: frozenset[str]
    state_key: str
    plain_refusal: Callable[[str], str | None]
    limit: Callable[[str], int]
    training: frozenset[str]


def run_stage(
    message: Message, context: Context, call_next: ClientAppCallable, route: ModRoute, handle: StageHandler
) -> Message:
    """What every secure mod does around its protocol step.

    Messages other than ``train``, and a ``train`` message without a secure stage, pass through
    unless ``route.plain_refusal`` refuses their category (a plain ``train`` message without
    ``allow_plain_train``; under ``require_dp`` an ``evaluate`` or ``query`` message without its
    opt-in) or they carry the ``secagg.dp`` record only the mod writes (refused); a message of a
    stage the mod does not serve, with records beside the stage records outside
    ``route.training``, or with a payload above ``route.limit`` is refused before
    its payload is loaded; otherwise ``handle`` runs the stage and its reply
    payload goes back in the stage's records. A refusal (any SecAggError), a failure of the node's own
    files or state, a foreign exception or a failed training becomes an error reply
    (:func:`~secagg.integrations.flower._node_errors.failure_reply`: no local detail is sent, it is
    logged) and the session state is forgotten, so nothing is reused after it. The stage runs under
    :func:`state_lock`: two secure messages for one context never interleave.
    """
    category = message.metadata.message_type.split(".")[0]
    if category != MessageType.TRAIN or not has_stage(message.content):
        refusal = route.plain_refusal(category)
        if refusal is not None:  # the app's handler never runs
            return error_reply(message, f"node {context.node_id}: {refusal}")
        return _passed_through(message, context, call_next)

    def limit(stage: str) -> int:
        if stage not in route.stages:
            raise ConfigurationError(f"stage {stage!r} is not served here; this node runs {route.name}")
        return route.limit(stage)

    try:
        with state_lock(context):  # every check against context.state and the record it writes: one step
            # Checked before the payload is loaded: the stage served, no other records, an honest size.
            stage, payload = read_stage(message.content, limit, alone=lambda stage: stage not in route.training)
            reply = handle(stage, payload)
    except TrainingFailedError as failed:
        forget(context, route.state_key)
        return failed.reply
    except MemoryError:
        raise  # this node's own resources: not a reason to send
    except Exception as exc:  # what the server learns of it: _node_errors (the rest is logged here)
        forget(context, route.state_key)
        return failure_reply(message, context, exc)
    return Message(stage_content(stage, reply), reply_to=message)


class _StateLocks:
    """One reentrant lock per ``context.state`` object alive in this process (a weak reference to
    it: the lock goes with the state)."""

    def __init__(self) -> None:
        # Reentrant: a dead state's callback (_drop) runs wherever the garbage collector runs, also
        # inside ``of`` in the thread holding the guard
        self._guard = RLock()
        self._locks: dict[int, tuple[weakref.ref[RecordDict], AbstractContextManager[object]]] = {}

    def of(self, state: RecordDict) -> AbstractContextManager[object]:
        key = id(state)
        with self._guard:
            entry = self._locks.get(key)
            if entry is None or entry[0]() is not state:  # none yet, or a dead state's whose id was reused
                entry = (weakref.ref(state, partial(self._drop, key)), RLock())
                self._locks[key] = entry
            return entry[1]

    def _drop(self, key: int, dead: weakref.ref[RecordDict]) -> None:
        with self._guard:
            if key in self._locks and self._locks[key][0] is dead:
                del self._locks[key]


_STATE_LOCKS = _StateLocks()


def state_lock(context: Context) -> AbstractContextManager[object]:
    """The lock a node holds while it handles a secure stage for ``context``: one per
    ``context.state`` in this process.

    A node's checks against its state and the records it writes after them (one aggregate decrypted
    per Paillier session, one upload per session, a masking session's step, the budget kept in
    ``context.state``) are then one step, even when two messages for one context are handled at
    once: Flower's SuperNode hands a node one message at a time, but an integrator's loop may call
    a mod from two threads with one ``Context``. Two *processes* working on copies of a node's
    state are outside its reach (flwr's Ray simulation backend, which runs each message on a copy
    of ``Context`` in an actor; docs/integrations.md, "One message at a time")."""
    return _STATE_LOCKS.of(context.state)


def _passed_through(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """A message outside a secure round (an evaluate or query message, under ``require_dp`` only
    with its opt-in; a plain training one with ``allow_plain_train``), to the app unless it carries
    the record only the mod writes (the bound DP configuration): a handler's ``bound_dp`` never
    returns the server's word."""
    if message.has_content() and BOUND_DP_RECORD in message.content:
        return error_reply(message, f"node {context.node_id}: a {message.metadata.message_type} message outside a "
                           f"secure round carries {BOUND_DP_RECORD!r}, a record only this node's mod writes")
    return call_next(message, context)


def forget(context: Context, key: str) -> None:
    """Drop the record ``key`` from the node's state, if present."""
    if key in context.state:
        del context.state[key]


NodeStageHandler = Callable[[str, bytes, NodeIdentity | None], bytes]
"""Runs one stage after ``identify``: ``(stage, inbound payload, this node's identity) -> reply payload``."""


def serve_node(
    message: Message,
    context: Context,
    call_next: ClientAppCallable,
    route: ModRoute,
    settings: NodeSettings,
    handle: NodeStageHandler,
    *,
    no_identity: str | None = None,
) -> Message:
    """:func:`run_stage` for a node mod: each stage reads the node's identity (``settings``' key
    files, else the node config); ``identify`` answers with it, any other stage goes to ``handle``.

    ``no_identity``: the refusal (a ConfigurationError, before any stage) of a mod that needs
    an identity key, when the node has none; None lets a node without one take part.
    """

    def handle_stage(stage: str, payload: bytes) -> bytes:
        with kept_local(IDENTITY_FILES):  # paths, modes, links: the node's own, never sent
            identity = node_identity(context, settings.identity_key_file, settings.trusted_keys_file)
        if identity is None and no_identity is not None:
            raise ConfigurationError(no_identity)
        if stage == IDENTIFY:
            return announce_identity(message, identity)
        return handle(stage, payload, identity)

    return run_stage(message, context, call_next, route, handle_stage)
