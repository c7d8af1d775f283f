"""Client side of Paillier rounds: a Flower mod that encrypts the node's update and decrypts aggregates.

``ClientApp(mods=[paillier_mod])`` is the whole change on a node. The node
holds one key share of the federation's threshold key, dealt by the key
ceremony before the federation starts and stored protected at rest
(:func:`secagg.paillier.write_protected_file`). The mod finds it through
``key_share_file`` or the node config's ``key-share-file``; the passphrase
comes from ``passphrase``, from the file named by the node config's
``key-share-passphrase-file``, or from the environment variable
``SECAGG_KEY_SHARE_PASSPHRASE``, in that order. The share never leaves the
node and is never stored in ``context.state``.

- ``encrypt``: checks the :class:`~secagg.integrations.flower.protocol.PaillierSetup`
  against the node's own key (the server cannot substitute a key it can
  decrypt), the round's identity keys against its trusted list, and the
  round against its own :class:`~secagg.integrations.flower.NodePolicy`, the message type it
  was sent against the round's (the setup names it; ``train.<action>`` picks the train handler) and
  against the types the policy trains for (``train_message_types``: plain ``train`` by default), the
  quantization and packing against overflow, and the model against the
  setup's digest, and the clip table (one segment per array; no clip above the
  policy's ``max_clip``); runs the app's train handler; packs and encrypts
  ``(w * q(local - global), c, w)`` with ``c`` its clipped count per array
  (:mod:`~secagg.integrations.flower.clipping`); answers with the upload and its share index.
  In a compressed round it encodes its residual plus update on the round's subset
  (rotated if asked) and keeps the rest (:mod:`~secagg.integrations.flower.compression`).
  In a DP round (the setup's ``dp``, :mod:`~secagg.integrations.flower.dp`) it checks the
  noise plan against the declared epsilon and its policy's DP floors, its dimension against
  the setup's vector length (and, after training, the model's size, before the charge), and that the round's
  smallest decrypted sum holds h honest uploads, and that its own budget allows one more
  contribution under that plan (:mod:`~secagg.integrations.flower.node_budget`: charged after
  training, before the upload leaves), then encrypts ``round(delta * scale)`` plus its
  own share of exact discrete Gaussian noise (no weight, no clipped count, nothing clipped).
- ``decrypt``: answers a ``DecryptionRequest`` for the session it uploaded to
  under every binding rule of :class:`secagg.paillier.DecryptingParty` (its
  own upload unchanged in the sum, at least ``min_contributors`` uploads,
  one aggregate per session), with a proof of correct decryption; a request sent in messages of
  another type than its ``encrypt`` message's is refused (``train.<action>`` picks the app's
  train handler: a type other than plain ``train`` is bound into the session).

The sessions a node uploaded to and the aggregates it decrypted are
remembered in ``context.state`` (public values only), so a second upload or a
second, different aggregate in one session is refused even across the fresh
processes Flower starts per message
(:mod:`~secagg.integrations.flower._paillier_history`). Only the latest round's uploads are kept:
an upload for an earlier round is refused, and so is a second upload in one
round (the policy's ``max_sessions_per_round``, 1 by default; refused rather than an older
session forgotten, so no flood of rounds or uploads makes the node upload twice in one session),
and, before training, an upload for a model it already uploaded for (by arrays digest, and by its
values alone, so the same model re-encoded is the same model), unless its policy's
``allow_repeat_model`` (two sums over one model are, without DP, the update of a hospital left
out of one; :mod:`~secagg.integrations.flower._contributions`). Training messages
outside a secure round are refused unless ``allow_plain_train`` is set (refused with
``NodePolicy(require_dp=True)``); evaluation and query messages, under ``require_dp``, unless
``allow_plain_evaluate`` / ``allow_plain_query`` is set.
"""

from __future__ import annotations

import os
from functools import partial

import numpy as np
from flwr.app import ConfigRecord, Context, Message
from flwr.clientapp.typing import ClientAppCallable, Mod

from secagg import wire
from secagg.dp.calibration import NoisePlan
from secagg.dp.sampler import RandomSource
from secagg.errors import ConfigurationError, ProtocolError
from secagg.integrations.flower._contributions import check_model, remember_model, value_guard
from secagg.integrations.flower._key_share import KEY_SHARE_FILE, PASSPHRASE_ENV, PASSPHRASE_FILE, load_node_share
from secagg.integrations.flower._limits import (
    PAILLIER_SETUP_LIMIT,
    model_values,
    paillier_request_limit,
    paillier_setup_limit,
)
from secagg.integrations.flower._node import (
    IDENTITY_KEY_FILE,
    TRUSTED_KEYS_FILE,
    Audit,
    ModRoute,
    NodeIdentity,
    check_identities,
    serve_node,
    train_locally,
)
from secagg.integrations.flower._node_errors import (
    DP_BUDGET,
    DP_UPDATE,
    KEY_SHARE,
    NODE_UPDATE,
    NODE_WEIGHT,
    kept_local,
)
from secagg.integrations.flower._paillier_history import (
    HISTORY_KEY,
    check_answer,
    check_upload,
    remember_answer,
    remember_upload,
)
from secagg.integrations.flower._paillier_settings import PaillierSettings
from secagg.integrations.flower._records import stored_round
from secagg.integrations.flower.bound_plan import check_dp_update
from secagg.integrations.flower.clipping import encode_segmented, node_table
from secagg.integrations.flower.compression import check_compressed_model, check_entries, keep_residual, node_update
from secagg.integrations.flower.dp import (
    check_decrypted_sums,
    check_dimension,
    check_node_weight,
    node_encoding,
    node_plan,
)
from secagg.integrations.flower.node_budget import (
    BUDGET_CODES,
    budget_holder,
    charge_node_budget,
    check_node_budget,
    node_budget_file,
)
from secagg.integrations.flower.policy import NodePolicy, paillier_default_colluders
from secagg.integrations.flower.protocol import (
    ENCRYPT,
    IDENTIFY,
    PAILLIER_STAGES,
    PaillierSetup,
    PaillierUpload,
    round_context,
)
from secagg.integrations.flower.run_binding import check_run_config
from secagg.paillier import (
    DEFAULT_CONSTANT_TIME,
    Client,
    DecryptingParty,
    KeyShare,
    Obfuscation,
    SessionParameters,
)
from secagg.paillier.messages import DecryptionRequest, aggregate_digest
from secagg.primitives.randomness import RandomBytes, system_random

__all__ = [
    "HISTORY_KEY",
    "KEY_SHARE_FILE",
    "PASSPHRASE_ENV",
    "PASSPHRASE_FILE",
    "STATE_KEY",
    "make_paillier_mod",
    "paillier_mod",
]

STATE_KEY = "secagg.paillier.round"
"""Key of the ConfigRecord in ``context.state`` holding the current round's setup and upload digest."""
_REQUEST_LIMIT = "request-limit"
"""Key, in the round's state, of the most bytes an honest decryption request of the round has."""
_NO_IDENTITY = f"Paillier uploads are signed: this node needs {IDENTITY_KEY_FILE!r} and {TRUSTED_KEYS_FILE!r}"

PathLike = str | os.PathLike[str]


def make_paillier_mod(
    *,
    key_share_file: PathLike | None = None,
    passphrase: str | bytes | None = None,
    policy: NodePolicy | None = None,
    allow_plain_train: bool = False,
    allow_plain_evaluate: bool = False,
    allow_plain_query: bool = False,
    rng: np.random.Generator | None = None,
    audit: Audit | None = None,
    random_bytes: RandomBytes = system_random,
    obfuscation: Obfuscation = Obfuscation.TEXTBOOK,
    constant_time: bool = DEFAULT_CONSTANT_TIME,
    identity_key_file: PathLike | None = None,
    trusted_keys_file: PathLike | None = None,
    noise_source: RandomSource | None = None,
    dp_state_file: PathLike | None = None,
) -> Mod:
    """A Paillier mod with this node's own safety floor.

    Args:
        key_share_file: the protected key-share file (default: node config ``key-share-file``).
        passphrase: its passphrase (default: node config ``key-share-passphrase-file``,
            then the environment variable ``SECAGG_KEY_SHARE_PASSPHRASE``).
        policy: what this node accepts (:class:`~secagg.integrations.flower.NodePolicy`;
            default: at least 3 nodes and 2 contributors, and no round tolerating fewer colluders than a
            ``default_threshold(l)``-of-l key, ``policy.paillier_default_colluders``), checked before it trains.
        allow_plain_train: pass training messages outside a secure round to the handler (their
            replies then leave in the clear); refused (ConfigurationError) with ``policy.require_dp``.
        allow_plain_evaluate: with ``policy.require_dp``, still answer evaluate messages (never in
            a secure round) through the app. It gives up: this node's metrics on its patients, for a
            model the server chooses (one crafted to single out a patient), leave un-noised and
            uncharged. Off: refused (an error reply naming it). Without ``require_dp`` they pass anyway.
        allow_plain_query: the same for query messages (the query handler's reply).
        rng: the quantization's rounding randomness (not secret); fresh OS entropy if None.
        audit: called with an :class:`AuditRecord` (int64 encoding) after each upload.
        random_bytes: the source of every secret (encryption randomness, proof commitments).
        obfuscation: TEXTBOOK (r^n) or DJN encryption randomness.
        constant_time: exponentiate with the key share by GMP's side-channel-silent ``powmod_sec``
            (the default, :data:`secagg.paillier.DEFAULT_CONSTANT_TIME`). ``constant_time=False``
            opts out (about 1.4x faster partial decryptions at 2048 bits) and gives up that
            protection: timing and cache side channels on the node's share (docs/paillier.md).
        identity_key_file: this node's Ed25519 identity key, which signs its uploads
            (default: node config ``identity-key-file``; required).
        trusted_keys_file: the federation's trusted identity keys (default: node
            config ``trusted-keys-file``; required): every key of a round's setup
            must be on it, so uploads in another node's name are refused.
        noise_source: the randomness of this node's DP noise share; None (the default, and
            the only choice outside tests): the OS CSPRNG (:class:`secagg.dp.SystemRandomSource`).
        dp_state_file: this node's DP budget state file (default: the node config's
            ``dp-state-file``; neither: the default policy refuses DP rounds, and one with
            ``require_dp_state_file=False`` keeps the budget in ``context.state``, one run's),
            :mod:`~secagg.integrations.flower.node_budget`.
    """
    settings = PaillierSettings(
        NodePolicy() if policy is None else policy, allow_plain_train, allow_plain_evaluate, allow_plain_query, rng,
        audit, random_bytes, identity_key_file, trusted_keys_file, noise_source, dp_state_file, key_share_file,
        passphrase, obfuscation, constant_time,
    )

    def paillier_mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        """Take part in a Paillier round (see :mod:`secagg.integrations.flower.paillier_client`)."""
        return _handle(message, context, call_next, settings)

    return paillier_mod


def _handle(message: Message, context: Context, call_next: ClientAppCallable, settings: PaillierSettings) -> Message:
    def handle(stage: str, payload: bytes, identity: NodeIdentity | None) -> bytes:
        assert identity is not None  # serve_node refuses (_NO_IDENTITY) a node without one
        with kept_local(KEY_SHARE):  # paths, modes, a wrong passphrase: the node's own, never sent
            share = load_node_share(context, settings.key_share_file, settings.passphrase)
        if stage == ENCRYPT:
            return _encrypt(message, context, call_next, payload, share, identity, settings)
        return _decrypt(message, context, payload, share, identity, settings)

    stages = frozenset((IDENTIFY, *PAILLIER_STAGES))
    route = ModRoute(
        "paillier_mod", stages, STATE_KEY, settings.plain_refusal,
        partial(_message_limit, context, settings.policy.max_nodes),
        frozenset((ENCRYPT,)),
    )
    return serve_node(message, context, call_next, route, settings, handle, no_identity=_NO_IDENTITY)


def _message_limit(context: Context, max_nodes: int | None, stage: str) -> int:
    """The most payload bytes an honest server message of ``stage`` has: a setup's for any round
    of up to the policy's ``max_nodes``, a decryption request's for the round this node uploaded
    in (kept with its upload)."""
    if stage == IDENTIFY:
        return 0
    if stage == ENCRYPT:
        return PAILLIER_SETUP_LIMIT if max_nodes is None else paillier_setup_limit(max_nodes)
    record = context.state.get(STATE_KEY)
    limit = record.get(_REQUEST_LIMIT) if isinstance(record, ConfigRecord) else None
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise ProtocolError("no Paillier round in progress on this node")
    return limit


def _session(
    message: Message, setup: PaillierSetup, share: KeyShare, identity: NodeIdentity, settings: PaillierSettings
) -> tuple[SessionParameters, NoisePlan | None]:
    """The session this node derives for ``setup`` under its own key, and the round's DP plan
    (None without DP); ConfigurationError if unfit, AuthenticationError if a node's identity
    key is untrusted, repeated or not this node's at its id."""
    if share.public.threshold < 2:
        raise ConfigurationError("this node's key is 1-of-l: one key-share holder could decrypt every update")
    if len(setup.node_ids) > (parties := share.public.num_parties):  # two nodes would hold one share
        raise ConfigurationError(f"the round has {len(setup.node_ids)} nodes, the key {parties} shares")
    check_identities(setup.identity_keys, setup.node_ids, setup.protocol_id(message.metadata.dst_node_id), identity)
    run_id = message.metadata.run_id
    context_bytes = round_context(run_id, setup.server_round, setup.arrays_digest)
    params = setup.session_parameters(share.public, context_bytes, run_id)
    default = paillier_default_colluders(parties)  # the library's default key for this many shares
    settings.policy.check_round(len(setup.node_ids), params.guarantee, setup.quantization, default, dp=bool(setup.dp))
    settings.policy.check_paillier(setup.min_contributors)
    plan = node_plan(setup.dp, setup.quantization, len(setup.node_ids), settings.policy)
    if plan is not None:
        check_dimension(plan, setup.vector_length)  # else no upload could ever be encoded
        check_decrypted_sums(plan, setup.min_contributors, params.guarantee)
    return params, plan


def _encrypt(
    message: Message,
    context: Context,
    call_next: ClientAppCallable,
    payload: bytes,
    share: KeyShare,
    identity: NodeIdentity,
    settings: PaillierSettings,
) -> bytes:
    setup = wire.decode(payload, PaillierSetup)
    settings.policy.check_nodes(len(setup.node_ids))  # the node's own ceiling, before any other work
    setup.check_message_type(message.metadata.message_type)  # it picks the train handler: before training
    settings.policy.check_train_message_type(setup.type_name)  # the types this node trains for, before training
    check_run_config(setup.parameters, context.run_config, settings.policy.require_run_config)
    params, plan = _session(message, setup, share, identity, settings)
    protocol_id = setup.protocol_id(message.metadata.dst_node_id)
    history = check_upload(context, setup.server_round, params.session_id, settings.policy.max_sessions_per_round)
    check_model(context, setup.arrays_digest, settings.policy)  # one upload per model, before training
    model_keys: list[bytes] = []  # the model's key by its values (_contributions.model_key), once checked
    with kept_local(DP_BUDGET, BUDGET_CODES):  # its state file's path and contents: never sent
        budget_file = node_budget_file(context, settings.dp_state_file)
    if plan is not None:
        settings.policy.check_dp_state_file(budget_file)  # a policy floor: no local detail
        with kept_local(DP_BUDGET, BUDGET_CODES):
            check_node_budget(context, plan, budget_file, holder=budget_holder(identity))  # before it trains
    table = None if plan is not None else node_table(setup.segments, setup.quantization, settings.policy.max_clip)
    if setup.compression:
        check_entries(setup.compression)
    delta, layout, weight, slack = train_locally(
        message, context, call_next, setup.arrays_digest, setup.parameters, setup.weight_name,
        model_values(setup.vector_length, setup.segments, setup.dp, setup.compression),
        setup.quantization.max_weight, plan,
        before=value_guard(context, settings.policy, model_keys),  # one upload per model's values, before training
    )
    rng = settings.rounding_rng()
    keep = None
    if plan is not None:
        check_dimension(plan, setup.vector_length, delta.shape[0])  # the model's shape, before the charge
        with kept_local(NODE_WEIGHT):  # the count travels inside the secure sum only, never in a reply
            check_node_weight(plan, setup.quantization, weight)  # its count alone, before any data-dependent refusal
        # Charged to this node's own budget before the noised upload is computed and leaves.
        with kept_local(DP_BUDGET, BUDGET_CODES):
            charge_node_budget(context, plan, budget_file, holder=budget_holder(identity))
        with kept_local(DP_UPDATE):  # the update's norm is computed from the node's data: never sent
            check_dp_update(plan, delta, weight, slack)  # what weight patients can move it under the bound l2_clip
        # The noise share is added here, on the node, before encryption (exact sampler, OS CSPRNG).
        with kept_local(NODE_UPDATE):  # its refusal names the update's values or the noise's
            values = node_encoding(plan, setup.quantization, delta, setup.vector_length, rng, settings.noise_source)
    else:
        assert table is not None  # read above when the round has no DP
        update = node_update(setup.compression, delta, layout, context.state)
        check_compressed_model(table, layout, update.compression, setup.vector_length)
        with kept_local(NODE_UPDATE):  # its refusal is of the update's values
            values = encode_segmented(update.values, weight, table, setup.quantization, rng)
        # Stored once the upload is made; None (everything sent, the residual with it) removes it
        keep = partial(keep_residual, context.state, layout, update.residual)
    client = Client(
        params, protocol_id, identity.key, obfuscation=settings.obfuscation, random_bytes=settings.random_bytes
    )
    upload = client.upload(values)
    assert client.upload_digest is not None  # set by upload()
    if keep is not None:
        keep()  # the upload leaves with this reply
    remember_upload(context, history, setup.server_round, params.session_id)
    remember_model(context, (setup.arrays_digest, *model_keys), settings.policy)  # the upload leaves with this reply
    context.state[STATE_KEY] = ConfigRecord({
        "setup": payload, "upload": client.upload_digest, "type": message.metadata.message_type,
        _REQUEST_LIMIT: paillier_request_limit(len(setup.node_ids), params.upload_data_bytes),
    })
    settings.record(message, setup.server_round, protocol_id, weight, values)
    return wire.encode(PaillierUpload(party=share.index, upload=upload))


def _decrypt(
    message: Message,
    context: Context,
    payload: bytes,
    share: KeyShare,
    identity: NodeIdentity,
    settings: PaillierSettings,
) -> bytes:
    message_type = message.metadata.message_type  # must be the type its upload's session binds
    setup_bytes, own_upload = stored_round(context, STATE_KEY, "upload", message_type, "Paillier round")
    params, _ = _session(message, wire.decode(setup_bytes, PaillierSetup), share, identity, settings)
    request = wire.decode(payload, DecryptionRequest)
    if request.session_id != params.session_id:
        raise ProtocolError("the decryption request belongs to another session than this node's round")
    digest = aggregate_digest(params.session_id, request.uploads)
    check_answer(context, params.session_id, digest)
    party = DecryptingParty(
        params, share, own_upload=own_upload, random_bytes=settings.random_bytes,
        constant_time=settings.constant_time,
    )
    partial = party.respond(request)
    remember_answer(context, params.session_id, digest)
    return wire.encode(partial)


paillier_mod: Mod = make_paillier_mod()
"""The mod with default settings: ``ClientApp(mods=[paillier_mod])``; key share from the node config."""
