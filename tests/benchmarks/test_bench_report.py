"""The report model, its schema, the option presets and the fits, without running a suite."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from secagg_bench import masking, paillier, scaling
from secagg_bench.common import RunContext, format_value, resolve
from secagg_bench.report import SCHEMA_ID, SuiteReport, Target, validate

from secagg.errors import ConfigurationError

pytest.importorskip("jsonschema")


def _report(**changes: Any) -> SuiteReport:
    fields: dict[str, Any] = {
        "suite": "peers",
        "mode": "quick",
        "command": "secagg bench peers --quick",
        "machine": {"platform": "p", "python": "3", "cpus": 2, "cpu_model": "c", "numpy": "2", "secagg": "0.1"},
        "started": "2026-01-01T00:00:00+00:00",
        "seconds": 1.5,
        "floors": {"aes128_ctr_bytes_per_s": 1e9, "numpy_add_uint32_per_s": 1e9, "powmod_s": {"2048": 0.01}},
        "results": [
            {
                "params": {"peer": "x", "component": "c", "role": "client"},
                "metrics": {"ours_s": 1.0, "peer_s": 2.0, "ours_over_peer": 0.5},
            }
        ],
        "targets": [Target("t", "d", 0.5, 1.0, "<=")],
    }
    fields.update(changes)
    return SuiteReport(**fields)


def test_a_complete_report_is_valid() -> None:
    # Execute
    document = _report().to_json()

    # Assert
    assert document["schema"] == SCHEMA_ID
    assert validate(document) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("mode",), "fast"),
        (("suite",), "everything"),
        (("results",), []),
        (("floors", "powmod_s"), {}),
        (("results", 0, "metrics", "ours_s"), [1, 2]),
        (("targets", 0, "comparison"), "<"),
        (("machine", "cpu_model"), None),
        (("unexpected",), 1),
    ],
)
def test_schema_rejects_a_broken_report(path: tuple[Any, ...], value: Any) -> None:
    # Prepare
    document = copy.deepcopy(_report().to_json())
    target = document
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value

    # Execute
    errors = validate(document)

    # Assert
    assert errors


def test_schema_requires_each_suites_key_metrics() -> None:
    # Prepare
    document = _report(suite="masking").to_json()

    # Execute
    errors = validate(document)

    # Assert
    assert any("client_mask_s" in error for error in errors)
    assert any("clients" in error for error in errors)


def test_non_finite_numbers_are_written_as_null(tmp_path: Path) -> None:
    # Prepare
    report = _report(
        results=[
            {
                "params": {"peer": "x", "component": "c", "role": "client"},
                "metrics": {"ours_s": math.nan, "peer_s": math.inf, "ours_over_peer": 0.5},
            }
        ]
    )

    # Execute
    report.write_json(tmp_path / "peers.json")
    document = json.loads((tmp_path / "peers.json").read_text(encoding="utf-8"))

    # Assert
    assert document["results"][0]["metrics"]["ours_s"] is None
    assert document["results"][0]["metrics"]["peer_s"] is None
    assert validate(document) == []


def test_csv_has_one_line_per_result_and_prefixes_clashing_names(tmp_path: Path) -> None:
    # Prepare
    report = _report(
        results=[
            {"params": {"peer": "a", "dim": 3}, "metrics": {"dim": 4, "ours_s": 0.5}},
            {"params": {"peer": "b", "dim": 5}, "metrics": {"dim": 6, "ours_s": None}},
        ]
    )

    # Execute
    report.write_csv(tmp_path / "peers.csv")
    lines = (tmp_path / "peers.csv").read_text(encoding="utf-8").splitlines()

    # Assert
    assert lines == ["peer,dim,metric:dim,ours_s", "a,3,4,0.5", "b,5,6,"]


@pytest.mark.parametrize(
    ("achieved", "limit", "comparison", "met"),
    [(1.4, 1.5, "<=", True), (1.6, 1.5, "<=", False), (310.0, 300.0, ">=", True), (None, 1.0, "<=", None)],
)
def test_target_met(achieved: float | None, limit: float, comparison: str, met: bool | None) -> None:
    # Execute
    target = Target("t", "d", achieved, limit, comparison)

    # Assert
    assert target.met is met


def test_target_without_limit_is_only_reported_and_bad_comparisons_are_refused() -> None:
    # Execute
    reported = Target("t", "d", 2.0, None, "report")

    # Assert
    assert reported.met is None
    with pytest.raises(ConfigurationError):
        Target("t", "d", 2.0, None, "<=")
    with pytest.raises(ConfigurationError):
        Target("t", "d", 2.0, 1.0, "<")


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (0.0123, "s", "12.3 ms"),
        (2.5e-5, "s", "25 us"),
        (123.4, "s", "123 s"),
        (1.234, "x", "1.23x"),
        (385.2, "x", "385x"),
        (4_000_000, "bytes", "4 MB"),
        (0.1, "pct", "10%"),
        (None, "s", "-"),
        (math.nan, "x", "-"),
        (True, "str", "True"),
    ],
)
def test_format_value(value: Any, unit: str, text: str) -> None:
    # Execute / Assert
    assert format_value(value, unit) == text


def test_explicit_options_replace_the_preset() -> None:
    # Execute
    options = resolve({"quick": {"a": 1, "b": [2]}}, "quick", {"a": None, "b": [5, 6]})

    # Assert
    assert options == {"a": 1, "b": [5, 6]}


def test_masking_grid_dedupes_and_keeps_the_most_repeats() -> None:
    # Prepare
    options = resolve(masking.PRESETS, "full", {})
    options["repeats_override"] = None

    # Execute
    plan = masking.configurations(options)

    # Assert
    assert len(plan) == len({p[:4] for p in plan})
    assert (100, 1_000_000, "harary", 0.1, 5, 32) in plan
    assert (100, 1_000_000, "complete", 0.1, 1, 32) in plan


def test_masking_options_override_every_sweep() -> None:
    # Prepare
    options = resolve(masking.PRESETS, "quick", {"clients": [7], "graph": ["harary"]})
    options["repeats_override"] = 2

    # Execute
    plan = masking.configurations(options)

    # Assert
    assert {p[0] for p in plan} == {7}
    assert {p[2] for p in plan} == {"harary"}
    assert {p[4] for p in plan} == {2}
    assert {p[5] for p in plan} == {32}  # Z_(2^32) unless --ring-bits names others


def test_masking_ring_bits_option_multiplies_the_grid() -> None:
    options = resolve(masking.PRESETS, "custom", {"ring_bits": [8, 12, 32]})
    options["repeats_override"] = None
    plan = masking.configurations(options)
    assert sorted(p[5] for p in plan) == [8, 12, 32]
    assert len({p[:4] for p in plan}) == 1


def test_paillier_grid_accepts_a_single_worker_count() -> None:
    # Prepare
    options = resolve(paillier.PRESETS, "full", {"workers": 1, "dim": [50]})

    # Execute
    plan = paillier.configurations(options)

    # Assert
    assert {p["workers"] for p in plan} == {1}
    assert {p["dim"] for p in plan} == {50}
    assert len(plan) == len({tuple(p.values()) for p in plan})


def test_fits_tell_logarithmic_from_linear_growth() -> None:
    # Prepare
    n = [10, 20, 50, 100, 200, 500, 1000]
    logarithmic = [0.002 * math.log2(v) for v in n]
    linear = [0.0001 * v for v in n]

    # Execute
    slope_log, slope_linear = scaling.loglog_slope(n, logarithmic), scaling.loglog_slope(n, linear)
    a, r2 = scaling.fit_log(n, logarithmic)

    # Assert
    assert slope_log is not None and slope_log < 0.5
    assert slope_linear == pytest.approx(1.0)
    assert a == pytest.approx(0.002)
    assert r2 == pytest.approx(1.0)
    assert scaling.loglog_slope([10], [1.0]) is None


def _scaling_rows(per_neighbour: dict[int, float], degrees: dict[int, int]) -> list[dict[str, Any]]:
    return [
        {
            "params": {"requested_graph": "harary", "clients": n, "degree": degrees[n]},
            "metrics": {
                "client_total_s": per_neighbour[n] * degrees[n],
                "client_total_per_neighbour_s": per_neighbour[n],
                "bytes_per_client_download": 300.0 * degrees[n],
            },
        }
        for n in per_neighbour
    ]


@pytest.mark.parametrize(("growth", "met"), [(0.0, True), (0.001, False)])
def test_scaling_targets_tell_cost_proportional_to_k(growth: float, met: bool) -> None:
    # Prepare: k from the derivation's table; per-neighbour cost flat, or growing with n.
    degrees = {10: 4, 50: 8, 100: 16, 300: 28, 1000: 36}
    rows = _scaling_rows({n: 2e-4 + growth * n / 100 for n in degrees}, degrees)
    # Execute
    found = {target.name: target for target in scaling.targets(rows)}
    # Assert
    affine = found["SecAgg+ per-client cost vs a + b k (largest relative residual)"]
    assert affine.met is met
    degree_slope = found["SecAgg+ degree k growth, top decade (log-log slope)"].achieved
    assert degree_slope == pytest.approx(scaling.loglog_slope([100, 300, 1000], [16, 28, 36]))
    assert scaling.affine_fit([4.0, 16.0], [1.0, 4.0]) == pytest.approx((0.0, 0.25))
    bytes_slope = found["SecAgg+ bytes received per client, top decade (log-log slope)"].achieved
    assert bytes_slope == pytest.approx(degree_slope)


def test_paillier_suite_refuses_a_key_shape_sessions_refuse_before_measuring_anything() -> None:
    # --threshold 3 over the quick preset's 10 clients: 2t <= l, a key every session refuses;
    # refused before the floors and the prime search, not after minutes of measuring
    context = RunContext("quick", "secagg bench paillier --threshold 3", progress=False)
    with mock.patch.object(RunContext, "floors", side_effect=AssertionError("floors measured")), mock.patch.object(
        paillier, "generate_safe_primes", side_effect=AssertionError("primes searched")
    ), pytest.raises(ConfigurationError, match=r"least safe threshold for l = 10 is 6"):
        paillier.run({"threshold": 3}, context)
