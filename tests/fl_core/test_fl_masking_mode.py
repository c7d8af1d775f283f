"""The masking aggregators' mode: active by default, semi-honest only by name (the project's rule:
safe mode is the default; weaker modes are opt-in by name and say what they give up)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from fl_core.aggregators import ClientUpdate, DropoutStage, MaskingAggregator, make_aggregator
from fl_core.aggregators.masking import MASKING_MODES
from fl_core.demo import DemoConfig, _aggregator
from secagg.cli import _check_demo, build_parser
from secagg.cli import main as cli_main
from secagg.dp import DPConfig
from secagg.errors import ConfigurationError
from secagg.primitives.randomness import InsecureDeterministicRandom

needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="needs the examples extra")

SECURE = ("secagg", "secagg+")
LYING = "private against a lying server"
NOT_RESISTANT = "does NOT resist a server that lies about dropouts (semi-honest mode)"

# What each mode guarantees for the demo's hospital counts (complete graph up to 100 clients):
# (colluders, dropouts); active needs 2t > n + c, so it survives fewer dropouts at small n.
GUARANTEES = {
    "active": {3: (0, 1), 5: (2, 1), 10: (3, 3), 20: (3, 8)},
    "semi-honest": {3: (0, 1), 5: (1, 2), 10: (3, 5), 20: (6, 12)},
}


def updates_for(ids: tuple[int, ...], length: int = 12, seed: int = 0) -> list[ClientUpdate]:
    rng = np.random.default_rng(seed)
    return [ClientUpdate(cid, rng.uniform(-0.4, 0.4, size=length), 10 + cid) for cid in ids]


@pytest.mark.parametrize("name", SECURE)
@pytest.mark.parametrize("num_clients", [3, 5, 10, 20])
def test_the_default_mode_is_active_and_its_guarantee_names_a_lying_server(name: str, num_clients: int) -> None:
    aggregator = make_aggregator(name, num_clients=num_clients)
    assert isinstance(aggregator, MaskingAggregator) and aggregator.mode == "active" == MASKING_MODES[0]
    guarantee = aggregator.guarantee
    assert guarantee.lying_server
    colluders, dropouts = GUARANTEES["active"][num_clients]
    assert str(guarantee) == (
        f"{LYING} plus up to {colluders} colluding client{'s' * (colluders != 1)}; "
        f"completes with up to {dropouts} dropout{'s' * (dropouts != 1)}"
    )
    config = aggregator.masking_config(num_clients, 1)
    assert config.mode == "active" and len(config.identity_keys) == num_clients


@pytest.mark.parametrize("name", SECURE)
@pytest.mark.parametrize("num_clients", [3, 5, 10, 20])
def test_semi_honest_is_opt_in_by_name_and_says_what_it_gives_up(name: str, num_clients: int) -> None:
    aggregator = make_aggregator(name, num_clients=num_clients, mode="semi-honest")
    assert isinstance(aggregator, MaskingAggregator) and aggregator.mode == "semi-honest"
    guarantee = aggregator.guarantee
    assert not guarantee.lying_server
    colluders, dropouts = GUARANTEES["semi-honest"][num_clients]
    assert str(guarantee) == (
        f"private against an honest-but-curious server plus up to {colluders} "
        f"colluding client{'s' * (colluders != 1)}; "
        f"completes with up to {dropouts} dropout{'s' * (dropouts != 1)}; {NOT_RESISTANT}"
    )
    assert aggregator.masking_config(num_clients, 1).identity_keys == ()


@pytest.mark.parametrize("mode", ["Active", "malicious", "", None, 1])
def test_an_unknown_mode_is_refused_with_the_choices(mode: object) -> None:
    with pytest.raises(ConfigurationError, match=r"mode must be 'active' .* or 'semi-honest'"):
        make_aggregator("secagg+", num_clients=5, mode=mode)
    with pytest.raises(ConfigurationError, match="masking_mode must be one of active, semi-honest"):
        DemoConfig(masking_mode=mode)  # type: ignore[arg-type]


def test_the_mode_applies_to_the_masking_aggregations_only() -> None:
    with pytest.raises(ConfigurationError, match="takes no protocol options"):
        make_aggregator("plain-quantized", num_clients=5, mode="semi-honest")
    with pytest.raises(ConfigurationError, match="applies to the masking aggregations"):
        DemoConfig(aggregation="plain-quantized", masking_mode="semi-honest")
    assert DemoConfig().masking_mode == "active"


@pytest.mark.parametrize("name", SECURE)
def test_an_active_round_maps_hospital_ids_onto_session_ids_and_is_exact(name: str) -> None:
    # Prepare: hospital ids that are not 1..m, one dropping after its upload (active survives one at n = 5).
    ids = (40, 7, 19, 3, 88)
    updates = updates_for(ids)
    aggregator = make_aggregator(name, num_clients=5, random_bytes=InsecureDeterministicRandom(4))
    assert isinstance(aggregator, MaskingAggregator)
    reference = make_aggregator("plain-quantized", num_clients=5)
    # Execute
    result = aggregator.aggregate(updates, {19: DropoutStage.FINALIZE}, rng=np.random.default_rng(5))
    expected = reference.aggregate(updates, {19: DropoutStage.FINALIZE}, rng=np.random.default_rng(5))
    # Assert: exact, and the session's keys are the hospitals' long-term keys in session-id order.
    assert result.mean is not None and expected.mean is not None
    np.testing.assert_array_equal(result.mean, expected.mean)
    assert result.included == frozenset(ids) == expected.included
    keys, identities = aggregator.session_identities(sorted(ids))
    assert identities is not None and sorted(identities) == [1, 2, 3, 4, 5]
    assert keys == tuple(identities[index].public for index in range(1, 6))
    again, _ = aggregator.session_identities(sorted(ids))
    assert again == keys  # generated once per aggregator, not per round


def test_active_mode_costs_more_bytes_and_seeded_runs_repeat() -> None:
    updates = updates_for((1, 2, 3, 4, 5))

    def run(mode: str) -> tuple[float, bytes]:
        aggregator = make_aggregator(
            "secagg+", num_clients=5, mode=mode, random_bytes=InsecureDeterministicRandom(9)
        )
        result = aggregator.aggregate(updates, rng=np.random.default_rng(1))
        assert result.mean is not None
        return result.bytes_per_client, result.mean.tobytes()

    active, semi_honest = run("active"), run("semi-honest")
    assert run("active") == active  # the identities come from the seeded source too
    assert active[1] == semi_honest[1]  # the same exact mean
    assert active[0] > semi_honest[0]  # signatures and the consistency round


@pytest.mark.parametrize(("mode", "completes"), [("active", False), ("semi-honest", True)])
def test_two_dropouts_of_five_skip_an_active_round_and_the_reason_says_so(mode: str, completes: bool) -> None:
    updates = updates_for((1, 2, 3, 4, 5))
    aggregator = make_aggregator("secagg", num_clients=5, mode=mode)
    result = aggregator.aggregate(
        updates, {1: DropoutStage.JOIN, 3: DropoutStage.UPLOAD}, rng=np.random.default_rng(0)
    )
    if completes:
        assert result.mean is not None and result.included == frozenset({2, 4, 5})
        return
    assert result.mean is None and result.skipped_reason is not None
    assert result.skipped_reason.startswith("secagg (active mode): round skipped, clients that dropped: 1 at join")
    assert "(n = 5, t = 4) completes with up to 1 dropout" in result.skipped_reason


def test_dp_aggregators_run_the_masking_session_in_active_mode_by_default() -> None:
    dp = DPConfig(epsilon=5.0, delta=1e-5, rounds=3, l2_clip=1.0, min_honest=2)  # the floor t - c at n = 5
    aggregator = make_aggregator("secagg+", num_clients=5, dp=dp, dimension=6)
    assert aggregator.inner.mode == "active"  # type: ignore[attr-defined]
    opted = make_aggregator("secagg+", num_clients=5, dp=dp, dimension=6, mode="semi-honest")
    assert opted.inner.mode == "semi-honest"  # type: ignore[attr-defined]
    result = aggregator.aggregate(updates_for((1, 2, 3, 4, 5), length=6), rng=np.random.default_rng(2))
    assert result.mean is not None and len(result.included) == 5


@needs_sklearn
def test_the_demo_prints_the_active_protection_line_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run.json"
    assert cli_main(["demo", "--rounds", "1", "--no-progress", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (
        "  protection: private against a lying server plus up to 2 colluding clients; "
        "completes with up to 1 dropout\n"
    ) in printed
    assert "semi-honest" not in printed
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["configuration"]["masking_mode"] == "active"
    assert report["guarantee"].startswith(LYING)


@needs_sklearn
def test_the_demo_runs_semi_honest_only_when_asked_and_says_what_it_gives_up(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli_main(["demo", "--rounds", "1", "--no-progress", "--masking-mode", "semi-honest"]) == 0
    printed = capsys.readouterr().out
    assert (
        "  protection: private against an honest-but-curious server plus up to 1 colluding client; "
        f"completes with up to 2 dropouts; {NOT_RESISTANT}\n"
    ) in printed


def test_the_command_line_refuses_a_masking_mode_where_it_does_not_apply(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli_main(["demo", "--aggregation", "plain", "--masking-mode", "semi-honest", "--no-progress"]) == 2
    assert "--masking-mode semi-honest: applies to --aggregation secagg and secagg+ only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["demo", "--masking-mode", "malicious", "--no-progress"])
    assert "invalid choice" in capsys.readouterr().err


def test_the_demo_help_says_what_semi_honest_gives_up(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main(["demo", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--masking-mode {active,semi-honest}" in help_text
    assert "it does NOT resist a server that lies about dropouts" in help_text


def test_dataclass_replace_keeps_the_mode_checked() -> None:
    with pytest.raises(ConfigurationError, match="masking_mode"):
        dataclasses.replace(DemoConfig(), masking_mode="semi_honest")


def test_the_command_line_refuses_exactly_the_secagg_plus_dropouts_the_demo_cannot_size_for() -> None:
    # Setup: the demo's own aggregator for every small federation and --dropout up to 0.85 (semi-honest).
    for hospitals in range(3, 13):
        for dropout in (0.41, 0.5, 0.6, 0.66, 0.67, 0.7, 0.75, 0.8, 0.84, 0.85):
            argv = ["demo", "--masking-mode", "semi-honest", "--hospitals", str(hospitals), "--dropout", str(dropout)]
            # Execute: the command line's check, before any work, and the setup it stands for.
            problem = _check_demo(build_parser().parse_args(argv))
            config = DemoConfig(hospitals=hospitals, dropout=dropout, masking_mode="semi-honest")
            try:
                _aggregator("secagg+", config, clip=config.clip, bits=config.bits, ring_bits=config.ring_bits,
                            max_samples_per_client=config.max_samples_per_client)  # fmt: skip
                builds = True
            except ConfigurationError:
                builds = False
            # Assert: refused up front exactly when the setup would fail, naming the options as typed.
            assert (problem is None) == builds, (hospitals, dropout, problem)
            if problem is not None:
                assert problem.startswith("argument --dropout: ") and f"--hospitals {hospitals}" in problem
                assert "dropout_fraction" not in problem
