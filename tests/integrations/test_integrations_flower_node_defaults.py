"""Safe by default on the hospital's side too, and every factory argument checked when it is given.

- A node's default policy refuses a setup whose computed guarantee tolerates fewer colluding
  hospitals than the library's default configuration for that round (masking: the default
  threshold of the round's mode at its node count, on the complete graph up to 100 nodes whatever
  graph the setup names, secagg+'s Harary default beyond; Paillier: ``default_threshold``
  of the key's shares); ``NodePolicy(min_colluders=c)`` accepts fewer by name.
- A round sampling more nodes than ``max_nodes`` is skipped with the reason, and the run goes on
  (fewer than a secure round needs: tests/integrations/test_integrations_flower_round_nodes.py).
- ``PaillierOptions(max_nodes=...)`` above the key's shares is refused.
- ``make_secagg_mod`` / ``make_paillier_mod`` check every argument at construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")

from secagg.errors import ConfigurationError
from secagg.integrations.flower import (
    NodePolicy,
    PaillierGrid,
    PaillierOptions,
    SecAggGrid,
    SecAggOptions,
    make_paillier_mod,
    make_secagg_mod,
)
from secagg.integrations.flower.keys import read_public_key
from secagg.integrations.flower.protocol import ENCRYPT, SETUP
from secagg.masking import MaskingConfig
from secagg.paillier.parameters import default_threshold, threshold_guarantee

from .flower_harness import TRUSTED_KEYS, Audit, FakeGrid, make_app
from .paillier_keys import PASSPHRASE, key_files
from .test_integrations_flower_limits import run
from .test_integrations_flower_malformed import NODES, WEIGHTS, identity_options
from .test_integrations_flower_round_nodes import nodes_per_round

pytestmark = pytest.mark.usefixtures("server_identity")


def masking_grid(policy: NodePolicy | None, audit: Audit) -> FakeGrid:
    """The five test nodes, active mode, each with ``policy`` (None: the default)."""
    extra = {} if policy is None else {"policy": policy}
    return FakeGrid({
        node: make_app(node, WEIGHTS[node], audit, **identity_options(node, "active"), **extra) for node in NODES
    })


def assert_default_summed_or_refused_by_every_node(
    reports: Sequence[Any], audit: Audit, accepted: bool, stage: str, *, colluders: int
) -> None:
    """The round at the default's bound is summed with its guarantee (c = 2); the weaker one (c =
    ``colluders``) is refused by every node at ``stage``, each naming the default and the opt-in."""
    (report,) = reports
    if accepted:
        assert report.skipped_reason is None and report.included == frozenset(NODES), report.errors
        assert report.guarantee is not None and report.guarantee.colluders == 2
        return
    assert report.skipped_reason is not None and report.included == frozenset(), report.included
    assert report.dropped == dict.fromkeys(NODES, stage), report.dropped
    for reason in report.errors.values():
        assert f"protects against {colluders} colluding hospitals" in reason, reason
        assert "library default of 2" in reason and f"min_colluders={colluders}" in reason, reason
    assert audit.records == []


# --- 1. the node's default floor on colluders --------------------------------------------------


@pytest.mark.parametrize(("threshold", "accepted"), [(4, True), (3, False)])
def test_a_default_node_refuses_a_masking_round_below_the_default_colluders(threshold: int, accepted: bool) -> None:
    # Prepare: 5 nodes, active; t = 4 is the default (c = 2, the bound), t = 3 the next weaker (c = 0)
    audit = Audit()
    grid = masking_grid(None, audit)
    secure = SecAggGrid(grid, SecAggOptions(threshold=threshold, trusted_keys=TRUSTED_KEYS, max_nodes=5))
    # Execute
    run(secure)
    # Assert: the default round is summed; the weaker one is refused by every node at setup, naming the opt-in
    assert_default_summed_or_refused_by_every_node(secure.reports, audit, accepted, SETUP, colluders=0)


def test_a_node_accepts_a_weaker_masking_round_by_name() -> None:
    # Prepare: nodes that name the floor they accept: 0 colluders (giving up resistance to colluders)
    audit = Audit()
    grid = masking_grid(NodePolicy(min_colluders=0), audit)
    secure = SecAggGrid(grid, SecAggOptions(threshold=3, trusted_keys=TRUSTED_KEYS, max_nodes=5))
    # Execute
    run(secure)
    # Assert: the round runs, and its report says c = 0
    (report,) = secure.reports
    assert report.skipped_reason is None and report.included == frozenset(NODES), report.errors
    assert report.guarantee is not None and report.guarantee.colluders == 0


@pytest.mark.parametrize("num_nodes", [3, 4, 5, 6, 7, 19, 20, 40, 100])
def test_the_masking_floor_is_the_default_configurations_guarantee(num_nodes: int) -> None:
    # Prepare: the library's default active and semi-honest configurations of this many nodes
    from secagg.integrations.flower.policy import default_colluders  # noqa: PLC0415

    keys = tuple(i.to_bytes(32, "big") for i in range(1, num_nodes + 1))
    for config in (MaskingConfig.secagg(num_nodes, 2, identity_keys=keys),
                   MaskingConfig.secagg(num_nodes, 2, mode="semi-honest")):
        # Execute
        floor = default_colluders(config)
        # Assert: the default sits at the bound (accepted), one colluder fewer is refused
        assert floor == config.guarantee.colluders
        guarantee = config.guarantee
        NodePolicy().check_colluders(guarantee, floor)
        if floor == 0:
            continue  # nothing is weaker than no colluder but no protection at all
        weaker = type(guarantee)(floor - 1, guarantee.dropouts, guarantee.lying_server)
        with pytest.raises(ConfigurationError, match=f"min_colluders={floor - 1}"):
            NodePolicy().check_colluders(weaker, floor)
        NodePolicy(min_colluders=floor - 1).check_colluders(weaker, floor)


def test_the_sparse_graph_floor_is_the_default_secagg_plus_guarantee() -> None:
    # Prepare: the default active secagg+ configuration of 101 nodes (a Harary graph)
    from secagg.integrations.flower.policy import default_colluders  # noqa: PLC0415

    keys = tuple(i.to_bytes(32, "big") for i in range(1, 102))
    config = MaskingConfig.secagg_plus(101, 2, identity_keys=keys)
    # Execute / Assert: the floor is that configuration's guarantee; a lower corrupt fraction is below it
    assert config.graph == "harary" and default_colluders(config) == config.guarantee.colluders == 5
    NodePolicy().check_colluders(config.guarantee, default_colluders(config))  # the bound: accepted
    weaker = MaskingConfig.secagg_plus(101, 2, identity_keys=keys, corrupt_fraction=0.04)
    assert weaker.guarantee.colluders == 4
    with pytest.raises(ConfigurationError, match="library default of 5"):
        NodePolicy().check_colluders(weaker.guarantee, default_colluders(weaker))


def sparse_graph_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lying server: its rounds of 5 nodes run on a Harary graph of degree 4 and threshold 3 (c = 0
    at the default corrupt fraction), which the library's default never picks at 100 nodes or fewer
    (the complete graph there: c = 2 at 5 nodes)."""
    honest = SecAggOptions.masking

    def masking(self: SecAggOptions, num_nodes: int, vector_length: int, identity_keys: tuple[bytes, ...] = (),
                ring_bits: int | None = None) -> MaskingConfig:
        config = honest(self, num_nodes, vector_length, identity_keys, ring_bits)
        return MaskingConfig(num_clients=num_nodes, threshold=3, vector_length=vector_length, graph="harary",
                             degree=4, ring_bits=config.ring_bits, identity_keys=config.identity_keys,
                             corrupt_fraction=0.05)

    monkeypatch.setattr(SecAggOptions, "masking", masking)


@pytest.mark.parametrize(("policy", "accepted"), [(None, False), (NodePolicy(min_colluders=0), True)])
def test_a_default_node_refuses_a_sparse_graph_where_the_default_is_the_complete_graph(
    monkeypatch: pytest.MonkeyPatch, policy: NodePolicy | None, accepted: bool
) -> None:
    # Prepare: a server that runs its 5-node rounds on a Harary graph (c = 0, not the default's c = 2)
    sparse_graph_options(monkeypatch)
    audit = Audit()
    grid = masking_grid(policy, audit)
    secure = SecAggGrid(grid, SecAggOptions(trusted_keys=TRUSTED_KEYS, protocol="secagg+"))
    # Execute
    run(secure)
    # Assert: refused by every default node at setup, naming the complete graph's default and the opt-in;
    # summed with c = 0 for nodes that accept it by name (the round itself works)
    (report,) = secure.reports
    if accepted:
        assert report.skipped_reason is None and report.included == frozenset(NODES), report.errors
        assert report.guarantee is not None and report.guarantee.colluders == 0
        return
    assert report.dropped == dict.fromkeys(NODES, SETUP), report.dropped
    for reason in report.errors.values():
        assert "protects against 0 colluding hospitals" in reason, reason
        assert "library default of 2" in reason and "min_colluders=0" in reason, reason
    assert audit.records == []


@pytest.mark.parametrize(("num_nodes", "complete"), [(5, True), (20, True), (100, True), (101, False)])
def test_a_sparse_graph_is_held_to_the_complete_graphs_floor_up_to_100_nodes(num_nodes: int, complete: bool) -> None:
    # Prepare: secagg+'s Harary configuration at every n (complete_up_to=0), and the default one
    from secagg.integrations.flower.policy import default_colluders  # noqa: PLC0415

    keys = tuple(i.to_bytes(32, "big") for i in range(1, num_nodes + 1))
    sparse = (MaskingConfig(num_clients=5, threshold=3, vector_length=2, graph="harary", degree=4,
                            identity_keys=keys, corrupt_fraction=0.05) if num_nodes == 5
              else MaskingConfig.secagg_plus(num_nodes, 2, identity_keys=keys, complete_up_to=0))
    default = MaskingConfig.secagg_plus(num_nodes, 2, identity_keys=keys)
    # Execute
    floor = default_colluders(sparse)
    # Assert: up to 100 nodes (the bound) the floor is the complete graph's default, which a Harary
    # graph there falls below; at 101 (one past) the default itself is that Harary graph, its c the floor
    assert sparse.graph == "harary" and default.graph == ("complete" if complete else "harary")
    assert floor == default.guarantee.colluders == default_colluders(default)
    if complete:
        assert sparse.guarantee.colluders < floor
        with pytest.raises(ConfigurationError, match=f"library default of {floor}"):
            NodePolicy().check_colluders(sparse.guarantee, floor)
    else:
        NodePolicy().check_colluders(sparse.guarantee, floor)


@pytest.mark.parametrize(("min_contributors", "accepted"), [(4, True), (3, False)])
def test_a_default_node_refuses_a_paillier_round_below_the_default_colluders(
    tmp_path: Path, min_contributors: int, accepted: bool
) -> None:
    # Prepare: the default 4-of-5 key (c = 2 at min_contributors 4, the bound; c = 1 at 3, one past)
    public_path, shares = key_files(tmp_path / "ceremony", 5, 4)
    audit = Audit()
    grid = FakeGrid({
        node: make_app(node, WEIGHTS[node], audit, paillier=True, key_share_file=share, passphrase=PASSPHRASE)
        for node, share in zip(NODES, shares, strict=True)
    })
    # (the server's default refuses c = 1 too: it opts in by name, the nodes' default policy does not)
    options = PaillierOptions(public_key=read_public_key(public_path), trusted_keys=TRUSTED_KEYS,
                              min_contributors=min_contributors, colluders=None if accepted else 1)
    secure = PaillierGrid(grid, options)
    # Execute
    run(secure)
    # Assert: as for masking, refused by every node when it is asked to encrypt
    assert_default_summed_or_refused_by_every_node(secure.reports, audit, accepted, ENCRYPT, colluders=1)


@pytest.mark.parametrize("parties", [2, 3, 4, 5, 7, 20])
def test_the_paillier_floor_is_the_default_thresholds_guarantee(parties: int) -> None:
    # Prepare: the library's default key shape for this many shares
    from secagg.integrations.flower.policy import paillier_default_colluders  # noqa: PLC0415

    t = default_threshold(parties)
    # Execute / Assert: the floor is what that key guarantees with the default min_contributors
    assert paillier_default_colluders(parties) == threshold_guarantee(parties, t, parties, max(2, t)).colluders


# --- 2. a round sampling more than max_nodes is skipped; the run goes on ---------------------


def test_a_masking_round_above_max_nodes_is_skipped_and_the_run_goes_on() -> None:
    # Prepare: options for at most 4 nodes; rounds of 4, then 5, then 4
    audit = Audit()
    grid = masking_grid(None, audit)
    secure = SecAggGrid(grid, SecAggOptions(trusted_keys=TRUSTED_KEYS, max_nodes=4))
    nodes_per_round(grid, secure, (4, 5, 4))
    # Execute
    run(secure, rounds=3)
    # Assert
    first, second, third = secure.reports
    assert first.skipped_reason is None and third.skipped_reason is None
    assert second.skipped_reason is not None and "at most 4" in second.skipped_reason, second.skipped_reason
    assert [m for m in grid.sent if m.metadata.group_id == "2"] == []


# --- 3. PaillierOptions(max_nodes) above the key's shares ---------------------------------------


def test_paillier_max_nodes_above_the_keys_shares_is_refused(paillier_keys: tuple[Path, list[Path]]) -> None:
    # Prepare: a 3-of-4 key
    public = read_public_key(paillier_keys[0])
    # Execute / Assert: 4 (the shares, the bound) is accepted, 5 (one past) refused naming both
    assert PaillierOptions(public_key=public, max_nodes=4).max_nodes == 4
    with pytest.raises(ConfigurationError, match="max_nodes 5 is above the key's 4 shares"):
        PaillierOptions(public_key=public, max_nodes=5)


# --- 4. every factory argument is checked at construction ----------------------------------


@pytest.mark.parametrize(
    ("factory", "argument", "value"),
    [
        (make_paillier_mod, "constant_time", 1),
        (make_paillier_mod, "constant_time", "yes"),
        (make_paillier_mod, "allow_plain_train", 1),
        (make_paillier_mod, "obfuscation", "djn"),
        (make_paillier_mod, "passphrase", 1234),
        (make_paillier_mod, "key_share_file", 7),
        (make_paillier_mod, "rng", 7),
        (make_paillier_mod, "audit", "log"),
        (make_paillier_mod, "random_bytes", b"seed"),
        (make_paillier_mod, "identity_key_file", 3.0),
        (make_paillier_mod, "trusted_keys_file", b"keys"),
        (make_paillier_mod, "noise_source", 5),
        (make_paillier_mod, "dp_state_file", 0),
        (make_secagg_mod, "allow_plain_train", "false"),
        (make_secagg_mod, "allow_plain_train", np.bool_(True)),
        (make_secagg_mod, "rng", 7),
        (make_secagg_mod, "audit", "log"),
        (make_secagg_mod, "random_bytes", None),
        (make_secagg_mod, "identity_key_file", 3.0),
        (make_secagg_mod, "trusted_keys_file", b"keys"),
        (make_secagg_mod, "noise_source", 5),
        (make_secagg_mod, "dp_state_file", 0),
    ],
)
def test_a_mod_factory_refuses_an_argument_of_the_wrong_type(factory: object, argument: str, value: object) -> None:
    # Execute / Assert: refused at construction, naming the argument
    with pytest.raises(ConfigurationError, match=argument):
        factory(**{argument: value})  # type: ignore[operator]


def test_the_worked_examples_in_the_integration_docs_are_the_computed_guarantees() -> None:
    # docs/integrations.md spells out, per node count, the threshold and colluders of the default
    # options' rounds and of a server that lowers the threshold; each figure is rebuilt here
    default = SecAggOptions(trusted_keys=TRUSTED_KEYS)
    rounds = {n: default.masking(n, 2) for n in (3, 4, 5)}
    # (SecAggOptions(threshold=3) alone is refused: it is validated for a round of 3 nodes, where t = 3 > k = 2)
    with pytest.raises(ConfigurationError, match="t = 3"):
        SecAggOptions(trusted_keys=TRUSTED_KEYS, threshold=3)
    lowered = SecAggOptions(trusted_keys=TRUSTED_KEYS, threshold=3, max_nodes=5).masking(5, 2)
    text = " ".join((Path(__file__).resolve().parents[2] / "docs" / "integrations.md").read_text("utf-8").split())
    phrases = [
        "active: " + ", ".join(f"{n} nodes c = {rounds[n].guarantee.colluders}" for n in (3, 4, 5)) + ";",
        "(" + "; ".join(f"{n} nodes: t = {rounds[n].threshold}, c = {rounds[n].guarantee.colluders}" for n in (4, 3))
        + ")",
        f"`SecAggOptions(threshold=3, max_nodes=5)` over 5 nodes: c = {lowered.guarantee.colluders})",
    ]
    for phrase in phrases:
        assert phrase in text, phrase
