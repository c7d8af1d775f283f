"""The sampler-throughput measurement runs and reports consistent figures (not a timed test)."""

from __future__ import annotations

from secagg_bench.dp_sampler import sampler_throughput


def test_sampler_throughput_reports_rates_and_floor() -> None:
    # Execute
    rows = sampler_throughput(sigma_squared=(100, 2**40), size=2000, repeats=1)

    # Assert
    assert [row["params"]["sigma_squared"] for row in rows] == [100, 2**40]
    for row in rows:
        metrics = row["metrics"]
        assert 8 <= metrics["bytes_per_sample"] < 1000  # whole 8-byte words; about a dozen per sample
        assert metrics["floor_samples_per_s"] == metrics["prg_bytes_per_s"] / metrics["bytes_per_sample"]
        assert all(metrics[key] > 0 for key in metrics)
