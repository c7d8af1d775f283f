"""The Paillier benchmark measurement (``python -m secagg.paillier.benchmark``): a smoke run at 2048 bits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from secagg.errors import ConfigurationError
from secagg.paillier.benchmark import build_parser, main

REQUIRED_METRICS = {
    "encrypt_s", "aggregate_s", "partial_decrypt_s", "decrypt_s", "naive_phe_encrypt_s",
    "floor_encrypt_s", "ciphertext_bytes_per_value", "exact",
}


@pytest.mark.production_policy
def test_benchmark_writes_the_documented_json(tmp_path: Path) -> None:
    # Prepare
    out = tmp_path / "paillier.json"
    args = build_parser().parse_args([
        "--clients", "2", "--dim", "10", "--key-bits", "2048", "--workers", "1", "--naive-sample", "2",
        "--obfuscation", "textbook", "--json", str(out),
    ])
    # Execute: the smallest honest run (2 clients, 10 values, one process)
    code = main(args)
    # Assert
    assert code == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    (result,) = report["results"]
    assert result["params"]["key_bits"] == 2048 and result["params"]["clients"] == 2
    assert set(result["metrics"]) >= REQUIRED_METRICS
    assert result["metrics"]["exact"] is True
    assert result["metrics"]["naive_phe_scaled"] is True
    assert "naive_phe_encrypt_s" in report["notes"] and "floor_encrypt_s" in report["notes"]


@pytest.mark.production_policy
def test_benchmark_refuses_small_keys() -> None:
    # The command line refuses --key-bits 1024 while parsing (tests/benchmarks/test_bench_option_errors.py);
    # main, called directly, still leaves it to the library.
    args = build_parser().parse_args(["--ceremony-only", "--ceremony-repeats", "1", "--workers", "1"])
    args.key_bits = [1024]
    with pytest.raises(ConfigurationError, match="below the minimum"):
        main(args)
