"""Each round's guarantee is computed for the clients it actually runs with, not assumed from the full
roster: a FedAvg round over ceil(C * K) sampled hospitals records its own session's guarantee, the run
states the weakest it recorded, and a DP round sampled below its honest floor is skipped uncharged."""

from __future__ import annotations

import logging
import math
import os
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from fl_core import fedavg
from fl_core.aggregators import ClientUpdate, DropoutStage, make_aggregator
from fl_core.aggregators.masking import MaskingAggregator, session_config
from fl_core.dp import DPAggregator
from fl_core.fedavg import FedAvgConfig, FedAvgResult, run_fedavg
from fl_core.guarantees import round_guarantee, sampled_count, sampled_guarantee, weakest
from fl_core.models import LogisticRegression
from secagg.dp import DPConfig, SeededRandomSource
from secagg.errors import ConfigurationError, ConfigurationTypeError
from secagg.guarantee import Guarantee
from secagg.paillier.parameters import paillier_guarantee
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.primitives.signing import placeholder_public_keys
from tests.fl_core.conftest import synthetic_clients

EIGHT = (40, 25, 60, 15, 35, 30, 45, 20)


def _protocol(graph: str, num_clients: int, mode: str) -> Guarantee:
    """The masking protocol's own guarantee for a session of ``num_clients`` (its t and c for that n)."""
    keys = placeholder_public_keys(num_clients) if mode == "active" else ()
    return session_config(graph, num_clients, 1, mode=mode, identity_keys=keys).guarantee


def _run(name: str, fraction: float, rounds: int = 2, **options: Any) -> tuple[MaskingAggregator, FedAvgResult]:
    clients, test_x, test_y = synthetic_clients(EIGHT)
    aggregator = make_aggregator(name, num_clients=8, random_bytes=InsecureDeterministicRandom(3), **options)
    assert isinstance(aggregator, MaskingAggregator)
    config = FedAvgConfig(rounds=rounds, learning_rate=0.1, client_fraction=fraction, seed=4)
    return aggregator, run_fedavg(LogisticRegression(test_x.shape[1]), clients, aggregator, test_x, test_y, config)


@pytest.mark.parametrize(("mode", "sampled", "full"), [("active", (1, 2), (3, 2)), ("semi-honest", (1, 3), (2, 4))])
def test_a_sampled_round_records_its_own_sessions_guarantee_not_the_full_rosters(
    mode: str, sampled: tuple[int, int], full: tuple[int, int], caplog: pytest.LogCaptureFixture
) -> None:
    # 8 hospitals, C = 0.75: every round runs a session of 6. Active: t = 4 of 6 tolerates c = 1 colluder
    # (t = 6 of 8: c = 3); semi-honest: t = 3 of 6, c = 1, d = 3 (t = 4 of 8: c = 2, d = 4).
    with caplog.at_level(logging.INFO, logger="fl_core"):
        aggregator, result = _run("secagg", 0.75, mode=mode)
    expected = _protocol("complete", 6, mode)
    assert (expected.colluders, expected.dropouts) == sampled
    assert (aggregator.guarantee.colluders, aggregator.guarantee.dropouts) == full  # the full roster's
    assert [len(r.sampled) for r in result.rounds] == [6, 6]
    assert all(r.skipped_reason is None for r in result.rounds)
    assert [r.guarantee for r in result.rounds] == [expected, expected]
    assert result.guarantee == expected != aggregator.guarantee  # the run states the weakest it ran
    assert sampled_guarantee(aggregator, 8, 0.75) == expected  # stated before the run, the same
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"each round samples 6 of 8 clients: its session guarantees {expected} (a round of all 8: " in warned[0]


def test_a_full_round_records_the_full_rosters_guarantee() -> None:
    aggregator, result = _run("secagg+", 1.0, rounds=1)
    assert result.rounds[0].guarantee == aggregator.guarantee == _protocol("harary", 8, "active")
    assert result.guarantee == aggregator.guarantee


def test_aggregate_over_a_subset_with_early_dropouts_reports_the_subsets_session() -> None:
    # Called directly with 6 of its 8 hospitals, two of them silent from the first message (JOIN): the
    # session is one of 6 (the silent ones count against its dropouts), and that is what the result states.
    aggregator = make_aggregator("secagg", num_clients=8, random_bytes=InsecureDeterministicRandom(5))
    updates = [ClientUpdate(k, np.full(4, 0.01 * k), 10) for k in (2, 3, 5, 6, 7, 8)]
    result = aggregator.aggregate(
        updates, {3: DropoutStage.JOIN, 7: DropoutStage.JOIN}, rng=np.random.default_rng(0)
    )
    assert result.mean is not None and result.included == frozenset({2, 5, 6, 8})
    assert result.guarantee == _protocol("complete", 6, "active") == round_guarantee(aggregator, 6)
    # One more dropout than the 6-client session survives (d = 2): aborted, and the session it was is named.
    aborted = aggregator.aggregate(
        updates, {3: DropoutStage.JOIN, 7: DropoutStage.JOIN, 8: DropoutStage.SETUP}, rng=np.random.default_rng(0)
    )
    assert aborted.mean is None and aborted.guarantee == _protocol("complete", 6, "active")


def test_plain_rounds_state_no_guarantee() -> None:
    clients, test_x, test_y = synthetic_clients(EIGHT)
    config = FedAvgConfig(rounds=1, client_fraction=0.5, seed=1)
    result = run_fedavg(LogisticRegression(6), clients, make_aggregator("plain"), test_x, test_y, config)
    assert result.rounds[0].guarantee is None and result.guarantee is None
    assert round_guarantee(make_aggregator("plain"), 4) is None


def test_the_weakest_of_several_guarantees_takes_each_bound_at_its_weakest() -> None:
    strong, low_c, low_d = Guarantee(3, 2, True), Guarantee(1, 4, True), Guarantee(4, 1, True)
    assert weakest([strong, low_c, low_d]) == Guarantee(1, 1, True)
    assert weakest([strong, None, Guarantee(2, 3, False)]) == Guarantee(2, 2, False)
    assert weakest([None]) is None and weakest([]) is None
    # Failure probabilities: 0 is exact, so the weakest is the smallest positive exponent.
    assert weakest([Guarantee(3, 2, True), Guarantee(3, 2, True, 40, 20)]) == Guarantee(3, 2, True, 40, 20)
    assert weakest([Guarantee(3, 2, True, 40, 0), Guarantee(3, 2, True, 30, 20)]) == Guarantee(3, 2, True, 30, 20)
    insecure = Guarantee(3, 2, True, insecure="a 512-bit key")
    assert weakest([strong, insecure]) == insecure


@pytest.mark.parametrize(("clients", "fraction", "count"), [(8, 0.75, 6), (8, 0.7, 6), (5, 0.1, 1), (10, 1.0, 10)])
def test_sampled_count_is_the_count_fedavg_samples(clients: int, fraction: float, count: int) -> None:
    assert sampled_count(clients, fraction) == count == max(1, math.ceil(fraction * clients))


@pytest.mark.parametrize(
    ("clients", "fraction", "count"), [(50, 0.14, 7), (100, 0.07, 7), (25, 0.28, 7), (25, 0.56, 14), (3, 0.1, 1)]
)
def test_sampled_count_reads_the_fraction_as_the_decimal_it_prints_as(
    clients: int, fraction: float, count: int
) -> None:
    """C = 0.14 of 50 hospitals is 7, though the float product 0.14 * 50 is 7.000000000000001 (ceil: 8):
    one more hospital than the user asked for, in every round, and a guarantee computed for 8."""
    assert sampled_count(clients, fraction) == count


def test_a_sampling_rate_no_session_can_run_is_refused_before_any_training(monkeypatch: pytest.MonkeyPatch) -> None:
    # 8 hospitals at C = 0.25: rounds of 2, below the 3 a masking session needs. Refused up front (the old
    # code trained round 1 first, then raised from the aggregator).
    clients, test_x, test_y = synthetic_clients(EIGHT)
    trained: list[int] = []
    original = fedavg._round_updates

    def counting(*args: Any, **kwargs: Any) -> Any:
        trained.append(args[5])  # the round
        return original(*args, **kwargs)

    monkeypatch.setattr(fedavg, "_round_updates", counting)
    config = FedAvgConfig(rounds=2, client_fraction=0.25, seed=1)
    with pytest.raises(ConfigurationError, match="round needs at least 3 clients, got 2"):
        run_fedavg(LogisticRegression(6), clients, make_aggregator("secagg", num_clients=8), test_x, test_y, config)
    assert trained == []  # no hospital trained


def _dp_secagg(num_clients: int, min_honest: int) -> DPAggregator:
    dp = DPConfig(epsilon=3.0, delta=1e-5, rounds=2, l2_clip=1.0, min_honest=min_honest)
    aggregator = make_aggregator(
        "secagg", num_clients=num_clients, dp=dp, dimension=14, noise_source=SeededRandomSource(bytes(32)),
        random_bytes=InsecureDeterministicRandom(1),
    )  # fmt: skip
    assert isinstance(aggregator, DPAggregator)
    return aggregator


def test_a_dp_run_sampled_below_its_honest_floor_is_skipped_uncharged_every_round() -> None:
    # 10 hospitals support h = 4 (t = 7, c = 3); C = 0.5 samples 5, whose session (t = 4, c = 2) holds only
    # 2 honest noise shares in a sum its server can unmask: every round is skipped before it is charged,
    # with the reason in its record (no session ran: no guarantee recorded), though the full roster's
    # aggregator accepts h = 4.
    clients, test_x, test_y = synthetic_clients((20,) * 10)
    aggregator = _dp_secagg(10, 4)
    config = FedAvgConfig(rounds=2, learning_rate=0.5, client_fraction=0.5, seed=2)
    result = run_fedavg(LogisticRegression(6), clients, aggregator, test_x, test_y, config)
    assert [len(r.sampled) for r in result.rounds] == [5, 5]
    for record in result.rounds:
        assert record.included == () and record.skipped_reason is not None
        assert "5 hospitals sampled" in record.skipped_reason and "h = 4" in record.skipped_reason
    assert aggregator.accountant.num_releases == 0 and aggregator.spent()[0] == 0.0


def test_a_dp_run_records_the_sampled_sessions_guarantee() -> None:
    # 10 hospitals, h = 2, C = 0.6: rounds of 6 (t = 4, c = 1, d = 2), released, each recording the
    # session of 6's guarantee, not the full roster's (t = 7, c = 3, d = 3), through the DP wrapper.
    clients, test_x, test_y = synthetic_clients((20,) * 10)
    aggregator = _dp_secagg(10, 2)
    expected = _protocol("complete", 6, "active")
    assert sampled_guarantee(aggregator, 10, 0.6) == expected != round_guarantee(aggregator, 10)
    assert round_guarantee(aggregator, 10) == _protocol("complete", 10, "active")
    config = FedAvgConfig(rounds=1, learning_rate=0.5, client_fraction=0.6, seed=2)
    result = run_fedavg(LogisticRegression(6), clients, aggregator, test_x, test_y, config)
    assert result.rounds[0].skipped_reason is None and len(result.rounds[0].included) == 6
    assert result.rounds[0].guarantee == result.guarantee == expected


def test_a_sampled_paillier_round_records_its_sessions_guarantee() -> None:
    # 5 hospitals, 4-of-5 key, min_contributors 4: the full roster tolerates c = 2 and d = 1. C = 0.8
    # samples 4: the same c (a released sum still needs 4 uploads; never below the declared colluders),
    # but no dropout survives (d = 0), and that is what each round records and the run states.
    clients, test_x, test_y = synthetic_clients()
    with pytest.warns(UserWarning, match="NOT secure"):
        aggregator = make_aggregator(
            "paillier", num_clients=5, insecure_small_key=True, key_bits=512, colluders=1,
            random_bytes=InsecureDeterministicRandom(2),
        )  # fmt: skip
    assert (aggregator.guarantee.colluders, aggregator.guarantee.dropouts) == (2, 1)  # type: ignore[attr-defined]
    public = aggregator.material.public  # type: ignore[attr-defined]
    expected = paillier_guarantee(public, 4, 4)
    assert (expected.colluders, expected.dropouts) == (2, 0)
    config = FedAvgConfig(rounds=1, learning_rate=0.1, client_fraction=0.8, seed=3)
    result = run_fedavg(LogisticRegression(6), clients, aggregator, test_x, test_y, config)
    assert result.rounds[0].skipped_reason is None and len(result.rounds[0].sampled) == 4
    assert result.rounds[0].guarantee == result.guarantee == expected == sampled_guarantee(aggregator, 5, 0.8)


def test_torch_aggregate_models_over_a_subset_states_the_subsets_session() -> None:
    # The PyTorch adapter hands the aggregator the hospitals it is given: 6 of an aggregator's 8, one
    # silent from the first message. Its outcome's result states the session of 6, not the roster of 8.
    torch = pytest.importorskip("torch")
    from secagg.integrations.torch import aggregate_models  # noqa: PLC0415

    torch.manual_seed(0)
    global_model = torch.nn.Linear(3, 1)
    local = [torch.nn.Linear(3, 1) for _ in range(6)]
    aggregator = make_aggregator("secagg", num_clients=8, random_bytes=InsecureDeterministicRandom(6))
    outcome = aggregate_models(
        global_model, local, aggregator, num_samples=[10] * 6, rng=np.random.default_rng(0),
        client_ids=[1, 2, 3, 4, 5, 6], dropouts={4: DropoutStage.JOIN},
    )  # fmt: skip
    assert outcome.result.mean is not None and len(outcome.result.included) == 5
    assert outcome.result.guarantee == _protocol("complete", 6, "active") != aggregator.guarantee  # type: ignore[attr-defined]


def test_keras_aggregate_models_over_a_subset_states_the_subsets_session(monkeypatch: pytest.MonkeyPatch) -> None:
    # As the PyTorch adapter: 6 Keras models of an aggregator's 8 hospitals, one silent from the first
    # message. The outcome's result states the session of 6 (t = 4, c = 1), not the roster of 8 (t = 6, c = 3).
    monkeypatch.setenv("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "torch"))  # before Keras is imported
    keras = pytest.importorskip("keras")
    from secagg.integrations.keras import aggregate_models  # noqa: PLC0415

    def dense(seed: int) -> Any:
        keras.utils.set_random_seed(seed)
        return keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])

    global_model, local = dense(0), [dense(k) for k in range(1, 7)]
    aggregator = make_aggregator("secagg", num_clients=8, random_bytes=InsecureDeterministicRandom(7))
    outcome = aggregate_models(
        global_model, local, aggregator, num_samples=[10] * 6, rng=np.random.default_rng(0),
        client_ids=[1, 2, 3, 4, 5, 6], dropouts={4: DropoutStage.JOIN},
    )  # fmt: skip
    assert outcome.result.mean is not None and outcome.result.included == frozenset({1, 2, 3, 5, 6})
    expected = _protocol("complete", 6, "active")
    assert (expected.colluders, aggregator.guarantee.colluders) == (1, 3)  # type: ignore[attr-defined]
    assert outcome.result.guarantee == expected != aggregator.guarantee  # type: ignore[attr-defined]


def _paillier_3_of_5() -> Any:
    """5 hospitals, a 3-of-5 key and min_contributors 2: fewer uploads than t are enough to be summed,
    but only t of the round's own hospitals decrypt it."""
    with pytest.warns(UserWarning, match="NOT secure"):
        return make_aggregator(
            "paillier", num_clients=5, insecure_small_key=True, key_bits=512, threshold=3, min_contributors=2,
            random_bytes=InsecureDeterministicRandom(8),
        )  # fmt: skip


def test_a_paillier_round_of_fewer_hospitals_states_the_dropouts_it_survives() -> None:
    # A round of 4 of the 5 share holders: t = 3 of those 4 must decrypt, so it survives 1 dropout (not
    # l - t = 2); a round of 3 survives none. The stated d is attacked at the bound and one past it.
    aggregator = _paillier_3_of_5()
    assert aggregator.guarantee.dropouts == 2  # the full roster: 5 - 3
    assert [aggregator.round_guarantee(n).dropouts for n in (3, 4, 5)] == [0, 1, 2]
    updates = [ClientUpdate(k, np.full(3, 0.01 * k), 10) for k in (1, 2, 3, 4)]
    at_bound = aggregator.aggregate(updates, {4: DropoutStage.JOIN}, rng=np.random.default_rng(0))
    assert at_bound.mean is not None and at_bound.guarantee == aggregator.round_guarantee(4)
    past = aggregator.aggregate(updates, {3: DropoutStage.JOIN, 4: DropoutStage.JOIN}, rng=np.random.default_rng(0))
    assert past.mean is None and "3 partial decryptions are needed" in (past.skipped_reason or "")
    three = aggregator.aggregate(updates[:3], {3: DropoutStage.JOIN}, rng=np.random.default_rng(0))
    assert three.mean is None and aggregator.round_guarantee(3).dropouts == 0


def test_a_paillier_sampling_rate_whose_rounds_never_decrypt_is_refused_before_training() -> None:
    # C = 0.4 of 5: rounds of 2, fewer than the t = 3 hospitals that must decrypt: no round could
    # release a sum (the old code skipped every one).
    aggregator = _paillier_3_of_5()
    with pytest.raises(ConfigurationError, match=r"round of 2 hospitals never completes.*t = 3"):
        aggregator.round_guarantee(2)
    clients, test_x, test_y = synthetic_clients()
    config = FedAvgConfig(rounds=1, client_fraction=0.4, seed=1)
    with pytest.raises(ConfigurationError, match="round of 2 hospitals never completes"):
        run_fedavg(LogisticRegression(6), clients, aggregator, test_x, test_y, config)


def test_a_paillier_round_too_small_to_decrypt_is_skipped_stating_no_guarantee() -> None:
    # 2 hospitals meet min_contributors 2 and upload, but t = 3 must decrypt: skipped, and no guarantee
    # is stated for a session that could never release a sum (nor does computing one raise).
    aggregator = _paillier_3_of_5()
    updates = [ClientUpdate(k, np.full(3, 0.01 * k), 10) for k in (1, 2)]
    result = aggregator.aggregate(updates, {}, rng=np.random.default_rng(0))
    assert result.mean is None and "3 partial decryptions are needed" in (result.skipped_reason or "")
    assert result.guarantee is None


def test_the_demo_json_carries_each_rounds_guarantee_and_the_weakest() -> None:
    # A report over two rounds whose sessions guaranteed differently: each round's entry names its own,
    # the top-level line the weakest (what the summary's "protection:" prints).
    from fl_core.demo_config import DemoConfig, DemoReport  # noqa: PLC0415
    from fl_core.fedavg import RoundRecord  # noqa: PLC0415

    six, eight = _protocol("complete", 6, "active"), _protocol("complete", 8, "active")
    common = {"accuracy": 0.5, "loss": 0.7, "aggregation_s": 0.0, "bytes_per_client": 1.0, "dropouts": ()}
    records = tuple(
        RoundRecord(round=t, sampled=(1, 2, 3), included=(1, 2, 3), guarantee=g, **common)  # type: ignore[arg-type]
        for t, g in ((1, eight), (2, six), (3, None))
    )
    result = FedAvgResult(params=[], rounds=records, initial_accuracy=0.5, initial_loss=0.7, converged=False)
    assert result.guarantee == six
    report = DemoReport(DemoConfig(hospitals=8), result, None, None, None, "", 0.0, guarantee=str(result.guarantee))
    document = report.to_json()
    assert [r["guarantee"] for r in document["rounds"]] == [str(eight), str(six), None]
    assert document["guarantee"] == str(six)


@pytest.mark.parametrize(
    ("clients", "fraction", "count"),
    [
        (6, Fraction(5, 6), 5),  # exactly 5/6 of 6; its float prints as 0.8333333333333334 (6 before)
        (50, np.float32(0.14), 7),  # prints as 0.14 (8 before: read as 0.14000000596...)
        (50, np.float64(0.14), 7),
        (50, Decimal("0.14"), 7),
        (10, 1e-20, 1),
        (10, 1, 10),
    ],
    ids=["Fraction", "float32", "float64", "Decimal", "tiny", "int"],
)
def test_sampled_count_reads_any_number_as_it_prints(clients: int, fraction: Any, count: int) -> None:
    assert sampled_count(clients, fraction) == count


@pytest.mark.parametrize(
    ("fraction", "error"),
    [
        ("0.5", ConfigurationTypeError),  # a string (sampled_count parsed it; FedAvgConfig raised TypeError)
        (None, ConfigurationTypeError),
        (True, ConfigurationTypeError),  # a bool is no fraction (read as 1.0 before)
        (float("nan"), ConfigurationError),  # sampled_count raised a bare ValueError
        (2.0, ConfigurationError),  # sampled_count returned 20 of 10 clients
        (0.0, ConfigurationError),
    ],
    ids=["str", "None", "bool", "nan", "above 1", "zero"],
)
def test_a_client_fraction_that_is_not_one_is_refused_with_the_library_s_error(fraction: Any, error: type) -> None:
    with pytest.raises(error, match="client_fraction"):
        sampled_count(10, fraction)
    with pytest.raises(error, match="client_fraction"):
        FedAvgConfig(client_fraction=fraction)
