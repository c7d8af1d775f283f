"""Client side: a Flower mod through which a node takes part in masking rounds.

``ClientApp(mods=[secagg_mod])`` is the whole change on a node. The mod sees
every message before the app's handlers:

- ``identify`` (active mode): answers with its identity public key, signed
  for this run and node id;
- ``setup``: validates the round (its own node among the round's nodes, the
  masking and quantization settings safe by this node's own checks, at least
  ``min_nodes`` nodes and a threshold of at least ``min_threshold``; in active
  mode every identity key in the configuration on the federation's trusted
  list, no key twice, and its own key at its own protocol id), draws fresh
  keys and answers with its public keys (signed in active mode);
- ``share-keys``, ``consistency-check``, ``unmask``: one step of the masking
  protocol (:func:`secagg.masking.client_step`); the protocol state between
  stages lives in ``context.state`` (it holds private keys and never leaves
  the node);
- ``masked-input``: checks that the model it is asked to train is the one the
  round was set up for, runs the app's train handler on the strategy's
  content, and answers with its update ``local - global``, quantized, weighted
  by the example count the handler reported, and masked. Nothing of the
  handler's reply leaves the node in the clear.

Active mode is on when the node has an identity key: ``identity_key_file`` or
the node config's ``identity-key-file``, with the federation's trusted keys in
``trusted_keys_file`` or ``trusted-keys-file`` (formats:
:mod:`secagg.integrations.flower.keys`). Such a node refuses semi-honest rounds.

Training messages outside a secure round are refused (an error reply), so a
node with the mod installed never sends its update in the clear unless built
with ``allow_plain_train=True``. Evaluation and query messages pass through.
Any protocol error makes the node answer with an error reply (the server
treats it as a dropout) and forget the session.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from flwr.app import ConfigRecord, Context, Message
from flwr.clientapp.typing import ClientAppCallable, Mod

from secagg import wire
from secagg._validate import require_int
from secagg.errors import AuthenticationError, ConfigurationError, ProtocolError
from secagg.integrations.flower._node import (
    Audit,
    AuditRecord,
    ModRoute,
    config_path,
    forget,
    run_stage,
    train_locally,
)
from secagg.integrations.flower.keys import read_identity_key, read_trusted_keys
from secagg.integrations.flower.protocol import (
    DOWNLINK,
    IDENTIFY,
    MASKED_INPUT,
    MASKING_STAGES,
    MAX_NODES,
    SETUP,
    IdentityAnnouncement,
    RoundSetup,
    encode_update,
    round_context,
)
from secagg.masking import ACTIVE, ClientPhase, ClientState, MaskingConfig, client_start, client_step
from secagg.primitives.randomness import RandomBytes, system_random
from secagg.primitives.signing import SigningKey
from secagg.ring import RingVector

__all__ = [
    "IDENTITY_KEY_FILE",
    "STATE_KEY",
    "TRUSTED_KEYS_FILE",
    "AuditRecord",
    "make_secagg_mod",
    "secagg_mod",
]

STATE_KEY = "secagg.state"
"""Key of the ConfigRecord in ``context.state`` holding the round setup and the protocol state."""
IDENTITY_KEY_FILE = "identity-key-file"
"""Node-config key: path of this node's Ed25519 identity key file (active mode)."""
TRUSTED_KEYS_FILE = "trusted-keys-file"
"""Node-config key: path of the federation's trusted identity public keys (active mode)."""

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class _Settings:
    min_nodes: int
    min_threshold: int
    allow_plain_train: bool
    rng: np.random.Generator | None
    audit: Audit | None
    random_bytes: RandomBytes
    identity_key_file: PathLike | None
    trusted_keys_file: PathLike | None


@dataclass(frozen=True)
class _Identity:
    """This node's identity key and the keys it trusts (active mode)."""

    key: SigningKey
    trusted: frozenset[bytes]


def make_secagg_mod(
    *,
    min_nodes: int = 3,
    min_threshold: int = 2,
    allow_plain_train: bool = False,
    rng: np.random.Generator | None = None,
    audit: Audit | None = None,
    random_bytes: RandomBytes = system_random,
    identity_key_file: PathLike | None = None,
    trusted_keys_file: PathLike | None = None,
) -> Mod:
    """A masking mod with this node's own safety floor.

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
        identity_key_file: this node's identity key (active mode); default:
            the node config's ``identity-key-file``, if any.
        trusted_keys_file: the federation's trusted identity keys; default:
            the node config's ``trusted-keys-file``.
    """
    min_nodes = require_int("min_nodes", min_nodes, 3, MAX_NODES)
    min_threshold = require_int("min_threshold", min_threshold, 2, MAX_NODES)
    if min_nodes < 3 or min_threshold < 2:
        raise ConfigurationError(f"min_nodes must be >= 3 and min_threshold >= 2, got {min_nodes}, {min_threshold}")
    settings = _Settings(
        min_nodes, min_threshold, allow_plain_train, rng, audit, random_bytes, identity_key_file, trusted_keys_file
    )

    def secagg_mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        """Take part in a masking round (see :mod:`secagg.integrations.flower.client`)."""
        return _handle(message, context, call_next, settings)

    return secagg_mod


def _handle(message: Message, context: Context, call_next: ClientAppCallable, settings: _Settings) -> Message:
    def handle(stage: str, payload: bytes) -> bytes:
        identity = _identity(context, settings)
        if stage == IDENTIFY:
            return _identify(message, identity)
        if stage == SETUP:
            return _setup(message, context, payload, settings, identity)
        return _step(message, context, call_next, stage, payload, settings, identity)

    route = ModRoute("secagg_mod", frozenset(MASKING_STAGES), STATE_KEY, settings.allow_plain_train)
    return run_stage(message, context, call_next, route, handle)


def _identity(context: Context, settings: _Settings) -> _Identity | None:
    """The node's identity and trusted keys, if it is configured for active mode."""
    key_path = config_path(context, IDENTITY_KEY_FILE, settings.identity_key_file)
    if key_path is None:
        return None
    trusted_path = config_path(context, TRUSTED_KEYS_FILE, settings.trusted_keys_file)
    if trusted_path is None:
        raise ConfigurationError(f"an identity key needs the federation's trusted keys ({TRUSTED_KEYS_FILE})")
    return _Identity(read_identity_key(key_path), read_trusted_keys(trusted_path))


def _identify(message: Message, identity: _Identity | None) -> bytes:
    if identity is None:
        raise ConfigurationError("asked for an identity key, but this node has none (semi-honest only)")
    announcement = IdentityAnnouncement.create(identity.key, message.metadata.run_id, message.metadata.dst_node_id)
    return wire.encode(announcement)


def _check_identities(masking: MaskingConfig, setup: RoundSetup, protocol_id: int, identity: _Identity) -> None:
    """Every key trusted, none twice, this node's own key at its own protocol id."""
    keys = masking.identity_keys
    for client, key in enumerate(keys, start=1):
        if key not in identity.trusted:
            raise AuthenticationError(
                f"the identity key of protocol client {client} (node {setup.node_ids[client - 1]}) "
                "is not on the federation's trusted list"
            )
    if len(set(keys)) != len(keys):
        raise AuthenticationError("the round's identity keys name one key for two nodes")
    if keys[protocol_id - 1] != identity.key.public:
        raise AuthenticationError(f"the round puts another identity key at this node's protocol id {protocol_id}")


def _setup(
    message: Message, context: Context, payload: bytes, settings: _Settings, identity: _Identity | None
) -> bytes:
    setup = wire.decode(payload, RoundSetup)
    masking = setup.masking_config  # validated again here: the server's word is not enough
    quantization = setup.quantization
    protocol_id = setup.protocol_id(message.metadata.dst_node_id)
    if masking.num_clients < settings.min_nodes:
        raise ConfigurationError(f"round of {masking.num_clients} nodes, this node requires {settings.min_nodes}")
    if masking.threshold < settings.min_threshold:
        raise ConfigurationError(f"threshold {masking.threshold}, this node requires {settings.min_threshold}")
    if masking.mode == ACTIVE:
        if identity is None:
            raise ConfigurationError("an active-mode round, but this node has no identity key")
        _check_identities(masking, setup, protocol_id, identity)
    elif identity is not None:
        raise ConfigurationError("this node has an identity key and refuses semi-honest rounds")
    assert quantization.num_clients == masking.num_clients  # RoundSetup derives one from the other
    session_context = round_context(message.metadata.run_id, setup.server_round, setup.arrays_digest)
    state, advertise = client_start(
        masking,
        protocol_id,
        context=session_context,
        identity=None if identity is None else identity.key,
        random_bytes=settings.random_bytes,
    )
    _save(context, payload, state)
    return advertise


def _save(context: Context, setup: bytes, state: ClientState) -> None:
    context.state[STATE_KEY] = ConfigRecord({"setup": setup, "client": state.to_bytes()})


def _load(context: Context) -> tuple[bytes, RoundSetup, ClientState]:
    record = context.state.get(STATE_KEY)
    if not isinstance(record, ConfigRecord):
        raise ProtocolError("no secure round in progress on this node")
    setup_bytes, state_bytes = record.get("setup"), record.get("client")
    if not isinstance(setup_bytes, bytes) or not isinstance(state_bytes, bytes):
        raise ProtocolError("the stored secure-round state is incomplete")
    return setup_bytes, wire.decode(setup_bytes, RoundSetup), ClientState.from_bytes(state_bytes)


def _step(
    message: Message,
    context: Context,
    call_next: ClientAppCallable,
    stage: str,
    payload: bytes,
    settings: _Settings,
    identity: _Identity | None,
) -> bytes:
    setup_bytes, setup, state = _load(context)
    inbound = wire.decode_any(payload)
    if not isinstance(inbound, DOWNLINK[stage]):
        raise ProtocolError(f"stage {stage!r} carries a {type(inbound).__name__}")
    vector = None
    if stage == MASKED_INPUT:
        vector = _train_and_encode(message, context, call_next, setup, state, settings)
    key = None if identity is None else identity.key
    state, reply = client_step(state, payload, input_vector=vector, identity=key, random_bytes=settings.random_bytes)
    if state.phase == ClientPhase.DONE:
        forget(context, STATE_KEY)
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
    if setup.masking.vector_length != state.config.vector_length:
        raise ProtocolError("the stored session and setup disagree on the vector length")
    delta, layout, weight = train_locally(message, context, call_next, setup.arrays_digest, setup.weight_name)
    if layout.size + 1 != state.config.vector_length:
        raise ProtocolError(f"the session is for {state.config.vector_length - 1} values, the model has {layout.size}")
    rng = settings.rng if settings.rng is not None else np.random.default_rng()
    encoded = encode_update(delta, weight, setup.quantization, rng)
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


secagg_mod: Mod = make_secagg_mod()
"""The mod with default settings: ``ClientApp(mods=[secagg_mod])``."""
