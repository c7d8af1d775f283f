"""One masking session in which one client holds a different setup: the binding guard's engine.

:func:`run_split` runs the pure client and server transitions with a config (and a
round context) of its own for every client and for the server, so a test can hand
one client another value of any field and see what happens. :func:`assert_split_fails`
is the rule every binding test asserts (docs/spec.md, "Session descriptor"): the
client that holds the other value is refused at setup or key agreement with the
library's own error and a reason, never gets past AdvertiseKeys, and the session
either halts or completes with the exact ring sum of the others, never a wrong sum.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from secagg.errors import SecAggError, ThresholdError
from secagg.masking import (
    ACTIVE,
    ZERO_CONTEXT,
    ClientPhase,
    ClientState,
    MaskingConfig,
    ServerPhase,
    client_start,
    client_step,
    make_identities,
    server_start,
    server_step,
)
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.primitives.signing import SigningKey

if TYPE_CHECKING:
    from fl_core.aggregators.masking import MaskingAggregator

MAX_GUARD_CLIENTS = 8
TARGET = 1
"""The client that holds the other value in every split."""

IDENTITIES, IDENTITY_KEYS = make_identities(MAX_GUARD_CLIENTS, InsecureDeterministicRandom(b"binding-guard"))
"""Clients 1..8's Ed25519 identities and public keys (a config of n clients lists the first n)."""


def keys_for(mode: str, num_clients: int) -> tuple[bytes, ...]:
    """The identity keys a config of ``num_clients`` clients in ``mode`` lists."""
    return IDENTITY_KEYS[:num_clients] if mode == ACTIVE else ()


def input_for(config: MaskingConfig, client: int) -> np.ndarray:
    """A distinct, valid input of ``config``'s ring and length for ``client``."""
    return (np.arange(config.vector_length, dtype=np.uint64) * 7 + 1000 * client).astype(config.ring.dtype)


@dataclasses.dataclass
class SplitOutcome:
    """What one split session gave: the result (None if it halted), who refused and why."""

    included: frozenset[int] | None
    aggregate: np.ndarray | None
    inputs: dict[int, np.ndarray]
    client_errors: dict[int, SecAggError]
    server_rejected: tuple[tuple[int, str], ...]
    phases: dict[int, ClientPhase]
    halted: ThresholdError | None


def run_split(
    configs: Mapping[int, MaskingConfig],
    server_config: MaskingConfig,
    *,
    contexts: Mapping[int, bytes] | None = None,
    server_context: bytes = ZERO_CONTEXT,
    inputs: Mapping[int, np.ndarray] | None = None,
    start_ids: Mapping[int, int] | None = None,
    identities: Mapping[int, SigningKey] | None = None,
    signing_keys: Mapping[int, SigningKey] = IDENTITIES,
) -> SplitOutcome:
    """Run one session: client c under ``configs[c]`` (and ``contexts[c]``), the server under
    ``server_config``. A client whose transition raises a library error refuses: it sends
    nothing more. ``start_ids`` lets a client believe it has another id than its sender id;
    ``identities`` gives a client another signing key than its own (in either mode);
    ``signing_keys`` are the clients' own keys (used by clients whose config is active)."""
    contexts = contexts or {}
    inputs = dict(inputs) if inputs is not None else {c: input_for(cfg, c) for c, cfg in configs.items()}
    identities = {c: signing_keys[c] for c, cfg in configs.items() if cfg.mode == ACTIVE} | dict(identities or {})
    states: dict[int, ClientState] = {}
    errors: dict[int, SecAggError] = {}
    inbound: dict[int, bytes] = {}
    for client, config in configs.items():
        try:
            states[client], inbound[client] = client_start(
                config, (start_ids or {}).get(client, client), context=contexts.get(client, server_context),
                identity=identities.get(client), random_bytes=InsecureDeterministicRandom(client),
            )  # fmt: skip
        except SecAggError as exc:
            errors[client] = exc
    server = server_start(server_config, context=server_context)
    halted: ThresholdError | None = None
    try:
        while server.phase != ServerPhase.DONE:
            server, outbound = server_step(server, inbound)
            inbound = {}
            for client, payload in outbound.items():
                if client in errors:
                    continue
                try:
                    states[client], inbound[client] = client_step(
                        states[client], payload, input_vector=inputs[client], identity=identities.get(client),
                        random_bytes=InsecureDeterministicRandom(100 + client),
                    )  # fmt: skip
                except SecAggError as exc:
                    errors[client] = exc
    except ThresholdError as exc:
        halted = exc
    result = server.result if halted is None else None
    return SplitOutcome(
        included=None if result is None else result.included,
        aggregate=None if result is None else result.aggregate,
        inputs=inputs,
        client_errors=errors,
        server_rejected=server.rejected,
        phases={c: ClientPhase(s.phase) for c, s in states.items()},
        halted=halted,
    )


def split_session(base: MaskingConfig, split: MaskingConfig, **options: object) -> SplitOutcome:
    """Client :data:`TARGET` under ``split``; the server and every other client under ``base``."""
    configs = {c: base for c in range(1, base.num_clients + 1)} | {TARGET: split}
    return run_split(configs, base, **options)  # type: ignore[arg-type]


def refusal_reasons(outcome: SplitOutcome, client: int = TARGET) -> list[str]:
    """Why ``client`` was refused: its own error and every reason the server recorded for it."""
    error = outcome.client_errors.get(client)
    reasons = [] if error is None else [f"{type(error).__name__}: {error}"]
    return reasons + [reason for sender, reason in outcome.server_rejected if sender == client]


def assert_split_fails(outcome: SplitOutcome, base: MaskingConfig, *, at_setup: bool = True) -> None:
    """The binding rule for one split session (module docstring).

    ``at_setup``: the split client is refused at setup or key agreement: by the server at
    AdvertiseKeys (active mode: its signature covers another config digest or context) or
    ShareKeys (its EncryptedShares carry another session id; the KeyRoster carries none,
    spec 12.7), or by itself; it never receives a ShareDelivery, so it never masks
    anything. Without ``at_setup`` (a client's own malformed input) it must be refused with
    a library error before its masked input counts."""
    reasons = refusal_reasons(outcome)
    assert reasons, f"client {TARGET} held another value but nobody refused it (phases {outcome.phases})"
    assert all(reason.strip() for reason in reasons)
    if at_setup:
        setup = (ClientPhase.AWAIT_ROSTER, ClientPhase.AWAIT_SHARES)
        assert outcome.phases.get(TARGET, ClientPhase.AWAIT_ROSTER) in setup, (
            f"client {TARGET} got past key agreement under another setup: {reasons}"
        )
    if outcome.included is None:
        return  # the session halted: nothing was released
    assert TARGET not in outcome.included, f"client {TARGET}'s contribution entered the sum: {reasons}"
    expected = base.ring.sum([outcome.inputs[c] for c in sorted(outcome.included)], base.vector_length)
    assert outcome.aggregate is not None
    np.testing.assert_array_equal(outcome.aggregate, expected)


def assert_honest_completes(base: MaskingConfig, **options: object) -> None:
    """The control: with one setup for everyone, the same session includes everyone, exactly."""
    outcome = split_session(base, base, **options)
    assert outcome.included == frozenset(range(1, base.num_clients + 1)), refusal_reasons(outcome)
    expected = base.ring.sum(list(outcome.inputs.values()), base.vector_length)
    assert outcome.aggregate is not None
    np.testing.assert_array_equal(outcome.aggregate, expected)


def bound_config(
    aggregator: MaskingAggregator, run_round: Callable[[], object], hospitals: Sequence[int]
) -> tuple[MaskingConfig, dict[int, SigningKey]]:
    """The one masking config an fl_core ``aggregator`` binds in the round ``run_round`` runs through
    it, and the signing keys of ``hospitals`` (by session id): a real round's base for a split."""
    bound: list[MaskingConfig] = []
    round_config = aggregator.round_config
    aggregator.round_config = lambda *a, **k: bound.append(round_config(*a, **k)) or bound[-1]  # type: ignore[method-assign]
    run_round()
    keys = aggregator.session_identities(hospitals)[1]
    assert len(bound) == 1 and keys is not None
    return bound[0], keys
