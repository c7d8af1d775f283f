"""The server side of pairwise masking, as pure transitions over wire bytes.

::

    state = server_start(config, context=context)
    state, rosters    = server_step(state, advertise_messages)     # {client: bytes}
    state, deliveries = server_step(state, encrypted_shares)
    state, requests   = server_step(state, masked_inputs)
    state, requests   = server_step(state, consistency_signatures)  # active mode
    state, _          = server_step(state, unmask_responses)
    state.result.aggregate, state.result.included

Each step takes every message that arrived for the current round, keyed by the
transport-authenticated sender, and returns the messages for the next round,
keyed by recipient. A client whose message is missing has dropped out; a
client whose message is malformed or inconsistent is treated as dropped and
recorded in ``state.rejected``. When fewer than the threshold remain the step
raises :class:`~secagg.errors.ThresholdError` and the session is over.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from secagg import wire
from secagg._validate import require_instance, require_mapping
from secagg.errors import AuthenticationError, ProtocolError, SecAggError
from secagg.masking.config import ACTIVE, MaskingConfig
from secagg.masking.messages import (
    SEALED_BUNDLE_SIZE,
    AdvertiseKeys,
    ConsistencySignature,
    EncryptedShares,
    KeyRoster,
    MaskedInput,
    MaskedInputHeader,
    RosterEntry,
    SealedBox,
    ShareDelivery,
    SignedBy,
    SurvivorList,
    UnmaskRequest,
    masked_input_header,
)
from secagg.masking.server_state import (
    ServerPhase,
    ServerResult,
    ServerState,
    accept_messages,
    require_remaining,
)
from secagg.masking.server_unmask import collect_unmask
from secagg.masking.session import (
    advertise_payload,
    check_context,
    consistency_payload,
    neighbour_table,
    session_id,
)
from secagg.primitives.key_agreement import exchange_many
from secagg.primitives.signing import verify

# The state types live in server_state, the Unmasking round in server_unmask; the
# state types are re-exported here, where transports and tests import them.
__all__ = ["ServerPhase", "ServerResult", "ServerState", "server_start", "server_step"]

_PROBE_SCALAR = bytes([0x5A]) * 32  # public; any scalar exposes small-order points


def server_start(config: MaskingConfig, *, context: bytes | None = None) -> ServerState:
    """A server waiting for round 0 (AdvertiseKeys) of the session bound to ``context``.

    ``context`` must be unique per session (e.g. ``secrets.token_bytes(32)``, or a hash of
    the run, the round, the model and a fresh nonce): it fixes the session id and with it
    the graph. It has no default: ConfigurationError without it (a fixed context would
    repeat the session id, so signed keys of one session would verify in another;
    :data:`~secagg.masking.session.ZERO_CONTEXT` only by name, in tests).
    """
    require_instance("config", config, MaskingConfig)
    context = check_context(context)
    session = session_id(config, context)
    return ServerState(config=config, context=context, session=session)


def server_step(state: ServerState, inbound: Mapping[int, bytes]) -> tuple[ServerState, dict[int, bytes]]:
    """Consume one round of client messages; return the new state and the replies."""
    handlers = {
        ServerPhase.COLLECT_KEYS: _collect_keys,
        ServerPhase.COLLECT_SHARES: _collect_shares,
        ServerPhase.COLLECT_MASKED: _collect_masked,
        ServerPhase.COLLECT_CONSISTENCY: _collect_consistency,
        ServerPhase.COLLECT_UNMASK: collect_unmask,
    }
    require_instance("server state", state, ServerState)
    require_mapping("inbound messages", inbound)
    if state.phase == ServerPhase.DONE:
        raise ProtocolError("server: the session is finished")
    return handlers[state.phase](state, inbound)


def _clients_needed(config: MaskingConfig) -> int:
    """Clients a session needs from the start: t + 1 (t neighbours each), or t on the
    complete graph, where each client also holds a share of its own seed."""
    return config.threshold + 1 - int(config.self_share)


def _collect_keys(state: ServerState, inbound: Mapping[int, bytes]) -> tuple[ServerState, dict[int, bytes]]:
    config = state.config
    accepted, rejected = accept_messages(state, inbound, AdvertiseKeys, frozenset(range(1, config.num_clients + 1)))
    roster: dict[int, RosterEntry] = {}
    digest = config.digest()
    for client, message in accepted.items():
        assert isinstance(message, AdvertiseKeys)
        if config.mode != ACTIVE and message.signature:
            rejected.append((client, "AdvertiseKeys: a signature in a semi-honest session"))
            continue
        if config.mode == ACTIVE:
            payload = advertise_payload(digest, state.context, client, message.encryption_key, message.mask_key)
            try:
                verify(config.identity_keys[client - 1], message.signature, payload)
            except AuthenticationError as exc:
                reason = "signed for another setup (config digest or context), or forged"
                rejected.append((client, f"AdvertiseKeys: {exc}: the keys are not signed for this session: {reason}"))
                continue
        try:
            # A small-order key makes every exchange with it all-zero: refuse it here,
            # or each honest neighbour would abort when it meets the key.
            exchange_many(_PROBE_SCALAR, [message.encryption_key, message.mask_key])
        except SecAggError as exc:
            rejected.append((client, f"AdvertiseKeys: {exc}"))
            continue
        roster[client] = RosterEntry(client, message.encryption_key, message.mask_key, message.signature)
    require_remaining(state, len(roster), "AdvertiseKeys", roster, _clients_needed(config), rejected)
    graph = neighbour_table(config, state.session)
    outbound = {
        client: wire.encode(KeyRoster(client, tuple(roster[v] for v in graph[client] if v in roster)))
        for client in roster
    }
    new_state = replace(
        state,
        phase=ServerPhase.COLLECT_SHARES,
        roster=roster,
        graph=graph,
        rejected=state.rejected + tuple(rejected),
    )
    return new_state, outbound


def _neighbours_present(state: ServerState, client: int, present: Mapping[int, object] | frozenset[int]) -> list[int]:
    return [v for v in state.graph[client] if v in present]


def _collect_shares(state: ServerState, inbound: Mapping[int, bytes]) -> tuple[ServerState, dict[int, bytes]]:
    accepted, rejected = accept_messages(state, inbound, EncryptedShares, frozenset(state.roster))
    boxes: dict[int, dict[int, bytes]] = {}
    commitments: dict[int, bytes] = {}
    for client, message in accepted.items():
        assert isinstance(message, EncryptedShares)
        expected = _neighbours_present(state, client, state.roster)
        if [box.peer for box in message.boxes] != expected:
            rejected.append((client, "EncryptedShares: boxes are not exactly one per neighbour on the roster"))
            continue
        largest = max((len(box.sealed) for box in message.boxes), default=0)
        if largest > SEALED_BUNDLE_SIZE:  # relayed, it would make its recipient's ShareDelivery oversize
            rejected.append((client, f"EncryptedShares: a share box of {largest} bytes, larger than every sealed "
                                     f"share bundle ({SEALED_BUNDLE_SIZE})"))
            continue
        boxes[client] = {box.peer: box.sealed for box in message.boxes}
        commitments[client] = message.self_mask_commitment
    shared = frozenset(boxes)
    require_remaining(state, len(shared), "ShareKeys", shared, _clients_needed(state.config), rejected)
    outbound: dict[int, bytes] = {}
    delivered: dict[int, tuple[int, ...]] = {}
    for recipient in sorted(shared):
        senders = tuple(v for v in _neighbours_present(state, recipient, shared))
        delivered[recipient] = senders
        sealed = tuple(SealedBox(sender, boxes[sender][recipient]) for sender in senders)
        outbound[recipient] = wire.encode(ShareDelivery(recipient, state.session, sealed))
    new_state = replace(
        state,
        phase=ServerPhase.COLLECT_MASKED,
        shared=shared,
        commitments={client: commitments[client] for client in shared},
        delivered=delivered,
        rejected=state.rejected + tuple(rejected),
    )
    return new_state, outbound


def _collect_masked(state: ServerState, inbound: Mapping[int, bytes]) -> tuple[ServerState, dict[int, bytes]]:
    config = state.config
    shape = (config.ring_bits, config.vector_length)

    def decode(data: bytes) -> MaskedInput | MaskedInputHeader:
        # A vector of another width or length is refused unread (12.8): unpacking a narrow width
        # declaring as many values as its bytes hold would cost up to a word per byte sent.
        header = masked_input_header(data)
        if header is not None and (header.bits, header.length) != shape:
            return header
        return wire.decode(data, MaskedInput)

    accepted, rejected = accept_messages(state, inbound, MaskedInput, state.shared, decode)
    total = config.ring.zeros(config.vector_length)
    survivors = []
    for client, message in accepted.items():
        assert isinstance(message, (MaskedInput, MaskedInputHeader))
        if not isinstance(message, MaskedInput) or (message.vector.bits, len(message.vector)) != shape:
            expected = f"{config.vector_length} elements of Z_(2^{config.ring_bits})"
            rejected.append((client, f"MaskedInput: expected {expected}"))
            continue
        np.add(total, message.vector.values, out=total)
        survivors.append(client)
    require_remaining(state, len(survivors), "MaskedInputCollection", survivors, rejected=rejected)
    ids = tuple(survivors)
    if config.mode == ACTIVE:
        outbound = {c: wire.encode(SurvivorList(c, state.session, ids)) for c in ids}
        phase = ServerPhase.COLLECT_CONSISTENCY
    else:
        # Semi-honest mode: each survivor learns only which of its neighbours survived
        # (all it needs to choose its shares), so the request stays O(k) bytes.
        alive = frozenset(ids)
        local = {c: tuple(sorted(v for v in (c, *state.graph[c]) if v in alive)) for c in ids}
        outbound = {c: wire.encode(UnmaskRequest(c, state.session, local[c], ())) for c in ids}
        phase = ServerPhase.COLLECT_UNMASK
    new_state = replace(
        state, phase=phase, masked_sum=total, survivors=ids, rejected=state.rejected + tuple(rejected)
    )
    return new_state, outbound


def _collect_consistency(state: ServerState, inbound: Mapping[int, bytes]) -> tuple[ServerState, dict[int, bytes]]:
    accepted, rejected = accept_messages(state, inbound, ConsistencySignature, frozenset(state.survivors))
    payload = consistency_payload(state.session, state.survivors)
    signers = []
    for client, message in accepted.items():
        assert isinstance(message, ConsistencySignature)
        try:
            verify(state.config.identity_keys[client - 1], message.signature, payload)
        except AuthenticationError as exc:
            rejected.append((client, f"ConsistencySignature: {exc}"))
            continue
        signers.append(SignedBy(client, message.signature))
    require_remaining(state, len(signers), "ConsistencyCheck", (s.client for s in signers), rejected=rejected)
    signed = tuple(signers)
    outbound = {
        s.client: wire.encode(UnmaskRequest(s.client, state.session, state.survivors, signed)) for s in signed
    }
    new_state = replace(
        state, phase=ServerPhase.COLLECT_UNMASK, signers=signed, rejected=state.rejected + tuple(rejected)
    )
    return new_state, outbound


