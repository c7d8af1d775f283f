"""Arbitrary corruption of real messages, at every phase, on both ends.

Whatever bytes arrive, client_step and server_step raise only SecAggError
subclasses (never IndexError, KeyError, ValueError, struct.error, ...), and a
server that rejects a corrupted client message still aggregates the others
exactly.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from secagg import wire
from secagg.errors import DecodeError, SecAggError
from secagg.masking import ACTIVE, SEMI_HONEST, ClientState, MaskingConfig, Round, client_step, run_session
from secagg.masking.messages import UnmaskResponse
from secagg.masking.server import ServerPhase
from secagg.primitives.randomness import InsecureDeterministicRandom

from .harness import StepRun, active_setup, assert_exact, random_inputs

SEMI = MaskingConfig(num_clients=5, threshold=3, vector_length=6, mode="semi-honest")


@dataclass(frozen=True)
class Checkpoint:
    """Client 1 at one phase, with the genuine server message it expects there."""

    run: StepRun
    state: ClientState
    message: bytes


@cache
def checkpoints(mode: str) -> tuple[Checkpoint, ...]:
    """Client 1 at every phase of one honest session, DONE included."""
    if mode == ACTIVE:
        config, identities = active_setup(5, 3, vector_length=6)
        run = StepRun(config, identities=identities, seed=11)
    else:
        run = StepRun(SEMI, seed=11)
    points = []
    last = b""
    while run.server.phase != ServerPhase.DONE:
        run.to_server()
        if 1 in run.pending:
            last = run.pending[1]
            points.append(Checkpoint(run, run.states[1], last))
            run.to_clients()
    points.append(Checkpoint(run, run.states[1], last))  # DONE: every message is a replay
    return tuple(points)


@cache
def genuine_messages() -> tuple[bytes, ...]:
    """Every message of both sessions, both directions (material for splicing)."""
    found: list[bytes] = []
    for mode in (SEMI_HONEST, ACTIVE):
        run = checkpoints(mode)[0].run
        found += [message for messages in run.sent.values() for message in messages]
        found += [point.message for point in checkpoints(mode)]
    return tuple(found)


INTERESTING_U32 = [0, 1, 2, 3, 5, 32, 33, 255, 256, 2**16, 2**20, 2**20 + 1, 2**31, 2**32 - 1]

mutations = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**16), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, 2**16)),
    st.tuples(st.just("set"), st.integers(0, 2**16), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 2**16), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 2**16), st.integers(1, 64)),
    st.tuples(st.just("u32"), st.integers(0, 2**16), st.sampled_from(INTERESTING_U32)),
    st.tuples(st.just("splice"), st.integers(0, 2**16), st.integers(0, 2**16), st.integers(0, 2**16)),
)


def mutate(data: bytes, steps: list[tuple[object, ...]]) -> bytes:
    """Apply each mutation; positions are taken modulo the current length."""
    out = bytearray(data)
    for kind, *args in steps:
        where = int(args[0]) % (len(out) + 1)  # type: ignore[call-overload]
        if kind == "flip" and out:
            out[where % len(out)] ^= 1 << int(args[1])  # type: ignore[call-overload]
        elif kind == "truncate":
            del out[where:]
        elif kind == "set" and out:
            out[where % len(out)] = int(args[1])  # type: ignore[call-overload]
        elif kind == "insert":
            out[where:where] = args[1]  # type: ignore[index]
        elif kind == "delete":
            del out[where : where + int(args[1])]  # type: ignore[call-overload]
        elif kind == "u32":
            out[where : where + 4] = struct.pack(">I", args[1])
        elif kind == "splice":
            pool = genuine_messages()
            other = pool[int(args[1]) % len(pool)]  # type: ignore[call-overload]
            out[where:] = other[int(args[2]) % (len(other) + 1) :]  # type: ignore[call-overload]
    return bytes(out)


def step_client(point: Checkpoint, data: bytes) -> None:
    """client_step on untrusted bytes: only SecAggError may escape (anything else fails the test).

    If the bytes are accepted and the client answers an unmask request, the
    answer still reveals exactly one share per held peer (self-mask share for
    the survivors, which in active mode are the ones the client signed).
    """
    run = point.run
    try:
        _, reply = client_step(
            point.state,
            data,
            input_vector=run.inputs[1],
            identity=run.identities.get(1),
            random_bytes=InsecureDeterministicRandom(0),
        )
    except SecAggError as exc:
        event(type(exc).__name__)
        return
    event("accepted")
    answer = wire.decode_any(reply)
    if isinstance(answer, UnmaskResponse):
        self_owners = [e.owner for e in answer.self_mask_shares]
        key_owners = [e.owner for e in answer.mask_key_shares]
        own = [1] if point.state.own_seed_share else []  # its own seed share (complete graph, spec 12.8)
        assert sorted(self_owners + key_owners) == sorted([h.owner for h in point.state.held] + own)
        if point.state.masking_config.mode == ACTIVE:
            assert set(self_owners) <= set(point.state.survivors)
            assert not set(key_owners) & set(point.state.survivors)


FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(
    mode=st.sampled_from([SEMI_HONEST, ACTIVE]),
    phase=st.integers(0, 4),
    steps=st.lists(mutations, min_size=1, max_size=3),
)
def test_client_survives_mutated_messages(mode: str, phase: int, steps: list[tuple[object, ...]]) -> None:
    # Prepare
    points = checkpoints(mode)
    point = points[phase % len(points)]
    # Execute / Assert
    step_client(point, mutate(point.message, steps))


def mutate_value(value: Any, data: st.DataObject) -> Any:
    """A well-typed but wrong value in place of ``value`` (recursing into structs and lists)."""
    if isinstance(value, wire.WireStruct):
        field = data.draw(st.sampled_from(dataclasses.fields(value)))  # type: ignore[arg-type]
        return dataclasses.replace(value, **{field.name: mutate_value(getattr(value, field.name), data)})  # type: ignore[type-var]
    if isinstance(value, tuple):
        if not value:
            return value
        index = data.draw(st.integers(0, len(value) - 1))
        kind = data.draw(st.sampled_from(["drop", "duplicate", "mutate", "reverse", "empty"]))
        items = list(value)
        if kind == "drop":
            del items[index]
        elif kind == "duplicate":
            items.insert(index, items[index])
        elif kind == "mutate":
            items[index] = mutate_value(items[index], data)
        elif kind == "reverse":
            items.reverse()
        else:
            items = []
        return tuple(items)
    if isinstance(value, bytes):
        return data.draw(
            st.one_of(
                st.just(b""),
                st.just(bytes(len(value))),
                st.binary(min_size=len(value), max_size=len(value)),
                st.just(value[:-1]),
                st.just(value + b"\x00"),
            )
        )
    if isinstance(value, int):
        return data.draw(st.sampled_from([0, 1, 2, 4, 5, 6, 2**31, 2**32 - 1, max(0, value - 1), value + 1]))
    if isinstance(value, np.ndarray):
        return data.draw(
            st.sampled_from([value[:-1], np.concatenate([value, value]), value.astype(np.uint64), value[:0]])
        )
    return value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mode=st.sampled_from([SEMI_HONEST, ACTIVE]), phase=st.integers(0, 4), data=st.data())
def test_client_survives_well_formed_lies(mode: str, phase: int, data: st.DataObject) -> None:
    """Field-level lies pass the decoder and reach the protocol checks."""
    # Prepare
    points = checkpoints(mode)
    point = points[phase % len(points)]
    message = wire.decode_any(point.message)
    try:
        lie = wire.encode(mutate_value(message, data))
    except SecAggError:
        assume(False)  # not representable on the wire (or refused by the message's own checks)
        raise
    # Execute / Assert
    step_client(point, lie)


@settings(max_examples=100, deadline=None)
@given(
    mode=st.sampled_from([SEMI_HONEST, ACTIVE]),
    phase=st.integers(0, 4),
    tag=st.sampled_from(sorted(wire.Message._registry)),
    body=st.binary(max_size=300),
)
def test_client_survives_random_bodies_behind_valid_headers(mode: str, phase: int, tag: int, body: bytes) -> None:
    points = checkpoints(mode)
    header = wire.MAGIC + bytes([wire.VERSION]) + tag.to_bytes(2, "big")
    step_client(points[phase % len(points)], header + body)


@pytest.mark.parametrize("mode", [SEMI_HONEST, ACTIVE])
def test_every_truncation_of_every_genuine_message_is_a_decode_error(mode: str) -> None:
    # Prepare
    for point in checkpoints(mode)[:-1]:
        for cut in range(len(point.message)):
            # Execute / Assert: a strict prefix never parses.
            with pytest.raises(DecodeError):
                client_step(
                    point.state,
                    point.message[:cut],
                    input_vector=point.run.inputs[1],
                    identity=point.run.identities.get(1),
                )


@pytest.mark.parametrize("junk", [b"", b"SA", b"\x00" * 64, "text", None, 42])
def test_client_refuses_non_messages(junk: object) -> None:
    point = checkpoints(SEMI_HONEST)[0]
    with pytest.raises(DecodeError):
        client_step(point.state, junk, input_vector=point.run.inputs[1])  # type: ignore[arg-type]


ROUNDS = [Round.ADVERTISE_KEYS, Round.SHARE_KEYS, Round.MASKED_INPUT, Round.UNMASKING]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(round_=st.sampled_from(ROUNDS), steps=st.lists(mutations, min_size=1, max_size=3))
def test_server_survives_a_mutated_client_message(round_: Round, steps: list[tuple[object, ...]]) -> None:
    # Prepare: client 2's message of one round is corrupted in flight.
    inputs = random_inputs(SEMI, 5)

    def corrupt(r: Round, direction: str, client: int, data: bytes) -> bytes:
        return mutate(data, steps) if (r, direction, client) == (round_, "up", 2) else data

    # Execute: only the library's errors may escape.
    try:
        result = run_session(SEMI, inputs, random_bytes=InsecureDeterministicRandom(5), tamper=corrupt)
    except SecAggError:
        return
    # Assert: a corrupted message the server rejected costs only that client.
    if any(client == 2 for client, _ in result.server_rejected):
        assert_exact(SEMI, result.aggregate, inputs, result.included)
        assert result.included >= {1, 3, 4, 5}
