"""``secagg bench``: a grid whose largest masking session cannot fit in memory is a usage error
before any work (exit 2, naming the option, the estimate, the limit and ``--max-memory``), not a
machine swapping for hours. The estimate (docs/benchmarks.md, "Memory"): 512 MiB, plus three
ring words per client and coordinate, plus 2 KiB per client and neighbour (its graph's degree + 1).
Nothing here runs a session: the refusal path must not even import the runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from secagg_bench import memory

from secagg import cli
from secagg.masking.benchmark import harary_config
from tests.primitives.test_errors_and_cli import _refusal  # the one usage-error runner

GIB = 1 << 30


def _largest_dim(n: int, degree: int, word_bytes: int, limit: int) -> int:
    """The largest d whose session of n clients fits ``limit`` bytes, by the documented estimate."""
    return (limit - 512 * (1 << 20) - 2048 * n * (degree + 1)) // (3 * n * word_bytes)


def _check(argv: list[str]) -> str | None:
    args = cli.build_parser().parse_args(argv)
    problem: str | None = args.check(args)
    return problem


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["bench", "masking", "--clients", "65536", "--dim", "100000000"], "argument --dim"),
        (["bench", "masking", "--clients", "65536", "--max-memory", "24"], "argument --dim"),  # d = 100,000
        (["bench", "scaling", "--clients", "10", "65536", "--dim", "100000", "--max-memory", "24"], "argument --dim"),
        (["bench", "peers", "--clients", "1000", "--dim", "100000000"], "argument --dim"),
        (["bench", "dropouts", "--clients", "100", "--dim", "100000000", "--max-memory", "24"], "argument --dim"),
        (["bench", "masking", "--clients", "65536", "--dim", "1", "--max-memory", "8"], "argument --clients"),
        (["bench", "masking", "--clients", "4000", "--graph", "complete", "--dim", "1", "--max-memory", "24"],
         "argument --clients"),
    ],
)
def test_a_grid_that_cannot_fit_in_memory_is_refused_before_any_work(
    argv: list[str], option: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Execute
    err = _refusal(argv, capsys, monkeypatch)

    # Assert: the option to change, the estimate, the limit and how to raise it
    line = next(line for line in err.splitlines() if "error:" in line)
    assert f"error: {option}:" in line and "GiB" in line and "--max-memory" in line, line


@pytest.mark.parametrize("limit_gib", [4, 24])
def test_the_largest_dim_that_fits_is_accepted_and_one_more_is_refused(limit_gib: int) -> None:
    # Prepare: 100 clients on the Harary graph sized for 10% dropouts, 4-byte words (Z_(2^32))
    n, degree = 100, harary_config(100, 1, 0.1).degree
    largest = _largest_dim(n, degree, 4, limit_gib * GIB)
    base = ["bench", "masking", "--clients", "100", "--graph", "harary", "--dropout", "0.1"]
    limit = ["--max-memory", str(limit_gib)]

    # Execute / Assert: at the bound, and one past it (named in the refusal)
    assert _check([*base, "--dim", str(largest), *limit]) is None
    refusal = _check([*base, "--dim", str(largest + 1), *limit])
    assert refusal is not None and f"--dim up to {largest:,}" in refusal and f"{limit_gib:g} GiB" in refusal


def test_64_bit_rings_hold_twice_the_bytes() -> None:
    # Prepare: the same session in Z_(2^64): 8-byte words
    n, degree = 100, harary_config(100, 1, 0.1).degree
    largest = _largest_dim(n, degree, 8, 4 * GIB)
    base = ["bench", "masking", "--clients", "100", "--graph", "harary", "--dropout", "0.1", "--ring-bits", "64"]

    # Execute / Assert
    assert _check([*base, "--dim", str(largest), "--max-memory", "4"]) is None
    assert _check([*base, "--dim", str(largest + 1), "--max-memory", "4"]) is not None


@pytest.mark.parametrize("suite", ["masking", "scaling", "peers", "dropouts"])
def test_the_full_presets_fit_the_24_gib_machine_the_docs_quote(suite: str) -> None:
    # Execute / Assert: the grids docs/benchmarks.md quotes run on a 24 GiB machine
    assert _check(["bench", suite, "--full", "--max-memory", "24"]) is None


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "2000000"])
def test_max_memory_out_of_range_is_a_usage_error(
    value: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Execute / Assert
    err = _refusal(["bench", "masking", "--max-memory", value], capsys, monkeypatch)
    assert "argument --max-memory" in err



@pytest.mark.parametrize(
    ("text", "refused"), [("2147483648\n", True), ("max\n", False), ("9223372036854771712\n", False)]
)
def test_the_default_limit_is_the_containers_memory_limit_when_smaller(
    text: str, refused: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container (docker --memory, a Kubernetes limit, a CI runner) may use less than the machine's
    physical memory, which is all SC_PHYS_PAGES reports: a grid sized to the host was killed for
    memory in the container instead of refused. Unlimited ("max", or cgroup v1's huge value) leaves
    the physical memory as the limit."""
    # Prepare: a 2 GiB cgroup limit (or none), 16 GiB of physical memory, a session needing about 12 GiB
    limit = tmp_path / "memory.max"
    limit.write_text(text, encoding="ascii")
    monkeypatch.setattr(memory, "CGROUP_LIMIT_FILES", (str(tmp_path / "absent"), str(limit)), raising=False)
    real_sysconf = os.sysconf
    pages = {"SC_PHYS_PAGES": 4 << 20, "SC_PAGE_SIZE": 4096}  # 16 GiB
    monkeypatch.setattr(os, "sysconf", lambda name: pages[name] if name in pages else real_sysconf(name))
    argv = ["bench", "masking", "--clients", "100", "--graph", "harary", "--dropout", "0.1", "--dim", "10000000"]

    # Execute
    problem = _check(argv)

    # Assert: refused against the container's 2 GiB, saying which limit; accepted on the host's 16 GiB
    if refused:
        assert problem is not None and "more than the 2 GiB" in problem and "container" in problem, problem
    else:
        assert problem is None, problem
