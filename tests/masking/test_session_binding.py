"""A split setup never yields an aggregate that mixes contributions made under different setups.

The attack (issue 12): a server gives one hospital the true setup and every other
hospital a different one (e.g. clip 1e300), so the others contribute zeros and
the "sum" is the target's update. Every field of the session descriptor, and the
declared colluders and dropouts, are bound into the session id, so a client with
another setup is in another session.
"""

from __future__ import annotations

import dataclasses
import struct

import numpy as np
import pytest

from secagg import wire
from secagg.descriptor import SessionDescriptor
from secagg.encoding import QuantizationConfig
from secagg.errors import ConfigurationError, SecAggError, ThresholdError
from secagg.guarantee import Guarantee
from secagg.masking import (
    ACTIVE,
    SEMI_HONEST,
    ZERO_CONTEXT,
    ClientPhase,
    MaskingConfig,
    ServerPhase,
    client_start,
    client_step,
)
from secagg.masking.driver import make_identities
from secagg.masking.messages import ConsistencySignature, SignedBy, SurvivorList, UnmaskRequest, UnmaskResponse
from secagg.masking.server import server_start, server_step
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.primitives.shamir import Share, combine
from secagg.primitives.signing import SigningKey
from secagg.segments import Segment, SegmentTable

from .harness import StepRun, active_setup, edit

N, LENGTH = 5, 6
QUANTIZATION = QuantizationConfig(0.5, 16, N, max_weight=100)
TRUE_SETUP = SessionDescriptor.create(
    QUANTIZATION, weight_key="num-examples", layout_digest=bytes(range(32)), model_digest=bytes(range(1, 33)),
    run_id=7, server_round=3, parameters={"config/lr": 0.1, "config/local-epochs": 2},
)


def _bits(value: float) -> int:
    return int.from_bytes(struct.pack(">d", value), "big")


SPLITS = {
    "clip": {"clip_bits": _bits(1e300)},
    "bits": {"bits": 8},
    "ring": {"ring_bits": 64},
    "max_weight": {"max_weight": 101},
    "weight_key": {"weight_key": b"samples"},
    "layout": {"layout_digest": bytes(32)},
    "model": {"model_digest": bytes(32)},
    "run": {"run_id": 8},
    "round": {"server_round": 4},
    "training parameters": {"parameters": SessionDescriptor.create(None, parameters={"config/lr": 0.0}).parameters},
}


@pytest.mark.parametrize("field", sorted(SPLITS))
def test_every_descriptor_field_changes_the_digest(field: str) -> None:
    split = dataclasses.replace(TRUE_SETUP, **SPLITS[field])  # type: ignore[arg-type]
    assert split.digest() != TRUE_SETUP.digest()


def _config(mode: str, descriptor: bytes, **changes: object) -> MaskingConfig:
    keys = make_identities(N, InsecureDeterministicRandom(b"binding"))[1] if mode == ACTIVE else ()
    config = MaskingConfig.secagg(N, LENGTH, mode=mode, identity_keys=keys, descriptor=descriptor)
    return dataclasses.replace(config, **changes) if changes else config


def _run(configs: dict[int, MaskingConfig], server_config: MaskingConfig) -> tuple[frozenset[int], np.ndarray] | None:
    """Run one session with each client under its own config; clients that refuse drop out.
    Returns (included, aggregate), or None if the session halted (ThresholdError)."""
    keys = make_identities(N, InsecureDeterministicRandom(b"binding"))[0]
    identities = {c: keys[c] for c, config in configs.items() if config.mode == ACTIVE}
    inputs = {c: np.full(LENGTH, 1000 * c, dtype=np.uint32) for c in configs}
    states, inbound = {}, {}
    for client, config in configs.items():
        states[client], inbound[client] = client_start(
            config,
            client,
            context=ZERO_CONTEXT,
            identity=identities.get(client),
            random_bytes=InsecureDeterministicRandom(client),
        )
    server = server_start(server_config, context=ZERO_CONTEXT)
    try:
        while True:
            server, outbound = server_step(server, inbound)
            if server.phase == ServerPhase.DONE:
                assert server.result is not None
                return server.result.included, server.result.aggregate
            inbound = {}
            for client, payload in outbound.items():
                try:
                    states[client], inbound[client] = client_step(
                        states[client], payload, input_vector=inputs[client], identity=identities.get(client),
                        random_bytes=InsecureDeterministicRandom(100 + client),
                    )
                except SecAggError:
                    continue  # this client refuses: it drops out
    except ThresholdError:
        return None


@pytest.mark.parametrize("mode", [SEMI_HONEST, ACTIVE])
@pytest.mark.parametrize("field", ["clip", "training parameters"])
def test_a_split_descriptor_never_mixes_setups(mode: str, field: str) -> None:
    # Prepare: client 1 (the target) gets the true setup, the other four a split one
    split = dataclasses.replace(TRUE_SETUP, **SPLITS[field]).digest()  # type: ignore[arg-type]
    configs = {1: _config(mode, TRUE_SETUP.digest())} | {c: _config(mode, split) for c in range(2, N + 1)}
    # Execute: the server runs the others' session
    outcome = _run(configs, _config(mode, split))
    # Assert: the target is never in an aggregate of the others' session
    assert outcome is None or 1 not in outcome[0]
    # and without the split the same run includes everyone
    honest = _run({c: _config(mode, TRUE_SETUP.digest()) for c in range(1, N + 1)}, _config(mode, TRUE_SETUP.digest()))
    assert honest is not None and honest[0] == frozenset(range(1, N + 1))


@pytest.mark.parametrize("mode", [SEMI_HONEST, ACTIVE])
def test_a_split_of_the_declared_colluders_never_mixes_setups(mode: str) -> None:
    # Prepare: the target is told c = 1, the others c = 0 (same threshold where both are valid)
    base = _config(mode, TRUE_SETUP.digest())
    target = dataclasses.replace(base, corrupt_fraction=1 / N)
    others = dataclasses.replace(base, corrupt_fraction=0.0)
    assert target.digest() != others.digest()
    outcome = _run({1: target} | {c: others for c in range(2, N + 1)}, others)
    assert outcome is None or 1 not in outcome[0]


def test_a_record_claiming_more_colluders_than_its_threshold_supports_is_refused() -> None:
    config = _config(SEMI_HONEST, TRUE_SETUP.digest())
    record = dataclasses.replace(config.record(), colluders=config.threshold)
    with pytest.raises(ConfigurationError):
        MaskingConfig.from_record(record)
    forged = dataclasses.replace(config.record(), dropouts=config.guarantee.dropouts + 1)
    with pytest.raises(ConfigurationError, match="dropouts"):
        MaskingConfig.from_record(forged)


# --- active mode: the guarantee against a lying server plus c colluders, at the bound and one past ---


def lying_server_recovers(holders: int, threshold: int, colluders: int, own_share: bool = False) -> bool:
    """Can a server that splits a live client's honest share holders into "it survived" and
    "it dropped" collect t shares of both its secrets with the colluders' help? (Each colluder
    answers both requests; each honest holder answers only the one its list implies; with
    ``own_share`` (the complete graph) the client itself, told it survived, adds its own
    self-mask seed share on the "survived" side.)"""
    honest = holders - colluders
    return any(
        first + colluders + own_share >= threshold and honest - first + colluders >= threshold
        for first in range(honest + 1)
    )


@pytest.mark.parametrize("n", [3, 4, 5, 7, 10, 16, 25])
def test_active_guarantee_holds_at_its_bound_and_fails_one_past_it(n: int) -> None:
    keys = make_identities(n, InsecureDeterministicRandom(n))[1]
    config = MaskingConfig.secagg(n, 2, mode=ACTIVE, identity_keys=keys)
    c = config.guarantee.colluders
    assert config.guarantee.lying_server
    assert config.self_share
    assert not lying_server_recovers(config.holders, config.threshold, c, own_share=True)
    # One past c: the split succeeds, or c + 1 colluders reach t - 1 (a sum of t inputs gives away the last one)
    if c + 1 < config.holders:
        assert lying_server_recovers(config.holders, config.threshold, c + 1, own_share=True) or (
            c + 1 >= config.threshold - 1
        )


def test_issue_12_case_n10_three_colluders_are_refused_by_default() -> None:
    # The reported attack: n = 10, t = 6, three colluders signing both lists.
    keys = make_identities(10, InsecureDeterministicRandom(10))[1]
    assert lying_server_recovers(9, 6, 3, own_share=True)
    with pytest.raises(ConfigurationError, match="lying server"):
        MaskingConfig.secagg(10, 2, mode=ACTIVE, identity_keys=keys, threshold=6, corrupt_fraction=0.3)
    default = MaskingConfig.secagg(10, 2, mode=ACTIVE, identity_keys=keys)
    assert default.colluders >= 3 and default.guarantee.colluders >= 3
    assert not lying_server_recovers(default.holders, default.threshold, 3, own_share=True)


def test_semi_honest_guarantee_says_it_does_not_resist_a_lying_server() -> None:
    line = str(MaskingConfig.secagg(10, 2, mode="semi-honest").guarantee)
    assert "does NOT resist" in line and "honest-but-curious" in line
    assert "does NOT" not in str(_config(ACTIVE, TRUE_SETUP.digest()).guarantee)


def test_active_harary_guarantee_says_its_probability_is_over_a_graph_a_grinding_server_defeats() -> None:
    # The 2^-40 of a random graph assumes colluders placed independently of it; a lying server
    # chooses the context that keys the graph (docs/threat-model.md, "The Harary permutation").
    _, keys = make_identities(200)
    active = str(MaskingConfig.secagg_plus(200, 2, mode=ACTIVE, identity_keys=keys).guarantee)
    assert "2^-40 over the random graph" in active and "grinds session contexts" in active
    semi_honest = str(MaskingConfig.secagg_plus(200, 2, mode="semi-honest").guarantee)
    assert "2^-40)" in semi_honest and "grinds" not in semi_honest  # an honest-but-curious server does not grind
    complete = str(MaskingConfig.secagg(10, 2, mode=ACTIVE, identity_keys=make_identities(10)[1]).guarantee)
    assert "2^-" not in complete and "grinds" not in complete  # exact: nothing to grind for


# --- the same bound, attacked through the protocol itself --------------------------------------


def split_view_attack(
    n: int, threshold: int, colluders: frozenset[int], honest_a: frozenset[int],
    setup: tuple[MaskingConfig, dict[int, SigningKey]] | None = None,
) -> tuple[tuple[bytes | None, bytes | None], tuple[bytes, bytes]]:
    """A lying server against live client 1 in an active session of n clients with ``threshold``.

    It tells ``honest_a`` (and client 1) that client 1 survived and every other honest client
    that it dropped; the colluders sign both survivor lists and answer both unmask requests
    (the server holds their states). Client 1 itself, told it survived, reveals its own
    self-mask seed share (the complete graph's self-held share). Returns ((recovered self-mask
    seed, recovered mask key), each None where the server did not get t shares, (client 1's real seed and key)).
    ``setup`` (an active config of n clients with that threshold, and its identities) replaces the
    complete-graph one: on a Harary graph only client 1's neighbours hold its shares, and it holds none."""
    config, identities = setup if setup is not None else active_setup(n, threshold)
    assert (config.num_clients, config.threshold) == (n, threshold)
    victim = 1
    run = StepRun(config, identities=identities, seed=5)
    run.run_until(ClientPhase.AWAIT_SURVIVORS)
    truth = (run.states[victim].self_mask_seed, run.states[victim].mask_private)
    everyone = tuple(range(1, n + 1))
    lists = {"A": everyone, "B": tuple(c for c in everyone if c != victim)}
    group_of = {c: "A" if c in honest_a | {victim} else "B" for c in everyone}
    states, signatures = {}, {"A": [], "B": []}
    for client in everyone:
        sides = ("A", "B") if client in colluders else (group_of[client],)
        before = run.states[client]
        for side in sides:
            run.states[client] = before
            reply = run.step(client, edit(run.pending[client], SurvivorList, survivors=lists[side]))
            states[client, side] = run.states[client]
            signatures[side].append(SignedBy(client, wire.decode(reply, ConsistencySignature).signature))
    shares: dict[str, list[Share]] = {"self": [], "key": []}
    for (client, side), state in states.items():
        run.states[client] = state
        request = UnmaskRequest(client, run.session(), lists[side], tuple(signatures[side]))
        try:
            response = wire.decode(run.step(client, wire.encode(request)), UnmaskResponse)
        except ThresholdError:
            continue  # too few signatures on its list: an honest client refuses
        shares["self"] += [Share(client, int.from_bytes(e.share, "big")) for e in response.self_mask_shares
                           if e.owner == victim]
        shares["key"] += [Share(client, int.from_bytes(e.share, "big")) for e in response.mask_key_shares
                          if e.owner == victim]
    found = shares["self"], shares["key"]
    recovered = (combine(found[0], threshold) if len(found[0]) >= threshold else None,
                 combine(found[1], threshold) if len(found[1]) >= threshold else None)
    return recovered, truth


def test_the_victims_own_seed_share_moves_the_active_bound_from_n_minus_1_plus_c_to_n_plus_c(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # n = 6, t = 3, no colluder: 2t > n - 1 + c held the split off before the self-held share;
    # now the victim's own share completes the "survived" side: 2t = n + c is broken, through
    # the protocol itself (run with the old check), and such a configuration is refused.
    assert not lying_server_recovers(5, 3, 0) and lying_server_recovers(5, 3, 0, own_share=True)
    with monkeypatch.context() as patched:
        patched.setattr(MaskingConfig, "_check_threshold", lambda self: None)
        # Its guarantee would state c = min(t - 2, 2t - n - 1) = -1, which Guarantee refuses; the
        # configuration record carries only d = n - t, so the session id is the same with c = 0.
        patched.setattr(
            MaskingConfig, "guarantee", property(lambda self: Guarantee(0, self.num_clients - self.threshold, True))
        )
        (seed, key), truth = split_view_attack(6, 3, frozenset(), frozenset({2, 3}))
    assert (seed, key) == truth
    keys = make_identities(6, InsecureDeterministicRandom(6))[1]
    with pytest.raises(ConfigurationError, match=r"lying server.*need 2t > n \+ colluders = 6"):
        MaskingConfig.secagg(6, 2, mode=ACTIVE, identity_keys=keys, threshold=3, corrupt_fraction=0.0)
    # One more: t = 4 > (6 + 0)/2 holds (c = min(t - 2, 2t - n - 1) = 1)
    assert MaskingConfig.secagg(6, 2, mode=ACTIVE, identity_keys=keys, threshold=4).guarantee.colluders == 1


@pytest.mark.parametrize("n", [5, 7, 10])
def test_a_lying_server_with_c_colluders_fails_and_with_c_plus_one_succeeds(n: int) -> None:
    # Prepare: the default active configuration and its computed guarantee c
    keys = make_identities(n, InsecureDeterministicRandom(99))[1]
    config = MaskingConfig.secagg(n, 4, mode=ACTIVE, identity_keys=keys)
    c, t = config.guarantee.colluders, config.threshold

    def attack(count: int) -> list[tuple[tuple[bytes | None, bytes | None], tuple[bytes, bytes]]]:
        colluders = frozenset(range(n - count + 1, n + 1))
        honest = [h for h in range(2, n + 1) if h not in colluders]
        return [split_view_attack(n, t, colluders, frozenset(honest[:a])) for a in range(len(honest) + 1)]

    # Execute / Assert: with c colluders no split gives the server both secrets ...
    assert all(None in recovered for recovered, _ in attack(c))
    # ... with c + 1 some split does, and they are client 1's real secrets
    won = [(recovered, truth) for recovered, truth in attack(c + 1) if None not in recovered]
    assert won, f"n = {n}: the bound c = {c} is not tight"
    assert won[0][0] == won[0][1]


@pytest.mark.parametrize(("n", "gamma"), [(150, 0.05), (200, 0.1), (500, 0.05)])
def test_active_harary_neighbourhoods_resist_the_split_at_their_corrupt_bound(n: int, gamma: float) -> None:
    # On a Harary graph the holders are a client's k neighbours; the corrupt neighbours it can have
    # (except with probability 2^-41/n) must not let a lying server reach t on both sides.
    keys = make_identities(n, InsecureDeterministicRandom(n))[1]
    config = MaskingConfig.secagg_plus(n, 2, corrupt_fraction=gamma, mode=ACTIVE, identity_keys=keys)
    if config.graph != "harary":
        pytest.skip("no sparse graph qualifies at this size")
    assert not lying_server_recovers(config.holders, config.threshold, config.corrupt_neighbours)


@pytest.mark.parametrize("field", ["threshold", "mode"])
def test_a_split_of_the_threshold_or_the_mode_never_mixes_setups(field: str) -> None:
    # Prepare: the target is told t = 4 (or active mode), the others the true semi-honest t = 2 setup
    others = _config(SEMI_HONEST, TRUE_SETUP.digest())
    target = dataclasses.replace(others, threshold=4) if field == "threshold" else _config(ACTIVE, TRUE_SETUP.digest())
    assert target.digest() != others.digest()
    # Execute: the server runs the others' session; the target is in another one
    outcome = _run({1: target} | {c: others for c in range(2, N + 1)}, others)
    # Assert
    assert outcome is None or 1 not in outcome[0]


@pytest.mark.parametrize("mode", [SEMI_HONEST, ACTIVE])
def test_a_split_of_the_per_segment_clip_table_never_mixes_setups(mode: str) -> None:
    # Prepare: the segment table (one clip per tensor) is the descriptor's layout digest;
    # the target gets the true clips, the other four a table whose "bias" clip is 1e300
    table = SegmentTable((Segment("kernel", 4, 0.5), Segment("bias", 1, 0.5), Segment("steps", 1, integer=True)))
    split_table = table.with_clips({"bias": 1e300})
    true_setup = dataclasses.replace(TRUE_SETUP, layout_digest=table.digest()).digest()
    split = dataclasses.replace(TRUE_SETUP, layout_digest=split_table.digest()).digest()
    assert true_setup != split
    configs = {1: _config(mode, true_setup)} | {c: _config(mode, split) for c in range(2, N + 1)}
    # Execute: the server runs the others' session
    outcome = _run(configs, _config(mode, split))
    # Assert: the target's contribution is never in an aggregate made under the split table
    assert outcome is None or 1 not in outcome[0]
