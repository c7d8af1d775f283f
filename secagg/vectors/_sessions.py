"""Complete masking sessions (spec section 12.7-12.10): every message, every drawn secret,
the masked inputs and the aggregate, with dropouts after each round.

This module holds the honest session files (SecAgg, SecAgg+, active mode), the notes
and header every session file shares, and the verification of a session test
(:func:`check_session`, which replays it through the same driver). The driver and
its JSON form are in ``_session_driver.py``, the scenarios in
``_session_scenarios.py``, the lying-server sessions in ``_bad_sessions.py``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from secagg.masking.client import client_step
from secagg.masking.config import ACTIVE, HARARY, MaskingConfig
from secagg.masking.messages import Round
from secagg.primitives.signing import SigningKey
from secagg.ring import RingVector
from secagg.vectors._check import equal, expect_error
from secagg.vectors._format import Json, from_hex, ring_from_hex, ring_to_hex, vector_file
from secagg.vectors._masking import config_from_fields
from secagg.vectors._random import ReplayedRandom
from secagg.vectors._session_driver import ROUND_BY_NAME, Outcome, draws_from_json, drive, outcome_json
from secagg.vectors._session_scenarios import (
    Scenario,
    active_config,
    dropout_scenarios,
    scenario_identities,
    session_group,
)
from secagg.vectors._suite import Suite, register

__all__ = ["SUITES", "session_file"]


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
    "itself (listed in 'refusedBoxes'; the server's records of the omissions in 'serverRefusals'), keeps "
    "masking with it and reveals nothing for it, or aborts with "
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
    "completes while t holders of the peer's shares remain (the server records each omission as the "
    "recipient's refusal claim, listed in 'serverRefusals'), else the server cannot unmask the peer "
    "(ThresholdError naming it) and no honest client aborts.",
    "Replay": "A message of a finished round is delivered again: ReplayError.",
    "BadSurvivorList": "An unmask request whose survivor list omits the recipient (ProtocolError) or has "
    "fewer than t clients (ThresholdError).",
    "MalformedInput": "A masked input of the wrong length: the server rejects its sender as a dropout.",
    "SmallOrderKey": "A client advertises a small-order X25519 key: the server rejects it at AdvertiseKeys "
    "(every exchange with it would be all zero).",
    "BadShareValue": "A share value >= p (no field element): a malicious peer seals it in an authentic bundle "
    "and the recipient refuses that peer for itself (listed in 'refusedBoxes', and the server's record of "
    "its omission in 'serverRefusals') and goes on; in an unmask "
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
        config = MaskingConfig.secagg(n, 8, mode="semi-honest")
        scenarios = dropout_scenarios(config)
        if n == 3:
            scenarios[0] = Scenario("no dropouts", ("NoDropout", "ReadableInputs"), readable_inputs=True)
        if n == 6:
            scenarios.append(Scenario("client 2 drops before MaskedInput, client 5 before Unmasking",
                                      ("MultipleDropouts",), {2: Round.MASKED_INPUT, 5: Round.UNMASKING}))
        groups.append(session_group(config, f"sessions/secagg/{n}", scenarios))
    config = MaskingConfig.secagg(4, 8, ring_bits=64, mode="semi-honest")
    groups.append(session_group(config, "sessions/secagg/4/ring64", [
        Scenario("client 3 drops before MaskedInput", ("DropoutMaskedInputCollection", "Ring64"),
                 {3: Round.MASKED_INPUT}),
    ]))
    # Last, so that the earlier tests keep their tcIds: n = 3 (t = 2, each client also holding a share of
    # its own seed) survives any one dropout; a second one is one past its guarantee.
    config = MaskingConfig.secagg(3, 8, mode="semi-honest")
    groups.append(session_group(config, "sessions/secagg/3/two-dropouts", [
        Scenario("client 2 drops before MaskedInput, client 3 before Unmasking: one past the guarantee "
                 "(d = n - t = 1): client 1's seed has only its own share", ("MultipleDropouts", "BelowThreshold"),
                 {2: Round.MASKED_INPUT, 3: Round.UNMASKING}),
    ]))
    config = MaskingConfig.secagg(5, 9, ring_bits=12, mode="semi-honest")  # 9 x 12 bits: 13.5 bytes, 4 padding bits
    groups.append(session_group(config, "sessions/secagg/5/ring12", [
        Scenario("Z_(2^12): client 4 drops before MaskedInput", ("DropoutMaskedInputCollection", "NarrowRing"),
                 {4: Round.MASKED_INPUT}),
        Scenario("Z_(2^12): client 2 drops before Unmasking", ("DropoutUnmasking", "NarrowRing"),
                 {2: Round.UNMASKING}),
    ]))
    return session_file("secagg-masking-sessions", "SecAgg (complete graph, semi-honest)", groups,
                         NARROW_SESSION_NOTES)


def generate_secagg_plus_sessions() -> Json:
    """masking_sessions_secagg_plus.json: Harary graphs with dropouts."""
    groups = []
    for n, k, t, rounds in ((5, 2, 2, [Round.MASKED_INPUT]),
                            (6, 4, 3, [Round.SHARE_KEYS, Round.MASKED_INPUT])):
        config = MaskingConfig(num_clients=n, threshold=t, vector_length=8, graph=HARARY, degree=k, mode="semi-honest")
        groups.append(session_group(config, f"sessions/harary/{n}/{k}", dropout_scenarios(config, ("Harary",), rounds)))
    config = active_config(6, 3, 8, "sessions/harary-active/identities", graph=HARARY, degree=4)
    scenarios = dropout_scenarios(config, ("Harary", "Active"), [Round.CONSISTENCY_CHECK])
    groups.append(session_group(config, "sessions/harary-active", scenarios, "sessions/harary-active/identities"))
    return session_file("secagg-plus-masking-sessions", "SecAgg+ (Harary graphs)", groups)


def generate_active_sessions() -> Json:
    """masking_sessions_active.json: active mode, n = 4 and 5, a dropout before each of the five rounds (n = 5)."""
    groups = []
    for n, rounds in ((4, [Round.MASKED_INPUT]), (5, None)):
        label = f"sessions/active/{n}/identities"
        identities = scenario_identities(label, n)
        config = MaskingConfig.secagg(n, 4, mode=ACTIVE,
                                      identity_keys=tuple(identities[c].public for c in range(1, n + 1)))
        scenarios = dropout_scenarios(config, ("Active",), rounds)
        # One dropout more than the guarantee allows: the session must halt.
        beyond = {client: Round.MASKED_INPUT for client in range(2, config.guarantee.dropouts + 3)}
        scenarios.append(Scenario(f"{len(beyond)} clients drop before MaskedInput, one past the guarantee",
                                  ("BelowThreshold", "Active"), beyond))
        groups.append(session_group(config, f"sessions/active/{n}", scenarios, label))
    return session_file("secagg-masking-sessions-active", "SecAgg in active mode", groups)


NARROW_SESSION_NOTES = {
    "NarrowRing": "Inputs and sums in Z_(2^12): masks computed in 32-bit words, each masked input reduced mod "
    "2^12 and packed 12 bits a value (maskedInputs: its 32-bit words), the aggregate reduced once at the end.",
}


def session_file(algorithm: str, what: str, groups: list[Json], extra_notes: Json | None = None) -> Json:
    """A session vector file: the shared header and notes (plus ``extra_notes``) around ``groups``."""
    return vector_file(
        algorithm=algorithm,
        schema="masking_session_test_schema.json",
        header=[f"Masking sessions: {what}.", *SESSION_HEADER],
        notes={**SESSION_NOTES, **(extra_notes or {})},
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
    inputs = {int(i["client"]): config.ring.check(ring_from_hex(i["words"], config.ring.container.bits))
              for i in test["inputs"]}
    dropouts = {int(d["client"]): ROUND_BY_NAME[d["round"]] for d in test["dropouts"]}
    randoms = {int(c["client"]): ReplayedRandom(draws_from_json(c), f"client {c['client']}")
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
    got = outcome_json(config, outcome)
    for key in ("rounds", "clientErrors", "serverRejected", "sessionId", "neighbours", "maskedInputs",
                "refusedBoxes", "serverRefusals", "abort", "included", "aggregate"):
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
]
