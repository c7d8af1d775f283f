"""The masking client's last rounds: ConsistencyCheck (active mode) and Unmasking.

Before it reveals anything the client checks the survivor set it is shown (at
least t clients, itself among them, only known clients) and, in active mode, that
it is the set it signed, with t valid consistency signatures. It then reveals
exactly one share per peer it holds: the self-mask share of a survivor, the mask
key share of a dropped client; and forgets every secret (both private keys too).
"""

from __future__ import annotations

from dataclasses import replace

from secagg import wire
from secagg.errors import AuthenticationError, ProtocolError, ThresholdError, UnsafeRequestError
from secagg.masking.client_state import ClientPhase, ClientState
from secagg.masking.config import ACTIVE, COMPLETE, MaskingConfig
from secagg.masking.messages import ConsistencySignature, ShareEntry, SurvivorList, UnmaskRequest, UnmaskResponse
from secagg.masking.session import consistency_payload, graph_neighbours
from secagg.primitives.key_agreement import KEY_SIZE
from secagg.primitives.signing import SigningKey, verify

__all__ = ["consistency_check", "unmask"]


# --- Round 3: ConsistencyCheck (active mode) ---------------------------------------


def consistency_check(
    state: ClientState, config: MaskingConfig, message: SurvivorList, identity: SigningKey
) -> tuple[ClientState, bytes]:
    _check_survivors(state, config, message.survivors)
    signature = identity.sign(consistency_payload(state.session, message.survivors))
    new_state = replace(state, phase=ClientPhase.AWAIT_UNMASK, survivors=message.survivors)
    return new_state, wire.encode(ConsistencySignature(state.client, state.session, signature))


def _check_survivors(state: ClientState, config: MaskingConfig, survivors: tuple[int, ...]) -> None:
    who = f"client {state.client}"
    if len(survivors) < config.threshold:
        raise ThresholdError(
            f"{who}: the server announced {len(survivors)} survivors, fewer than the threshold {config.threshold}; "
            "refusing to unmask"
        )
    if state.client not in survivors:
        raise ProtocolError(f"{who}: the survivor list omits this client, whose masked input was sent")
    if any(not 1 <= client <= config.num_clients for client in survivors):
        raise ProtocolError(f"{who}: survivor list names a client outside 1..{config.num_clients}")
    if config.mode != ACTIVE:
        # Semi-honest requests list only this client and its surviving neighbours.
        known = {state.client} | {entry.client for entry in state.neighbours}
        strangers = [client for client in survivors if client not in known]
        if strangers:
            raise ProtocolError(f"{who}: survivor list names client {strangers[0]}, which is not a neighbour")
    # Bonawitz et al.'s U3 subset-of U2: a neighbour in the list must be one this client
    # masked with (a delivered sender, kept or refused). Else a server that delivered only
    # t - 1 boxes and calls those senders dropped gets the self-mask seed and every pair
    # mask key of this client's input from one consistent, signed list (spec 12.8).
    masked_with = {held.owner for held in state.held} | set(state.refused)
    graph = frozenset(graph_neighbours(config, state.session, state.client))
    unmasked = [client for client in survivors if client in graph and client not in masked_with]
    if unmasked:
        raise UnsafeRequestError(
            f"{who}: survivor list names client {unmasked[0]}, whose share box was not delivered to this "
            "client in round ShareKeys (this client did not mask with it)"
        )


# --- Round 4: Unmasking -------------------------------------------------------------


def unmask(state: ClientState, config: MaskingConfig, request: UnmaskRequest) -> tuple[ClientState, bytes]:
    who = f"client {state.client}"
    _check_survivors(state, config, request.survivors)
    if config.mode == ACTIVE:
        if request.survivors != state.survivors:
            raise UnsafeRequestError(
                f"{who}: the unmask request's survivor set differs from the one signed in ConsistencyCheck"
            )
        _verify_consistency_signatures(state, config, request)
    elif request.signatures:
        raise ProtocolError(f"{who}: consistency signatures in a semi-honest session")
    survivors = set(request.survivors)
    self_mask, mask_key = [], []
    for held in state.held:
        # Exactly one share per peer: the self-mask share if it survived, else the key share.
        # A refused peer is not in held: nothing is revealed for it.
        if held.owner in survivors:
            self_mask.append(ShareEntry(held.owner, held.self_mask_share))
        else:
            mask_key.append(ShareEntry(held.owner, held.mask_key_share))
    if state.own_seed_share:
        # This client is in the survivor set (checked above): its own seed share joins the others.
        self_mask.append(ShareEntry(state.client, state.own_seed_share))
        self_mask.sort(key=lambda entry: entry.owner)
    response = UnmaskResponse(state.client, state.session, tuple(self_mask), tuple(mask_key))
    # Forget every secret: nothing more may be revealed in this session. The encryption key
    # too: with it and the share boxes the server relayed (and may keep), a leaked final state
    # would open both shares of every peer, the pair this response never reveals together.
    done = replace(
        state, phase=ClientPhase.DONE, held=(), self_mask_seed=b"", own_seed_share=b"",
        mask_private=bytes(KEY_SIZE), encryption_private=bytes(KEY_SIZE),
    )
    return done, wire.encode(response)


def _verify_consistency_signatures(state: ClientState, config: MaskingConfig, request: UnmaskRequest) -> None:
    who = f"client {state.client}"
    if len(request.signatures) < config.threshold:
        raise ThresholdError(
            f"{who}: {len(request.signatures)} consistency signatures, fewer than the threshold {config.threshold}"
        )
    payload = consistency_payload(state.session, request.survivors)
    if config.graph != COMPLETE:
        _check_endorsed(state, config, request)
    for signed in request.signatures:
        if signed.client not in request.survivors:
            raise ProtocolError(f"{who}: consistency signature from client {signed.client}, not a survivor")
        try:
            verify(config.identity_keys[signed.client - 1], signed.signature, payload)
        except AuthenticationError as exc:
            raise AuthenticationError(
                f"{who}: consistency signature of client {signed.client} is invalid in round Unmasking"
            ) from exc


def _check_endorsed(state: ClientState, config: MaskingConfig, request: UnmaskRequest) -> None:
    """Harary graph: the list's signers must include t neighbours of this client and of every peer
    it masked with. Any t members of a list may sign it, so without this a server shows this
    client and its mask partners one list ("they survived") and everyone else another ("they
    dropped"), and collects this client's seed and its partners' mask keys. Since 2t > k + c, at
    most one list is signed by t of one client's k neighbours: every honest holder of this
    client's or a partner's shares then answers the same list, in which at least t partners
    survive (it has t of this client's neighbours, all of them partners by the check above)."""
    signers = frozenset(signed.client for signed in request.signatures)
    masked_with = sorted({held.owner for held in state.held} | set(state.refused))
    for owner in (state.client, *masked_with):
        endorsing = len(signers & frozenset(graph_neighbours(config, state.session, owner)))
        if endorsing < config.threshold:
            raise ThresholdError(
                f"client {state.client}: the survivor list is signed by {endorsing} neighbours of client {owner}, "
                f"fewer than the threshold {config.threshold}; refusing to unmask"
            )
