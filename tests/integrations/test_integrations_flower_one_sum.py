"""One sum per model: a node contributes at most once per model it trains on, one session per round.

Without DP, two completed sessions over the same model whose node sets differ by one hospital
give that hospital's update as their difference (local training is deterministic). A node's mod
took up to 1,024 sessions in one round, and any later round resending a model, so a lying
server (here: the honest server code, run twice over one model, with the strategy's round
number repeated or advanced) got both sums. Now a node refuses, before it trains,
a second session of a round and a session over a model it already sent a contribution for
(docs/threat-model.md, "What a node accepts from the server"); an honest server's retry after a
session that aborted before this node's contribution left still runs; ``NodePolicy`` opts out
by name (``allow_repeat_model``, ``max_sessions_per_round``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.clientapp import ClientApp

from secagg.errors import ConfigurationError
from secagg.integrations.flower import NodePolicy, PaillierGrid, PaillierOptions, SecAggGrid, SecAggOptions
from secagg.integrations.flower._grid import SecureGrid
from secagg.integrations.flower.keys import read_public_key
from secagg.integrations.flower.protocol import SHARE_KEYS, UNMASK

from .flower_harness import TRUSTED_KEYS, FakeGrid, initial_arrays, make_app, node_delta
from .paillier_keys import PASSPHRASE, key_files

pytestmark = pytest.mark.usefixtures("server_identity")

NODES = (7, 42, 99, 1000)
WEIGHTS = dict(zip(NODES, (30, 55, 12, 80), strict=True))
PAILLIER_NODES = (1_000_000_007, 2**63 + 11, 42, 9_999_999_999)
PAILLIER_WEIGHTS = dict(zip(PAILLIER_NODES, (30, 55, 12, 80), strict=True))
FAST_TIMEOUT = {"stage_timeout": 0.3, "poll_interval": 0.05}


def repeating(**policy: object) -> NodePolicy:
    """A node that opts out of the one-sum rule by name."""
    return NodePolicy(allow_repeat_model=True, max_sessions_per_round=2, **policy)  # type: ignore[arg-type]


def instructions(nodes: Iterable[int], server_round: int = 1) -> list[Message]:
    """One training message per node of round ``server_round``, all over the same model (the initial arrays)."""
    content = RecordDict({"arrays": initial_arrays(), "config": ConfigRecord({"server-round": server_round})})
    return [Message(content, dst_node_id=node, message_type=MessageType.TRAIN, group_id="1") for node in nodes]


def weighted_sum(reply: Message) -> dict[str, np.ndarray]:
    """``sum_k w_k delta_k`` per float array, from the one aggregated reply (global + mean, total weight)."""
    total = int(reply.content["metrics"]["num-examples"])
    base = initial_arrays()
    return {name: (reply.content["arrays"][name].numpy() - base[name].numpy()) * total for name in ("w", "b")}


def difference_is_the_update_of(first: list[Message], second: list[Message], node: int, weight: int) -> bool:
    """Whether the server holds two sums whose difference is ``node``'s own (weighted) update."""
    if len(first) != 1 or len(second) != 1:
        return False
    one, two = weighted_sum(first[0]), weighted_sum(second[0])
    shapes = {name: array.numpy().shape for name, array in initial_arrays().items()}
    return all(np.allclose((one[name] - two[name]) / weight, node_delta(node, shapes[name]), atol=1e-3) for name in one)


def refusal(round_of_second: str) -> str:
    """What a node's error reply says when it refuses the second session."""
    return "refuses more" if round_of_second == "same round" else "already sent a contribution for this model"


def masking_grid(policy: NodePolicy | None = None, silent: set[tuple[int, str]] | None = None) -> FakeGrid:
    options = {} if policy is None else {"policy": policy}
    return FakeGrid({node: make_app(node, WEIGHTS[node], **options) for node in NODES}, silent=silent or set())


def masking_server(grid: FakeGrid, **options: object) -> SecureGrid:
    return SecAggGrid(grid, SecAggOptions(mode="semi-honest", protocol="secagg", **options))  # type: ignore[arg-type]


def lying_rounds(
    grid: FakeGrid, make_server: Callable[[FakeGrid], SecureGrid], nodes: tuple[int, ...], round_of_second: str
) -> tuple[list[Message], list[Message], SecureGrid]:
    """Two sessions over one model: all ``nodes`` in round 1, then all but the last, in round 1
    again or in round 2 (the round is the strategy's ``server-round``)."""
    server = make_server(grid)
    first = list(server.send_and_receive(instructions(nodes)))
    second = list(server.send_and_receive(instructions(nodes[:-1], 2 if round_of_second == "next round" else 1)))
    return first, second, server


@pytest.mark.parametrize("round_of_second", ["same round", "next round"])
def test_a_second_masking_session_over_one_model_is_refused_by_the_nodes(round_of_second: str) -> None:
    # Prepare: four nodes with the default rule; a server running two sessions over one model
    grid = masking_grid()
    # Execute
    first, second, server = lying_rounds(grid, masking_server, NODES, round_of_second)
    # Assert: the first completes; no second sum (the leak: its difference with the first is the
    # left-out node's update); every node asked refuses, before training
    assert len(first) == 1
    assert not difference_is_the_update_of(first, second, NODES[-1], WEIGHTS[NODES[-1]])
    assert second == []
    report = server.reports[-1]
    assert report.aggregate is None and report.included == frozenset()
    assert set(report.errors) == set(NODES[:-1])
    assert all(refusal(round_of_second) in reason for reason in report.errors.values()), report.errors


@pytest.mark.parametrize("round_of_second", ["same round", "next round"])
def test_nodes_that_opt_in_give_the_server_the_difference_it_names(round_of_second: str) -> None:
    # Prepare: the same lying server; every node accepts repeated models and two sessions a round by name
    grid = masking_grid(repeating(allow_semi_honest=True))
    # Execute
    first, second, _ = lying_rounds(grid, masking_server, NODES, round_of_second)
    # Assert: both sessions complete, and their difference is the last node's own update (what the opt-in gives up)
    assert len(first) == len(second) == 1
    assert difference_is_the_update_of(first, second, NODES[-1], WEIGHTS[NODES[-1]])


def test_an_honest_retry_after_a_session_aborted_before_any_masked_input_runs() -> None:
    # Prepare: round 1 aborts in share-keys (two of four nodes silent: below the threshold)
    grid = masking_grid(silent={(NODES[0], SHARE_KEYS), (NODES[1], SHARE_KEYS)})
    server = masking_server(grid, **FAST_TIMEOUT)
    aborted = list(server.send_and_receive(instructions(NODES)))
    grid.silent.clear()
    # Execute: the strategy kept its model, so round 2 sends the same one
    retried = list(server.send_and_receive(instructions(NODES, 2)))
    # Assert: no node's contribution left in round 1, so every node takes round 2
    assert aborted == [] and len(retried) == 1
    assert server.reports[-1].included == frozenset(NODES)


def test_a_node_whose_masked_input_left_in_an_aborted_session_refuses_that_model_again() -> None:
    # Prepare: round 1 aborts in unmask (two of four silent there: every masked input left)
    grid = masking_grid(silent={(NODES[0], UNMASK), (NODES[1], UNMASK)})
    server = masking_server(grid, **FAST_TIMEOUT)
    aborted = list(server.send_and_receive(instructions(NODES)))
    grid.silent.clear()
    # Execute: the same model in round 2
    retried = list(server.send_and_receive(instructions(NODES, 2)))
    # Assert: the server may hold that sum (the node cannot tell an honest abort from a lie): refused
    assert aborted == [] and retried == []
    report = server.reports[-1]
    assert set(report.errors) == set(NODES)
    assert all("already sent a contribution for this model" in reason for reason in report.errors.values())


def paillier_server(public_path: Path) -> Callable[[FakeGrid], SecureGrid]:
    def make(grid: FakeGrid) -> SecureGrid:
        return PaillierGrid(grid, PaillierOptions(trusted_keys=TRUSTED_KEYS, public_key=read_public_key(public_path)))

    return make


def paillier_grid(shares: list[Path], policy: NodePolicy | None = None) -> FakeGrid:
    options = {} if policy is None else {"policy": policy}
    apps: dict[int, ClientApp] = {
        node: make_app(node, PAILLIER_WEIGHTS[node], paillier=True, key_share_file=share, passphrase=PASSPHRASE,
                       **options)
        for node, share in zip(PAILLIER_NODES, shares, strict=True)
    }
    return FakeGrid(apps)


@pytest.mark.parametrize("round_of_second", ["same round", "next round"])
@pytest.mark.parametrize("opt_in", [False, True])
def test_a_second_paillier_upload_over_one_model_is_refused_unless_the_node_opts_in(
    tmp_path: Path, round_of_second: str, opt_in: bool
) -> None:
    # Prepare: a 3-of-4 key; a server running two rounds over one model, all four nodes then three
    public_path, shares = key_files(tmp_path / "ceremony", 4, 3)
    policy = repeating() if opt_in else None
    grid = paillier_grid(shares, policy)
    # Execute
    first, second, server = lying_rounds(grid, paillier_server(public_path), PAILLIER_NODES, round_of_second)
    # Assert: refused before training by default; with the opt-in the difference is the last node's update
    assert len(first) == 1
    leak = difference_is_the_update_of(first, second, PAILLIER_NODES[-1], PAILLIER_WEIGHTS[PAILLIER_NODES[-1]])
    assert leak == opt_in
    if not opt_in:
        assert second == []
        report = server.reports[-1]
        assert set(report.errors) == set(PAILLIER_NODES[:-1])
        assert all(refusal(round_of_second) in reason for reason in report.errors.values()), report.errors


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_sessions_per_round", 0), ("max_sessions_per_round", 1025), ("max_sessions_per_round", True),
     ("allow_repeat_model", 1)],
)
def test_the_opt_outs_are_validated(field: str, value: object) -> None:
    # Prepare / Execute / Assert: the policy refuses a count outside 1..1024 and a flag that is not a bool
    with pytest.raises(ConfigurationError, match=field):
        NodePolicy(**{field: value})  # type: ignore[arg-type]


def recast_instructions(nodes: Iterable[int], server_round: int) -> list[Message]:
    """The same model as :func:`instructions` re-encoded: its float32 weights widened to float64
    (the same values) and its arrays in another order under another name, so its arrays digest is
    new while a handler that loads by name into its own dtypes trains exactly as before."""
    base = initial_arrays()
    arrays = ArrayRecord({
        "steps": base["steps"],
        "b": base["b"],
        "w": Array(base["w"].numpy().astype(np.float64)),
    })
    content = RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": server_round})})
    return [Message(content, dst_node_id=node, message_type=MessageType.TRAIN, group_id="1") for node in nodes]


@pytest.mark.parametrize("paillier", [False, True])
def test_a_model_resent_in_a_wider_dtype_or_another_order_is_the_same_model(tmp_path: Path, paillier: bool) -> None:
    # Prepare: default nodes whose handler would crash in round 2 (so a refusal after training would
    # read as the crash); a server that runs all four nodes over a model, then all but the last over
    # the same values re-encoded (a new arrays digest, the same training)
    nodes, weights = (PAILLIER_NODES, PAILLIER_WEIGHTS) if paillier else (NODES, WEIGHTS)
    if paillier:
        public_path, shares = key_files(tmp_path / "ceremony", 4, 3)
        apps = {
            node: make_app(node, weights[node], failing_rounds=(2,), paillier=True, key_share_file=share,
                           passphrase=PASSPHRASE)
            for node, share in zip(nodes, shares, strict=True)
        }
        server = paillier_server(public_path)(FakeGrid(apps))
    else:
        server = masking_server(FakeGrid({node: make_app(node, weights[node], failing_rounds=(2,)) for node in nodes}))
    # Execute
    first = list(server.send_and_receive(instructions(nodes)))
    second = list(server.send_and_receive(recast_instructions(nodes[:-1], 2)))
    # Assert: no second sum (its difference with the first is the left-out node's update); refused before
    # training (the reason is the rule, not the handler's crash)
    assert len(first) == 1
    assert not difference_is_the_update_of(first, second, nodes[-1], weights[nodes[-1]])
    assert second == []
    report = server.reports[-1]
    assert set(report.errors) == set(nodes[:-1])
    assert all("already sent a contribution for this model" in reason for reason in report.errors.values())
