"""The session driver of the masking vectors (spec section 12.7-12.10) and its JSON form.

The same driver (:func:`drive`) generates and verifies a session: at generation
each client draws from its own deterministic stream through a
:class:`~secagg.vectors._random.RecordingRandom`; at verification it draws the
recorded values back (:class:`~secagg.vectors._random.ReplayedRandom`) in the
documented order, and every message the state machines produce is compared
with the recorded one byte for byte. :func:`outcome_json` and
:func:`client_secrets_json` write what a run produced; :func:`draws_from_json`
reads a client's recorded draws back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from secagg import wire
from secagg.errors import SecAggError
from secagg.masking.client import ClientState, client_start, client_step
from secagg.masking.config import ACTIVE, HARARY, MaskingConfig
from secagg.masking.messages import MaskedInput, Round
from secagg.masking.server import ServerState, server_start, server_step
from secagg.masking.session import graph_neighbours
from secagg.primitives.randomness import RandomBytes
from secagg.primitives.signing import SigningKey
from secagg.ring import RingVector
from secagg.vectors._format import Json, VectorError, from_hex, ring_to_hex

__all__ = [
    "ROUND_BY_NAME",
    "ROUND_NAMES",
    "Outcome",
    "RoundRecord",
    "Tamper",
    "client_secrets_json",
    "draws_from_json",
    "drive",
    "outcome_json",
    "session_rounds",
]

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


def session_rounds(config: MaskingConfig) -> list[Round]:
    """The rounds of a session of ``config``, in order (ConsistencyCheck only in active mode)."""
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
    for round_ in session_rounds(config):
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


def client_secrets_json(config: MaskingConfig, client: int, draws: list[bytes], outcome: Outcome) -> Json:
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


def draws_from_json(entry: Json) -> list[bytes]:
    """The recorded draws of one client in the order the reference client makes them."""
    draws = [from_hex(entry[k]) for k in ("encryptionPrivateKey", "maskPrivateKey") if k in entry]
    if "selfMaskSeed" in entry:
        draws.append(from_hex(entry["selfMaskSeed"]))
        draws += [from_hex(c) for c in entry["maskKeyCoefficients"]]
        draws += [from_hex(c) for c in entry["selfMaskSeedCoefficients"]]
        draws += [from_hex(n["nonce"]) for n in entry["nonces"]]
    return draws


def outcome_json(config: MaskingConfig, outcome: Outcome) -> Json:
    """What a run produced, as the fields of a session test: every round's messages, errors, outcome."""
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
    masked = [(c, wire.decode(d, MaskedInput).vector.values) for r in outcome.rounds if r.round == Round.MASKED_INPUT
              for c, d in sorted(r.client_messages.items())]
    out["maskedInputs"] = [{"client": c, "words": ring_to_hex(v)} for c, v in masked]
    refused = [{"client": c, "peers": list(state.refused)} for c, state in sorted(outcome.states.items())
               if state.refused]
    if refused:  # only sessions in which some box was refused carry the key
        out["refusedBoxes"] = refused
    if server is not None and server.refusals:  # the server's records of them (round 4 omissions)
        out["serverRefusals"] = [{"client": c, "peer": p} for c, p in server.refusals]
    if outcome.abort is not None:
        out["abort"] = {"round": ROUND_NAMES[outcome.abort[0]], "error": outcome.abort[1]}
    elif server is not None and server.result is not None:
        out["included"] = sorted(server.result.included)
        out["aggregate"] = ring_to_hex(server.result.aggregate)
    return out
