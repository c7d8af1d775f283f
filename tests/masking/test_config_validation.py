"""Unsafe or infeasible settings are refused at setup, with a message naming what is safe."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from secagg.errors import ConfigurationError
from secagg.masking import (
    ACTIVE,
    HARARY,
    SEMI_HONEST,
    ZERO_CONTEXT,
    ClientPhase,
    MaskingConfig,
    Round,
    client_start,
    client_step,
    make_identities,
    run_session,
    server_start,
)
from secagg.masking.config import ConfigRecord
from secagg.primitives.randomness import InsecureDeterministicRandom

from .harness import StepRun, active_setup, assert_exact, random_inputs

IDENTITIES, PUBLIC = make_identities(7, InsecureDeterministicRandom(1))


def config(**overrides: Any) -> MaskingConfig:
    settings: dict[str, Any] = {"num_clients": 7, "threshold": 4, "vector_length": 3, "mode": "semi-honest"}
    settings.update(overrides)
    return MaskingConfig(**settings)


@pytest.mark.parametrize(
    ("overrides", "safe"),
    [
        # t = 1: one neighbour alone could reveal a client's secrets.
        ({"threshold": 1}, "2..6"),
        ({"threshold": 0}, "2..6"),
        # t above the degree: no secret could ever be recovered.
        ({"threshold": 7}, "2..6"),
        ({"graph": HARARY, "degree": 4, "threshold": 5}, "2..4"),
        # Harary degree: even, 2..n-1.
        ({"graph": HARARY, "degree": 3, "threshold": 2}, "even"),
        ({"graph": HARARY, "degree": 0, "threshold": 2}, "2..n-1 = 6"),
        ({"graph": HARARY, "degree": 8, "threshold": 2}, "2..n-1 = 6"),
        ({"degree": 4}, "n - 1 = 6"),
        # active mode needs one identity key per client.
        ({"mode": ACTIVE}, "one Ed25519 identity key per client (7)"),
        ({"mode": ACTIVE, "identity_keys": PUBLIC[:6]}, "one Ed25519 identity key per client (7)"),
        ({"mode": ACTIVE, "identity_keys": (*PUBLIC[:6], b"short")}, "32-byte"),
        ({"identity_keys": PUBLIC}, "only used in active mode"),
        # sizes and names
        ({"vector_length": 0}, "1..2^32-1"),
        ({"vector_length": 1 << 32}, "1..2^32-1"),
        ({"ring_bits": 7}, "b in 8..64"),
        ({"ring_bits": 65}, "b in 8..64"),
        ({"ring_bits": 128}, "b in 8..64"),
        ({"num_clients": 2, "threshold": 2}, "3.."),
        ({"graph": "star"}, "'complete' or 'harary'"),
        ({"mode": "malicious"}, "'semi-honest' or 'active'"),
        ({"corrupt_fraction": 1.0}, "[0, 1)"),
        ({"dropout_fraction": -0.1}, "[0, 1)"),
    ],
)
def test_unsafe_configuration_is_refused(overrides: dict[str, Any], safe: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        config(**overrides)
    assert safe in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "safe"),
    [
        # complete graph, t <= corrupt + 1: a session may complete with t inputs, t - 1 of them corrupt.
        ({"threshold": 2, "corrupt_fraction": 0.2}, 4),
        ({"threshold": 3, "corrupt_fraction": 0.2}, 4),
        ({"graph": HARARY, "degree": 6, "threshold": 2, "corrupt_fraction": 0.3}, None),
        # active mode: two disjoint groups of t responders must be impossible.
        ({"mode": ACTIVE, "identity_keys": PUBLIC, "threshold": 3}, 4),
        ({"mode": ACTIVE, "identity_keys": PUBLIC, "threshold": 4, "corrupt_fraction": 0.2}, 5),
        ({"mode": ACTIVE, "identity_keys": PUBLIC, "graph": HARARY, "degree": 4, "threshold": 2}, 3),
    ],
)
def test_unsafe_threshold_names_a_safe_one(overrides: dict[str, Any], safe: int | None) -> None:
    # Execute
    with pytest.raises(ConfigurationError) as caught:
        config(**overrides)
    # Assert: the message names a threshold, and that threshold is accepted.
    match = re.search(r"t >= (\d+)", str(caught.value))
    assert match is not None, str(caught.value)
    named = int(match.group(1))
    assert safe is None or named == safe
    accepted = config(**{**overrides, "threshold": named})
    assert accepted.threshold == named


@pytest.mark.parametrize(
    "overrides",
    [
        {"threshold": 2},
        {"threshold": 6},
        {"threshold": 4, "corrupt_fraction": 0.2},
        {"mode": ACTIVE, "identity_keys": PUBLIC, "threshold": 4},
        {"graph": HARARY, "degree": 4, "threshold": 3},
        {"graph": HARARY, "degree": 6, "threshold": 2},
        {"mode": ACTIVE, "identity_keys": PUBLIC, "graph": HARARY, "degree": 4, "threshold": 3},
        {"ring_bits": 64, "vector_length": 1},
    ],
)
def test_boundary_configurations_are_accepted(overrides: dict[str, Any]) -> None:
    made = config(**overrides)
    assert MaskingConfig.from_record(made.record()).digest() == made.digest()


def test_complete_graph_degree_is_n_minus_one() -> None:
    assert config().degree == 6 and config(degree=6).degree == 6


@pytest.mark.parametrize("corrupt_fraction", [0.0, 0.1, 0.25])
def test_secagg_active_default_threshold_is_the_smallest_safe_one(corrupt_fraction: float) -> None:
    for n in range(4, 25):
        _, public = make_identities(n, InsecureDeterministicRandom(n))
        settings: dict[str, Any] = {"mode": ACTIVE, "identity_keys": public, "corrupt_fraction": corrupt_fraction}
        made = MaskingConfig.secagg(num_clients=n, vector_length=2, **settings)
        # t = 1 is refused by the t >= 2 floor, with its own message.
        expected = f"t >= {made.threshold}" if made.threshold > 2 else "threshold must be in 2"
        with pytest.raises(ConfigurationError, match=expected):
            MaskingConfig.secagg(num_clients=n, vector_length=2, threshold=made.threshold - 1, **settings)


def test_secagg_plus_gives_a_valid_sparse_graph_that_aggregates_exactly() -> None:
    # Prepare
    made = MaskingConfig.secagg_plus(num_clients=30, vector_length=5, dropout_fraction=0.1, complete_up_to=0,
                                     mode="semi-honest")
    assert made.graph == HARARY and made.degree < 29
    inputs = random_inputs(made, 30)
    # Execute: one client drops at every round.
    dropouts = {1: Round.ADVERTISE_KEYS, 2: Round.SHARE_KEYS, 3: Round.MASKED_INPUT, 4: Round.UNMASKING}
    result = run_session(made, inputs, dropouts, random_bytes=InsecureDeterministicRandom(30))
    # Assert
    assert result.included == frozenset(range(4, 31))
    assert_exact(made, result.aggregate, inputs, result.included)


def test_config_record_with_unknown_codes_is_refused() -> None:
    record = config().record()
    for bad in ({"graph": 7}, {"mode": 9}):
        fields = {**record.__dict__, **bad}
        with pytest.raises(ConfigurationError):
            MaskingConfig.from_record(ConfigRecord(**fields))


def test_config_digest_binds_every_operative_parameter() -> None:
    base = config()
    variants = [
        config(threshold=5),
        config(vector_length=4),
        config(ring_bits=64),
        config(graph=HARARY, degree=6, threshold=4),
        config(mode=ACTIVE, identity_keys=PUBLIC),
        config(num_clients=8),
    ]
    digests = {base.digest(), *(v.digest() for v in variants)}
    assert len(digests) == len(variants) + 1


# --- Party setup ------------------------------------------------------------------------------


def test_active_client_needs_its_own_identity_key() -> None:
    active, identities = active_setup(5, 3)
    with pytest.raises(ConfigurationError, match="identity"):
        client_start(active, 1, context=ZERO_CONTEXT)
    with pytest.raises(ConfigurationError, match="does not match"):
        client_start(active, 1, context=ZERO_CONTEXT, identity=identities[2])


@pytest.mark.parametrize("client", [0, 8, -1])
def test_client_id_outside_the_roster(client: int) -> None:
    with pytest.raises(ConfigurationError, match=r"1\.\.7"):
        client_start(config(), client)


@pytest.mark.parametrize("context", [b"", bytes(31), bytes(33)])
def test_round_context_must_be_32_bytes(context: bytes) -> None:
    with pytest.raises(ConfigurationError, match="32 bytes"):
        client_start(config(), 1, context=context)
    with pytest.raises(ConfigurationError, match="32 bytes"):
        server_start(config(), context=context)


def test_run_session_active_mode_needs_identities() -> None:
    active, _ = active_setup(5, 3)
    with pytest.raises(ConfigurationError, match="identity"):
        run_session(active, random_inputs(active, 1))


@pytest.mark.parametrize("missing", [[1], [7], [1, 2, 3, 4, 5, 6, 7]])
def test_run_session_needs_one_input_per_client(missing: list[int]) -> None:
    inputs = {c: v for c, v in random_inputs(config(), 1).items() if c not in missing}
    with pytest.raises(ConfigurationError, match=r"1\.\.7"):
        run_session(config(), inputs)


@pytest.mark.parametrize(
    "bad_input",
    [
        np.zeros(4, dtype=np.uint32),  # wrong length
        np.zeros(3, dtype=np.uint64),  # wrong ring
    ],
    ids=["wrong-length", "wrong-ring"],
)
def test_run_session_refuses_a_malformed_input_at_setup(bad_input: np.ndarray) -> None:
    """A caller's wrong input vector is a configuration error to report before any
    key is made, not a silent dropout: today client 2 generates and shares its
    keys, then aborts at MaskedInput inside the driver, and run_session returns
    an aggregate that quietly leaves client 2's data out."""
    # Prepare
    inputs = random_inputs(config(), 2)
    inputs[2] = bad_input
    # Execute / Assert
    with pytest.raises(ConfigurationError, match="client 2"):
        run_session(config(), inputs)


def test_masked_input_step_refuses_a_wrong_vector() -> None:
    # The state machine itself (what a transport calls) raises ConfigurationError.
    run = StepRun(config(), seed=2)
    run.inputs[1] = np.zeros(5, dtype=np.uint32)
    run.run_until(ClientPhase.AWAIT_SHARES)
    with pytest.raises(ConfigurationError, match="length"):
        run.step(1, run.pending[1])


def test_masked_input_step_needs_the_input() -> None:
    run = StepRun(config(), seed=2)
    run.run_until(ClientPhase.AWAIT_SHARES)
    with pytest.raises(ConfigurationError, match="input vector"):
        client_step(run.states[1], run.pending[1])


def test_constructors_default_to_active_mode_and_take_semi_honest_only_by_name() -> None:
    # The safe mode is the default: with identity keys the constructors build an active configuration ...
    _, public = make_identities(5, InsecureDeterministicRandom(5))
    for made in (MaskingConfig.secagg(5, 2, identity_keys=public),
                 MaskingConfig.secagg_plus(5, 2, identity_keys=public)):
        assert made.mode == ACTIVE and made.guarantee.lying_server
    # ... without them they refuse rather than fall back to semi-honest silently ...
    for build in (MaskingConfig.secagg, MaskingConfig.secagg_plus):
        with pytest.raises(ConfigurationError, match=r"identity_keys.*mode='semi-honest'"):
            build(5, 2)
    # ... and so does the dataclass itself
    assert MaskingConfig(num_clients=5, threshold=4, vector_length=2, identity_keys=public).mode == ACTIVE
    with pytest.raises(ConfigurationError, match=r"identity key per client \(5\), got 0.*mode='semi-honest'"):
        MaskingConfig(num_clients=5, threshold=4, vector_length=2)
    # ... and semi-honest is taken by name, its guarantee line saying what it gives up
    weaker = MaskingConfig.secagg(5, 2, mode=SEMI_HONEST)
    assert weaker.mode == SEMI_HONEST and "does NOT resist a server that lies" in str(weaker.guarantee)


def test_a_harary_threshold_one_above_the_surviving_neighbour_quantile_is_refused() -> None:
    # n = 40, k = 20, 5% dropouts: 18 neighbours survive with probability 1 - 2^-20/n
    settings: dict[str, Any] = {"num_clients": 40, "vector_length": 4, "graph": "harary", "degree": 20,
                                "mode": "semi-honest", "dropout_fraction": 0.05}
    assert MaskingConfig(threshold=18, **settings).threshold == 18  # control: at the quantile
    with pytest.raises(ConfigurationError, match="threshold 19 exceeds the 18 neighbours that survive"):
        MaskingConfig(threshold=19, **settings)
