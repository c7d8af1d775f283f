"""The client side of pairwise masking, as pure transitions over wire bytes.

::

    state, advertise = client_start(config, client_id, context=context)
    state, shares    = client_step(state, key_roster_bytes)
    state, masked    = client_step(state, share_delivery_bytes, input_vector=x)
    state, signature = client_step(state, survivor_list_bytes, identity=key)   # active mode
    state, response  = client_step(state, unmask_request_bytes)

Each call checks the inbound message against everything the client knows
(session, round, recipient, roster, neighbours, signatures) and raises a
specific :class:`~secagg.errors.SecAggError` instead of revealing anything it
should not. :class:`ClientState` is a frozen value that serialises through the
wire format (``to_bytes``/``from_bytes``) so a transport can keep it between
messages; it holds private keys and must never leave the client.

This module holds the entry points and rounds 1 and 2 (ShareKeys,
MaskedInputCollection); rounds 3 and 4 (ConsistencyCheck, Unmasking) are in
:mod:`secagg.masking.client_unmask`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from secagg import wire
from secagg._validate import require_instance, require_int
from secagg.errors import (
    AuthenticationError,
    ConfigurationError,
    DecodeError,
    ProtocolError,
    ReplayError,
    ThresholdError,
)
from secagg.masking.client_state import ClientPhase, ClientState, HeldShares, is_field_element
from secagg.masking.client_unmask import consistency_check, unmask
from secagg.masking.config import ACTIVE, MaskingConfig
from secagg.masking.messages import (
    AdvertiseKeys,
    EncryptedShares,
    KeyRoster,
    MaskedInput,
    RosterEntry,
    Round,
    SealedBox,
    ShareBundle,
    ShareDelivery,
    SurvivorList,
    UnmaskRequest,
)
from secagg.masking.session import (
    PAIR_MASK_LABEL,
    SELF_MASK_LABEL,
    advertise_payload,
    check_context,
    graph_neighbours,
    pair_mask_seeds,
    pair_mask_subtracts,
    self_mask_commitment,
    session_id,
    share_encryption_keys,
)
from secagg.primitives import aead, prg, shamir
from secagg.primitives.key_agreement import generate_keypair
from secagg.primitives.randomness import RandomBytes, system_random
from secagg.primitives.signing import SigningKey, verify
from secagg.ring import PackedVector, RingVector

__all__ = ["ClientPhase", "ClientState", "HeldShares", "check_share_delivery", "client_start", "client_step"]


_EXPECTED: dict[ClientPhase, type[wire.Message]] = {
    ClientPhase.AWAIT_ROSTER: KeyRoster,
    ClientPhase.AWAIT_SHARES: ShareDelivery,
    ClientPhase.AWAIT_SURVIVORS: SurvivorList,
    ClientPhase.AWAIT_UNMASK: UnmaskRequest,
}
_ACTIVE_CODE = 1  # ConfigRecord.mode of active sessions


def client_start(
    config: MaskingConfig,
    client_id: int,
    *,
    context: bytes | None = None,
    identity: SigningKey | None = None,
    random_bytes: RandomBytes = system_random,
) -> tuple[ClientState, bytes]:
    """Round 0 (AdvertiseKeys): fresh X25519 key pairs for this session only.

    ``context`` (32 bytes, unique to the session: e.g. drawn by the server, or a hash of
    the global model, the training round and a fresh nonce) is signed in active mode, so
    a server cannot show clients different contexts undetected. It has no default:
    ConfigurationError without it (a fixed context would repeat the session id, so signed
    keys of one session would verify in another; :data:`ZERO_CONTEXT` only by name, in
    tests). ``identity`` is required in active mode.
    """
    require_instance("config", config, MaskingConfig)
    client_id = require_int("client id", client_id, 1, config.num_clients)
    context = check_context(context)
    _check_identity(config, client_id, identity)
    encryption, mask = generate_keypair(random_bytes), generate_keypair(random_bytes)
    signature = b""
    if identity is not None:
        payload = advertise_payload(config.digest(), context, client_id, encryption.public, mask.public)
        signature = identity.sign(payload)
    message = AdvertiseKeys(client_id, encryption.public, mask.public, signature)
    state = ClientState(
        config=config.record(),
        client=client_id,
        context=context,
        phase=ClientPhase.AWAIT_ROSTER,
        encryption_private=encryption.private,
        mask_private=mask.private,
        encryption_public=encryption.public,
        mask_public=mask.public,
        session=session_id(config, context),
        self_mask_seed=b"",
        own_seed_share=b"",
        neighbours=(),
        held=(),
        survivors=(),
        refused=(),
    )
    return state, wire.encode(message)


def _check_identity(config: MaskingConfig, client_id: int, identity: SigningKey | None) -> None:
    if config.mode != ACTIVE:
        return
    if identity is None:
        raise ConfigurationError(f"client {client_id}: active mode needs the client's Ed25519 identity key")
    if identity.public != config.identity_keys[client_id - 1]:
        raise ConfigurationError(f"client {client_id}: identity key does not match the configured public key")


def client_step(
    state: ClientState,
    inbound: bytes,
    *,
    input_vector: RingVector | None = None,
    identity: SigningKey | None = None,
    random_bytes: RandomBytes = system_random,
) -> tuple[ClientState, bytes]:
    """Process one server message and return the new state and the reply.

    ``input_vector`` (the client's ring vector) is needed with the ShareDelivery
    message; ``identity`` in active mode. Raises ProtocolError (wrong session,
    recipient or round), ReplayError (a message of a round already done),
    ThresholdError, AuthenticationError, UnsafeRequestError or DecodeError.
    """
    require_instance("client state", state, ClientState)
    phase = ClientPhase(state.phase)
    message = wire.decode_any(inbound)  # non-bytes: DecodeError, like any malformed message
    _check_round(state, phase, message)
    config = state.masking_config
    if isinstance(message, KeyRoster):
        return _share_keys(state, config, message, random_bytes)
    if isinstance(message, ShareDelivery):
        if input_vector is None:
            raise ConfigurationError(f"client {state.client}: the masked-input round needs the input vector")
        return _masked_input(state, config, message, input_vector)
    if isinstance(message, SurvivorList):
        _check_identity(config, state.client, identity)
        assert identity is not None  # guaranteed by _check_identity in active mode
        return consistency_check(state, config, message, identity)
    assert isinstance(message, UnmaskRequest)
    return unmask(state, config, message)


def _check_round(state: ClientState, phase: ClientPhase, message: wire.Message) -> None:
    who = f"client {state.client}"
    if phase == ClientPhase.DONE:
        raise ReplayError(f"{who}: session finished; {type(message).__name__} refused")
    expected = _EXPECTED[phase]
    if not isinstance(message, expected):
        earlier = list(_EXPECTED.values())[: list(_EXPECTED).index(phase)]
        if state.config.mode != _ACTIVE_CODE:
            earlier = [kind for kind in earlier if kind is not SurvivorList]
        error = ReplayError if type(message) in earlier else ProtocolError
        raise error(f"{who}: expected {expected.__name__}, got {type(message).__name__}")
    recipient = getattr(message, "recipient", None)
    if recipient != state.client:
        raise ProtocolError(f"{who}: {type(message).__name__} is addressed to client {recipient}")
    if getattr(message, "session_id", state.session) != state.session:
        raise ProtocolError(f"{who}: {type(message).__name__} belongs to another session")


# --- Round 1: ShareKeys -------------------------------------------------------------


def _share_keys(
    state: ClientState, config: MaskingConfig, roster: KeyRoster, random_bytes: RandomBytes
) -> tuple[ClientState, bytes]:
    who = f"client {state.client}"
    session = state.session
    expected = frozenset(graph_neighbours(config, session, state.client))
    strangers = [entry.client for entry in roster.entries if entry.client not in expected]
    if strangers:
        raise ProtocolError(f"{who}: the key roster names client {strangers[0]}, which is not a neighbour")
    if config.mode == ACTIVE:
        _verify_roster_signatures(state, config, roster.entries)
    neighbours = roster.entries
    own = int(config.self_share)  # the complete graph: this client holds a share of its own seed
    if len(neighbours) + own < config.threshold:
        raise ThresholdError(
            f"{who}: only {len(neighbours)} neighbours advertised keys, fewer than the threshold {config.threshold}"
            + (" with this client's own share" if own else "")
        )
    self_mask_seed = random_bytes(prg.SEED_SIZE)
    # Both polynomials are evaluated at the neighbours' ids and, on the complete graph, at
    # this client's own id; the mask key's value there is dropped (never kept or revealed).
    holders = [entry.client for entry in neighbours] + ([state.client] if own else [])
    key_shares = shamir.split(state.mask_private, config.threshold, holders, random_bytes)[: len(neighbours)]
    seed_shares = shamir.split(self_mask_seed, config.threshold, holders, random_bytes)
    own_seed_share = _value(seed_shares[-1]) if own else b""
    seed_shares = seed_shares[: len(neighbours)]
    keys = share_encryption_keys(
        state.encryption_private, [(e.client, e.encryption_key) for e in neighbours], session, state.client
    )
    boxes = []
    for entry, key, key_share, seed_share in zip(neighbours, keys, key_shares, seed_shares, strict=True):
        bundle = ShareBundle(state.client, entry.client, _value(key_share), _value(seed_share))
        ad = aead.share_associated_data(session, state.client, entry.client, Round.SHARE_KEYS)
        boxes.append(SealedBox(entry.client, aead.seal(key, wire.encode(bundle), ad, random_bytes)))
    new_state = replace(
        state,
        phase=ClientPhase.AWAIT_SHARES,
        self_mask_seed=self_mask_seed,
        own_seed_share=own_seed_share,
        neighbours=neighbours,
    )
    message = EncryptedShares(state.client, session, self_mask_commitment(self_mask_seed), tuple(boxes))
    return new_state, wire.encode(message)


def _value(share: shamir.Share) -> bytes:
    return share.value.to_bytes(shamir.VALUE_SIZE, "big")


def _verify_roster_signatures(state: ClientState, config: MaskingConfig, entries: tuple[RosterEntry, ...]) -> None:
    digest = config.digest()
    for entry in entries:
        payload = advertise_payload(digest, state.context, entry.client, entry.encryption_key, entry.mask_key)
        try:
            verify(config.identity_keys[entry.client - 1], entry.signature, payload)
        except AuthenticationError as exc:
            raise AuthenticationError(
                f"client {state.client}: keys of client {entry.client} carry no valid signature in round "
                "AdvertiseKeys (forged keys, or a different round context)"
            ) from exc


# --- Round 2: MaskedInputCollection -----------------------------------------------------


def check_share_delivery(state: ClientState, inbound: bytes) -> None:
    """Every check of the masked-input step that needs no input vector, changing nothing.

    Raises what :func:`client_step` would raise for the ShareDelivery ``inbound`` (ProtocolError,
    ReplayError, ThresholdError, DecodeError): the round, recipient and session, the number of
    boxes, every sender a roster neighbour, and at least the threshold of boxes that open. A
    transport runs it before it computes the input, so a delivery the step would refuse costs
    nothing that computing the input costs (training; in a DP round, the node's privacy budget).
    """
    require_instance("client state", state, ClientState)
    message = wire.decode_any(inbound)
    _check_round(state, ClientPhase(state.phase), message)
    if not isinstance(message, ShareDelivery):
        raise ProtocolError(f"client {state.client}: expected ShareDelivery, got {type(message).__name__}")
    _open_delivery(state, state.masking_config, message)


def _open_delivery(
    state: ClientState, config: MaskingConfig, delivery: ShareDelivery
) -> tuple[list[RosterEntry], list[HeldShares], list[int]]:
    """The delivered senders (roster entries), the shares kept and the senders refused."""
    who = f"client {state.client}"
    neighbours = {entry.client: entry for entry in state.neighbours}
    own = int(config.self_share)
    if len(delivery.boxes) + own < config.threshold:
        raise ThresholdError(
            f"{who}: only {len(delivery.boxes)} neighbours completed ShareKeys, fewer than the "
            f"threshold {config.threshold}"
        )
    unknown = [box.peer for box in delivery.boxes if box.peer not in neighbours]
    if unknown:
        raise ProtocolError(f"{who}: received a share box from client {unknown[0]}, which is not a neighbour")
    senders = [neighbours[box.peer] for box in delivery.boxes]
    keys = share_encryption_keys(
        state.encryption_private, [(e.client, e.encryption_key) for e in senders], state.session, state.client
    )
    # A box that does not open, or whose bundle is not v's well-formed bundle for this
    # client, is v's fault or the relaying server's: v is refused for this client alone
    # (nothing of v is kept, so nothing of v is ever revealed) and the step goes on.
    held: list[HeldShares] = []
    refused: list[int] = []
    for box, key in zip(delivery.boxes, keys, strict=True):
        try:
            held.append(_open_box(state, box, key))
        except AuthenticationError:
            refused.append(box.peer)
    if len(held) + own < config.threshold:
        raise ThresholdError(
            f"{who}: only {len(held)} share boxes opened (refused: clients {', '.join(map(str, refused))}), "
            f"fewer than the threshold {config.threshold}"
        )
    return senders, held, refused


def _masked_input(
    state: ClientState, config: MaskingConfig, delivery: ShareDelivery, input_vector: RingVector
) -> tuple[ClientState, bytes]:
    try:
        config.ring.check(input_vector, config.vector_length)
    except ConfigurationError as exc:
        raise ConfigurationError(f"client {state.client}: input vector: {exc}") from exc
    senders, held, refused = _open_delivery(state, config, delivery)
    # The self-mask is expanded straight into the output and the input added to
    # it: one pass over d fewer than copying the input first. The pairwise masks are
    # those of every delivered sender, refused ones included: they come from the
    # senders' public keys, not from their boxes.
    vector = np.empty(config.vector_length, dtype=config.ring.dtype)
    prg.expand_into(vector, state.self_mask_seed, SELF_MASK_LABEL)
    np.add(vector, input_vector, out=vector)
    seeds = pair_mask_seeds(state.mask_private, [(e.client, e.mask_key) for e in senders], state.session, state.client)
    for entry, seed in zip(senders, seeds, strict=True):
        subtract = pair_mask_subtracts(state.client, entry.client)
        prg.add_expansion(vector, seed, PAIR_MASK_LABEL, subtract=subtract)
    next_phase = ClientPhase.AWAIT_SURVIVORS if config.mode == ACTIVE else ClientPhase.AWAIT_UNMASK
    new_state = replace(state, phase=next_phase, held=tuple(held), refused=tuple(refused))
    packed = PackedVector(config.ring_bits, config.ring.reduce(vector))  # mod 2^b: b bits a coordinate
    return new_state, wire.encode(MaskedInput(state.client, state.session, packed))


def _open_box(state: ClientState, box: SealedBox, key: bytes) -> HeldShares:
    ad = aead.share_associated_data(state.session, box.peer, state.client, Round.SHARE_KEYS)
    try:
        bundle = wire.decode(aead.open_sealed(key, box.sealed, ad), ShareBundle)
    except (AuthenticationError, DecodeError) as exc:
        raise AuthenticationError(
            f"client {state.client}: share from client {box.peer} failed authentication in round ShareKeys"
        ) from exc
    if (bundle.sender, bundle.recipient) != (box.peer, state.client):
        raise AuthenticationError(f"client {state.client}: share bundle from client {box.peer} names other parties")
    # Only the sender (who knows k_uv) can have sealed a bundle that opens: a share
    # that is no field element is its fault. Kept, it would void this client's whole
    # unmask response at the server; refused here like a box that fails to open.
    if not all(is_field_element(share) for share in (bundle.mask_key_share, bundle.self_mask_share)):
        raise AuthenticationError(
            f"client {state.client}: share bundle from client {box.peer} holds a share value >= p "
            "(not a field element) in round ShareKeys"
        )
    return HeldShares(box.peer, bundle.mask_key_share, bundle.self_mask_share)


def held_owners(state: ClientState) -> Mapping[int, HeldShares]:
    """The peers whose shares this client holds (for tests and transports)."""
    return {held.owner: held for held in state.held}
