"""Exactness and threshold behaviour of whole sessions under random dropouts.

For random n, t, graph, mode, ring, inputs and dropout schedules, ``run_session``
must either return the exact ring sum of the inputs of ``result.included`` or
raise ThresholdError, and which of the two happens is predicted by an oracle
(tests/masking/harness.py:predict) written from the protocol's rules, not from
the library's code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from secagg.errors import ConfigurationError, ThresholdError
from secagg.masking import (
    ACTIVE,
    COMPLETE,
    HARARY,
    SEMI_HONEST,
    ZERO_CONTEXT,
    MaskingConfig,
    Round,
    SessionResult,
    make_identities,
    run_session,
)
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.primitives.signing import placeholder_public_keys

from .harness import NEVER, assert_exact, predict, random_inputs, session_neighbours


@dataclass(frozen=True)
class Scenario:
    """One drawn session: parameters, inputs seed and dropout schedule."""

    num_clients: int
    threshold: int
    degree: int
    graph: str
    mode: str
    ring_bits: int
    vector_length: int
    seed: int
    dropouts: dict[int, Round]


def lowest_threshold(num_clients: int, graph: str, degree: int, mode: str) -> int:
    """The smallest threshold the configuration accepts (active mode needs a majority)."""
    dummy_keys = placeholder_public_keys(num_clients) if mode == ACTIVE else ()
    for threshold in range(2, degree + 1):
        try:
            MaskingConfig(
                num_clients=num_clients,
                threshold=threshold,
                vector_length=1,
                graph=graph,
                degree=degree if graph == HARARY else 0,
                mode=mode,
                identity_keys=dummy_keys,
            )
        except ConfigurationError:
            continue
        return threshold
    raise AssertionError(f"no valid threshold for n={num_clients}, k={degree}, {mode}")


WORD_OR_NARROW = st.one_of(st.sampled_from([32, 64]), st.integers(8, 64))
"""The ring of a drawn session: the word rings often, any b in 8..64 as often."""


@st.composite
def scenarios(
    draw: st.DrawFn, graph: str, max_clients: int = 40, rings: st.SearchStrategy[int] = WORD_OR_NARROW
) -> Scenario:
    n = draw(st.integers(3, max_clients))
    degree = n - 1 if graph == COMPLETE else 2 * draw(st.integers(1, (n - 1) // 2))
    mode = draw(st.sampled_from([SEMI_HONEST, ACTIVE]))
    threshold = draw(st.integers(lowest_threshold(n, graph, degree, mode), degree))
    dropouts = draw(st.dictionaries(st.integers(1, n), st.sampled_from(list(Round)), max_size=n))
    return Scenario(
        num_clients=n,
        threshold=threshold,
        degree=degree,
        graph=graph,
        mode=mode,
        ring_bits=draw(rings),
        vector_length=draw(st.integers(1, 20)),
        seed=draw(st.integers(0, 2**32 - 1)),
        dropouts=dropouts,
    )


@dataclass(frozen=True)
class Outcome:
    """What a run gave, and what the oracle predicts for it."""

    config: MaskingConfig
    inputs: dict[int, np.ndarray]
    result: SessionResult | None
    error: ThresholdError | None
    needed: frozenset[int] | None
    strict: frozenset[int] | None


def run(scenario: Scenario) -> Outcome:
    identities, public = {}, ()
    if scenario.mode == ACTIVE:
        identities, public = make_identities(scenario.num_clients, InsecureDeterministicRandom(scenario.seed + 1))
    config = MaskingConfig(
        num_clients=scenario.num_clients,
        threshold=scenario.threshold,
        vector_length=scenario.vector_length,
        graph=scenario.graph,
        degree=scenario.degree if scenario.graph == HARARY else 0,
        ring_bits=scenario.ring_bits,
        mode=scenario.mode,
        identity_keys=public,
    )
    inputs = random_inputs(config, scenario.seed)
    # A context per example, so the property sees many Harary permutations.
    context = scenario.seed.to_bytes(32, "big")
    result, error = None, None
    try:
        result = run_session(
            config,
            inputs,
            scenario.dropouts,
            identities=identities or None,
            random_bytes=InsecureDeterministicRandom(scenario.seed),
            context=context,
            record_transcript=False,
        )
    except ThresholdError as exc:
        error = exc
    neighbours = session_neighbours(config, context)
    return Outcome(
        config=config,
        inputs=inputs,
        result=result,
        error=error,
        needed=predict(config, scenario.dropouts, neighbours),
        strict=predict(config, scenario.dropouts, neighbours, strict=True),
    )


def check_complete(scenario: Scenario) -> Outcome:
    # Execute
    outcome = run(scenario)
    # Assert: on the complete graph the oracle is exact.
    assert outcome.needed == outcome.strict  # every survivor masks with every dropped sharer
    if outcome.needed is None:
        assert outcome.error is not None, "the threshold is not met, yet the session returned an aggregate"
        return outcome
    assert outcome.error is None, f"the threshold is met, yet: {outcome.error}"
    assert outcome.result is not None
    assert outcome.result.included == outcome.needed
    stayed = {c for c in range(1, scenario.num_clients + 1) if scenario.dropouts.get(c, NEVER) > Round.MASKED_INPUT}
    assert outcome.result.included == stayed
    assert outcome.result.client_errors == {}
    assert_exact(outcome.config, outcome.result.aggregate, outcome.inputs, outcome.result.included)
    return outcome


def check_harary(scenario: Scenario) -> Outcome:
    # Execute
    outcome = run(scenario)
    # Assert: success => exact with the predicted clients; an unmet threshold => ThresholdError.
    # (test_harary_dropped_key_nobody_needs pins the one gap between `needed` and `strict`.)
    if outcome.error is not None:
        assert outcome.strict is None, f"ThresholdError although every secret is recoverable: {outcome.error}"
        return outcome
    assert outcome.result is not None
    assert outcome.needed is not None, "the threshold is not met, yet the session returned an aggregate"
    assert outcome.result.included == outcome.needed
    assert all(isinstance(e, ThresholdError) for e in outcome.result.client_errors.values())
    assert_exact(outcome.config, outcome.result.aggregate, outcome.inputs, outcome.result.included)
    return outcome


def record(outcome: Outcome) -> None:
    """Hypothesis statistics: both outcomes must be exercised."""
    event("aborted" if outcome.error else "aggregated")
    if outcome.needed != outcome.strict:
        event("a dropped key nobody needs")


FAST = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(scenarios(COMPLETE))
def test_complete_graph_is_exact_or_below_threshold(scenario: Scenario) -> None:
    record(check_complete(scenario))


@FAST
@given(scenarios(HARARY))
def test_harary_graph_is_exact_or_below_threshold(scenario: Scenario) -> None:
    record(check_harary(scenario))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([COMPLETE, HARARY]).flatmap(lambda graph: scenarios(graph, 8, st.integers(8, 64))))
def test_narrow_ring_sessions_sum_exactly_mod_2_to_the_b(scenario: Scenario) -> None:
    """Z_(2^b) for random b in 8..64, small n and d, random dropouts: the aggregate is the
    sum of the included inputs mod 2^b (every value < 2^b), or the threshold is not met."""
    outcome = check_complete(scenario) if scenario.graph == COMPLETE else check_harary(scenario)
    record(outcome)
    if outcome.result is not None:
        aggregate = outcome.result.aggregate
        assert aggregate.size == 0 or int(aggregate.max()) < 1 << scenario.ring_bits
        event(f"b {'< 32' if scenario.ring_bits < 32 else '> 32' if scenario.ring_bits > 32 else '= 32'}")


@pytest.mark.slow
@SLOW
@given(scenarios(COMPLETE))
def test_complete_graph_many_examples(scenario: Scenario) -> None:
    record(check_complete(scenario))


@pytest.mark.slow
@SLOW
@given(scenarios(HARARY))
def test_harary_graph_many_examples(scenario: Scenario) -> None:
    record(check_harary(scenario))


@pytest.mark.parametrize(
    ("dropouts", "expect_abort"),
    [
        # n = 7, t = 4 on the complete graph, each client holding a share of its own seed
        # (spec 12.8): n - t = 3 dropouts at any rounds complete, a fourth aborts.
        ({1: Round.ADVERTISE_KEYS, 2: Round.ADVERTISE_KEYS, 3: Round.ADVERTISE_KEYS}, False),  # 4 = t advertise
        ({1: Round.ADVERTISE_KEYS, 2: Round.ADVERTISE_KEYS, 3: Round.ADVERTISE_KEYS, 4: Round.ADVERTISE_KEYS}, True),
        ({1: Round.SHARE_KEYS, 2: Round.SHARE_KEYS, 3: Round.SHARE_KEYS}, False),  # 4 = t share
        ({1: Round.SHARE_KEYS, 2: Round.ADVERTISE_KEYS, 3: Round.SHARE_KEYS, 4: Round.SHARE_KEYS}, True),
        ({1: Round.MASKED_INPUT, 2: Round.MASKED_INPUT, 3: Round.MASKED_INPUT, 4: Round.MASKED_INPUT}, True),
        ({1: Round.MASKED_INPUT, 2: Round.MASKED_INPUT, 3: Round.MASKED_INPUT}, False),  # owner 4: 3 + its own
        ({1: Round.MASKED_INPUT, 2: Round.UNMASKING, 3: Round.UNMASKING}, False),  # owner 2: 4 responders
        ({1: Round.UNMASKING, 2: Round.UNMASKING, 3: Round.UNMASKING, 4: Round.UNMASKING}, True),  # owner 4: 3
        ({1: Round.UNMASKING, 2: Round.UNMASKING, 3: Round.UNMASKING}, False),  # owner 3: 4 responding neighbours
    ],
)
def test_complete_graph_threshold_boundaries(dropouts: dict[int, Round], expect_abort: bool) -> None:
    # Prepare
    scenario = Scenario(7, 4, 6, COMPLETE, SEMI_HONEST, 32, 5, 2024, dropouts)
    # Execute / Assert: the library agrees with the oracle ...
    outcome = check_complete(scenario)
    # ... and the oracle with the hand-computed expectation.
    assert (outcome.needed is None) == expect_abort


def test_harary_dropped_key_nobody_needs() -> None:
    """A sharer that dropped before MaskedInput, none of whose neighbours survived,
    has no pairwise mask left in the aggregate: the server must not need its key.

    Harary k = 4, t = 2, n = 10 on the session's ring order o0..o9: o9 and o1 drop
    at ShareKeys; o8, o0 and o2 at MaskedInput. Every secret that must be
    recovered has t responding neighbours, but o0 (all four neighbours gone) has
    none, and nobody masked with o0.
    """
    # Prepare: the graph depends on the session id, i.e. on the config and the context.
    n, seed = 10, 7
    config = MaskingConfig(num_clients=n, threshold=2, vector_length=3, graph=HARARY, degree=4, mode="semi-honest")
    neighbours = session_neighbours(config, ZERO_CONTEXT)
    # Walk the ring: on H(4, n) a node shares two neighbours with the nodes at
    # distance 1 and only one with those at distance 2.
    o = [1]
    while len(o) < n:
        o.append(next(v for v in sorted(neighbours(o[-1]) - set(o)) if len(neighbours(v) & neighbours(o[-1])) == 2))
    dropouts = {o[9]: Round.SHARE_KEYS, o[1]: Round.SHARE_KEYS}
    dropouts |= {o[8]: Round.MASKED_INPUT, o[0]: Round.MASKED_INPUT, o[2]: Round.MASKED_INPUT}
    assert neighbours(o[0]) == {o[8], o[9], o[1], o[2]}
    expected = predict(config, dropouts, neighbours)
    assert expected == frozenset(o[3:8])
    inputs = random_inputs(config, seed)
    # Execute
    result = run_session(config, inputs, dropouts, context=ZERO_CONTEXT, random_bytes=InsecureDeterministicRandom(seed))
    # Assert
    assert result.included == expected
    assert_exact(config, result.aggregate, inputs, expected)
