"""The honest floor in fl_core (secagg.dp.floors, the rule Flower's nodes check): a DP plan whose
h exceeds what the secure sum's configuration guarantees is refused, a round whose session has a
lower floor is skipped uncharged, and the demo sizes h = min(n - 1, floor). At the floor, a round
with the guarantee's d dropouts holds exactly h honest contributions in the worst case and is released;
one more dropout is skipped, never released under-noised."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from fl_core.aggregators import make_aggregator
from fl_core.aggregators.base import ClientUpdate, DropoutStage
from fl_core.dp import DPAggregator
from fl_core.dp_build import supported_honest
from secagg.cli import main as cli_main
from secagg.dp import DPConfig, floors
from secagg.errors import ConfigurationError

needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="needs the examples extra")
needs_flower = pytest.mark.skipif(importlib.util.find_spec("flwr") is None, reason="needs the flower extra")


def _dp(min_honest: int) -> DPConfig:
    return DPConfig(epsilon=3.0, delta=1e-5, rounds=4, l2_clip=1.0, min_honest=min_honest)


def _updates(clients: range, d: int = 6) -> list[ClientUpdate]:
    return [ClientUpdate(i, np.random.default_rng(i).normal(size=d), 10) for i in clients]


@needs_flower
def test_flower_re_exports_the_one_rule() -> None:
    from secagg.integrations.flower import dp as flower_dp  # noqa: PLC0415

    for name in ("unmasked_sums", "check_unmasked_sums", "decrypted_sums", "check_decrypted_sums"):
        assert getattr(flower_dp, name) is getattr(floors, name)


@pytest.mark.parametrize(
    ("n", "mode", "floor"),
    [(5, "active", 2), (5, "semi-honest", 2), (10, "active", 4), (10, "semi-honest", 2), (20, "active", 9)],
)
def test_masking_floor_per_n_and_mode(n: int, mode: str, floor: int) -> None:
    assert supported_honest("secagg", n, mode=mode) == floor
    assert supported_honest("secagg+", n, mode=mode) == floor  # the complete graph up to 100
    assert supported_honest("plain-quantized", n) is None


@pytest.mark.parametrize(("mode", "t", "c"), [("active", 4, 2), ("semi-honest", 3, 1)])
@pytest.mark.parametrize("name", ["secagg", "secagg+"])
def test_plan_above_the_masking_floor_is_refused(name: str, mode: str, t: int, c: int) -> None:
    # 5 hospitals, complete graph: a sum of t inputs, c of them colluders', holds t - c = 2 honest.
    with pytest.raises(ConfigurationError, match=rf"t = {t}\).*c = {c} .*2 honest \(the floor m - c\).*h = 4"):
        make_aggregator(name, num_clients=5, dp=_dp(4), dimension=6, mode=mode)
    accepted = make_aggregator(name, num_clients=5, dp=_dp(2), dimension=6, mode=mode)
    assert isinstance(accepted, DPAggregator) and accepted.floor == 2


def test_plan_at_the_floor_is_accepted_above_it_refused_at_ten_hospitals() -> None:
    assert make_aggregator("secagg", num_clients=10, dp=_dp(4), dimension=6).plan.honest == 4  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match=r"t = 7\).*c = 3 .*4 honest.*h = 5"):
        make_aggregator("secagg", num_clients=10, dp=_dp(5), dimension=6)


def test_plan_above_the_paillier_floor_is_refused() -> None:
    # 5 hospitals, t = 4, min_contributors = 4, c = min(t - 1, 4 - 2, 2t - l - 1) = 2: a decrypted sum holds
    # 2 honest (as secagg's). 6 hospitals, t = 4, min_contributors = 4: c = min(3, 2, 1) = 1, 3 honest.
    # 5 hospitals at an explicit 3-of-5: c = 0, 3 honest.
    options = {"insecure_small_key": True, "key_bits": 512}
    assert supported_honest("paillier", 5) == 2
    assert supported_honest("paillier", 6) == 3
    assert supported_honest("paillier", 5, threshold=3) == 3
    with pytest.warns(UserWarning), pytest.raises(ConfigurationError, match=r"sums of 4 uploads.*c = 2.*h = 3"):
        make_aggregator("paillier", num_clients=5, dp=_dp(3), dimension=6, **options)
    with pytest.warns(UserWarning):
        accepted = make_aggregator("paillier", num_clients=5, dp=_dp(2), dimension=6, **options)
    assert accepted.plan.honest == 2  # type: ignore[attr-defined]


def test_round_whose_session_has_a_lower_floor_is_skipped_uncharged() -> None:
    # 10 hospitals support h = 4 (t = 7, c = 3); a round of 5 sampled runs t = 4, c = 2: floor 2 < 4.
    aggregator = make_aggregator("secagg", num_clients=10, dp=_dp(4), dimension=6)
    assert isinstance(aggregator, DPAggregator)
    result = aggregator.aggregate(_updates(range(1, 6)), {}, rng=np.random.default_rng(0))
    assert result.mean is None
    assert "5 hospitals sampled" in (result.skipped_reason or "") and "h = 4" in (result.skipped_reason or "")
    assert aggregator.accountant.num_releases == 0 and aggregator.spent()[0] == 0.0
    # The full roster is released and charged.
    result = aggregator.aggregate(_updates(range(1, 11)), {}, rng=np.random.default_rng(0))
    assert result.mean is not None and aggregator.accountant.num_releases == 1


@pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")
def test_a_paillier_round_of_fewer_hospitals_than_t_is_skipped_uncharged_under_dp_as_without() -> None:
    # 5 hospitals, a 4-of-5 key, h = 2: a round handed 3 of them never decrypts (only its own
    # hospitals decrypt its sum). Without DP it is skipped with the reason; under DP it is skipped
    # too, before the charge, never raised from the honest-floor check of a session that never runs.
    options = {"insecure_small_key": True, "key_bits": 512}
    plain = make_aggregator("paillier", num_clients=5, **options)
    result = plain.aggregate(_updates(range(1, 4)), {}, rng=np.random.default_rng(0))
    assert result.mean is None and "at least 4 are needed" in (result.skipped_reason or "")
    aggregator = make_aggregator("paillier", num_clients=5, dp=_dp(2), dimension=6, **options)
    assert isinstance(aggregator, DPAggregator) and aggregator.plan.honest == 2
    result = aggregator.aggregate(_updates(range(1, 4)), {}, rng=np.random.default_rng(0))
    assert result.mean is None and "3 hospitals would upload; 4 are needed" in (result.skipped_reason or "")
    assert aggregator.accountant.num_releases == 0 and aggregator.spent()[0] == 0.0
    # t hospitals (the bound): the round runs and is released
    result = aggregator.aggregate(_updates(range(1, 5)), {}, rng=np.random.default_rng(0))
    assert result.mean is not None and aggregator.accountant.num_releases == 1


@pytest.mark.parametrize(("name", "honest"), [("secagg+", 2), ("secagg", 2), ("plain-quantized", 4)])
def test_size_honest_caps_h_at_the_floor(name: str, honest: int) -> None:
    aggregator = make_aggregator(name, num_clients=5, dp=_dp(4), dimension=6, size_honest=True)
    assert aggregator.plan.honest == honest  # type: ignore[attr-defined]


@needs_sklearn
@pytest.mark.parametrize(("aggregation", "honest"), [("secagg+", 2), ("plain-quantized", 4)])
def test_the_demo_sizes_h_from_the_configuration(
    aggregation: str, honest: int, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["demo", "--dp-epsilon", "3", "--rounds", "2", "--no-progress", "--aggregation", aggregation]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert f"noise split across 5 hospitals, sized for {honest} honest ones" in printed
    assert (f"(at most {aggregation}'s floor" in printed) == (aggregation != "plain-quantized")


def test_the_moved_dp_names_are_still_importable_from_their_old_modules() -> None:
    # make_dp_aggregator / supported_honest moved to fl_core.dp_build, the contributor checks to
    # secagg.dp.contributors; the old import paths stay (lazily, the new modules import the old)
    import fl_core.dp_build  # noqa: PLC0415
    import secagg.dp.contributors  # noqa: PLC0415
    from fl_core.dp import make_dp_aggregator  # noqa: PLC0415
    from fl_core.dp import supported_honest as old_supported_honest  # noqa: PLC0415
    from secagg.dp.calibration import check_contributors, contributor_shortfall  # noqa: PLC0415

    assert make_dp_aggregator is fl_core.dp_build.make_dp_aggregator
    assert old_supported_honest is fl_core.dp_build.supported_honest
    assert check_contributors is secagg.dp.contributors.check_contributors
    assert contributor_shortfall is secagg.dp.contributors.contributor_shortfall


# --- the floor at the guarantee's dropouts and one past them ---------------------------------------------

SECURE = [("secagg", {}), ("secagg+", {}), ("paillier", {"insecure_small_key": True, "key_bits": 512})]


@pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")
@pytest.mark.parametrize("n", [5, 6, 7])
@pytest.mark.parametrize(("name", "options"), SECURE, ids=[name for name, _ in SECURE])
def test_a_round_at_the_guarantees_dropouts_holds_exactly_h_honest_and_one_more_dropout_is_skipped(
    name: str, options: dict[str, object], n: int
) -> None:
    # Prepare: h sized at the floor (as the Flower server and the demo do); the full round's guarantee
    aggregator = make_aggregator(name, num_clients=n, dp=_dp(n), dimension=6, size_honest=True, **options)
    assert isinstance(aggregator, DPAggregator)
    guarantee = aggregator.inner.guarantee
    h, c, d = aggregator.plan.honest, guarantee.colluders, guarantee.dropouts
    assert h == aggregator.floor
    # Execute / Assert: d hospitals drop before uploading: released (and charged); the sum holds n - d
    # uploads, c of them possibly colluders': exactly h honest noise shares, no more, in the worst case
    dropouts = {client: (DropoutStage.JOIN, DropoutStage.UPLOAD)[client % 2] for client in range(1, d + 1)}
    result = aggregator.aggregate(_updates(range(1, n + 1)), dropouts, rng=np.random.default_rng(0))
    assert result.mean is not None, result.skipped_reason
    assert sorted(result.included) == list(range(d + 1, n + 1))
    assert len(result.included) - c == h
    assert aggregator.accountant.num_releases == 1
    # One more dropout: h - 1 honest in the worst case: skipped before anything is sent, not charged
    dropouts[d + 1] = DropoutStage.UPLOAD
    result = aggregator.aggregate(_updates(range(1, n + 1)), dropouts, rng=np.random.default_rng(0))
    assert result.mean is None and result.skipped_reason
    assert aggregator.accountant.num_releases == 1
    # After uploading: d drop before the last step: every upload counts, released; d + 1 abort the
    # session with no sum (charged: fl_core.dp charges the budget before the protocol runs)
    late = dict.fromkeys(range(1, d + 1), DropoutStage.FINALIZE)
    result = aggregator.aggregate(_updates(range(1, n + 1)), late, rng=np.random.default_rng(0))
    assert result.mean is not None and sorted(result.included) == list(range(1, n + 1))
    assert aggregator.accountant.num_releases == 2
    late[d + 1] = DropoutStage.FINALIZE
    result = aggregator.aggregate(_updates(range(1, n + 1)), late, rng=np.random.default_rng(0))
    assert result.mean is None and not result.included
    assert aggregator.accountant.num_releases == 3  # the aborted round is charged: its noise shares were sent
