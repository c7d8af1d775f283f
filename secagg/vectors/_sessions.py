"""Complete masking sessions (spec section 12.7-12.10): every message, every drawn secret,
the masked inputs and the aggregate, with dropouts after each round and a lying server.

The same driver (:func:`drive`) generates and verifies a session: at generation
each client draws from its own deterministic stream through a
:class:`~secagg.vectors._random.RecordingRandom`; at verification it draws the
recorded values back (:class:`~secagg.vectors._random.ReplayedRandom`) in the
documented order, and every message the state machines produce is compared
with the recorded one byte for byte.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from secagg import wire
from secagg.errors import SecAggError
from secagg.masking.client import ClientState, client_start, client_step
from secagg.masking.config import ACTIVE, HARARY, MaskingConfig
from secagg.masking.messages import (
    AdvertiseKeys,
    ConsistencySignature,
    EncryptedShares,
    KeyRoster,
    MaskedInput,
    Round,
    SealedBox,
    ShareBundle,
    ShareDelivery,
    SignedBy,
    SurvivorList,
    UnmaskRequest,
    UnmaskResponse,
)
from secagg.masking.server import ServerState, server_start, server_step
from secagg.masking.session import graph_neighbours, share_encryption_keys
from secagg.primitives import aead, shamir
from secagg.primitives.key_agreement import public_key_of
from secagg.primitives.randomness import RandomBytes
from secagg.primitives.signing import SigningKey
from secagg.ring import RingVector
from secagg.vectors._check import equal, expect_error
from secagg.vectors._format import Json, VectorError, from_hex, ring_from_hex, ring_to_hex, test_case, vector_file
from secagg.vectors._masking import config_fields, config_from_fields
from secagg.vectors._random import RecordingRandom, ReplayedRandom
from secagg.vectors._suite import Suite, deterministic, register, words

__all__ = ["ROUND_NAMES", "SUITES", "Outcome", "drive"]

ROUND_NAMES = {
    Round.ADVERTISE_KEYS: "AdvertiseKeys",
    Round.SHARE_KEYS: "ShareKeys",
    Round.MASKED_INPUT: "MaskedInputCollection",
    Round.CONSISTENCY_CHECK: "ConsistencyCheck",
    Round.UNMASKING: "Unmasking",
}
ROUND_BY_NAME = {name: round_ for round_, name in ROUND_NAMES.items()}
Tamper = Callable[[Round, str, int, bytes], bytes]


@dataclass
class RoundRecord:
    """What crossed the network in one round: the server's messages that open it
    (as the server produced them) and the clients' replies (as they produced them)."""

    round: Round
    server_messages: dict[int, bytes] = field(default_factory=dict)
    client_messages: dict[int, bytes] = field(default_factory=dict)


@dataclass
class Outcome:
    """Everything one run of a session produced."""

    rounds: list[RoundRecord] = field(default_factory=list)
    client_errors: list[tuple[int, Round, str]] = field(default_factory=list)
    server_rejected: list[tuple[int, Round]] = field(default_factory=list)
    abort: tuple[Round, str] | None = None
    server: ServerState | None = None
    states: dict[int, ClientState] = field(default_factory=dict)


def _rounds(config: MaskingConfig) -> list[Round]:
    rounds = [Round.ADVERTISE_KEYS, Round.SHARE_KEYS, Round.MASKED_INPUT]
    if config.mode == ACTIVE:
        rounds.append(Round.CONSISTENCY_CHECK)
    return [*rounds, Round.UNMASKING]


def drive(
    config: MaskingConfig,
    inputs: Mapping[int, RingVector],
    dropouts: Mapping[int, Round],
    context: bytes,
    identities: Mapping[int, SigningKey],
    randoms: Mapping[int, RandomBytes],
    tamper: Tamper,
) -> Outcome:
    """Run one session through the pure state machines, as :func:`secagg.masking.run_session` does.

    ``dropouts[c] = r``: client c never sends its round-r message or any later one.
    ``tamper(round, "up" | "down", client, data)`` returns the bytes actually
    delivered (a lying server or a network attacker). A client whose step raises
    is recorded and treated as dropped; a server step that raises ends the session.
    """
    outcome = Outcome()
    server = server_start(config, context=context)
    downloads: dict[int, bytes] = {}
    for round_ in _rounds(config):
        record = RoundRecord(round_, server_messages=dict(downloads))
        outcome.rounds.append(record)
        for client in range(1, config.num_clients + 1):
            active = client not in {c for c, _, _ in outcome.client_errors} and dropouts.get(client, 99) > round_
            if not active or (round_ != Round.ADVERTISE_KEYS and client not in downloads):
                continue
            try:
                if round_ == Round.ADVERTISE_KEYS:
                    state, reply = client_start(config, client, context=context, identity=identities.get(client),
                                                random_bytes=randoms[client])
                else:
                    inbound = tamper(round_, "down", client, downloads[client])
                    state, reply = client_step(outcome.states[client], inbound, input_vector=inputs[client],
                                               identity=identities.get(client), random_bytes=randoms[client])
            except SecAggError as exc:
                outcome.client_errors.append((client, round_, type(exc).__name__))
                continue
            outcome.states[client] = state
            record.client_messages[client] = reply
        arrived = {c: tamper(round_, "up", c, data) for c, data in record.client_messages.items()}
        before = len(server.rejected)
        try:
            server, downloads = server_step(server, arrived)
        except SecAggError as exc:
            outcome.abort = (round_, type(exc).__name__)
            break
        finally:
            outcome.server = server
        outcome.server_rejected += [(client, round_) for client, _ in server.rejected[before:]]
    outcome.server = server
    return outcome


# --- JSON form ------------------------------------------------------------------------------


def _messages_json(messages: Mapping[int, bytes]) -> list[Json]:
    return [{"client": client, "message": data.hex()} for client, data in sorted(messages.items())]


def _messages_from_json(items: Sequence[Json]) -> dict[int, bytes]:
    return {int(item["client"]): from_hex(item["message"]) for item in items}


def _client_secrets(config: MaskingConfig, client: int, draws: list[bytes], outcome: Outcome) -> Json:
    """Name the recorded draws of one client by the documented draw order (spec 12.10)."""
    entry: Json = {"client": client}
    if not draws:
        return entry
    t = config.threshold
    entry["encryptionPrivateKey"], entry["maskPrivateKey"] = draws[0].hex(), draws[1].hex()
    rest = draws[2:]
    if rest:
        entry["selfMaskSeed"] = rest[0].hex()
        entry["maskKeyCoefficients"] = [d.hex() for d in rest[1:t]]
        entry["selfMaskSeedCoefficients"] = [d.hex() for d in rest[t : 2 * t - 1]]
        shares = outcome.rounds[1].client_messages.get(client)
        peers = [] if shares is None else [box.peer for box in wire.decode_any(shares).boxes]  # type: ignore[attr-defined]
        nonces = rest[2 * t - 1 :]
        if len(nonces) != len(peers):
            raise VectorError(f"client {client}: {len(nonces)} nonces for {len(peers)} share boxes")
        entry["nonces"] = [{"peer": p, "nonce": n.hex()} for p, n in zip(peers, nonces, strict=True)]
    return entry


def _draws_from_json(entry: Json) -> list[bytes]:
    """The recorded draws of one client in the order the reference client makes them."""
    draws = [from_hex(entry[k]) for k in ("encryptionPrivateKey", "maskPrivateKey") if k in entry]
    if "selfMaskSeed" in entry:
        draws.append(from_hex(entry["selfMaskSeed"]))
        draws += [from_hex(c) for c in entry["maskKeyCoefficients"]]
        draws += [from_hex(c) for c in entry["selfMaskSeedCoefficients"]]
        draws += [from_hex(n["nonce"]) for n in entry["nonces"]]
    return draws


def _outcome_json(config: MaskingConfig, outcome: Outcome) -> Json:
    out: Json = {
        "rounds": [{"round": ROUND_NAMES[r.round], "serverMessages": _messages_json(r.server_messages),
                    "clientMessages": _messages_json(r.client_messages)} for r in outcome.rounds],
        "clientErrors": [{"client": c, "round": ROUND_NAMES[r], "error": e} for c, r, e in outcome.client_errors],
        "serverRejected": [{"client": c, "round": ROUND_NAMES[r]} for c, r in outcome.server_rejected],
    }
    server = outcome.server
    if server is not None and server.session:
        out["sessionId"] = server.session.hex()
    if server is not None and server.session and config.graph == HARARY:
        out["neighbours"] = [{"client": c, "neighbours": list(graph_neighbours(config, server.session, c))}
                             for c in sorted(server.roster)]
    masked = [(c, wire.decode(d, MaskedInput).vector) for r in outcome.rounds if r.round == Round.MASKED_INPUT
              for c, d in sorted(r.client_messages.items())]
    out["maskedInputs"] = [{"client": c, "words": ring_to_hex(v)} for c, v in masked]
    refused = [{"client": c, "peers": list(state.refused)} for c, state in sorted(outcome.states.items())
               if state.refused]
    if refused:  # only sessions in which some box was refused carry the key
        out["refusedBoxes"] = refused
    if outcome.abort is not None:
        out["abort"] = {"round": ROUND_NAMES[outcome.abort[0]], "error": outcome.abort[1]}
    elif server is not None and server.result is not None:
        out["included"] = sorted(server.result.included)
        out["aggregate"] = ring_to_hex(server.result.aggregate)
    return out


# --- scenarios -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One session to generate: dropouts, and optionally a lying server's edits."""

    comment: str
    flags: tuple[str, ...]
    dropouts: Mapping[int, Round] = field(default_factory=dict)
    edits: Mapping[tuple[Round, str, int], Callable[[bytes], bytes]] = field(default_factory=dict)
    replays: Sequence[tuple[int, Callable[[Outcome], bytes]]] = ()
    readable_inputs: bool = False
    # (sender, recipient) -> what the sender sends the recipient instead of its honest box:
    # a ShareBundle it seals itself (a malicious peer knows k_uv, so the box authenticates),
    # or bytes: the sealed field of a garbage box, which does not open.
    peer_bundles: Mapping[tuple[int, int], Callable[[ShareBundle], ShareBundle | bytes]] = field(
        default_factory=dict)


def _identities(label: str, n: int) -> dict[int, SigningKey]:
    source = deterministic(label)
    return {c: SigningKey.generate(source) for c in range(1, n + 1)}


def _inputs(config: MaskingConfig, label: str, readable: bool) -> dict[int, RingVector]:
    d = config.vector_length
    if readable:
        return {c: np.arange(1000 * c, 1000 * c + d, dtype=config.ring.dtype) for c in range(1, config.num_clients + 1)}
    return {c: words(f"{label}/input/{c}", d, config.ring_bits) for c in range(1, config.num_clients + 1)}


def _session_test(config: MaskingConfig, label: str, identities: Mapping[int, SigningKey], scenario: Scenario) -> Json:
    inputs = _inputs(config, label, scenario.readable_inputs)
    context = deterministic(f"{label}/context")(32)
    randoms = {c: RecordingRandom(deterministic(f"{label}/client/{c}")) for c in inputs}
    tampered: list[Json] = []
    edits = dict(scenario.edits)
    for sender in sorted({sender for sender, _ in scenario.peer_bundles}):
        changes = {r: change for (s, r), change in scenario.peer_bundles.items() if s == sender}
        edits[(Round.SHARE_KEYS, "up", sender)] = _reseal(randoms, sender, changes)

    def tamper(round_: Round, direction: str, client: int, data: bytes) -> bytes:
        edit = edits.get((round_, direction, client))
        if edit is None:
            return data
        changed = edit(data)
        tampered.append({"round": ROUND_NAMES[round_], "direction": direction, "client": client,
                         "message": changed.hex()})
        return changed

    outcome = drive(config, inputs, scenario.dropouts, context, identities, randoms, tamper)
    if len(tampered) != len(edits):
        raise VectorError(f"{scenario.comment}: {len(edits)} edits planned, {len(tampered)} applied")
    replays = []
    for client, make in scenario.replays:
        message = make(outcome)
        try:
            client_step(outcome.states[client], message, input_vector=inputs[client],
                        identity=identities.get(client), random_bytes=randoms[client])
        except SecAggError as exc:
            replays.append({"client": client, "message": message.hex(), "error": type(exc).__name__})
        else:
            raise VectorError(f"{scenario.comment}: client {client} accepted the replayed message")
    body = _outcome_json(config, outcome)
    refusals = any(state.refused for state in outcome.states.values())
    failing = outcome.abort or outcome.client_errors or outcome.server_rejected or replays or refusals
    fields: Json = {
        "context": context.hex(),
        "inputs": [{"client": c, "words": ring_to_hex(v)} for c, v in sorted(inputs.items())],
        "dropouts": [{"client": c, "round": ROUND_NAMES[r]} for c, r in sorted(scenario.dropouts.items())],
        "clients": [_client_secrets(config, c, randoms[c].draws, outcome) for c in sorted(inputs)],
        "tampered": tampered,
        "replays": replays,
        **body,
    }
    return test_case(scenario.comment, list(scenario.flags), "invalid" if failing else "valid", **fields)


def _fixed(value: bytes) -> Callable[[int], bytes]:
    """A random source that returns ``value`` (a box's own nonce, re-used when re-sealing)."""
    return lambda size: value


def _reseal(randoms: Mapping[int, RecordingRandom], sender: int,
            changes: Mapping[int, Callable[[ShareBundle], ShareBundle | bytes]]) -> Callable[[bytes], bytes]:
    """An edit of ``sender``'s EncryptedShares: its box for each recipient in ``changes``
    re-sealed by the sender itself (its encryption key is its first draw) around
    ``change(bundle)``, with the box's own nonce, or replaced by ``change(bundle)`` when
    that is bytes (a garbage box); the delivered boxes are the only ones the sender sent."""

    def apply(data: bytes) -> bytes:
        message = wire.decode(data, EncryptedShares)
        boxes = list(message.boxes)
        for recipient, change in sorted(changes.items()):
            recipient_public = public_key_of(randoms[recipient].draws[0])
            key = share_encryption_keys(randoms[sender].draws[0], [(recipient, recipient_public)],
                                        message.session_id, sender)[0]
            ad = aead.share_associated_data(message.session_id, sender, recipient, Round.SHARE_KEYS)
            (position,) = (i for i, box in enumerate(boxes) if box.peer == recipient)
            honest = boxes[position].sealed
            changed = change(wire.decode(aead.open_sealed(key, honest, ad), ShareBundle))
            if isinstance(changed, bytes):
                boxes[position] = SealedBox(recipient, changed)
                continue
            boxes[position] = SealedBox(recipient, aead.seal(key, wire.encode(changed), ad,
                                                             _fixed(honest[: aead.NONCE_SIZE])))
        return wire.encode(dataclasses.replace(message, boxes=tuple(boxes)))

    return apply


def _group(config: MaskingConfig, label: str, scenarios: Sequence[Scenario], identity_label: str = "") -> Json:
    identities = _identities(identity_label, config.num_clients) if identity_label else {}
    tests = [_session_test(config, f"{label}/{i}", identities, s) for i, s in enumerate(scenarios)]
    return {
        "type": "MaskingSessionTest",
        **config_fields(config),
        "configDigest": config.digest().hex(),
        "identitySeeds": [identities[c].seed.hex() for c in sorted(identities)],
        "tests": tests,
    }


def _active_config(n: int, t: int, d: int, identity_label: str, **kwargs: Any) -> MaskingConfig:
    identities = _identities(identity_label, n)
    return MaskingConfig(num_clients=n, threshold=t, vector_length=d, mode=ACTIVE,
                         identity_keys=tuple(identities[c].public for c in range(1, n + 1)), **kwargs)


def _dropout_scenarios(config: MaskingConfig, extra_flags: tuple[str, ...] = (),
                       rounds: Sequence[Round] | None = None) -> list[Scenario]:
    """No dropout, then client 2 dropping before each round in ``rounds`` (default: every round)."""
    scenarios = [Scenario("no dropouts", ("NoDropout", *extra_flags))]
    for round_ in _rounds(config) if rounds is None else rounds:
        name = ROUND_NAMES[round_]
        scenarios.append(Scenario(f"client 2 drops before sending its {name} message",
                                  (f"Dropout{name}", *extra_flags), {2: round_}))
    return scenarios


# --- session files ----------------------------------------------------------------------------

SESSION_NOTES = {
    "NoDropout": "Every client completes every round.",
    "DropoutAdvertiseKeys": "A client never sends AdvertiseKeys: it is not on the roster.",
    "DropoutShareKeys": "A client advertised keys but never sends EncryptedShares: its neighbours mask "
    "without it.",
    "DropoutMaskedInputCollection": "A client shared its secrets but never sends MaskedInput: the server "
    "recovers its mask key and removes its pairwise masks from the sum.",
    "DropoutConsistencyCheck": "Active mode: a survivor never signs the survivor list (it stays in the sum).",
    "DropoutUnmasking": "A survivor never sends UnmaskResponse: its input stays in the sum, its self-mask "
    "is removed from the others' shares.",
    "MultipleDropouts": "Several clients drop at different rounds.",
    "BelowThreshold": "Too few clients (or neighbours) remain: a ThresholdError ends the session or makes a "
    "client abort (step named in 'abort' or 'clientErrors').",
    "ReadableInputs": "Inputs are 1000 c + i for client c, coordinate i (easy to check by hand).",
    "Ring64": "Inputs and sums in Z_(2^64).",
    "Active": "Active mode: signed keys, ConsistencyCheck round, signed survivor list.",
    "Harary": "SecAgg+: a Harary graph of degree k < n - 1 on the session's permutation.",
    "ForgedShare": "A share box or a revealed share was altered: the recipient refuses that sender for "
    "itself (listed in 'refusedBoxes'), keeps masking with it and reveals nothing for it, or aborts with "
    "ThresholdError when fewer than t boxes open; the server checks every recovered secret (seed against "
    "its commitment, mask key against its public key), outvotes one liar among t + 1 holders and rejects it, "
    "or aborts with AuthenticationError when no t shares reconstruct the committed value.",
    "BothSharesRequested": "The server asks a client for a share it must not reveal (a second unmask "
    "request, or a survivor set other than the signed one): ReplayError / UnsafeRequestError.",
    "BadSignature": "An Ed25519 signature (keys or survivor list) does not verify: the message is refused "
    "(AuthenticationError at the client; the server rejects the sender as a dropout).",
    "WrongSession": "A message carries another session id or names another sender: refused (ProtocolError "
    "at the client; the server rejects the sender).",
    "GarbageBox": "A malicious peer sends a share box that does not open: each recipient refuses that peer "
    "for itself (listed in 'refusedBoxes'), keeps masking with it and reveals nothing for it; the session "
    "completes while t holders of the peer's shares remain, else the server cannot unmask the peer "
    "(ThresholdError naming it) and no honest client aborts.",
    "Replay": "A message of a finished round is delivered again: ReplayError.",
    "BadSurvivorList": "An unmask request whose survivor list omits the recipient (ProtocolError) or has "
    "fewer than t clients (ThresholdError).",
    "MalformedInput": "A masked input of the wrong length: the server rejects its sender as a dropout.",
    "SmallOrderKey": "A client advertises a small-order X25519 key: the server rejects it at AdvertiseKeys "
    "(every exchange with it would be all zero).",
    "BadShareValue": "A share value >= p (no field element): a malicious peer seals it in an authentic bundle "
    "and the recipient refuses that peer for itself (listed in 'refusedBoxes') and goes on; in an unmask "
    "response the server discards "
    "that one share and rejects its sender, but keeps the sender's other shares.",
}
SESSION_HEADER = [
    "Complete masking sessions (docs/spec.md, section 12): configuration, each client's input and every",
    "value it drew (X25519 private keys, self-mask seed, Shamir coefficient draws, AEAD nonces, in the",
    "draw order of section 12.10), every message of every round in hex, the masked inputs, and the",
    "outcome: the included clients and the aggregate, or the step that fails. 'rounds[i].serverMessages'",
    "are the server's messages that open round i, 'clientMessages' the replies, both as their senders",
    "produced them; 'tampered' lists what a lying server or the network delivered instead.",
]


def generate_secagg_sessions() -> Json:
    """masking_sessions_secagg.json: complete graph, semi-honest, n = 3..6, dropouts after each round."""
    groups = []
    for n in (3, 4, 5, 6):
        config = MaskingConfig.secagg(n, 8)
        scenarios = _dropout_scenarios(config)
        if n == 3:
            scenarios[0] = Scenario("no dropouts", ("NoDropout", "ReadableInputs"), readable_inputs=True)
        if n == 6:
            scenarios.append(Scenario("client 2 drops before MaskedInput, client 5 before Unmasking",
                                      ("MultipleDropouts",), {2: Round.MASKED_INPUT, 5: Round.UNMASKING}))
        groups.append(_group(config, f"sessions/secagg/{n}", scenarios))
    config = MaskingConfig.secagg(4, 8, ring_bits=64)
    groups.append(_group(config, "sessions/secagg/4/ring64", [
        Scenario("client 3 drops before MaskedInput", ("DropoutMaskedInputCollection", "Ring64"),
                 {3: Round.MASKED_INPUT}),
    ]))
    # Last, so that the earlier tests keep their tcIds: n = 3 (t = 2, each client also holding a share of
    # its own seed) survives any one dropout; a second one is one past its guarantee.
    config = MaskingConfig.secagg(3, 8)
    groups.append(_group(config, "sessions/secagg/3/two-dropouts", [
        Scenario("client 2 drops before MaskedInput, client 3 before Unmasking: one past the guarantee "
                 "(d = n - t = 1): client 1's seed has only its own share", ("MultipleDropouts", "BelowThreshold"),
                 {2: Round.MASKED_INPUT, 3: Round.UNMASKING}),
    ]))
    return _session_file("secagg-masking-sessions", "SecAgg (complete graph, semi-honest)", groups)


def generate_secagg_plus_sessions() -> Json:
    """masking_sessions_secagg_plus.json: Harary graphs with dropouts."""
    groups = []
    for n, k, t, rounds in ((5, 2, 2, [Round.MASKED_INPUT]),
                            (6, 4, 3, [Round.SHARE_KEYS, Round.MASKED_INPUT])):
        config = MaskingConfig(num_clients=n, threshold=t, vector_length=8, graph=HARARY, degree=k)
        groups.append(_group(config, f"sessions/harary/{n}/{k}", _dropout_scenarios(config, ("Harary",), rounds)))
    config = _active_config(6, 3, 8, "sessions/harary-active/identities", graph=HARARY, degree=4)
    scenarios = _dropout_scenarios(config, ("Harary", "Active"), [Round.CONSISTENCY_CHECK])
    groups.append(_group(config, "sessions/harary-active", scenarios, "sessions/harary-active/identities"))
    return _session_file("secagg-plus-masking-sessions", "SecAgg+ (Harary graphs)", groups)


def generate_active_sessions() -> Json:
    """masking_sessions_active.json: active mode, n = 4 and 5, a dropout before each of the five rounds (n = 5)."""
    groups = []
    for n, rounds in ((4, [Round.MASKED_INPUT]), (5, None)):
        label = f"sessions/active/{n}/identities"
        identities = _identities(label, n)
        config = MaskingConfig.secagg(n, 4, mode=ACTIVE,
                                      identity_keys=tuple(identities[c].public for c in range(1, n + 1)))
        scenarios = _dropout_scenarios(config, ("Active",), rounds)
        # One dropout more than the guarantee allows: the session must halt.
        beyond = {client: Round.MASKED_INPUT for client in range(2, config.guarantee.dropouts + 3)}
        scenarios.append(Scenario(f"{len(beyond)} clients drop before MaskedInput, one past the guarantee",
                                  ("BelowThreshold", "Active"), beyond))
        groups.append(_group(config, f"sessions/active/{n}", scenarios, label))
    return _session_file("secagg-masking-sessions-active", "SecAgg in active mode", groups)


def _flip_last(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


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
    semi = MaskingConfig.secagg(4, 4, corrupt_fraction=0.0)
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
                        (Round.MASKED_INPUT, up, 2): _edit(MaskedInput, vector=lambda m: m.vector[:-1])}),
        Scenario("client 1 receives no share box (t = 2: its own seed share alone is too few)", ("BelowThreshold",),
                 edits={(Round.MASKED_INPUT, down, 1): _edit(ShareDelivery, boxes=lambda m: m.boxes[:0])}),
        Scenario("the unmask request to client 2 omits client 2", ("BadSurvivorList",),
                 edits={(Round.UNMASKING, down, 2): _edit(UnmaskRequest, survivors=(1, 3, 4))}),
        Scenario("the unmask request to client 3 names one survivor (t = 2)", ("BadSurvivorList", "BelowThreshold"),
                 edits={(Round.UNMASKING, down, 3): _edit(UnmaskRequest, survivors=(3,))}),
    ]
    label = "sessions/bad/active/identities"
    active = _active_config(5, 3, 4, label)
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
    garbage = MaskingConfig.secagg(5, 4, threshold=3)
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
    groups = [_group(semi, "sessions/bad/semi", semi_scenarios), _group(active, "sessions/bad/active",
                                                                        active_scenarios, label),
              _group(semi, "sessions/bad/share-values", share_value_scenarios),
              _group(garbage, "sessions/bad/garbage-boxes", garbage_scenarios)]
    return _session_file("secagg-masking-sessions-bad", "a lying server against honest clients", groups)


def _session_file(algorithm: str, what: str, groups: list[Json]) -> Json:
    return vector_file(
        algorithm=algorithm,
        schema="masking_session_test_schema.json",
        header=[f"Masking sessions: {what}.", *SESSION_HEADER],
        notes=SESSION_NOTES,
        groups=groups,
    )


# --- verification --------------------------------------------------------------------------


@register("MaskingSessionTest")
def check_session(group: Json, test: Json) -> None:
    """Replay the session with the recorded draws; compare every message and the outcome."""
    config = config_from_fields(group)
    equal("configDigest", config.digest().hex(), group["configDigest"])
    identities = {c: SigningKey.generate(ReplayedRandom([from_hex(seed)])) for c, seed in
                  enumerate(group["identitySeeds"], start=1)}
    inputs = {int(i["client"]): ring_from_hex(i["words"], config.ring_bits) for i in test["inputs"]}
    dropouts = {int(d["client"]): ROUND_BY_NAME[d["round"]] for d in test["dropouts"]}
    randoms = {int(c["client"]): ReplayedRandom(_draws_from_json(c), f"client {c['client']}")
               for c in test["clients"]}
    edits = {(ROUND_BY_NAME[e["round"]], str(e["direction"]), int(e["client"])): from_hex(e["message"])
             for e in test["tampered"]}
    used: set[tuple[Round, str, int]] = set()

    def tamper(round_: Round, direction: str, client: int, data: bytes) -> bytes:
        key = (round_, direction, client)
        if key in edits:
            used.add(key)
            return edits[key]
        return data

    outcome = drive(config, inputs, dropouts, from_hex(test["context"]), identities, randoms, tamper)
    equal("tampered messages delivered", sorted(used), sorted(edits))
    for source in randoms.values():
        source.finish()
    got = _outcome_json(config, outcome)
    for key in ("rounds", "clientErrors", "serverRejected", "sessionId", "neighbours", "maskedInputs",
                "refusedBoxes", "abort", "included", "aggregate"):
        if key == "rounds":
            _compare_rounds(got["rounds"], test["rounds"])
        else:
            equal(key, got.get(key), test.get(key))
    if "aggregate" in test:
        _check_aggregate(config, inputs, test)
    for replay in test["replays"]:
        _check_replay(replay, outcome, inputs, identities, randoms)


def _check_replay(replay: Json, outcome: Outcome, inputs: Mapping[int, RingVector],
                  identities: Mapping[int, SigningKey], randoms: Mapping[int, ReplayedRandom]) -> None:
    """A message delivered after the session must be refused with the named error."""
    client = int(replay["client"])
    message = from_hex(replay["message"])
    state = outcome.states[client]
    expect_error(replay, lambda: client_step(state, message, input_vector=inputs[client],
                                             identity=identities.get(client), random_bytes=randoms[client]),
                 f"replay to client {client}")


def _compare_rounds(got: list[Json], expected: list[Json]) -> None:
    equal("rounds", [r["round"] for r in got], [r["round"] for r in expected])
    for mine, theirs in zip(got, expected, strict=True):
        for side in ("serverMessages", "clientMessages"):
            equal(f"{theirs['round']} {side}: senders/recipients", [m["client"] for m in mine[side]],
                  [m["client"] for m in theirs[side]])
            for a, b in zip(mine[side], theirs[side], strict=True):
                equal(f"{theirs['round']} {side}: message of client {b['client']}", a["message"], b["message"])


def _check_aggregate(config: MaskingConfig, inputs: Mapping[int, RingVector], test: Json) -> None:
    """Independent oracle: the aggregate is the ring sum of the included clients' inputs."""
    total = [0] * config.vector_length
    for client in test["included"]:
        total = [a + int(b) for a, b in zip(total, inputs[int(client)], strict=True)]
    expected = np.array([v % config.ring.modulus for v in total], dtype=config.ring.dtype)
    equal("aggregate = ring sum of the included inputs", ring_to_hex(expected), test["aggregate"])


SUITES = [
    Suite("masking_sessions_secagg.json", "masking_session_test_schema.json", generate_secagg_sessions),
    Suite("masking_sessions_secagg_plus.json", "masking_session_test_schema.json", generate_secagg_plus_sessions),
    Suite("masking_sessions_active.json", "masking_session_test_schema.json", generate_active_sessions),
    Suite("masking_sessions_bad.json", "masking_session_test_schema.json", generate_bad_sessions),
]
