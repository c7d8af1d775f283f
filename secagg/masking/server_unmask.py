"""The server's last round, Unmasking: recover the secrets of the session and cancel the masks.

From the survivors' responses the server reconstructs each survivor's self-mask
seed and each dropped client's mask key (checked against its commitment or its
public key, so one lying share holder among t + 1 is outvoted and named), then
removes the self-masks and the pairwise masks of dropped clients from the masked
sum: what remains is the exact ring sum of the survivors' inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

import numpy as np

from secagg.errors import AuthenticationError, ThresholdError
from secagg.masking.config import ACTIVE, MaskingConfig
from secagg.masking.messages import UnmaskResponse
from secagg.masking.server_state import (
    ServerPhase,
    ServerResult,
    ServerState,
    aborted,
    accept_messages,
)
from secagg.masking.session import (
    PAIR_MASK_LABEL,
    SELF_MASK_LABEL,
    pair_mask_seeds,
    pair_mask_subtracts,
    self_mask_commitment,
)
from secagg.primitives import prg, shamir
from secagg.primitives.key_agreement import public_key_of
from secagg.ring import RingVector

__all__ = ["collect_unmask"]


def _responses(
    state: ServerState, inbound: Mapping[int, bytes]
) -> tuple[dict[int, UnmaskResponse], list[tuple[int, str]], list[tuple[int, int]], int]:
    """The acceptable unmask responses, the rejected ones with why, the share boxes the
    accepted ones say were refused ``(receiver, sender)``, and where in the rejections the
    per-responder checks' records begin (after the envelope checks')."""
    config = state.config
    responders = frozenset(s.client for s in state.signers) if config.mode == ACTIVE else frozenset(state.survivors)
    accepted, rejected = accept_messages(state, inbound, UnmaskResponse, responders)
    checked = len(rejected)
    survivors = frozenset(state.survivors)
    answers: dict[int, UnmaskResponse] = {}
    refusals: list[tuple[int, int]] = []
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
        answers[client] = message
        # A delivered sender in neither list: the responder says it refused that box (round 2).
        shown = {e.owner for e in (*message.self_mask_shares, *message.mask_key_shares)}
        refusals += [(client, sender) for sender in state.delivered[client] if sender not in shown]
    return answers, rejected, refusals, checked


def collect_unmask(state: ServerState, inbound: Mapping[int, bytes]) -> tuple[ServerState, dict[int, bytes]]:
    config = state.config
    accepted, rejected, refusals, checked = _responses(state, inbound)
    survivors = frozenset(state.survivors)
    self_mask_shares: dict[int, list[shamir.Share]] = {}
    key_shares: dict[int, list[shamir.Share]] = {}
    answered = set(accepted)
    for client, message in accepted.items():
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
    # Spec 12.8: the checks run per accepted responder in increasing id, so one responder's
    # mismatch and another's discarded shares interleave by responder id (a stable sort keeps
    # one responder's records in order); accept_messages' rejections come first.
    rejected[checked:] = sorted(rejected[checked:], key=lambda record: record[0])
    assert state.masked_sum is not None
    total = np.array(state.masked_sum, copy=True)
    liars: dict[int, list[tuple[int, str]]] = {}  # holder -> the (owner, secret) its shares lie off
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
    except (ThresholdError, AuthenticationError) as exc:
        # Too few shares, or no t of them match the commitment (a holder lied with no spare
        # holder to outvote it): the session ends here; the error carries the step's records.
        # The holders already found lying (a secret recovered before this one) are recorded as a
        # completed session records them.
        rejected += [(liar, _liar_reason(liar, liars[liar])) for liar in sorted(liars)]
        raise aborted(exc, state, "Unmasking", frozenset(answered), rejected, refusals, _found(liars)) from None
    rejected += [(liar, _liar_reason(liar, liars[liar])) for liar in sorted(liars)]
    result = ServerResult(aggregate=config.ring.reduce(total), included=survivors)
    new_state = replace(
        state, phase=ServerPhase.DONE, result=result, rejected=state.rejected + tuple(rejected),
        refusals=state.refusals + tuple(refusals), share_liars=_found(liars),
    )
    return new_state, {}


def _recover(
    config: MaskingConfig,
    shares: list[shamir.Share],
    owner: int,
    what: str,
    derive: Callable[[bytes], bytes],
    expected: bytes,
    liars: dict[int, list[tuple[int, str]]],
) -> bytes:
    """Reconstruct ``owner``'s secret from t of ``shares``; accept it only if
    ``derive(secret) == expected`` (its commitment, or its public key).

    The first t shares by index are tried first (the honest case costs one
    interpolation). If they fail, each leave-one-out subset is tried, so one lying
    holder among at least t + 1 is outvoted; holders whose share lies off the
    recovered polynomial are added to ``liars``, with ``owner`` and ``what``.
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
                for share in ordered:
                    if shamir.interpolate(basis, share.index) != share.value:
                        liars.setdefault(share.index, []).append((owner, what))
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


def _found(liars: Mapping[int, list[tuple[int, str]]]) -> tuple[tuple[int, int, str], ...]:
    """``(holder, owner, secret)`` for each share found off its polynomial, by increasing holder."""
    return tuple((holder, owner, what) for holder in sorted(liars) for owner, what in liars[holder])


def _liar_reason(holder: int, secrets: list[tuple[int, str]]) -> str:
    """The record of a holder whose revealed share lies off a secret's polynomial. It names the
    secret's owner too: without verifiable secret sharing a wrong share the holder revealed and a
    wrong share the owner dealt it (its bundle authenticates) look the same to the server."""
    owner, what = secrets[0]
    reason = f"UnmaskResponse: a revealed share lies off its secret's polynomial: client {holder}'s share of "
    if len(secrets) == 1:
        return (
            f"{reason}client {owner}'s {what}; client {holder} revealed"
            f" a wrong share, or client {owner} dealt it one"
        )
    owners = ", ".join(str(o) for o in sorted({o for o, _ in secrets}))
    return (
        f"{reason}client {owner}'s {what} and {len(secrets) - 1} more; client {holder} revealed wrong shares, "
        f"or their owners (clients {owners}) dealt them"
    )
