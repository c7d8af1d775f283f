"""``secagg demo``: every option value the run cannot serve is a usage error (exit 2, the demo's
usage line, "argument --OPTION: ..." naming what it accepts), found before any output or work:
the data split, the sample bound, the byte budget and the DP calibration are checked before the
header is printed and before any aggregator, key or round exists.

The options that need nothing but their own values are refused while parsing
(tests/primitives/test_errors_and_cli.py); these need the data set's split or a calibration.
"""

from __future__ import annotations

import importlib.util
from typing import NoReturn

import pytest

from fl_core import demo
from fl_core.demo_config import DemoConfig
from fl_core.demo_dp import check_calibration
from fl_core.demo_prepare import prepare_demo, protocol_options
from fl_core.dp import DPAggregator
from secagg import cli

pytestmark = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="needs the examples extra")


class _ReachedWorkError(Exception):
    """The run got past its checks (raised instead of the work)."""


def _forbid_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def setup(*args: object, **kwargs: object) -> NoReturn:
        raise _ReachedWorkError("setup")  # aggregators, keys, the moments release

    monkeypatch.setattr(demo, "_setup", setup)


def _demo_refusal(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """Run ``secagg demo argv``, which must be refused as a usage error before any output or work; its stderr."""
    _forbid_work(monkeypatch)
    try:
        code = cli.main(["demo", "--no-progress", *argv])
    except SystemExit as exited:
        code = exited.code  # type: ignore[assignment]
    except _ReachedWorkError as reached:
        pytest.fail(f"{argv}: the run reached its {reached} before refusing: {capsys.readouterr()}")
    out, err = capsys.readouterr()
    assert code == 2, (code, err)
    assert out == "", f"printed before refusing: {out!r}"
    assert err.startswith("usage: secagg demo"), err
    return err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        # The example: the header was printed, then the split failed.
        (["--hospitals", "30"], "argument --hospitals: the Dirichlet(0.5) split of 398 rows cannot give 30 "
         "hospitals 3 rows each (none of 100 draws did); use a larger alpha or fewer hospitals (--dataset "
         "breast-cancer, --seed 0), or --partition iid"),
        (["--hospitals", "100"], "argument --hospitals: the Dirichlet(0.5) split"),
        (["--aggregation", "paillier", "--insecure-small-key", "--hospitals", "100"], "argument --hospitals: "),
        (["--alpha", "1e-9"], "argument --alpha: the Dirichlet(1e-09) split of 398 rows cannot give 5 hospitals "
         "10 rows each"),
        (["--max-samples-per-client", "1"], "argument --max-samples-per-client: hospital 3 holds 154 training rows"),
        (["--max-samples-per-client", "1", "--dp-epsilon", "1"], "argument --max-samples-per-client: "),
        (["--bytes-per-parameter", "0.01"], "argument --bytes-per-parameter: --bytes-per-parameter 0.01 cannot be "
         "met with secagg+"),
        (["--dp-epsilon", "1e-9"], "argument --dp-epsilon: --dp-epsilon 1e-09 (--dp-delta 1e-05, --rounds 20, "
         "--hospitals 5): no noise variance"),
        (["--dp-epsilon", "1000"], "argument --dp-epsilon: --dp-epsilon 1000 "),
        (["--dp-epsilon", "1", "--dp-delta", "1e-300"], "argument --dp-epsilon: --dp-epsilon 1 (--dp-delta 1e-300"),
        (["--dp-epsilon", "1e-9", "--aggregation", "paillier", "--insecure-small-key"], "argument --dp-epsilon: "),
    ],
)  # fmt: skip
def test_a_value_the_run_cannot_serve_is_a_usage_error_before_any_output(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    err = _demo_refusal(argv, capsys, monkeypatch)
    assert f"secagg demo: error: {expected}" in err, err
    assert "Traceback" not in err and "WARNING" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["--hospitals", "100", "--partition", "iid"],  # iid serves up to one row a hospital
        ["--hospitals", "20", "--dataset", "digits"],
        ["--hospitals", "3", "--dp-epsilon", "1"],
        ["--dp-epsilon", "1", "--dp-scaling", "public-ranges", "--aggregation", "plain-quantized"],
        ["--dp-epsilon", "1e-9", "--dp-scaling", "public-ranges"],  # sampled rounds alone: a variance meets it
        ["--bytes-per-parameter", "1e6"],
        ["--max-samples-per-client", "154"],  # the largest hospital's rows exactly
    ],
)
def test_values_the_run_can_serve_pass_the_checks(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _forbid_work(monkeypatch)
    with pytest.raises(_ReachedWorkError):
        cli.main(["demo", "--no-progress", *argv])
    assert capsys.readouterr().out.startswith("FedAvg on ")


@pytest.mark.parametrize(
    "config",
    [
        DemoConfig(dp_epsilon=3.0, rounds=2),  # secagg+, active, 5 hospitals: h capped by its floor
        DemoConfig(dp_epsilon=3.0, rounds=2, hospitals=3, masking_mode="semi-honest"),
        DemoConfig(dp_epsilon=1.0, rounds=2, aggregation="plain-quantized", dp_scaling="public-ranges"),
        DemoConfig(dp_epsilon=2.0, rounds=3, aggregation="secagg", dataset="digits", hospitals=8),
    ],
)
def test_the_up_front_calibration_is_the_one_the_setup_makes(config: DemoConfig) -> None:
    # Execute: the check's plan, then the setup's (which builds the aggregators and releases the moments)
    prepared = prepare_demo(config)
    options = protocol_options(config.aggregation, config)
    checked = check_calibration(config, prepared.raw.num_features, prepared.dimension, config.aggregation, options)
    _, updates = demo._setup(config, prepared.raw, config.aggregation)
    # Assert: the same plan, so the check refuses exactly what the setup would
    assert isinstance(updates, DPAggregator)
    assert checked == updates.plan
