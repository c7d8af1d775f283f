"""The bound-DP and run-config helpers, function by function (mutation audit).

Each test pins one refusal or bound that the end-to-end Flower tests reach only through its
caller's own check, or at one value only: the record a mod writes carries the plan's
sampling rate, ``with_bound_dp`` itself refuses a server's record, the update-norm check
allows the rounding slack once (not twice), for complex arrays too and for the handler's
arithmetic, and refuses a non-finite slack; the run-config digest covers its first entry.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("dp_accounting")

from flwr.app import ConfigRecord, Message, RecordDict

from secagg.dp import DPConfig
from secagg.dp.calibration import NoisePlan, calibrate
from secagg.errors import ConfigurationError, ProtocolError
from secagg.integrations.flower.arrays import ArrayLayout, ArraySpec
from secagg.integrations.flower.bound_plan import (
    BOUND_DP_RECORD,
    bound_dp,
    check_dp_update,
    rounding_slack,
    with_bound_dp,
)
from secagg.integrations.flower.run_binding import check_run_config_option, run_config_digest

DP = DPConfig(epsilon=2.0, delta=1e-5, rounds=2, l2_clip=1.0, min_honest=3)
FLOAT32_EPS = float(np.finfo(np.float32).eps)


pytestmark = pytest.mark.usefixtures("server_identity")


def plan_of(config: DPConfig) -> NoisePlan:
    return calibrate(config, num_clients=5, scale=2.0**10, dimension=8)


def message_of(content: RecordDict) -> Message:
    return Message(content, dst_node_id=1, message_type="train")


def test_with_bound_dp_itself_refuses_a_content_holding_the_record() -> None:
    # The node's train_locally checks first, but with_bound_dp is the writer: it must never
    # hand a handler the server's record as the bound plan, whoever calls it.
    forged = RecordDict({BOUND_DP_RECORD: ConfigRecord({"l2_clip": 100.0})})
    with pytest.raises(ProtocolError, match=BOUND_DP_RECORD):
        with_bound_dp(forged, plan_of(DP))
    with pytest.raises(ProtocolError, match=BOUND_DP_RECORD):
        with_bound_dp(RecordDict({BOUND_DP_RECORD: ConfigRecord({"l2_clip": 100.0})}), None)


def test_the_bound_record_carries_the_plan_s_sampling_rate() -> None:
    # A handler that Poisson-samples (or refuses to, as the example does) reads the rate here:
    # dropped, the amplification the noise was sized with would silently not hold.
    sampled = DPConfig(epsilon=2.0, delta=1e-5, rounds=2, l2_clip=1.0, min_honest=3, sampling_rate=0.25)
    for config in (DP, sampled):
        plan = plan_of(config)
        seen = bound_dp(message_of(with_bound_dp(RecordDict(), plan)))
        assert seen == plan.config
        assert seen is not None and seen.sampling_rate == config.sampling_rate


def test_the_update_norm_check_allows_the_rounding_slack_once_not_twice() -> None:
    plan, weight, slack = plan_of(DP), 3, 1e-3
    most = weight * DP.l2_clip
    direction = np.ones(8) / np.sqrt(8)
    check_dp_update(plan, direction * (most + 0.5 * slack), weight, slack)  # within its slack
    with pytest.raises(ConfigurationError, match="l2_clip"):
        check_dp_update(plan, direction * (most + 1.5 * slack), weight, slack)


@pytest.mark.parametrize("slack", [float("nan"), float("inf")])
def test_the_update_norm_check_refuses_a_non_finite_slack(slack: float) -> None:
    # norm > most + nan is False: a NaN slack would wave any update through
    with pytest.raises(ConfigurationError, match="l2_clip"):
        check_dp_update(plan_of(DP), np.full(8, 100.0), 1, slack)


def test_the_rounding_slack_covers_the_handler_s_float32_arithmetic() -> None:
    # The trained model near zero (half an ulp of it is ~1e-45): the slack must still cover a
    # few float32 epsilons of the step, so an honest update at the bound computed in float32
    # (its norm a few epsilons above weight x l2_clip) is not refused.
    layout = ArrayLayout((ArraySpec("arrays", "w", "float32", (8,)),))
    delta = np.ones(8) / np.sqrt(8) * DP.l2_clip * (1 + 4 * FLOAT32_EPS)
    slack = rounding_slack(np.zeros(8), delta, layout)
    assert slack >= 8 * FLOAT32_EPS * DP.l2_clip
    check_dp_update(plan_of(DP), delta, 1, slack)


def test_the_rounding_slack_of_a_complex64_array_is_that_of_its_float32_parts() -> None:
    # A complex64 array is sent as its float32 real and imaginary parts: rounded as float32.
    rng = np.random.default_rng(0)
    local, delta = rng.normal(size=8), rng.normal(size=8)
    complex_layout = ArrayLayout((ArraySpec("arrays", "z", "complex64", (4,)),))
    float_layout = ArrayLayout((ArraySpec("arrays", "x", "float32", (8,)),))
    slack = rounding_slack(local, delta, complex_layout)
    assert slack > 0.0
    assert slack == pytest.approx(rounding_slack(local, delta, float_layout))


def test_the_run_config_digest_covers_every_entry_the_first_by_name_included() -> None:
    config = {"a-first": 1, "learning-rate": 0.1, "z-last": "x"}
    base = run_config_digest(config)
    for name in config:
        changed = {**config, name: 2 if name == "a-first" else 0.2 if name == "learning-rate" else "y"}
        assert run_config_digest(changed) != base, name
    assert run_config_digest({k: v for k, v in config.items() if k != "a-first"}) != base


@pytest.mark.parametrize("run_config", [[("learning-rate", 0.1)], "learning-rate"])
def test_a_run_config_that_is_not_a_mapping_is_refused(run_config: object) -> None:
    # A list of pairs would otherwise pass through dict() and be bound as if it were the run config
    with pytest.raises(ConfigurationError, match="run_config must be"):
        check_run_config_option(run_config)
