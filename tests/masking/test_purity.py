"""The masking transitions are pure: each one, called twice on the same state and the same
inbound bytes with the same randomness, returns equal states and equal replies, and leaves its
inputs (the state, the message buffer, the client's input vector) as they were."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from secagg.masking import (
    ACTIVE,
    ClientState,
    MaskingConfig,
    ServerState,
    client_start,
    client_step,
    make_identities,
    server_start,
    server_step,
)
from secagg.primitives.randomness import InsecureDeterministicRandom

CONTEXT = bytes(range(32))


def fields_equal(a: object, b: object) -> bool:
    """Field-by-field equality that compares numpy arrays by value."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(
            fields_equal(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
        )
    return bool(a == b)


def twice_client(state: ClientState, inbound: bytes, seed: int, **kwargs: object) -> tuple[ClientState, bytes]:
    before, buffer = state.to_bytes(), bytearray(inbound)
    vector = kwargs.get("input_vector")
    vector_before = None if vector is None else np.array(vector, copy=True)
    first = client_step(state, buffer, random_bytes=InsecureDeterministicRandom(seed), **kwargs)  # type: ignore
    second = client_step(state, buffer, random_bytes=InsecureDeterministicRandom(seed), **kwargs)  # type: ignore
    assert state.to_bytes() == before and bytes(buffer) == inbound
    assert first[1] == second[1] and first[0].to_bytes() == second[0].to_bytes()
    if vector is not None:
        assert np.array_equal(vector, vector_before)  # type: ignore[arg-type]
    return first


def twice_server(state: ServerState, inbound: dict[int, bytes]) -> tuple[ServerState, dict[int, bytes]]:
    kept = copy.deepcopy(state)
    first = server_step(state, dict(inbound))
    second = server_step(state, dict(inbound))
    assert fields_equal(state, kept)
    assert first[1] == second[1] and fields_equal(first[0], second[0])
    return first


@pytest.mark.parametrize("mode", ["semi-honest", ACTIVE])
def test_every_transition_called_twice_on_one_state_gives_one_result_and_mutates_nothing(mode: str) -> None:
    # Prepare: five clients, one of which drops before its masked input (so both unmask kinds occur)
    n = 5
    identities, keys = make_identities(n, InsecureDeterministicRandom(3)) if mode == ACTIVE else ({}, ())
    config = MaskingConfig(num_clients=n, threshold=3, vector_length=7, mode=mode, identity_keys=keys)
    inputs = {c: np.arange(7, dtype=config.ring.dtype) * c for c in range(1, n + 1)}
    states: dict[int, ClientState] = {}
    uplink: dict[int, bytes] = {}
    for c in range(1, n + 1):
        kwargs = {"identity": identities[c]} if identities else {}
        first = client_start(config, c, context=CONTEXT, random_bytes=InsecureDeterministicRandom(c), **kwargs)
        again = client_start(config, c, context=CONTEXT, random_bytes=InsecureDeterministicRandom(c), **kwargs)
        assert first[0].to_bytes() == again[0].to_bytes() and first[1] == again[1]
        states[c], uplink[c] = first
    server = server_start(config, context=CONTEXT)
    # Execute and assert: every round, each call made twice from one state
    dropped = 5
    while True:
        server, downlink = twice_server(server, uplink)
        if not downlink:
            break
        uplink = {}
        for c, message in sorted(downlink.items()):
            if c == dropped and states[c].phase >= 2:  # AWAIT_SHARES: it drops before its masked input
                continue
            kwargs: dict[str, object] = {"input_vector": inputs[c]}
            if identities:
                kwargs["identity"] = identities[c]
            states[c], uplink[c] = twice_client(states[c], message, 100 + c, **kwargs)
    assert server.result is not None
    assert sorted(server.result.included) == [1, 2, 3, 4]
    assert np.array_equal(server.result.aggregate, sum(inputs[c] for c in (1, 2, 3, 4)))
