"""``masking_sessions_bad.json``: a lying server, the network or a malicious peer against
honest clients (spec section 12.8-12.10): forged and altered shares, replays, forged
signatures, small-order keys, malformed inputs, share values that are no field
element and garbage boxes; each test names the step that must fail.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from secagg import wire
from secagg.masking.config import MaskingConfig
from secagg.masking.messages import (
    AdvertiseKeys,
    ConsistencySignature,
    KeyRoster,
    MaskedInput,
    Round,
    SealedBox,
    ShareDelivery,
    SignedBy,
    SurvivorList,
    UnmaskRequest,
    UnmaskResponse,
)
from secagg.primitives import shamir
from secagg.ring import PackedVector
from secagg.vectors._format import Json
from secagg.vectors._session_driver import Outcome
from secagg.vectors._session_scenarios import Scenario, active_config, session_group
from secagg.vectors._sessions import session_file
from secagg.vectors._suite import Suite

__all__ = ["SUITES"]


def _flip_last(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


def _one_short(message: MaskedInput) -> PackedVector:
    return PackedVector(message.vector.bits, message.vector.values[:-1])


def _edit(cls: type[wire.Message], **changes: Any) -> Callable[[bytes], bytes]:
    def apply(data: bytes) -> bytes:
        message = wire.decode(data, cls)
        values = {k: (v(message) if callable(v) else v) for k, v in changes.items()}
        edited: wire.Message = dataclasses.replace(message, **values)  # type: ignore[type-var]
        return wire.encode(edited)

    return apply


def _forge_box(message: ShareDelivery) -> tuple[SealedBox, ...]:
    first = message.boxes[0]
    return (SealedBox(first.peer, _flip_last(first.sealed)), *message.boxes[1:])


def _forge_key_share(message: UnmaskResponse) -> Any:
    first = message.mask_key_shares[0]
    value = (int.from_bytes(first.share, "big") + 1) % shamir.PRIME
    return (dataclasses.replace(first, share=value.to_bytes(shamir.VALUE_SIZE, "big")), *message.mask_key_shares[1:])


def _forge_seed_share(message: UnmaskResponse) -> Any:
    first = message.self_mask_shares[0]
    value = (int.from_bytes(first.share, "big") + 1) % shamir.PRIME
    return (dataclasses.replace(first, share=value.to_bytes(shamir.VALUE_SIZE, "big")), *message.self_mask_shares[1:])


_P_BYTES = shamir.PRIME.to_bytes(shamir.VALUE_SIZE, "big")  # the smallest value that is no field element


def _share_p(message: UnmaskResponse) -> Any:
    first = message.mask_key_shares[0]
    return (dataclasses.replace(first, share=_P_BYTES), *message.mask_key_shares[1:])


def _other_session(message: Any) -> bytes:
    session: bytes = message.session_id
    return bytes([session[0] ^ 0xFF]) + session[1:]


def _forge_roster_signature(message: KeyRoster) -> Any:
    entries = list(message.entries)
    entries[1] = dataclasses.replace(entries[1], signature=_flip_last(entries[1].signature))
    return tuple(entries)


def _forge_consistency(message: UnmaskRequest) -> tuple[SignedBy, ...]:
    first = message.signatures[0]
    return (SignedBy(first.client, _flip_last(first.signature)), *message.signatures[1:])


def _second_request(client: int, without: int) -> Callable[[Outcome], bytes]:
    def make(outcome: Outcome) -> bytes:
        request = wire.decode(outcome.rounds[-1].server_messages[client], UnmaskRequest)
        survivors = tuple(c for c in request.survivors if c != without)
        return wire.encode(dataclasses.replace(request, survivors=survivors))

    return make


def _roster_again(client: int) -> Callable[[Outcome], bytes]:
    return lambda outcome: outcome.rounds[1].server_messages[client]


def generate_bad_sessions() -> Json:
    """masking_sessions_bad.json: a lying server or network against honest clients."""
    # t = 2 (c = 0): one spare holder of every secret, so a single lie is outvoted.
    semi = MaskingConfig.secagg(4, 4, corrupt_fraction=0.0, mode="semi-honest")
    up, down = "up", "down"
    forged_key_share = _edit(UnmaskResponse, mask_key_shares=_forge_key_share)
    semi_scenarios = [
        Scenario("the box from client 2 to client 1 has a flipped tag bit", ("ForgedShare",),
                 edits={(Round.MASKED_INPUT, down, 1): _edit(ShareDelivery, boxes=_forge_box)}),
        Scenario("client 4 drops; client 1 reveals an altered share of 4's mask key, clients 2 and 3 outvote it",
                 ("ForgedShare",), {4: Round.MASKED_INPUT}, edits={(Round.UNMASKING, up, 1): forged_key_share}),
        Scenario("client 4 drops; clients 1 and 2 both reveal altered shares of 4's mask key: no t shares "
                 "reconstruct it", ("ForgedShare",), {4: Round.MASKED_INPUT},
                 edits={(Round.UNMASKING, up, 1): forged_key_share, (Round.UNMASKING, up, 2): forged_key_share}),
        Scenario("client 1 reveals an altered share of client 2's self-mask seed (checked against 2's commitment)",
                 ("ForgedShare",),
                 edits={(Round.UNMASKING, up, 1): _edit(UnmaskResponse, self_mask_shares=_forge_seed_share)}),
        Scenario("after Unmasking: a second request to client 1 marking client 3 dropped, the key roster again "
                 "to client 2", ("BothSharesRequested", "Replay"),
                 replays=[(1, _second_request(1, 3)), (2, _roster_again(2))]),
        Scenario("client 3 advertises the point 0 as its mask key", ("SmallOrderKey",),
                 edits={(Round.ADVERTISE_KEYS, up, 3): _edit(AdvertiseKeys, mask_key=bytes(32))}),
        Scenario("the share delivery to client 2 carries another session id", ("WrongSession",),
                 edits={(Round.MASKED_INPUT, down, 2): _edit(ShareDelivery, session_id=_other_session)}),
        Scenario("client 3's masked input claims to come from client 4 and client 2's has one element too "
                 "few: both are rejected; the two survivors left complete the session (t = 2: each one's seed from "
                 "the other's share and its own)",
                 ("WrongSession", "MalformedInput"),
                 edits={(Round.MASKED_INPUT, up, 3): _edit(MaskedInput, sender=4),
                        (Round.MASKED_INPUT, up, 2): _edit(MaskedInput, vector=_one_short)}),
        Scenario("client 1 receives no share box (t = 2: its own seed share alone is too few)", ("BelowThreshold",),
                 edits={(Round.MASKED_INPUT, down, 1): _edit(ShareDelivery, boxes=lambda m: m.boxes[:0])}),
        Scenario("the unmask request to client 2 omits client 2", ("BadSurvivorList",),
                 edits={(Round.UNMASKING, down, 2): _edit(UnmaskRequest, survivors=(1, 3, 4))}),
        Scenario("the unmask request to client 3 names one survivor (t = 2)", ("BadSurvivorList", "BelowThreshold"),
                 edits={(Round.UNMASKING, down, 3): _edit(UnmaskRequest, survivors=(3,))}),
    ]
    label = "sessions/bad/active/identities"
    active = active_config(5, 3, 4, label)
    active_scenarios = [
        Scenario("client 3's AdvertiseKeys signature is corrupted in flight", ("BadSignature", "Active"),
                 edits={(Round.ADVERTISE_KEYS, up, 3): _edit(AdvertiseKeys,
                                                            signature=lambda m: _flip_last(m.signature))}),
        Scenario("the roster sent to client 1 carries a forged signature of client 2", ("BadSignature", "Active"),
                 edits={(Round.SHARE_KEYS, down, 1): _edit(KeyRoster, entries=_forge_roster_signature)}),
        Scenario("client 4's consistency signature is corrupted in flight", ("BadSignature", "Active"),
                 edits={(Round.CONSISTENCY_CHECK, up, 4): _edit(ConsistencySignature,
                                                               signature=lambda m: _flip_last(m.signature))}),
        Scenario("the unmask request to client 2 carries a corrupted consistency signature",
                 ("BadSignature", "Active"),
                 edits={(Round.UNMASKING, down, 2): _edit(UnmaskRequest, signatures=_forge_consistency)}),
        Scenario("the unmask request to client 1 drops client 2 from the signed survivor list",
                 ("BothSharesRequested", "Active"),
                 edits={(Round.UNMASKING, down, 1): _edit(UnmaskRequest, survivors=(1, 3, 4, 5))}),
        Scenario("the survivor list sent to client 5 differs from the others'", ("BadSignature", "Active"),
                 edits={(Round.CONSISTENCY_CHECK, down, 5): _edit(SurvivorList, survivors=(1, 3, 4, 5))}),
    ]
    # Last, so that the earlier tests keep their tcIds.
    share_value_scenarios = [
        Scenario("client 2 seals for client 1 an authentic bundle whose self-mask share is p: client 1 refuses "
                 "client 2 for itself, masks with it, reveals nothing for it; the session completes with all "
                 "four (2's seed from its own share and 3's)", ("BadShareValue",),
                 peer_bundles={(2, 1): lambda bundle: dataclasses.replace(bundle, self_mask_share=_P_BYTES)}),
        Scenario("client 4 drops; client 1's unmask response carries p as its share of 4's mask key: the server "
                 "discards that share (2 and 3 recover the key) and keeps 1's self-mask shares, which recover "
                 "2's and 3's seeds with their own shares", ("BadShareValue",), {4: Round.MASKED_INPUT},
                 edits={(Round.UNMASKING, up, 1): _edit(UnmaskResponse, mask_key_shares=_share_p)}),
    ]
    # Last, so that the earlier tests keep their tcIds: a malicious peer's garbage boxes (n = 5, t = 3).
    garbage = MaskingConfig.secagg(5, 4, threshold=3, mode="semi-honest")
    garbage_scenarios = [
        Scenario("client 2 sends client 1 a garbage box (zero bytes, it does not open): client 1 refuses "
                 "client 2 for itself and goes on; the session completes with all five, 2's seed from its own share, "
                 "3's and 4's",
                 ("GarbageBox",), peer_bundles={(2, 1): lambda bundle: bytes(60)}),
        Scenario("client 2 sends garbage boxes to clients 1, 3 and 4: two holders of its seed are left (5 and "
                 "its own share), fewer than t = 3, so the server cannot unmask client 2's self-mask and names it "
                 "(ThresholdError); no honest client aborts", ("GarbageBox", "BelowThreshold"),
                 peer_bundles={(2, 1): lambda bundle: bytes(60), (2, 3): lambda bundle: bytes(60),
                               (2, 4): lambda bundle: bytes(60)}),
    ]
    groups = [session_group(semi, "sessions/bad/semi", semi_scenarios), session_group(active, "sessions/bad/active",
                                                                        active_scenarios, label),
              session_group(semi, "sessions/bad/share-values", share_value_scenarios),
              session_group(garbage, "sessions/bad/garbage-boxes", garbage_scenarios)]
    return session_file("secagg-masking-sessions-bad", "a lying server against honest clients", groups)


SUITES = [
    Suite("masking_sessions_bad.json", "masking_session_test_schema.json", generate_bad_sessions),
]
