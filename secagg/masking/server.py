"""The server side of pairwise masking, as pure transitions over wire bytes.

::

    state = server_start(config)
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

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from secagg import wire
from secagg._validate import require_instance, require_mapping
from secagg.errors import AuthenticationError, ProtocolError, SecAggError, ThresholdError
from secagg.masking.config import ACTIVE, MaskingConfig
from secagg.masking.messages import (
    AdvertiseKeys,
    ConsistencySignature,
    EncryptedShares,
    KeyRoster,
    MaskedInput,
    RosterEntry,
    SealedBox,
    ShareDelivery,
    SignedBy,
    SurvivorList,
    UnmaskRequest,
    UnmaskResponse,
)
from secagg.masking.session import (
    PAIR_MASK_LABEL,
    SELF_MASK_LABEL,
    ZERO_CONTEXT,
    advertise_payload,
    check_context,
    consistency_payload,
    neighbour_table,
    pair_mask_seeds,
    pair_mask_subtracts,
    self_mask_commitment,
    session_id,
)
from secagg.primitives import prg, shamir
from secagg.primitives.key_agreement import exchange_many, public_key_of
from secagg.primitives.signing import verify
from secagg.ring import RingVector

__all__ = ["ServerPhase", "ServerResult", "ServerState", "server_start", "server_step"]

_PROBE_SCALAR = bytes([0x5A]) * 32  # public; any scalar exposes small-order points


class ServerPhase(enum.IntEnum):
    """Which client messages the server collects next."""

    COLLECT_KEYS = 0
    COLLECT_SHARES = 1
    COLLECT_MASKED = 2
    COLLECT_CONSISTENCY = 3
    COLLECT_UNMASK = 4
    DONE = 5


@dataclass(frozen=True)
class ServerResult:
    """The unmasked aggregate: the exact ring sum of the inputs of ``included``."""

    aggregate: RingVector
    included: frozenset[int]


@dataclass(frozen=True)
class ServerState:
    """Everything the server knows. It never holds a client's secret."""

    config: MaskingConfig
    context: bytes
    phase: ServerPhase = ServerPhase.COLLECT_KEYS
    roster: Mapping[int, RosterEntry] = field(default_factory=dict)
    session: bytes = b""
    graph: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    shared: frozenset[int] = frozenset()
    commitments: Mapping[int, bytes] = field(default_factory=dict)
    delivered: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    masked_sum: RingVector | None = None
    survivors: tuple[int, ...] = ()
    signers: tuple[SignedBy, ...] = ()
    rejected: tuple[tuple[int, str], ...] = ()
    result: ServerResult | None = None


def server_start(config: MaskingConfig, *, context: bytes = ZERO_CONTEXT) -> ServerState:
    """A server waiting for round 0 (AdvertiseKeys) of the session bound to ``context``.

    ``context`` must be unique per session (e.g. a hash of the run, the round,
    the model and a fresh nonce): it fixes the session id and with it the graph.
    """
    require_instance("config", config, MaskingConfig)
    session = session_id(config, check_context(context))
    return ServerState(config=config, context=context, session=session)


def server_step(state: ServerState, inbound: Mapping[int, bytes]) -> tuple[ServerState, dict[int, bytes]]:
    """Consume one round of client messages; return the new state and the replies."""
    handlers = {
        ServerPhase.COLLECT_KEYS: _collect_keys,
        ServerPhase.COLLECT_SHARES: _collect_shares,
        ServerPhase.COLLECT_MASKED: _collect_masked,
        ServerPhase.COLLECT_CONSISTENCY: _collect_consistency,
        ServerPhase.COLLECT_UNMASK: _collect_unmask,
    }
    require_instance("server state", state, ServerState)
    require_mapping("inbound messages", inbound)
    if state.phase == ServerPhase.DONE:
        raise ProtocolError("server: the session is finished")
    return handlers[state.phase](state, inbound)


def _accept(
    state: ServerState, inbound: Mapping[int, bytes], expected: type[wire.Message], allowed: frozenset[int]
) -> tuple[dict[int, wire.Message], list[tuple[int, str]]]:
    """Decode each sender's message; reject (as a dropout) what is not acceptable."""
    accepted: dict[int, wire.Message] = {}
    rejected: list[tuple[int, str]] = []
    for sender, data in sorted(inbound.items()):
        try:
            if sender not in allowed:
                raise ProtocolError(f"client {sender} is not expected in this round")
            message = wire.decode(data, expected)
            if getattr(message, "sender", None) != sender:
                raise ProtocolError(f"message claims sender {getattr(message, 'sender', None)}")
            if getattr(message, "session_id", state.session) != state.session:
                raise ProtocolError("message belongs to another session")
            accepted[sender] = message
        except SecAggError as exc:
            rejected.append((sender, f"{expected.__name__}: {exc}"))
    return accepted, rejected


def _require(
    state: ServerState, remaining: int, round_name: str, present: Iterable[int], needed: int | None = None
) -> None:
    needed = state.config.threshold if needed is None else needed
    if remaining < needed:
        raise ThresholdError(
            f"server: only {remaining} clients remain after {round_name}, fewer than {needed}; session aborted. "
            f"{_dropout_report(state, round_name, frozenset(present))}"
        )


_STAGES = ("AdvertiseKeys", "ShareKeys", "MaskedInputCollection", "ConsistencyCheck", "Unmasking")


def _dropout_report(state: ServerState, round_name: str, present: frozenset[int]) -> str:
    """Which clients dropped (went silent or were rejected) at which round, and what the
    configuration tolerates: the part of an abort message that names who was lost."""
    config = state.config
    everyone = frozenset(range(1, config.num_clients + 1))
    signers = frozenset(s.client for s in state.signers)
    # Who was still in after each round, as far as the session got (present: after round_name).
    after = {
        "AdvertiseKeys": frozenset(state.roster),
        "ShareKeys": state.shared,
        "MaskedInputCollection": frozenset(state.survivors),
        "ConsistencyCheck": signers,
    }
    before, lost = everyone, []
    for stage in _STAGES:
        if config.mode != ACTIVE and stage == "ConsistencyCheck":
            continue
        now = present if stage == round_name else after.get(stage, frozenset())
        gone = sorted(before - now)
        if gone:
            lost.append(f"{', '.join(map(str, gone))} at {stage}")
        if stage == round_name:
            break
        before = now
    dropped = "; ".join(lost) if lost else "none"
    return f"Clients that dropped: {dropped}. {_tolerance(config)}"


def _tolerance(config: MaskingConfig) -> str:
    guarantee = config.guarantee
    note = f"This configuration (n = {config.num_clients}, t = {config.threshold}) completes with up to "
    note += f"{guarantee.dropouts} dropouts"
    if guarantee.dropouts == 0:
        note += (
            f": each client's secrets are shared among its {config.holders} neighbours and "
            f"recovering them needs t = {config.threshold} (t = 1 would let one neighbour reveal them), so a "
            f"survivor that loses a neighbour cannot be unmasked"
        )
    return note + "."


def _clients_needed(config: MaskingConfig) -> int:
    """Clients a session needs from the start: t + 1 (t neighbours each), or t on the
    complete graph, where each client also holds a share of its own seed."""
    return config.threshold + 1 - int(config.self_share)


def _collect_keys(state: ServerState, inbound: Mapping[int, bytes]) -> tuple[ServerState, dict[int, bytes]]:
    config = state.config
    accepted, rejected = _accept(state, inbound, AdvertiseKeys, frozenset(range(1, config.num_clients + 1)))
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
                rejected.append((client, f"AdvertiseKeys: {exc}"))
                continue
        try:
            # A small-order key makes every exchange with it all-zero: refuse it here,
            # or each honest neighbour would abort when it meets the key.
            exchange_many(_PROBE_SCALAR, [message.encryption_key, message.mask_key])
        except SecAggError as exc:
            rejected.append((client, f"AdvertiseKeys: {exc}"))
            continue
        roster[client] = RosterEntry(client, message.encryption_key, message.mask_key, message.signature)
    _require(state, len(roster), "AdvertiseKeys", roster, _clients_needed(config))
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
    accepted, rejected = _accept(state, inbound, EncryptedShares, frozenset(state.roster))
    boxes: dict[int, dict[int, bytes]] = {}
    commitments: dict[int, bytes] = {}
    for client, message in accepted.items():
        assert isinstance(message, EncryptedShares)
        expected = _neighbours_present(state, client, state.roster)
        if [box.peer for box in message.boxes] != expected:
            rejected.append((client, "EncryptedShares: boxes are not exactly one per neighbour on the roster"))
            continue
        boxes[client] = {box.peer: box.sealed for box in message.boxes}
        commitments[client] = message.self_mask_commitment
    shared = frozenset(boxes)
    _require(state, len(shared), "ShareKeys", shared, _clients_needed(state.config))
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
    accepted, rejected = _accept(state, inbound, MaskedInput, state.shared)
    total = config.ring.zeros(config.vector_length)
    survivors = []
    for client, message in accepted.items():
        assert isinstance(message, MaskedInput)
        vector = message.vector
        if vector.dtype != config.ring.dtype or vector.shape[0] != config.vector_length:
            expected = f"{config.vector_length} elements of Z_(2^{config.ring_bits})"
            rejected.append((client, f"MaskedInput: expected {expected}"))
            continue
        np.add(total, vector, out=total)
        survivors.append(client)
    _require(state, len(survivors), "MaskedInputCollection", survivors)
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
    accepted, rejected = _accept(state, inbound, ConsistencySignature, frozenset(state.survivors))
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
    _require(state, len(signers), "ConsistencyCheck", (s.client for s in signers))
    signed = tuple(signers)
    outbound = {
        s.client: wire.encode(UnmaskRequest(s.client, state.session, state.survivors, signed)) for s in signed
    }
    new_state = replace(
        state, phase=ServerPhase.COLLECT_UNMASK, signers=signed, rejected=state.rejected + tuple(rejected)
    )
    return new_state, outbound


def _collect_unmask(state: ServerState, inbound: Mapping[int, bytes]) -> tuple[ServerState, dict[int, bytes]]:
    config = state.config
    responders = frozenset(s.client for s in state.signers) if config.mode == ACTIVE else frozenset(state.survivors)
    accepted, rejected = _accept(state, inbound, UnmaskResponse, responders)
    survivors = frozenset(state.survivors)
    self_mask_shares: dict[int, list[shamir.Share]] = {}
    key_shares: dict[int, list[shamir.Share]] = {}
    answered = set()
    for client, message in accepted.items():
        assert isinstance(message, UnmaskResponse)
        held = state.delivered[client] + ((client,) if config.self_share else ())
        # A responder may leave out a peer whose box it refused in round 2 (it holds
        # nothing of that peer), never name a peer in the wrong list or one it was not sent.
        # On the complete graph it also reveals its own seed share (it is a survivor).
        if not {e.owner for e in message.self_mask_shares} <= {v for v in held if v in survivors} or not {
            e.owner for e in message.mask_key_shares
        } <= {v for v in held if v not in survivors}:
            rejected.append((client, "UnmaskResponse: shares do not match the survivor set"))
            continue
        answered.add(client)
        # A share value >= p is discarded alone (its holder recorded): the holder's
        # other shares still count, so one bad share cannot void a whole response.
        for what, entries, collected in (
            ("self-mask seed", message.self_mask_shares, self_mask_shares),
            ("mask key", message.mask_key_shares, key_shares),
        ):
            for entry in entries:
                value = int.from_bytes(entry.share, "big")
                if value >= shamir.PRIME:
                    rejected.append((client, f"UnmaskResponse: client {client}'s share of client {entry.owner}'s "
                                             f"{what} is >= p (not a field element); that share is discarded"))
                    continue
                collected.setdefault(entry.owner, []).append(shamir.Share(client, value))
    assert state.masked_sum is not None
    total = np.array(state.masked_sum, copy=True)
    liars: set[int] = set()
    try:
        for owner in state.survivors:
            shares = self_mask_shares.get(owner, [])
            commitment = state.commitments[owner]
            seed = _recover(config, shares, owner, "self-mask seed", self_mask_commitment, commitment, liars)
            prg.add_expansion(total, seed, SELF_MASK_LABEL, subtract=True)
        for owner in sorted(state.shared - survivors):
            peers = [peer for peer in state.survivors if owner in state.delivered[peer]]
            if peers:  # nobody masked with a client none of whose neighbours survived
                shares = key_shares.get(owner, [])
                mask_key = state.roster[owner].mask_key
                private = _recover(config, shares, owner, "mask key", public_key_of, mask_key, liars)
                _remove_pair_masks(state, total, owner, private, peers)
    except ThresholdError as exc:
        report = _dropout_report(state, "Unmasking", frozenset(answered))
        raise ThresholdError(f"{exc}; session aborted. {report}") from None
    rejected += [(liar, "UnmaskResponse: a revealed share lies off its secret's polynomial") for liar in sorted(liars)]
    result = ServerResult(aggregate=total, included=survivors)
    new_state = replace(state, phase=ServerPhase.DONE, result=result, rejected=state.rejected + tuple(rejected))
    return new_state, {}


def _recover(
    config: MaskingConfig,
    shares: list[shamir.Share],
    owner: int,
    what: str,
    derive: Callable[[bytes], bytes],
    expected: bytes,
    liars: set[int],
) -> bytes:
    """Reconstruct ``owner``'s secret from t of ``shares``; accept it only if
    ``derive(secret) == expected`` (its commitment, or its public key).

    The first t shares by index are tried first (the honest case costs one
    interpolation). If they fail, each leave-one-out subset is tried, so one lying
    holder among at least t + 1 is outvoted; holders whose share lies off the
    recovered polynomial are added to ``liars``.
    """
    t = config.threshold
    if len(shares) < t:
        raise ThresholdError(
            f"server: cannot recover the {what} of client {owner}: {len(shares)} shares, threshold {t}"
        )
    ordered = sorted(shares, key=lambda share: share.index)
    # Leaving out one of the first t (when a spare share exists) outvotes one liar.
    retries = [(ordered[:skip] + ordered[skip + 1 :])[:t] for skip in range(t)] if len(ordered) > t else []
    for attempt, basis in enumerate([ordered[:t], *retries]):
        try:
            secret = shamir.combine(basis, t)
        except AuthenticationError:
            continue
        if derive(secret) == expected:
            if attempt:  # only after a failure: name the holders whose shares lie off the polynomial
                liars.update(s.index for s in ordered if shamir.interpolate(basis, s.index) != s.value)
            return secret
    raise AuthenticationError(
        f"server: no {t} of the {len(ordered)} shares of client {owner}'s {what} reconstruct the committed value"
    )


def _remove_pair_masks(state: ServerState, total: RingVector, owner: int, private: bytes, peers: list[int]) -> None:
    """Cancel the pairwise masks that the surviving ``peers`` shared with ``owner``,
    a client that completed ShareKeys but whose masked input never arrived."""
    seeds = pair_mask_seeds(private, [(p, state.roster[p].mask_key) for p in peers], state.session, owner)
    for peer, seed in zip(peers, seeds, strict=True):
        # The survivor added its mask if it has the smaller id; remove it with the opposite sign.
        prg.add_expansion(total, seed, PAIR_MASK_LABEL, subtract=not pair_mask_subtracts(peer, owner))
