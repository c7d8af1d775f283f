"""Client side: a Flower mod through which a node takes part in masking rounds.

``ClientApp(mods=[secagg_mod])`` is the whole change on a node. The mod sees
every message before the app's handlers:

- ``identify`` (active mode): answers with its identity public key, signed
  for this run and node id;
- ``setup``: validates the round (no more nodes than its policy's ``max_nodes``,
  checked first; its own node among the round's nodes, the
  masking and quantization settings safe by this node's own checks, at least
  ``min_nodes`` nodes and a threshold of at least ``min_threshold``; in active
  mode every identity key in the configuration on the federation's trusted
  list, no key twice, and its own key at its own protocol id; in a DP round
  the noise plan, and that every sum the server can unmask holds the plan's h
  honest noise shares, :func:`~secagg.integrations.flower.dp.check_unmasked_sums`, and that this
  node's own budget allows one more contribution under that plan,
  :mod:`~secagg.integrations.flower.node_budget`), draws fresh keys and answers with its public
  keys (signed in active mode).
  It takes part in a session at most once: a second setup of a session it
  already started (same run, round, model and configuration: the same session
  id) is refused with a ReplayError, since the server could replay the first
  attempt's signed keys of peers whose mask keys it recovered there; so is a
  setup of a round before the latest it took part in, a second session in one
  round (its policy's ``max_sessions_per_round``, 1 by default), and a session
  over a model it already sent a masked input for (unless its policy's
  ``allow_repeat_model``: two sums over one model are, without DP, the update of
  a hospital left out of one; :mod:`~secagg.integrations.flower._contributions`).
  The latest round and its session ids, and the models it contributed for
  (public values), are kept in ``context.state`` under ``HISTORY_KEY`` and
  ``CONTRIBUTED_KEY``;
- every stage after ``setup`` must come in messages of the setup's type (``train.<action>``
  picks the app's train handler; a type other than plain ``train`` is bound into the setup's
  descriptor, so a node sent another type than the others is in another session), one of its
  policy's ``train_message_types`` (plain ``train`` by default; checked at setup);
- ``share-keys``, ``consistency-check``, ``unmask``: one step of the masking
  protocol (:func:`secagg.masking.client_step`); the protocol state between
  stages lives in ``context.state`` (it holds private keys and never leaves
  the node);
- ``masked-input``: checks, before loading it, that the training content is within
  the honest size the setup binds, then the share delivery (every check of the protocol step
  that needs no input, :func:`secagg.masking.client.check_share_delivery`: a delivery the
  step would refuse costs no training and no DP charge), that it sent no masked input for this
  model yet (by arrays digest, checked at setup too, and by its values alone on the content, before
  the handler runs; both recorded as the masked input leaves), and that the model it is asked to
  train is the one the round was set up for, runs the app's train handler on the strategy's
  content, and answers with its update ``local - global``, quantized, weighted
  by the example count the handler reported, and masked (in a DP round: noised, after charging
  the contribution to this node's own budget). Nothing of the
  handler's reply leaves the node in the clear. In a compressed round it adds
  its residual, sends the round's subset (rotated if asked) and keeps the rest
  as its new residual in ``context.state``
  (:mod:`~secagg.integrations.flower.compression`).

Active mode is on when the node has an identity key: ``identity_key_file`` or
the node config's ``identity-key-file``, with the federation's trusted keys in
``trusted_keys_file`` or ``trusted-keys-file`` (formats:
:mod:`secagg.integrations.flower.keys`). Such a node refuses semi-honest rounds.

Training messages outside a secure round are refused (an error reply), so a
node with the mod installed never sends its update in the clear unless built
with ``allow_plain_train=True`` (refused with ``NodePolicy(require_dp=True)``). Evaluation and
query messages pass through (under ``require_dp`` only with ``allow_plain_evaluate`` /
``allow_plain_query``), refused if they carry the ``secagg.dp`` record only the mod writes
(:mod:`~secagg.integrations.flower.bound_plan`).
Any protocol error makes the node answer with an error reply (the server
treats it as a dropout) and forget the session.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from functools import partial

import numpy as np
from flwr.app import ConfigRecord, Context, Message
from flwr.clientapp.typing import ClientAppCallable, Mod

from secagg import wire
from secagg.dp.calibration import NoisePlan
from secagg.dp.sampler import RandomSource
from secagg.encoding import to_ring
from secagg.errors import ConfigurationError, ProtocolError, ReplayError
from secagg.integrations.flower._contributions import CONTRIBUTED_KEY, check_model, remember_model, value_guard
from secagg.integrations.flower._limits import model_values
from secagg.integrations.flower._masking_session import STATE_KEY, load_session, message_limit, save_session
from secagg.integrations.flower._node import (
    IDENTITY_KEY_FILE,
    TRUSTED_KEYS_FILE,
    Audit,
    AuditRecord,
    ModRoute,
    NodeIdentity,
    NodeSettings,
    check_identities,
    forget,
    serve_node,
    train_locally,
)
from secagg.integrations.flower._node_errors import DP_BUDGET, DP_UPDATE, NODE_UPDATE, NODE_WEIGHT, kept_local
from secagg.integrations.flower.bound_plan import check_dp_update
from secagg.integrations.flower.clipping import encode_segmented, node_table, parse_table
from secagg.integrations.flower.compression import check_compressed_model, check_entries, keep_residual, node_update
from secagg.integrations.flower.dp import (
    check_dimension,
    check_node_weight,
    check_unmasked_sums,
    node_encoding,
    node_plan,
    read_dp,
)
from secagg.integrations.flower.node_budget import (
    BUDGET_CODES,
    budget_holder,
    charge_node_budget,
    check_node_budget,
    node_budget_file,
)
from secagg.integrations.flower.policy import NodePolicy, default_colluders
from secagg.integrations.flower.protocol import (
    DOWNLINK,
    MASKED_INPUT,
    MASKING_STAGES,
    SETUP,
    RoundSetup,
    round_context,
)
from secagg.integrations.flower.run_binding import check_run_config
from secagg.masking import ACTIVE, ClientPhase, ClientState, client_start, client_step
from secagg.masking.client import check_share_delivery
from secagg.masking.session import session_id
from secagg.primitives.randomness import RandomBytes, system_random
from secagg.ring import RingVector

__all__ = [
    "CONTRIBUTED_KEY",
    "HISTORY_KEY",
    "IDENTITY_KEY_FILE",
    "STATE_KEY",
    "TRUSTED_KEYS_FILE",
    "AuditRecord",
    "make_secagg_mod",
    "secagg_mod",
]

LOGGER = logging.getLogger("secagg.flower")
HISTORY_KEY = "secagg.history"
"""Key of the ConfigRecord in ``context.state`` remembering the latest round this node started a
masking session in, and the session ids it started in that round."""
HISTORY_SIZE = 1024
"""How many sessions the node remembers starting in one round (an honest server starts one; the policy's
``max_sessions_per_round``, 1 by default, is the limit, and it never exceeds this)."""
_ID = 32

PathLike = str | os.PathLike[str]


def make_secagg_mod(
    *,
    policy: NodePolicy | None = None,
    allow_plain_train: bool = False,
    allow_plain_evaluate: bool = False,
    allow_plain_query: bool = False,
    rng: np.random.Generator | None = None,
    audit: Audit | None = None,
    random_bytes: RandomBytes = system_random,
    identity_key_file: PathLike | None = None,
    trusted_keys_file: PathLike | None = None,
    noise_source: RandomSource | None = None,
    dp_state_file: PathLike | None = None,
) -> Mod:
    """A masking mod with this node's own safety floor.

    Args:
        policy: what this node accepts (:class:`~secagg.integrations.flower.NodePolicy`;
            default: active mode only, at least 3 nodes, a threshold of 2, and no round tolerating
            fewer colluders than the library's default for that round, ``policy.default_colluders``),
            checked in the setup stage before anything derived from its data leaves it.
        allow_plain_train: pass training messages outside a secure round to the
            handler (their replies then leave in the clear). Off by default; refused
            (ConfigurationError) with ``policy.require_dp``.
        allow_plain_evaluate: with ``policy.require_dp``, still answer evaluate messages (never in
            a secure round) through the app. It gives up: this node's metrics on its patients, for a
            model the server chooses (one crafted to single out a patient), leave un-noised and
            uncharged. Off: refused (an error reply naming it). Without ``require_dp`` they pass anyway.
        allow_plain_query: the same for query messages (the query handler's reply).
        rng: the quantization's rounding randomness (not secret); fresh OS
            entropy per round if None.
        audit: called with an :class:`AuditRecord` after each masked update
            is computed (for the node's own logs; runs locally).
        random_bytes: the source of every secret (keys, masks, shares).
        identity_key_file: this node's identity key (active mode); default:
            the node config's ``identity-key-file``, if any.
        trusted_keys_file: the federation's trusted identity keys; default:
            the node config's ``trusted-keys-file``.
        noise_source: the randomness of this node's DP noise share; None (the
            default, and the only choice outside tests): the OS CSPRNG
            (:class:`secagg.dp.SystemRandomSource`).
        dp_state_file: this node's DP budget state file (default: the node config's
            ``dp-state-file``; neither: the default policy refuses DP rounds, and one with
            ``require_dp_state_file=False`` keeps the budget in ``context.state``, one run's),
            :mod:`~secagg.integrations.flower.node_budget`.
    """
    policy = NodePolicy() if policy is None else policy
    if not isinstance(policy, NodePolicy) or policy.min_nodes < 3:
        raise ConfigurationError("policy must be a NodePolicy with min_nodes >= 3 (a masking session needs 3)")
    settings = NodeSettings(
        policy, allow_plain_train, allow_plain_evaluate, allow_plain_query, rng, audit, random_bytes, identity_key_file,
        trusted_keys_file, noise_source, dp_state_file,
    )

    def secagg_mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        """Take part in a masking round (see :mod:`secagg.integrations.flower.client`)."""
        return _handle(message, context, call_next, settings)

    return secagg_mod


def _handle(message: Message, context: Context, call_next: ClientAppCallable, settings: NodeSettings) -> Message:
    def handle(stage: str, payload: bytes, identity: NodeIdentity | None) -> bytes:
        if stage == SETUP:
            return _setup(message, context, payload, settings, identity)
        return _step(message, context, call_next, stage, payload, settings, identity)

    route = ModRoute(
        "secagg_mod", frozenset(MASKING_STAGES), STATE_KEY, settings.plain_refusal,
        partial(message_limit, context, settings.policy.max_nodes), frozenset((MASKED_INPUT,)),
    )
    return serve_node(message, context, call_next, route, settings, handle)


def _setup(
    message: Message, context: Context, payload: bytes, settings: NodeSettings, identity: NodeIdentity | None
) -> bytes:
    setup = wire.decode(payload, RoundSetup)
    settings.policy.check_nodes(len(setup.node_ids))  # the node's own ceiling, before any other work
    check_run_config(setup.parameters, context.run_config, settings.policy.require_run_config)
    # Validated again here (the server's word is not enough), and bound to every field of the setup.
    masking = setup.bound_masking_config(message.metadata.run_id, message.metadata.message_type)
    settings.policy.check_train_message_type(message.metadata.message_type)  # the setup binds it; before training
    quantization = setup.quantization
    protocol_id = setup.protocol_id(message.metadata.dst_node_id)
    guarantee = masking.guarantee
    settings.policy.check_round(masking.num_clients, guarantee, quantization, default_colluders(masking),
                               dp=bool(setup.dp))
    settings.policy.check_masking(masking.threshold, guarantee)
    plan = _check_encoding(setup, settings.policy)
    if plan is not None:
        check_dimension(plan, masking.vector_length)  # else no contribution could ever be encoded
        # Every sum the server can unmask must hold the h honest noise shares the plan is sized for.
        check_unmasked_sums(plan, masking)
        # ... and this node's own budget must allow one more contribution under this plan.
        with kept_local(DP_BUDGET, BUDGET_CODES):  # its state file's path and contents: never sent
            budget_file = node_budget_file(context, settings.dp_state_file)
        settings.policy.check_dp_state_file(budget_file)  # a policy floor: no local detail
        with kept_local(DP_BUDGET, BUDGET_CODES):
            check_node_budget(context, plan, budget_file, holder=budget_holder(identity))
    if masking.mode == ACTIVE:
        if identity is None:
            raise ConfigurationError("an active-mode round, but this node has no identity key")
        check_identities(masking.identity_keys, setup.node_ids, protocol_id, identity)
    elif identity is not None:
        raise ConfigurationError("this node has an identity key and refuses semi-honest rounds")
    else:
        LOGGER.warning("node %d: semi-honest round %d: %s", message.metadata.dst_node_id, setup.server_round, guarantee)
    assert quantization.num_clients == masking.num_clients  # RoundSetup derives one from the other
    session_context = round_context(message.metadata.run_id, setup.server_round, setup.arrays_digest)
    latest, started = _history(context)
    session = session_id(masking, session_context)
    _check_fresh(setup.server_round, session, latest, started, settings.policy.max_sessions_per_round)
    check_model(context, setup.arrays_digest, settings.policy)  # one contribution per model, before training
    if setup.server_round > latest:
        started = b""  # a later round: the ids of earlier ones are no longer needed (they are refused)
    state, advertise = client_start(
        masking,
        protocol_id,
        context=session_context,
        identity=None if identity is None else identity.key,
        random_bytes=settings.random_bytes,
    )
    save_session(context, payload, state, message.metadata.message_type)
    context.state[HISTORY_KEY] = ConfigRecord({"round": setup.server_round, "started": started + session})
    return advertise


def _history(context: Context) -> tuple[int, bytes]:
    """The latest round this node started a session in (0: none) and the ids of the sessions it
    started in that round, concatenated. ``context.state`` belongs to one run."""
    record = context.state.get(HISTORY_KEY)
    if not isinstance(record, ConfigRecord):
        return 0, b""
    latest, started = record.get("round"), record.get("started")
    if not isinstance(latest, int) or isinstance(latest, bool) or not isinstance(started, bytes) or len(started) % _ID:
        raise ProtocolError("the stored masking history is malformed")
    return latest, started


def _check_fresh(server_round: int, session: bytes, latest: int, started: bytes, most: int) -> None:
    """ReplayError unless ``session`` is new: a reused session id would let the server replay the
    first attempt's signed keys of peers whose mask keys it recovered there. The node never goes
    back to a round before its latest, and takes at most ``most`` sessions (its policy's
    ``max_sessions_per_round``), and never more than HISTORY_SIZE, in one round (it refuses more
    rather than forget one)."""
    if server_round > latest:
        return
    if server_round < latest or session in [started[i : i + _ID] for i in range(0, len(started), _ID)]:
        raise ReplayError(
            f"this node already took part in round {latest} of this run; a setup of round {server_round} "
            "(an earlier round, or a masking session it already started) is refused"
        )
    limit = min(most, HISTORY_SIZE)
    if len(started) >= limit * _ID:
        raise ReplayError(
            f"this node refuses more setups of round {server_round}: it started {limit} (an honest server runs one "
            f"session per round; NodePolicy(max_sessions_per_round=...) accepts more by name, up to {HISTORY_SIZE})"
        )


def _check_encoding(setup: RoundSetup, policy: NodePolicy) -> NoisePlan | None:
    """The round's clip table or DP plan, validated, against this node's policy (before it trains)."""
    plan = node_plan(setup.dp, setup.quantization, len(setup.node_ids), policy)
    if plan is None:
        node_table(setup.segments, setup.quantization, policy.max_clip)
        if setup.compression:
            check_entries(setup.compression)
    return plan


def _step(
    message: Message,
    context: Context,
    call_next: ClientAppCallable,
    stage: str,
    payload: bytes,
    settings: NodeSettings,
    identity: NodeIdentity | None,
) -> bytes:
    setup_bytes, setup, state = load_session(context, message.metadata.message_type)
    inbound = wire.decode_any(payload)
    if not isinstance(inbound, DOWNLINK[stage]):
        raise ProtocolError(f"stage {stage!r} carries a {type(inbound).__name__}")
    vector, keep = None, None
    model_keys: list[bytes] = []  # the model's key by its values (_contributions.model_key), once checked
    if stage == MASKED_INPUT:
        # The delivery's own checks first: one the step would refuse costs no training and no charge.
        check_share_delivery(state, payload)
        check_model(context, setup.arrays_digest, settings.policy)  # one contribution per model, before training
        vector, keep = _train_and_encode(message, context, call_next, setup, state, settings, identity, model_keys)
    key = None if identity is None else identity.key
    state, reply = client_step(state, payload, input_vector=vector, identity=key, random_bytes=settings.random_bytes)
    if stage == MASKED_INPUT:
        # the masked input leaves with this reply: its model by digest and by values (re-encoded, still refused)
        remember_model(context, (setup.arrays_digest, *model_keys), settings.policy)
    if keep is not None:
        keep()  # the masked input is computed and leaves with this reply: the node keeps its new residual
    if state.phase == ClientPhase.DONE:
        forget(context, STATE_KEY)
    else:
        save_session(context, setup_bytes, state, message.metadata.message_type)
    return reply


def _train_and_encode(
    message: Message,
    context: Context,
    call_next: ClientAppCallable,
    setup: RoundSetup,
    state: ClientState,
    settings: NodeSettings,
    identity: NodeIdentity | None,
    model_keys: list[bytes],
) -> tuple[RingVector, Callable[[], None] | None]:
    if setup.masking.vector_length != state.config.vector_length:
        raise ProtocolError("the stored session and setup disagree on the vector length")
    quantization = setup.quantization
    plan = read_dp(setup.dp, quantization, len(setup.node_ids)) if setup.dp else None
    delta, layout, weight, slack = train_locally(
        message, context, call_next, setup.arrays_digest, setup.parameters, setup.weight_name,
        model_values(setup.masking.vector_length, setup.segments, setup.dp, setup.compression),
        setup.quantization.max_weight, plan,
        before=value_guard(context, settings.policy, model_keys),  # one contribution per model value set
    )
    rng = settings.rounding_rng()
    keep = None
    if plan is not None:
        check_dimension(plan, state.config.vector_length, delta.shape[0])  # the model's shape, before the charge
        with kept_local(NODE_WEIGHT):  # the count travels inside the secure sum only, never in a reply
            check_node_weight(plan, quantization, weight)  # its count alone, before any data-dependent refusal
        # Charged to this node's own budget before the noised input is computed and leaves.
        with kept_local(DP_BUDGET, BUDGET_CODES):
            budget_file = node_budget_file(context, settings.dp_state_file)
            charge_node_budget(context, plan, budget_file, holder=budget_holder(identity))
        with kept_local(DP_UPDATE):  # the update's norm is computed from the node's data: never sent
            check_dp_update(plan, delta, weight, slack)  # what weight patients can move it under the bound l2_clip
        # The noise share is added here, on the node, before masking (exact sampler, OS CSPRNG).
        with kept_local(NODE_UPDATE):  # its refusal names the update's values or the noise's
            integers = node_encoding(plan, quantization, delta, state.config.vector_length, rng, settings.noise_source)
    else:
        table = parse_table(setup.segments)
        update = node_update(setup.compression, delta, layout, context.state)
        check_compressed_model(table, layout, update.compression, state.config.vector_length)
        with kept_local(NODE_UPDATE):  # its refusal is of the update's values
            integers = encode_segmented(update.values, weight, table, quantization, rng)
        keep = partial(keep_residual, context.state, layout, update.residual)
    encoded = to_ring(integers, quantization)
    settings.record(message, setup.server_round, state.client, weight, encoded)
    return encoded, keep


secagg_mod: Mod = make_secagg_mod()
"""The mod with default settings: ``ClientApp(mods=[secagg_mod])``."""
