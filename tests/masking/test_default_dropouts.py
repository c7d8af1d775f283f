"""Issue 14, item 1: the default configurations survive the dropouts hospitals have.

- n in {3, 4, 5, 10}: every session completes, exactly, when any one hospital drops at
  any one round (exhaustive over hospital x round, both modes). n = 3 (t = 2) needs
  the self-held seed share of the complete graph (spec 12.8): a survivor's seed has
  its own share and the other survivor's; a second dropout aborts, and the abort
  names both hospitals that dropped.
- n in {20, 100}: 10% of n (rounded down, at least one) dropping at each of the
  four stages (ceil(0.4 n) is what the defaults plan for over a session); at
  least 99% of the sessions complete exactly (a small seeded sample here: 100
  sessions at n = 20 and 6 at n = 100 in the slow suite; `secagg bench dropouts
  --full` runs 40 at n = 100, docs/benchmarks.md).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from secagg.errors import ConfigurationError, ThresholdError
from secagg.masking import ACTIVE, SEMI_HONEST, MaskingConfig, Round, make_identities, run_session
from secagg.masking.parameters import DROPOUT_STAGES
from secagg.primitives.randomness import InsecureDeterministicRandom
from tests.masking.harness import assert_exact, random_inputs

MODES = (SEMI_HONEST, ACTIVE)


def default_config(num_clients: int, mode: str, seed: int = 7) -> tuple[MaskingConfig, dict]:
    identities, public = make_identities(num_clients, InsecureDeterministicRandom(seed))
    keys = public if mode == ACTIVE else ()
    config = MaskingConfig.secagg_plus(num_clients, 3, mode=mode, identity_keys=keys)
    return config, (identities if mode == ACTIVE else {})


def run(config: MaskingConfig, identities: dict, dropouts: dict[int, Round], seed: int) -> None:
    """One session; it must complete with exactly the clients that sent a masked input."""
    inputs = random_inputs(config, seed)
    result = run_session(
        config, inputs, dropouts, identities=identities or None, random_bytes=InsecureDeterministicRandom(seed)
    )
    expected = frozenset(c for c in inputs if dropouts.get(c, Round.UNMASKING + 1) > Round.MASKED_INPUT)
    assert result.included == expected
    assert_exact(config, result.aggregate, inputs, expected)


def rounds_of(config: MaskingConfig) -> list[Round]:
    return [r for r in Round if config.mode == ACTIVE or r != Round.CONSISTENCY_CHECK]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("num_clients", [3, 4, 5, 10])
def test_any_one_hospital_may_drop_at_any_one_round(num_clients: int, mode: str) -> None:
    # Prepare
    config, identities = default_config(num_clients, mode)
    assert config.guarantee.dropouts >= 1

    # Act / Assert: every hospital x every round
    for client in range(1, num_clients + 1):
        for round_ in rounds_of(config):
            run(config, identities, {client: round_}, seed=client * 10 + int(round_))


@pytest.mark.parametrize("mode", MODES)
def test_three_hospitals_survive_one_dropout_and_a_second_abort_names_both(mode: str) -> None:
    # Prepare: n = 3, t = 2: one dropout is tolerated (its own seed share + one peer's), c = 0
    config, identities = default_config(3, mode)
    assert config.self_share
    assert (config.threshold, config.guarantee.dropouts, config.guarantee.colluders) == (2, 1, 0)

    for first, second in ((1, 2), (2, 3), (3, 1)):
        for round_ in rounds_of(config):
            # Act: a second hospital drops at Unmasking, after the first at round_
            with pytest.raises(ThresholdError) as caught:
                run(config, identities, {first: round_, second: Round.UNMASKING}, seed=int(round_))

            # Assert: the message names both hospitals that dropped, where, and the tolerance
            message = str(caught.value)
            stage = "ConsistencyCheck" if round_ == Round.CONSISTENCY_CHECK else None
            dropped = message.partition("Clients that dropped: ")[2].partition(". ")[0]
            assert {int(x) for x in re.findall(r"\d+", dropped)} == {first, second}
            if stage:
                assert f"{first} at {stage}" in message
            assert "completes with up to 1 dropout" in message


def ten_percent_schedule(config: MaskingConfig, rng: np.random.Generator) -> dict[int, Round]:
    """10% of n (rounded down, at least one) dropping at each of the four stages; the last stage
    is ConsistencyCheck or Unmasking (at random) in active mode."""
    per_stage = max(1, math.floor(0.1 * config.num_clients + 1e-9))
    order = [int(c) for c in rng.permutation(np.arange(1, config.num_clients + 1))]
    stages = [Round.ADVERTISE_KEYS, Round.SHARE_KEYS, Round.MASKED_INPUT, Round.UNMASKING]
    assert len(stages) == DROPOUT_STAGES
    schedule: dict[int, Round] = {}
    for index, stage in enumerate(stages):
        for client in order[index * per_stage : (index + 1) * per_stage]:
            late = config.mode == ACTIVE and stage == Round.UNMASKING and rng.random() < 0.5
            schedule[client] = Round.CONSISTENCY_CHECK if late else stage
    return schedule


def completion_rate(num_clients: int, mode: str, sessions: int, seed: int) -> float:
    config, identities = default_config(num_clients, mode)
    rng = np.random.default_rng(seed)
    completed = 0
    for session in range(sessions):
        try:
            run(config, identities, ten_percent_schedule(config, rng), seed=seed * 1000 + session)
        except ThresholdError:
            continue
        completed += 1
    return completed / sessions


@pytest.mark.parametrize("mode", MODES)
def test_ten_percent_per_stage_small_sample(mode: str) -> None:
    assert completion_rate(20, mode, sessions=10, seed=1) == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("num_clients", "sessions"), [(20, 100), (100, 6)])
def test_ten_percent_per_stage_completes_at_least_99_percent(num_clients: int, sessions: int, mode: str) -> None:
    assert completion_rate(num_clients, mode, sessions=sessions, seed=num_clients) >= 0.99


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_ten_percent_per_stage_beyond_the_complete_graph_cutoff(mode: str) -> None:
    # SecAgg+ (Harary graph) sized for 4 x 10%: n = 101 is the first sparse default.
    config, _ = default_config(101, mode)
    assert config.graph == "harary"
    assert completion_rate(101, mode, sessions=5, seed=3) >= 0.99


def test_the_federation_rule_complete_up_to_100_then_sparse_per_stage() -> None:
    # The complete graph up to the cut-off, with secagg()'s defaults
    for n in (3, 5, 10, 20, 50, 100):
        assert MaskingConfig.secagg_plus(n, 2, mode="semi-honest") == MaskingConfig.secagg(n, 2, mode="semi-honest")
    # Beyond it, SecAgg+ sized for 10% at each of the four stages (ceil(0.4 n) in all)
    sparse = MaskingConfig.secagg_plus(300, 2, mode="semi-honest")
    assert (sparse.graph, sparse.degree, sparse.threshold, sparse.guarantee.dropouts) == ("harary", 60, 16, 120)
    assert sparse.record().dropouts == 120  # the record carries the session-wide count
    assert MaskingConfig.secagg_plus(300, 2, dropout_per_round=0.1, mode="semi-honest") == sparse
    assert MaskingConfig.secagg_plus(300, 2, dropout_fraction=0.4, mode="semi-honest") == sparse
    # complete_up_to=0 asks for SecAgg+ at every n
    assert MaskingConfig.secagg_plus(20, 2, complete_up_to=0, mode="semi-honest").graph == "harary"


def test_per_round_dropouts_are_four_stages_and_refused_when_out_of_reach() -> None:
    config = MaskingConfig.secagg(10, 2, dropout_per_round=0.1, mode="semi-honest")  # 4 dropouts planned
    assert config.guarantee.dropouts >= 4
    assert MaskingConfig.secagg(10, 2, dropout_per_round=0.1, mode=SEMI_HONEST).dropout_fraction == 0.4
    with pytest.raises(ConfigurationError, match="not both"):
        MaskingConfig.secagg_plus(10, 2, dropout_fraction=0.1, dropout_per_round=0.1, mode="semi-honest")
    with pytest.raises(ConfigurationError, match="dropout_per_round must be in"):
        MaskingConfig.secagg_plus(10, 2, dropout_per_round=0.25, mode="semi-honest")
    with pytest.raises(ConfigurationError, match="tolerates 1 dropouts, fewer than the 2 declared"):
        MaskingConfig.secagg_plus(3, 2, dropout_per_round=0.1, mode="semi-honest")
