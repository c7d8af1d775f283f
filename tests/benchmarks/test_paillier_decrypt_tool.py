"""benchmarks.paillier_decrypt: the decryption variants docs/paillier.md compares, timed in one run."""

from __future__ import annotations

import pytest
from secagg_bench.paillier_decrypt import main, measure

from secagg.paillier import insecure_key_sizes_for_testing


def test_every_variant_is_timed_per_ciphertext() -> None:
    # Execute: a small key (the tool itself refuses keys below 2048 bits)
    with insecure_key_sizes_for_testing():
        per_ciphertext = measure(256, 3, 1)
    # Assert: the six rows of the table, the default single-key row first (the ratios' reference)
    assert list(per_ciphertext) == [
        "single key, CRT, powmod_sec (default)",
        "single key, c^(2d), powmod_sec (default before CRT)",
        "single key, phe CRT (constant_time=False)",
        "phe raw_decrypt alone",
        "share, powmod_sec (default)",
        "share, powmod (constant_time=False)",
    ]
    assert all(value >= 0 for value in per_ciphertext.values())


@pytest.mark.parametrize("argv", [["--key-bits", "1024"], ["--key-bits", "2049"], ["--count", "0"]])
def test_a_key_or_count_out_of_range_is_a_usage_error(argv: list[str]) -> None:
    # Execute / Assert: refused before any prime is searched (argparse's exit code 2)
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
