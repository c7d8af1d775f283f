"""SecAgg+'s guarantee (Harary graph), attacked at its bound and one past it through real sessions.

On a Harary graph a client's two secrets (self-mask seed and mask key) are Shamir-shared among
its k neighbours with threshold t, and the configuration is sized so that fewer than t of them
collude (``corrupt_neighbours``, t - 1 in semi-honest mode). At the small sizes below the
declared c = floor(gamma n) equals that bound, so the attack is exact, not probabilistic:

- c colluders, all placed among one victim's neighbours (the worst placement), hold c < t
  shares of each secret: the victim's masked input stays masked;
- c + 1 = t colluding neighbours combine their shares into both secrets, recompute every mask
  the victim added, and read its input out of the masked vector it uploaded.

The smallest sum such a session can release holds t + 1 inputs (no self-held share on a Harary
graph; :func:`secagg.dp.floors.unmasked_sums`): t + 1 clients that are each other's neighbours
complete exactly, and t of them (one fewer) are refused with the library's error.

Active mode: a lying server that splits the victim's neighbours between "it survived" and "it
dropped" gets nothing with c colluding neighbours and both secrets with c + 1 under the rule
2t > k + c the guarantee is computed from; the clients' endorsement check holds c + 1 off too.

Dropouts: the worst place for the guarantee's d is one client's neighbourhood, and the defaults
leave exactly t of its k neighbours there: d dropouts complete exactly, d + 1 abort.
"""

from __future__ import annotations

import numpy as np
import pytest

from secagg import wire
from secagg.dp.floors import masking_floor, unmasked_sums
from secagg.errors import ConfigurationError, ThresholdError
from secagg.masking import (
    ACTIVE,
    HARARY,
    SEMI_HONEST,
    ClientPhase,
    MaskingConfig,
    Round,
    SessionResult,
    client_unmask,
    make_identities,
    run_session,
)
from secagg.masking.messages import MaskedInput
from secagg.masking.session import (
    PAIR_MASK_LABEL,
    SELF_MASK_LABEL,
    ZERO_CONTEXT,
    graph_neighbours,
    pair_mask_seeds,
    pair_mask_subtracts,
    session_id,
)
from secagg.primitives import prg, shamir
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.primitives.signing import SigningKey

from .harness import StepRun, assert_exact, random_inputs, session_neighbours
from .test_session_binding import split_view_attack

VICTIM = 1
SIZES = [20, 40]
"""SecAgg+ (complete_up_to=0, the defaults otherwise): n = 20 gives k = 10, t = 2, c = 1;
n = 40 gives k = 20, t = 3, c = 2."""


def _config(n: int) -> MaskingConfig:
    config = MaskingConfig.secagg_plus(n, 4, complete_up_to=0, mode=SEMI_HONEST)
    assert config.graph == HARARY and not config.self_share
    return config


def _unmask(run: StepRun, colluders: list[int]) -> np.ndarray | None:
    """What ``colluders`` (with the server, which holds every upload) make of the victim's masked
    input: its input, if their held shares reach t for both secrets; None if they are refused."""
    config, victim = run.config, run.states[VICTIM]
    shares: dict[str, list[shamir.Share]] = {"seed": [], "key": []}
    for colluder in colluders:
        for held in run.states[colluder].held:
            if held.owner == VICTIM:
                shares["seed"].append(shamir.Share(colluder, int.from_bytes(held.self_mask_share, "big")))
                shares["key"].append(shamir.Share(colluder, int.from_bytes(held.mask_key_share, "big")))
    assert len(shares["seed"]) == len(colluders)  # each colluding neighbour holds one share of each
    try:
        seed = shamir.combine(shares["seed"], config.threshold)
        key = shamir.combine(shares["key"], config.threshold)
    except ConfigurationError:
        return None  # fewer than t shares: nothing to interpolate
    masked = wire.decode(run.sent[VICTIM][2], MaskedInput).vector.values.astype(config.ring.dtype)
    vector = masked.copy()
    prg.add_expansion(vector, seed, SELF_MASK_LABEL, subtract=True)
    peers = [(entry.client, entry.mask_key) for entry in victim.neighbours]
    for (peer, _), pair_seed in zip(peers, pair_mask_seeds(key, peers, victim.session, VICTIM), strict=True):
        # the victim subtracted where pair_mask_subtracts says so: undo it with the other sign
        prg.add_expansion(vector, pair_seed, PAIR_MASK_LABEL, subtract=not pair_mask_subtracts(VICTIM, peer))
    return vector


@pytest.mark.parametrize("n", SIZES)
def test_c_colluding_neighbours_see_a_masked_input_and_c_plus_one_read_it(n: int) -> None:
    # Prepare: an honest session up to the unmasking round; every masked input is uploaded
    config = _config(n)
    c, t = config.guarantee.colluders, config.threshold
    assert c == config.corrupt_neighbours == t - 1
    run = StepRun(config, seed=n)
    run.run_until(ClientPhase.AWAIT_UNMASK)
    neighbours = sorted(run.neighbours(VICTIM))
    assert len(neighbours) == config.holders
    truth = run.inputs[VICTIM]
    # Execute / Assert: the guarantee's c colluders, all among the victim's neighbours: refused
    assert _unmask(run, neighbours[:c]) is None
    # ... and read as a sharing of lower degree their shares give a vector that is not the input
    if c:
        for held in run.states[neighbours[0]].held:
            if held.owner == VICTIM:
                wrong = shamir.combine([shamir.Share(neighbours[0], int.from_bytes(held.self_mask_share, "big"))], 1)
                assert wrong != run.states[VICTIM].self_mask_seed
    # One past it: c + 1 = t colluding neighbours recover the victim's input exactly
    recovered = _unmask(run, neighbours[: c + 1])
    assert recovered is not None
    np.testing.assert_array_equal(recovered, truth)


def _clique(config: MaskingConfig, size: int) -> list[int]:
    """``size`` clients that are each other's neighbours on the session's graph (consecutive
    positions of the permuted ring: up to k / 2 + 1 of them)."""
    neighbours = session_neighbours(config, ZERO_CONTEXT)
    for start in range(1, config.num_clients + 1):
        members = [start]
        for candidate in sorted(neighbours(start)):
            if all(candidate in neighbours(member) for member in members):
                members.append(candidate)
            if len(members) == size:
                return members
    raise AssertionError(f"no {size} mutual neighbours")


@pytest.mark.parametrize("n", SIZES)
def test_the_smallest_released_sum_holds_t_plus_one_inputs_and_t_are_refused(n: int) -> None:
    # Prepare: the DP floor's m = t + 1, and t + 1 clients that are all each other's neighbours
    config = _config(n)
    t = config.threshold
    sums = unmasked_sums(config)
    assert n - sums.dropouts == t + 1 and masking_floor(config) == t + 1 - config.corrupt_neighbours >= 2
    members = _clique(config, t + 1)
    inputs = random_inputs(config, n)
    # Execute / Assert: every other client drops before sharing its keys: a sum of t + 1, exact
    dropouts = {client: Round.SHARE_KEYS for client in range(1, n + 1) if client not in members}
    result = run_session(config, inputs, dropouts, random_bytes=InsecureDeterministicRandom(n), context=ZERO_CONTEXT)
    assert sorted(result.included) == sorted(members)
    assert_exact(config, result.aggregate, inputs, result.included)
    # One fewer: t clients are below what any survivor's seed needs (t answering neighbours), refused
    dropouts[members[-1]] = Round.SHARE_KEYS
    with pytest.raises(ThresholdError):
        run_session(config, inputs, dropouts, random_bytes=InsecureDeterministicRandom(n), context=ZERO_CONTEXT)


Attack = tuple[tuple[bytes | None, bytes | None], tuple[bytes, bytes]]


def _active(n: int) -> tuple[MaskingConfig, dict[int, SigningKey], list[int]]:
    """Active SecAgg+ of n clients (deterministic identities), its identities and the victim's neighbours."""
    identities, public = make_identities(n, InsecureDeterministicRandom(99))
    config = MaskingConfig.secagg_plus(n, 4, complete_up_to=0, mode=ACTIVE, identity_keys=public)
    assert config.graph == HARARY and not config.self_share and config.guarantee.lying_server
    return config, identities, sorted(graph_neighbours(config, session_id(config, ZERO_CONTEXT), VICTIM))


def _split(n: int, count: int, group_a: int, setup: tuple[MaskingConfig, dict[int, SigningKey], list[int]]) -> Attack:
    """The lying server's split against the victim with the last ``count`` of its neighbours colluding
    and the first ``group_a`` of the honest ones told it survived (the rest: that it dropped)."""
    config, identities, neighbours = setup
    colluders = frozenset(neighbours[-count:])
    honest = [h for h in neighbours if h not in colluders]
    return split_view_attack(n, config.threshold, colluders, frozenset(honest[:group_a]), setup=(config, identities))


def _balanced(k: int, count: int) -> list[int]:
    """The group size that splits the k - count honest neighbours most evenly: closest to t on both
    sides (each needs t - count honest answers; the other even split is its mirror image)."""
    return [(k - count) // 2]


@pytest.mark.parametrize("n", [20, 30])
def test_a_lying_server_splitting_c_colluding_neighbours_fails_and_c_plus_one_breaks_the_counting_rule(
    n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: active SecAgg+ (n = 20: k = 18, t = 10; n = 30: k = 26, t = 14; c = 1 = the corrupt
    # neighbours, and 2t > k + c). The server tells group A (and the victim) that the victim survived
    # and its other honest neighbours that it dropped; colluders sign both lists and answer both.
    setup = _active(n)
    config = setup[0]
    c, t, k = config.guarantee.colluders, config.threshold, config.holders
    assert c == config.corrupt_neighbours and 2 * t > k + c and 2 * t <= k + c + 1
    # Execute / Assert: with c colluding neighbours no split gives the server both secrets
    assert all(None in _split(n, c, a, setup)[0] for a in _balanced(k, c))
    # c + 1: still refused, by the clients' endorsement check (a list must be signed by t neighbours of
    # every client whose shares a holder reveals), which the computed c does not count on ...
    assert all(None in _split(n, c + 1, a, setup)[0] for a in _balanced(k, c + 1))
    # ... without it (the rule 2t > k + c alone, which c is computed from) c + 1 recover both real secrets
    monkeypatch.setattr(client_unmask, "_check_endorsed", lambda *_: None)
    recovered, truth = _split(n, c + 1, _balanced(k, c + 1)[0], setup)
    assert recovered == truth


def test_the_endorsement_check_falls_to_more_colluding_neighbours_with_the_real_secrets() -> None:
    # n = 20 (k = 18, t = 10, c = 1): with the endorsement check on, a search over splits found the
    # first success at 4 colluding neighbours (7 honest told the victim survived). The computed c is
    # conservative there, never over-claimed; and what the server then gets is the victim's real secrets.
    setup = _active(20)
    recovered, truth = _split(20, 4, 7, setup)
    assert recovered == truth


STAGES = [Round.ADVERTISE_KEYS, Round.SHARE_KEYS, Round.MASKED_INPUT, Round.UNMASKING]


@pytest.mark.parametrize(("n", "mode"), [(20, SEMI_HONEST), (30, SEMI_HONEST), (20, ACTIVE)])
def test_d_dropouts_in_one_neighbourhood_complete_exactly_and_d_plus_one_abort(n: int, mode: str) -> None:
    # Prepare: the worst place for the guarantee's d dropouts is one client's neighbourhood: the
    # defaults size t to the k - d neighbours that are then left (n = 20: k = 10, t = 2, d = 8 semi-honest;
    # k = 18, t = 10 active; n = 30: k = 14, t = 2, d = 12)
    identities, public = make_identities(n, InsecureDeterministicRandom(n)) if mode == ACTIVE else ({}, ())
    config = MaskingConfig.secagg_plus(n, 4, complete_up_to=0, mode=mode, identity_keys=public)
    assert config.graph == HARARY
    d, k, t = config.guarantee.dropouts, config.holders, config.threshold
    assert k - d == t
    neighbours = sorted(graph_neighbours(config, session_id(config, ZERO_CONTEXT), VICTIM))
    inputs = random_inputs(config, n)

    def run(dropouts: dict[int, Round]) -> SessionResult:
        return run_session(config, inputs, dropouts, identities=identities or None, context=ZERO_CONTEXT,
                           random_bytes=InsecureDeterministicRandom(n))

    # Execute / Assert: d of the victim's neighbours drop, at every stage in turn: the exact sum
    spread = {client: STAGES[i % len(STAGES)] for i, client in enumerate(neighbours[:d])}
    result = run(spread)
    assert VICTIM in result.included
    assert_exact(config, result.aggregate, inputs, result.included)
    # ... and all after masking with the victim (its self-mask then needs t of them): still exact
    late = dict.fromkeys(neighbours[:d], Round.UNMASKING)
    result = run(late)
    assert sorted(result.included) == list(range(1, n + 1))
    assert_exact(config, result.aggregate, inputs, result.included)
    # One past it: t - 1 of the victim's neighbours answer: no sum, the library's error naming it
    with pytest.raises(ThresholdError, match=f"client {VICTIM}"):
        run(dict.fromkeys(neighbours[: d + 1], Round.UNMASKING))
