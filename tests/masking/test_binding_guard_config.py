"""Binding guard, protocol level: every field of MaskingConfig and every other value a client
takes, split between two clients, fails the session for the client that holds the other value.

For each field of :class:`~secagg.masking.MaskingConfig` (introspected: a field added later
fails :func:`test_every_config_field_has_a_split` until this table says how to vary it) a
second valid value is derived; client 1 runs under it, the server and the other clients under
the base; :func:`~tests.masking.split_session.assert_split_fails` asserts client 1 is refused at
setup or key agreement with a reason and the session halts or completes with the exact sum of
the others. The same holds for every argument of ``client_start`` and ``client_step`` that is
not the config (introspected too): the round context, the client id, the identity key and the
input vector's length, dtype and ring.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from secagg.errors import ConfigurationError
from secagg.masking import (
    ACTIVE,
    HARARY,
    SEMI_HONEST,
    ZERO_CONTEXT,
    MaskingConfig,
    client_start,
    client_step,
)

from .binding_guard import assert_listed, assert_split_fails_the_session, field_names, parameter_names
from .split_session import (
    IDENTITIES,
    IDENTITY_KEYS,
    TARGET,
    assert_split_fails,
    input_for,
    keys_for,
    refusal_reasons,
    split_session,
)

MODES = (SEMI_HONEST, ACTIVE)
DESCRIPTOR = bytes(range(32))


def complete(mode: str) -> MaskingConfig:
    """5 clients on the complete graph (semi-honest t = 3, active t = 4; c = 1): one refused client leaves enough."""
    return MaskingConfig.secagg(5, 2, mode=mode, identity_keys=keys_for(mode, 5), descriptor=DESCRIPTOR)


def harary(mode: str, threshold: int = 3) -> MaskingConfig:
    """7 clients on a Harary graph of degree 4 (where degree and dropout fraction are operative)."""
    return MaskingConfig(
        num_clients=7, threshold=threshold, vector_length=2, graph=HARARY, degree=4, mode=mode,
        identity_keys=keys_for(mode, 7), descriptor=DESCRIPTOR,
    )  # fmt: skip


def first_valid(base: MaskingConfig, *candidates: dict[str, Any]) -> MaskingConfig:
    """``base`` with the first of ``candidates`` that makes a valid config (the others are refused)."""
    for changes in candidates:
        try:
            return dataclasses.replace(base, **changes)
        except ConfigurationError:
            continue
    raise AssertionError(f"no candidate is valid for {base}")


@dataclasses.dataclass(frozen=True)
class Split:
    """How to split one field: the base config of a mode, and a config with another valid value."""

    base: Callable[[str], MaskingConfig]
    other: Callable[[MaskingConfig], MaskingConfig]
    modes: tuple[str, ...] = MODES


def _other_identity(base: MaskingConfig) -> MaskingConfig:
    keys = list(base.identity_keys)
    keys[1] = IDENTITY_KEYS[-1]  # client 1 is told another key for client 2
    return dataclasses.replace(base, identity_keys=tuple(keys))


def _other_mode(base: MaskingConfig) -> MaskingConfig:
    if base.mode == ACTIVE:
        return first_valid(base, {"mode": SEMI_HONEST, "identity_keys": ()})
    return first_valid(base, *({"mode": ACTIVE, "identity_keys": keys_for(ACTIVE, 5), "threshold": t} for t in (3, 4)))


# Every field of MaskingConfig: how to give client 1 another valid value.
CONFIG_SPLITS: dict[str, Split] = {
    "num_clients": Split(
        complete,
        lambda b: first_valid(
            b,
            *(
                {"num_clients": 6, "degree": 0, "identity_keys": keys_for(b.mode, 6), "corrupt_fraction": f}
                for f in (b.corrupt_fraction, 1 / 6)
            ),
        ),
    ),
    "threshold": Split(
        complete,
        lambda b: first_valid(
            b,
            *({"threshold": t} for t in range(2, 5) if t != b.threshold),
            *({"threshold": t, "corrupt_fraction": 0.0} for t in range(2, 5) if t != b.threshold),
        ),
    ),
    "vector_length": Split(complete, lambda b: dataclasses.replace(b, vector_length=3)),
    "graph": Split(complete, lambda b: dataclasses.replace(b, graph=HARARY, degree=4)),
    "degree": Split(lambda mode: harary(mode, 4), lambda b: dataclasses.replace(b, degree=6)),
    "ring_bits": Split(complete, lambda b: dataclasses.replace(b, ring_bits=16)),
    "mode": Split(complete, _other_mode),
    "identity_keys": Split(complete, _other_identity, modes=(ACTIVE,)),  # semi-honest: none (refused)
    "corrupt_fraction": Split(complete, lambda b: dataclasses.replace(b, corrupt_fraction=0.0)),
    # Operative on a Harary graph (the declared dropouts size t there); on the complete graph the
    # record binds the computed n - t instead (test_a_complete_graphs_dropout_fraction_is_not_operative).
    "dropout_fraction": Split(harary, lambda b: dataclasses.replace(b, dropout_fraction=1 / 7)),
    "descriptor": Split(complete, lambda b: dataclasses.replace(b, descriptor=bytes(32))),
}


def test_every_config_field_has_a_split() -> None:
    assert_listed(field_names(MaskingConfig), CONFIG_SPLITS)


CASES = [(name, mode) for name, split in sorted(CONFIG_SPLITS.items()) for mode in split.modes]


@pytest.mark.parametrize(("field", "mode"), CASES)
def test_a_config_field_split_between_two_clients_fails_the_session(field: str, mode: str) -> None:
    # Prepare: the base config and one with another valid value of the field
    split = CONFIG_SPLITS[field]
    base = split.base(mode)
    other = split.other(base)
    assert getattr(other, field) != getattr(base, field)
    # Execute / Assert: client 1 under the other value, everyone else and the server under the base:
    # client 1 is refused at setup or key agreement, saying so; no wrong sum; the control completes
    outcome = assert_split_fails_the_session(field, base, other)
    reasons = " ".join(refusal_reasons(outcome))
    assert any(words in reasons for words in ("another setup", "another session", "not a neighbour", "semi-honest"))


def test_semi_honest_identity_keys_have_no_second_valid_value() -> None:
    with pytest.raises(ConfigurationError, match="only used in active mode"):
        dataclasses.replace(complete(SEMI_HONEST), identity_keys=keys_for(ACTIVE, 5))


def test_a_complete_graphs_dropout_fraction_is_not_operative() -> None:
    # On the complete graph the record binds the computed tolerance n - t, not the declared
    # fraction (any fraction the threshold allows gives one record); every party, the clients
    # included (ClientState keeps the record only), acts on the record alone.
    base = complete(SEMI_HONEST)
    other = dataclasses.replace(base, dropout_fraction=2 / 5)
    assert other.record() == base.record() and other.guarantee == base.guarantee
    assert MaskingConfig.from_record(other.record()).record() == base.record()
    with pytest.raises(ConfigurationError, match="tolerates"):
        dataclasses.replace(base, dropout_fraction=3 / 5)


# --- every other value a client takes ------------------------------------------------------


def _other_context(base: MaskingConfig) -> dict[str, Any]:
    return {"contexts": {TARGET: bytes([1]) * 32}, "server_context": ZERO_CONTEXT}


def _other_identity_key(base: MaskingConfig) -> dict[str, Any]:
    return {"identities": {TARGET: IDENTITIES[2]}}


def _other_client_id(base: MaskingConfig) -> dict[str, Any]:
    return {"start_ids": {TARGET: 2}}


def _wrong_inputs(make: Callable[[MaskingConfig], np.ndarray]) -> Callable[[MaskingConfig], dict[str, Any]]:
    def options(base: MaskingConfig) -> dict[str, Any]:
        inputs = {c: input_for(base, c) for c in range(1, base.num_clients + 1)}
        return {"inputs": inputs | {TARGET: make(base)}}

    return options


# Every argument of client_start and client_step: a split of it (run options), or why it is no setup value.
SESSION_VALUES: dict[str, Callable[[MaskingConfig], dict[str, Any]] | str] = {
    "config": "every field: CONFIG_SPLITS",
    "client_id": _other_client_id,
    "context": _other_context,
    "identity": _other_identity_key,  # another client's key; semi-honest: any key
    "random_bytes": "the client's own secret randomness (keys, masks, shares): no value to agree on",
    "state": "the client's own state (it holds the config record and context it started with)",
    "inbound": "the server's message: checked against the session id, round and recipient",
}
INPUT_SPLITS: dict[str, Callable[[MaskingConfig], dict[str, Any]]] = {
    "length": _wrong_inputs(lambda b: np.zeros(b.vector_length + 1, dtype=b.ring.dtype)),
    "dtype": _wrong_inputs(lambda b: np.zeros(b.vector_length, dtype=np.uint64)),
    "signed dtype": _wrong_inputs(lambda b: np.zeros(b.vector_length, dtype=np.int32)),
    "float dtype": _wrong_inputs(lambda b: np.zeros(b.vector_length, dtype=np.float64)),
    "beyond a narrow ring": _wrong_inputs(lambda b: np.full(b.vector_length, 1 << 16, dtype=b.ring.dtype)),
}


def test_every_client_argument_is_listed() -> None:
    assert_listed(parameter_names(client_start) | parameter_names(client_step), {*SESSION_VALUES, "input_vector"})


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("value", sorted(name for name, how in SESSION_VALUES.items() if callable(how)))
def test_a_session_value_split_fails_the_session(value: str, mode: str) -> None:
    # Prepare
    base = complete(mode)
    how = SESSION_VALUES[value]
    assert callable(how)
    # Execute: client 1 with another context / believing it has another id
    outcome = split_session(base, base, **how(base))
    # Assert
    assert_split_fails(outcome, base)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(INPUT_SPLITS))
def test_an_input_vector_of_another_shape_is_refused_by_its_client(case: str, mode: str) -> None:
    # Prepare: a 16-bit ring, so a value of 2^16 is no ring element
    base = dataclasses.replace(complete(mode), ring_bits=16)
    # Execute: client 1's own input has another length, dtype or range than the bound config says
    outcome = split_session(base, base, **INPUT_SPLITS[case](base))
    # Assert: it refuses (a library error, before its masked input exists); the others' sum is exact
    assert_split_fails(outcome, base, at_setup=False)
    assert any("input vector" in reason for reason in refusal_reasons(outcome))
