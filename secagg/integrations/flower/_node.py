"""What the masking and Paillier mods share: settings, stage dispatch, error replies, local training,
the node's weight, audit records (the node's identity and key files: :mod:`._node_identity`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
from flwr.app import Context, Message, MessageType, RecordDict
from flwr.clientapp.typing import ClientAppCallable

from secagg._validate import require_bool, require_callable, require_instance, require_optional_path, require_rng
from secagg.dp.calibration import NoisePlan
from secagg.dp.sampler import RandomSource
from secagg.errors import ConfigurationError, ConfigurationTypeError, ProtocolError, SecAggError
from secagg.integrations._foreign import foreign_reason
from secagg.integrations.flower._node_errors import (
    IDENTITY_FILES,
    LOGGER,
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
    check_training,
    has_stage,
    model_arrays,
    read_stage,
    stage_content,
    training_parameters,
    without_stage,
)
from secagg.integrations.flower.bound_plan import BOUND_DP_RECORD, check_no_bound_dp, rounding_slack, with_bound_dp
from secagg.integrations.flower.policy import NodePolicy
from secagg.integrations.flower.protocol import (
    IDENTIFY,
    ArrayLayout,
    arrays_digest,
    flatten_arrays,
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
        """Hand the node's contribution to ``audit`` as an :class:`AuditRecord`, if the mod has one."""
        if self.audit is not None:
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
    logged) and the session state is forgotten, so nothing is reused after it.
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




def train_locally(
    message: Message,
    context: Context,
    call_next: ClientAppCallable,
    digest: bytes,
    parameters: bytes,
    weight_key: str,
    max_values: int,
    dp: NoisePlan | None = None,
) -> tuple[npt.NDArray[np.float64], ArrayLayout, int, float]:
    """Run the app's train handler on the strategy's content; ``(local - global, layout, weight,
    slack)``, ``slack`` the update's :func:`~secagg.integrations.flower.bound_plan.rounding_slack`
    in a DP round (0.0 otherwise).

    Checks first, before loading any array, that the content is within the honest size of a
    model of ``max_values`` values and of the bound configuration and holds no MetricRecord
    (unbound; :func:`~secagg.integrations.flower._records.check_training`), then that the model and the
    training configuration sent are the ones the round was set up for (``digest``, ``parameters``: both bound into
    the session); the handler sees exactly the strategy's content; its arrays
    must have the model's names and shapes and its one MetricRecord with
    ``weight_key`` gives the weight. Raises TrainingFailedError if the handler fails: its own error
    reply, or, for a foreign exception it raises, the mod's, naming the exception's type only (its
    text, which can carry the hospital's shapes and values, is logged at DEBUG on :data:`LOGGER`,
    never sent). In a DP
    round (``dp``) the handler also sees the plan's DPConfig (:func:`~secagg.integrations.flower.bound_plan.bound_dp`);
    a content that carries that record itself is refused first.
    """
    training = without_stage(message.content)
    check_no_bound_dp(training)
    check_training(training, max_values, len(parameters))
    base, layout = flatten_arrays(model_arrays(training))
    if arrays_digest(base, layout) != digest:
        raise ProtocolError("the model sent for training is not the one the round was set up for")
    if training_parameters(training) != parameters:
        raise ProtocolError("the training configuration sent is not the one the round was set up for")
    message.content = with_bound_dp(training, dp)  # the bound DP configuration, for the handler's clip
    try:
        reply = call_next(message, context)
    except SecAggError:
        raise  # the library's own words (a mod further down the chain): refused as any refusal
    except MemoryError:
        raise  # this node's own resources: not a reason to send
    except Exception as exc:  # the hospital's training: its text (shapes, values) stays on this node
        reason = foreign_reason("the train handler", exc, logger=LOGGER, hospital=context.node_id, level=logging.ERROR)
        raise TrainingFailedError(error_reply(message, f"node {context.node_id}: {reason}")) from exc
    if reply.has_error():
        raise TrainingFailedError(reply)
    local, local_layout = flatten_arrays(model_arrays(reply.content))
    shapes = [(s.record, s.name, s.shape) for s in layout.specs]
    if [(s.record, s.name, s.shape) for s in local_layout.specs] != shapes:
        raise ConfigurationError("the train handler's arrays differ from the model's (names or shapes)")
    delta = local - base
    slack = 0.0 if dp is None else rounding_slack(local, delta, local_layout)
    return delta, layout, _weight(reply.content, weight_key), slack


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
