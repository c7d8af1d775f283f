"""A node joins or leaves between rounds: each round is planned for its own nodes, or refused.

Masking rounds derive their threshold and graph from each round's node count and report the
guarantee computed for it; Paillier rounds report the guarantee of their key for the round's
nodes, and a round with more nodes than the key has shares (two nodes would hold one share) is
refused with the reason before its setup is sent. A round below the fewest nodes a secure round
needs is skipped with the reason before anything is sent, and the run goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")

from secagg import wire
from secagg.guarantee import Guarantee
from secagg.integrations.flower import NodePolicy, PaillierGrid, PaillierOptions, SecAggGrid, SecAggOptions
from secagg.integrations.flower._records import read_stage
from secagg.integrations.flower.keys import read_public_key
from secagg.integrations.flower.protocol import ENCRYPT, IDENTIFY, SETUP, RoundSetup

from .flower_harness import TRUSTED_KEYS, Audit, FakeGrid, make_app, stage_of
from .paillier_keys import PASSPHRASE, key_files
from .test_integrations_flower_limits import run
from .test_integrations_flower_malformed import NODES, WEIGHTS, assert_exact_masking_sum, identity_options

pytestmark = pytest.mark.usefixtures("server_identity")


def nodes_per_round(grid: FakeGrid, secure: SecAggGrid | PaillierGrid, counts: Sequence[int]) -> None:
    """Make round r (1-based) sample the first ``counts[r - 1]`` of NODES: nodes join and leave."""
    grid.get_node_ids = lambda: sorted(NODES[: counts[min(len(secure.reports), len(counts) - 1)]])  # type: ignore[method-assign]


def round_setups(grid: FakeGrid, stage: str) -> dict[int, bytes]:
    """The ``stage`` payloads sent, by round (the group id), one per round (they are equal)."""
    return {int(m.metadata.group_id): read_stage(m.content)[1] for m in grid.sent if stage_of(m) == stage}


def test_masking_rounds_are_planned_for_each_rounds_nodes_and_report_its_guarantee() -> None:
    # Prepare: active masking over 4, then 3 (a node left), then 5 nodes (two joined)
    audit = Audit()
    grid = FakeGrid({node: make_app(node, WEIGHTS[node], audit, **identity_options(node, "active")) for node in NODES})
    options = SecAggOptions(trusted_keys=TRUSTED_KEYS)
    secure = SecAggGrid(grid, options)
    counts = (4, 3, 5)
    nodes_per_round(grid, secure, counts)
    # Execute
    run(secure, rounds=3)
    # Assert: each round's threshold and guarantee are those of its own node count, and its sum is exact
    setups = round_setups(grid, SETUP)
    expected = {4: (3, Guarantee(1, 1, True)), 3: (2, Guarantee(0, 1, True)), 5: (4, Guarantee(2, 1, True))}
    for report, count in zip(secure.reports, counts, strict=True):
        planned = options.masking(count, 2)
        assert report.skipped_reason is None and len(report.included) == count, report.skipped_reason
        assert report.guarantee == planned.guarantee == expected[count][1]
        assert wire.decode(setups[report.server_round], RoundSetup).masking.threshold == expected[count][0]
        assert_exact_masking_sum(report, audit)


@pytest.mark.parametrize("mode", ["active", "semi-honest"])
def test_the_server_logs_each_masking_rounds_computed_guarantee_where_operators_see_it(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: 4 then 3 nodes; the log is where a Flower operator reads what a round protects against
    grid = FakeGrid({node: make_app(node, WEIGHTS[node], **identity_options(node, mode)) for node in NODES})
    options = SecAggOptions(trusted_keys=TRUSTED_KEYS) if mode == "active" else SecAggOptions(mode="semi-honest")
    secure = SecAggGrid(grid, options)
    nodes_per_round(grid, secure, (4, 3))
    # Execute
    with caplog.at_level(logging.INFO, logger="secagg.flower"):
        run(secure, rounds=2)
    # Assert: each round's line carries the guarantee computed for its own node count, the one it reports;
    # a semi-honest round's at WARNING, saying it does not resist a lying server
    level = logging.INFO if mode == "active" else logging.WARNING
    for report, count in zip(secure.reports, (4, 3), strict=True):
        config = options.masking(count, 2)
        assert report.skipped_reason is None and report.guarantee == config.guarantee
        line = f"secure round {report.server_round} ({mode}, n = {count}, t = {config.threshold}, ring Z_(2^"
        records = [r for r in caplog.records if r.getMessage().startswith(line)]
        assert len(records) == 1, caplog.text
        assert records[0].getMessage().endswith(f"): {report.guarantee}") and records[0].levelno == level
        assert ("does NOT resist a server that lies" in records[0].getMessage()) == (mode == "semi-honest")


def paillier_federation(shares: list[Path], audit: Audit) -> FakeGrid:
    """The five test nodes under a 4-share key: the fifth holds a copy of the first node's share."""
    holders = [*shares, shares[0]]
    return FakeGrid({
        node: make_app(node, WEIGHTS[node], audit, paillier=True, key_share_file=share, passphrase=PASSPHRASE)
        for node, share in zip(NODES, holders, strict=True)
    })


def paillier_rounds(tmp_path: Path, counts: Sequence[int]) -> tuple[FakeGrid, PaillierGrid, Audit]:
    """A 3-of-4 key over the five test nodes, round r sampling the first ``counts[r - 1]``, run."""
    public_path, shares = key_files(tmp_path / "ceremony", 4, 3)
    audit = Audit()
    grid = paillier_federation(shares, audit)
    secure = PaillierGrid(grid, PaillierOptions(public_key=read_public_key(public_path), trusted_keys=TRUSTED_KEYS))
    nodes_per_round(grid, secure, counts)
    run(secure, rounds=len(counts))
    return grid, secure, audit


@pytest.mark.slow  # a heavy Flower round: CI runs it in the slow suite, beside the default suite
def test_paillier_rounds_report_the_guarantee_computed_for_their_nodes(tmp_path: Path) -> None:
    # Prepare / Execute: a 3-of-4 key; a round of 4 nodes, then of 3 (a node left)
    _, secure, audit = paillier_rounds(tmp_path, (4, 3))
    # Assert: c = 1 in both; one dropout of 4 nodes, none of 3 (min_contributors 3); exact sums
    four, three = secure.reports
    assert four.guarantee == secure.options.guarantee(4) == Guarantee(1, 1, True)
    assert three.guarantee == secure.options.guarantee(3) == Guarantee(1, 0, True)
    for report in (four, three):
        assert report.skipped_reason is None and len(report.included) == len(report.node_ids)
        plain = np.sum([a.encoded for n, a in audit.of_round(report.server_round).items()], axis=0)
        assert report.aggregate is not None and np.array_equal(report.aggregate, plain)


def test_a_paillier_round_with_more_nodes_than_key_shares_is_refused_before_its_setup(tmp_path: Path) -> None:
    # Prepare / Execute: a 3-of-4 key; a round of 4 nodes, then of 5 (one joined with a copy of a share)
    grid, secure, _ = paillier_rounds(tmp_path, (4, 5))
    # Assert: round 1 ran; round 2 is refused with the reason, and only the new node's identify was sent
    first, second = secure.reports
    assert first.skipped_reason is None and len(first.included) == 4
    assert second.skipped_reason is not None, (sorted(second.included), second.dropped, second.errors)
    assert "5 nodes in the round, but the key has 4 shares" in second.skipped_reason, second.skipped_reason
    assert second.included == frozenset() and second.guarantee is None
    assert [stage_of(m) for m in grid.sent if m.metadata.group_id == "2"] == [IDENTIFY]


def test_every_node_refuses_a_paillier_setup_with_more_nodes_than_key_shares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a server that does not check (its refusal removed): a round of 5 nodes under 4 shares
    monkeypatch.setattr(PaillierOptions, "check_round_nodes", lambda self, num_nodes: None, raising=False)
    # Execute
    _, secure, audit = paillier_rounds(tmp_path, (5,))
    # Assert: every node refuses the setup before training (nothing encrypted), naming the counts
    (report,) = secure.reports
    assert report.skipped_reason is not None and report.included == frozenset(), report.included
    assert report.dropped == dict.fromkeys(NODES, ENCRYPT), report.dropped
    assert all("the round has 5 nodes, the key 4 shares" in reason for reason in report.errors.values()), report.errors
    assert audit.records == []


@pytest.mark.parametrize("protocol", ["masking", "paillier"])
def test_a_later_round_below_the_fewest_nodes_is_skipped_before_anything_is_sent_and_the_run_goes_on(
    protocol: str, tmp_path: Path
) -> None:
    # Prepare: a round of 3 nodes, then one of 2 (a node left), then 3 again
    audit = Audit()
    secure: SecAggGrid | PaillierGrid
    if protocol == "masking":
        grid = FakeGrid({node: make_app(node, WEIGHTS[node], audit, **identity_options(node, "active"))
                         for node in NODES})
        secure = SecAggGrid(grid, SecAggOptions(trusted_keys=TRUSTED_KEYS))
    else:
        public_path, shares = key_files(tmp_path / "ceremony", 4, 3)
        grid = paillier_federation(shares, audit)
        secure = PaillierGrid(grid, PaillierOptions(public_key=read_public_key(public_path),
                                                    trusted_keys=TRUSTED_KEYS))
    nodes_per_round(grid, secure, (3, 2, 3))
    # Execute
    run(secure, rounds=3)
    # Assert: round 2 is skipped naming the count, nothing of it sent; rounds 1 and 3 are summed
    first, second, third = secure.reports
    assert first.skipped_reason is None and third.skipped_reason is None, (first.errors, third.errors)
    assert second.skipped_reason is not None and "at least 3 nodes" in second.skipped_reason, second.skipped_reason
    assert second.included == frozenset() and second.guarantee is None and len(second.node_ids) == 2
    assert [m for m in grid.sent if m.metadata.group_id == "2"] == []


@pytest.mark.parametrize(("mode", "level"), [("active", logging.INFO), ("semi-honest", logging.WARNING)])
def test_every_masking_round_logs_its_computed_guarantee_and_semi_honest_warns_what_it_gives_up(
    mode: str, level: int, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: five nodes in the named mode (semi-honest only where each node allows it by name)
    policy = {} if mode == "active" else {"policy": NodePolicy(allow_semi_honest=True)}
    grid = FakeGrid({node: make_app(node, WEIGHTS[node], Audit(), **identity_options(node, mode), **policy)
                     for node in NODES})
    options = SecAggOptions(trusted_keys=TRUSTED_KEYS) if mode == "active" else SecAggOptions(mode=mode)
    secure = SecAggGrid(grid, options)
    # Execute
    with caplog.at_level(logging.INFO, logger="secagg.flower"):
        run(secure)
    # Assert: the round's log line is the guarantee computed for its nodes, at the mode's level
    report = secure.reports[0]
    assert report.skipped_reason is None and report.guarantee == options.masking(len(NODES), 2).guarantee
    logged = [r for r in caplog.records if r.getMessage().startswith("secure round 1 (")]
    assert len(logged) == 1 and logged[0].levelno == level
    assert logged[0].getMessage().endswith(f"): {report.guarantee}")
    assert ("does NOT resist a server that lies about dropouts" in logged[0].getMessage()) == (mode != "active")
