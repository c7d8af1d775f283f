"""The printed guarantee of a complete-graph configuration, attacked at its bound and one past it.

For every n in 3..9, both modes and every threshold the configuration accepts, the computed
``guarantee`` (c colluders, d dropouts) is checked against whole sessions:

- d dropouts, at any rounds, complete with the exact sum of the included inputs; d + 1 clients
  that never advertise end the session with ThresholdError, never a wrong sum;
- the smallest sum the server can release holds t inputs; with c colluders among them at least
  two are honest, with c + 1 = t - 1 (semi-honest, and active where that is the binding bound)
  the colluders subtract their own inputs and hold the last one's input;
- active mode, every threshold of 4..8 clients where the lying-server split bounds c (2t - n - 1):
  with c colluders no split of a client's holders gives the server both its secrets, with c + 1
  one does, through the protocol.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secagg.errors import ConfigurationError, ThresholdError
from secagg.masking import ACTIVE, SEMI_HONEST, MaskingConfig, Round, SessionResult, make_identities, run_session
from secagg.primitives.randomness import InsecureDeterministicRandom

from .harness import assert_exact, random_inputs
from .test_session_binding import split_view_attack

LENGTH = 5
ROUNDS = [Round.ADVERTISE_KEYS, Round.SHARE_KEYS, Round.MASKED_INPUT, Round.UNMASKING]
IDENTITIES = {n: make_identities(n, InsecureDeterministicRandom(n)) for n in range(3, 10)}


def _config(n: int, t: int, mode: str) -> MaskingConfig | None:
    """The complete-graph configuration (n, t, mode) declaring no colluders, or None if refused."""
    keys = IDENTITIES[n][1] if mode == ACTIVE else ()
    try:
        return MaskingConfig(num_clients=n, threshold=t, vector_length=LENGTH, mode=mode, identity_keys=keys)
    except ConfigurationError:
        return None


def _run(config: MaskingConfig, dropouts: dict[int, Round], seed: int) -> tuple[SessionResult, dict[int, np.ndarray]]:
    inputs = random_inputs(config, seed)
    identities = IDENTITIES[config.num_clients][0] if config.mode == ACTIVE else None
    random = InsecureDeterministicRandom(seed)
    return run_session(config, inputs, dropouts, identities=identities, random_bytes=random), inputs


SHAPES = [(n, t, mode) for n in range(3, 10) for t in range(2, n) for mode in (SEMI_HONEST, ACTIVE)]


def test_every_threshold_from_its_minimum_to_n_minus_1_is_accepted_or_refused_by_its_guarantee() -> None:
    # A configuration is accepted iff its computed c is at least 0 (the lying server itself, or a
    # sum of two inputs, for c = 0); the guarantee's d is n - t in both modes.
    for n, t, mode in SHAPES:
        config = _config(n, t, mode)
        if mode == SEMI_HONEST or 2 * t > n:
            assert config is not None, (n, t, mode)
            assert config.guarantee.colluders >= 0 and config.guarantee.dropouts == n - t
            assert config.guarantee.lying_server == (mode == ACTIVE)
        else:
            assert config is None, f"active n = {n}, t = {t} (2t <= n) must be refused"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.sampled_from(SHAPES), data=st.data())
def test_d_dropouts_at_any_rounds_complete_exactly_and_d_plus_one_never_give_a_wrong_sum(
    shape: tuple[int, int, str], data: st.DataObject
) -> None:
    n, t, mode = shape
    config = _config(n, t, mode)
    if config is None:
        return
    d = config.guarantee.dropouts
    seed = data.draw(st.integers(0, 2**16))
    # At the bound: any d clients, each at any round
    dropped = data.draw(st.lists(st.integers(1, n), min_size=d, max_size=d, unique=True))
    rounds = [*ROUNDS, Round.CONSISTENCY_CHECK] if mode == ACTIVE else ROUNDS
    dropouts = {c: data.draw(st.sampled_from(rounds)) for c in dropped}
    result, inputs = _run(config, dropouts, seed)
    assert_exact(config, result.aggregate, inputs, result.included)
    sent_input = {c for c in range(1, n + 1) if c not in dropouts or dropouts[c] > Round.MASKED_INPUT}
    assert set(result.included) == sent_input
    # One past it: d + 1 clients that never advertise leave t - 1: the library's error, no sum
    past = dict.fromkeys(data.draw(st.lists(st.integers(1, n), min_size=d + 1, max_size=d + 1, unique=True)),
                         Round.ADVERTISE_KEYS)
    with pytest.raises(ThresholdError):
        _run(config, past, seed)


@pytest.mark.parametrize(("n", "t", "mode"), [(3, 2, SEMI_HONEST), (3, 2, ACTIVE), (5, 3, SEMI_HONEST),
                                              (5, 4, ACTIVE), (7, 4, SEMI_HONEST), (7, 6, ACTIVE)])
def test_c_colluders_leave_two_honest_inputs_in_the_smallest_sum_and_c_plus_one_recover_one(
    n: int, t: int, mode: str
) -> None:
    # Prepare: the smallest sum the server can release: n - t clients never advertise, t remain
    config = _config(n, t, mode)
    assert config is not None
    c = config.guarantee.colluders
    assert c == t - 2  # at these shapes the sum-size bound is the binding one
    dropouts = dict.fromkeys(range(t + 1, n + 1), Round.ADVERTISE_KEYS)
    result, inputs = _run(config, dropouts, 7)
    included = sorted(result.included)
    assert len(included) == t
    ring = config.ring
    # c colluders among the t: what they can subtract leaves the sum of two honest inputs, which
    # is neither of them (the sum is what the protocol releases; no single input is exposed)
    honest = included[c:]
    assert len(honest) == 2
    left = result.aggregate.astype(np.uint64)
    for colluder in included[:c]:
        left = (left - inputs[colluder].astype(np.uint64)) % ring.modulus
    assert np.array_equal(left, (inputs[honest[0]].astype(np.uint64) + inputs[honest[1]]) % ring.modulus)
    assert not any(np.array_equal(left.astype(ring.dtype), inputs[h]) for h in honest)
    # c + 1 colluders: what is left of the sum is the one honest client's input, exactly
    victim, colluders = included[0], included[1 : c + 2]
    assert len(colluders) == c + 1 == t - 1
    residue = result.aggregate.astype(np.uint64)
    for colluder in colluders:
        residue = (residue - inputs[colluder].astype(np.uint64)) % ring.modulus
    assert np.array_equal(residue.astype(ring.dtype), inputs[victim])


SPLIT_SHAPES = [(n, t) for n in range(4, 9) for t in range(n // 2 + 1, n)]
"""Every accepted active shape of 4..8 clients (2t > n, t < n: checked by
:func:`test_split_shapes_are_every_accepted_active_shape`).
The lying-server split bounds c at each of them: 2t - n - 1 <= t - 2 holds for every t < n (a tie with
the sum size at t = n - 1), so c = 2t - n - 1 with no shape left out."""


def test_split_shapes_are_every_accepted_active_shape() -> None:
    accepted = [(n, t) for n in range(4, 9) for t in range(2, n + 1) if _config(n, t, ACTIVE) is not None]
    assert accepted == SPLIT_SHAPES


@pytest.mark.parametrize(("n", "t"), SPLIT_SHAPES)
def test_a_lying_server_splits_nothing_with_c_colluders_and_both_secrets_with_c_plus_one_at_every_threshold(
    n: int, t: int
) -> None:
    # Prepare: the computed c of an explicit active threshold (the defaults are tests/masking/test_session_binding.py's)
    config = _config(n, t, ACTIVE)
    assert config is not None
    c = config.guarantee.colluders
    assert c == 2 * t - n - 1 >= 0

    def splits(count: int) -> list[tuple[tuple[bytes | None, bytes | None], tuple[bytes, bytes]]]:
        """The server's split of client 1's honest holders at every group size, the last ``count`` colluding."""
        colluders = frozenset(range(n - count + 1, n + 1))
        honest = [h for h in range(2, n + 1) if h not in colluders]
        return [split_view_attack(n, t, colluders, frozenset(honest[:a])) for a in range(len(honest) + 1)]

    # Execute / Assert: c colluders: no split gives the server both of client 1's secrets
    assert all(None in recovered for recovered, _ in splits(c))
    # One past it: some split does, and they are client 1's real self-mask seed and mask key
    won = [(recovered, truth) for recovered, truth in splits(c + 1) if None not in recovered]
    assert won, f"n = {n}, t = {t}: c = {c} is not tight"
    assert all(recovered == truth for recovered, truth in won)
