"""Session scenarios of the masking vectors: what to run, and the test case a run becomes.

A :class:`Scenario` names the dropouts and, for a lying server or a malicious peer,
the edits to the messages in flight; :func:`session_group` runs each scenario of a
configuration through :func:`~secagg.vectors._session_driver.drive` with
deterministic inputs, contexts and client randomness and records it as one test
group of a session file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from secagg import wire
from secagg.errors import SecAggError
from secagg.masking.client import client_step
from secagg.masking.config import ACTIVE, MaskingConfig
from secagg.masking.messages import EncryptedShares, Round, SealedBox, ShareBundle
from secagg.masking.session import share_encryption_keys
from secagg.primitives import aead
from secagg.primitives.key_agreement import public_key_of
from secagg.primitives.signing import SigningKey
from secagg.ring import RingVector
from secagg.vectors._format import Json, VectorError, ring_to_hex, test_case
from secagg.vectors._masking import config_fields
from secagg.vectors._random import RecordingRandom
from secagg.vectors._session_driver import (
    ROUND_NAMES,
    Outcome,
    client_secrets_json,
    drive,
    outcome_json,
    session_rounds,
)
from secagg.vectors._suite import deterministic, words

__all__ = ["Scenario", "active_config", "dropout_scenarios", "scenario_identities", "session_group"]


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


def scenario_identities(label: str, n: int) -> dict[int, SigningKey]:
    """Deterministic Ed25519 identities of clients 1..n from the stream of ``label``."""
    source = deterministic(label)
    return {c: SigningKey.generate(source) for c in range(1, n + 1)}


def _inputs(config: MaskingConfig, label: str, readable: bool) -> dict[int, RingVector]:
    d = config.vector_length
    if readable:
        return {c: np.arange(1000 * c, 1000 * c + d, dtype=config.ring.dtype) for c in range(1, config.num_clients + 1)}
    ring = config.ring  # a narrow ring's inputs: container words reduced mod 2^b
    return {c: ring.reduce(words(f"{label}/input/{c}", d, ring.container.bits))
            for c in range(1, config.num_clients + 1)}


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
    body = outcome_json(config, outcome)
    refusals = any(state.refused for state in outcome.states.values())
    failing = outcome.abort or outcome.client_errors or outcome.server_rejected or replays or refusals
    fields: Json = {
        "context": context.hex(),
        "inputs": [{"client": c, "words": ring_to_hex(v)} for c, v in sorted(inputs.items())],
        "dropouts": [{"client": c, "round": ROUND_NAMES[r]} for c, r in sorted(scenario.dropouts.items())],
        "clients": [client_secrets_json(config, c, randoms[c].draws, outcome) for c in sorted(inputs)],
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


def session_group(config: MaskingConfig, label: str, scenarios: Sequence[Scenario], identity_label: str = "") -> Json:
    """One test group: every scenario of ``config`` run and recorded (identities from ``identity_label``)."""
    identities = scenario_identities(identity_label, config.num_clients) if identity_label else {}
    tests = [_session_test(config, f"{label}/{i}", identities, s) for i, s in enumerate(scenarios)]
    return {
        "type": "MaskingSessionTest",
        **config_fields(config),
        "configDigest": config.digest().hex(),
        "identitySeeds": [identities[c].seed.hex() for c in sorted(identities)],
        "tests": tests,
    }


def active_config(n: int, t: int, d: int, identity_label: str, **kwargs: Any) -> MaskingConfig:
    """An active-mode config whose identity keys are those of :func:`scenario_identities`."""
    identities = scenario_identities(identity_label, n)
    return MaskingConfig(num_clients=n, threshold=t, vector_length=d, mode=ACTIVE,
                         identity_keys=tuple(identities[c].public for c in range(1, n + 1)), **kwargs)


def dropout_scenarios(config: MaskingConfig, extra_flags: tuple[str, ...] = (),
                       rounds: Sequence[Round] | None = None) -> list[Scenario]:
    """No dropout, then client 2 dropping before each round in ``rounds`` (default: every round)."""
    scenarios = [Scenario("no dropouts", ("NoDropout", *extra_flags))]
    for round_ in session_rounds(config) if rounds is None else rounds:
        name = ROUND_NAMES[round_]
        scenarios.append(Scenario(f"client 2 drops before sending its {name} message",
                                  (f"Dropout{name}", *extra_flags), {2: round_}))
    return scenarios
