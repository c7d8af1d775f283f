"""ClientState through the wire format: a transport may store it between messages."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg import wire
from secagg.errors import DecodeError, SecAggError
from secagg.masking import ACTIVE, HARARY, SEMI_HONEST, ClientPhase, ClientState, MaskingConfig, Round
from secagg.masking.server import ServerPhase

from .harness import StepRun, active_setup, assert_exact

SEMI = MaskingConfig(num_clients=6, threshold=3, vector_length=7, mode="semi-honest")
HARARY_CONFIG = MaskingConfig(
    num_clients=9, threshold=3, vector_length=7, graph=HARARY, degree=4, ring_bits=64, mode="semi-honest"
)


def make_run(mode: str, *, reparse: bool = False, config: MaskingConfig = SEMI) -> StepRun:
    if mode == ACTIVE:
        active, identities = active_setup(6, 4, vector_length=7)
        return StepRun(active, identities=identities, seed=12, reparse=reparse)
    return StepRun(config, seed=12, reparse=reparse)


def states_at_every_phase(run: StepRun) -> list[ClientState]:
    states = list(run.states.values())
    while run.server.phase != ServerPhase.DONE:
        if run.pending:
            run.to_clients()
            states += run.states.values()
        run.to_server()
    return states


@pytest.mark.parametrize("mode", [SEMI_HONEST, ACTIVE])
def test_round_trip_at_every_phase(mode: str) -> None:
    # Prepare
    states = states_at_every_phase(make_run(mode))
    phases = {ClientPhase(s.phase) for s in states}
    expected = set(ClientPhase) if mode == ACTIVE else set(ClientPhase) - {ClientPhase.AWAIT_SURVIVORS}
    assert phases == expected
    for state in states:
        # Execute
        data = state.to_bytes()
        parsed = ClientState.from_bytes(data)
        # Assert: equal value, canonical bytes
        assert parsed == state
        assert parsed.to_bytes() == data


@pytest.mark.parametrize(
    ("mode", "config", "dropouts"),
    [
        (SEMI_HONEST, SEMI, {}),
        (SEMI_HONEST, SEMI, {2: Round.MASKED_INPUT, 5: Round.UNMASKING}),
        (SEMI_HONEST, HARARY_CONFIG, {7: Round.MASKED_INPUT}),
        (ACTIVE, SEMI, {3: Round.MASKED_INPUT}),
    ],
)
def test_stored_and_reloaded_states_give_the_same_session(
    mode: str, config: MaskingConfig, dropouts: dict[int, Round]
) -> None:
    """Two runs from the same seed, one re-parsing every state before every step:
    every message and the aggregate are identical, and the aggregate is exact."""
    runs = [make_run(mode, reparse=reparse, config=config) for reparse in (False, True)]
    for run in runs:
        # Execute: the same dropout schedule in both runs.
        while run.server.phase != ServerPhase.DONE:
            round_ = Round(int(run.server.phase))
            uploads = {c: m for c, m in run.uploads.items() if dropouts.get(c, len(Round)) > round_}
            run.to_server(uploads)
            if run.pending:
                next_round = Round(int(run.server.phase))
                run.to_clients(skip=[c for c, r in dropouts.items() if r <= next_round])
    plain, reloaded = runs
    # Assert
    assert reloaded.sent == plain.sent
    assert plain.server.result is not None and reloaded.server.result is not None
    assert reloaded.server.result.included == plain.server.result.included
    assert reloaded.server.result.aggregate.tobytes() == plain.server.result.aggregate.tobytes()
    assert_exact(plain.config, reloaded.server.result.aggregate, plain.inputs, plain.server.result.included)


def test_state_bytes_are_not_a_protocol_message_and_vice_versa() -> None:
    run = make_run(SEMI_HONEST)
    with pytest.raises(DecodeError):
        ClientState.from_bytes(run.sent[1][0])  # an AdvertiseKeys


def test_unknown_phase_is_refused() -> None:
    # Prepare: the phase byte follows the envelope, the config record, client id and context.
    state = make_run(SEMI_HONEST).states[1]
    data = bytearray(state.to_bytes())
    record: wire.Parts = []
    state.config._encode_body(record)
    index = wire.HEADER_SIZE + len(b"".join(record)) + 4 + len(state.context)
    assert data[index] == ClientPhase.AWAIT_ROSTER
    data[index] = 9
    # Execute / Assert
    with pytest.raises(DecodeError, match="phase"):
        ClientState.from_bytes(bytes(data))


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(0, 10_000), index=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_corrupted_state_bytes_raise_only_library_errors(cut: int, index: int, bit: int) -> None:
    state = STORED_STATES[index % len(STORED_STATES)]
    data = bytearray(state.to_bytes())
    data[index % len(data)] ^= 1 << bit
    for candidate in (bytes(data), bytes(data[: cut % len(data)])):
        with contextlib.suppress(SecAggError):
            ClientState.from_bytes(candidate).masking_config  # noqa: B018 - the property validates the config


def test_repr_hides_secrets() -> None:
    state = make_run(SEMI_HONEST).states[1]
    text = repr(state)
    assert state.mask_private.hex() not in text and state.encryption_private.hex() not in text
    assert "client=1" in text


def test_state_reports_its_config() -> None:
    state = make_run(ACTIVE).states[1]
    config = state.masking_config
    assert (config.num_clients, config.threshold, config.mode) == (6, 4, ACTIVE)
    assert wire.decode(state.to_bytes(), ClientState) == state


STORED_STATES = states_at_every_phase(make_run(SEMI_HONEST))[::5]
