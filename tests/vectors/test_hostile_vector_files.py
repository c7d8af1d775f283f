"""A hostile vector folder is reported, never obeyed: sizes the verifier would have to
allocate or compute are bounded (docs/vectors.md, "Limits"), and the folder's files are
read without blocking and without reading more than the largest allowed file."""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Any

import pytest

from secagg.errors import ConfigurationError, DecodeError
from secagg.vectors import SUITES, FileReport, generate_directory, load_vectors, verify_directory, verify_document
from secagg.vectors._limits import MAX_ELEMENTS, MAX_FILE_BYTES, MAX_FILE_WORK, MAX_NESTING, file_work
from tests.hostile import memory_ceiling, outcome_within

HUGE = (1 << 32) - 1  # the library's own bound on these sizes: up to 32 GiB of output


def _one_test_file(name: str, group_type: str, where: str, field: str, value: Any) -> dict[str, Any]:
    """``name`` cut down to the first test of its first ``group_type`` group, ``field`` (in the
    group or the test) set to ``value``."""
    document = copy.deepcopy(load_vectors(name))
    group = next(g for g in document["testGroups"] if g["type"] == group_type)
    group["tests"] = group["tests"][:1]
    group["tests"][0]["tcId"] = 1
    (group if where == "group" else group["tests"][0])[field] = value
    document["testGroups"], document["numberOfTests"] = [group], 1
    return document


OVERSIZED = [
    ("prg.json", "PrgTest", "test", "length", HUGE),
    ("prg.json", "PrgTest", "test", "length", str(HUGE)),  # int() in the checker would accept the text
    ("deterministic_random.json", "DeterministicRandomTest", "test", "draws", [1 << 24] * 64),
    ("bitpack.json", "BitPackTest", "test", "length", HUGE),
    ("rotation.json", "RotationTest", "test", "dimension", HUGE),
    ("sparsity.json", "SparsitySubsetTest", "test", "dimension", HUGE),
    ("sparsity.json", "SparsityLayerTest", "test", "layout", [["a", HUGE], ["b", 4]]),
    ("masking_derivations.json", "PairwiseMaskTest", "test", "length", HUGE),
    ("masking_derivations.json", "GraphTest", "group", "numClients", (1 << 8) + 1),
    ("masking_sessions_secagg.json", "MaskingSessionTest", "group", "vectorLength", HUGE),
    ("masking_client.json", "MaskingClientTest", "test", "vectorLength", HUGE),
    ("dp_sampler.json", "DpSamplerStreamTest", "test", "size", 1 << 30),
    ("dp_sampler.json", "DiscreteGaussianTest", "test", "size", 1 << 28),
    ("dp_sampler.json", "PoissonSampleTest", "test", "size", 1 << 28),
    ("dp_sampler.json", "PoissonSampleTest", "test", "offset", 1 << 34),
    ("paillier_packing.json", "PaillierUnpackTest", "test", "length", HUGE),
    ("paillier_session.json", "PaillierSessionTest", "group", "vectorLength", HUGE),
    ("paillier_encryption.json", "PaillierEncryptionTest", "group", "n", "ff" * 1024),
    ("paillier_encryption.json", "PaillierEncryptionTest", "test", "plaintexts", ["01"] * 65),
    ("paillier_encryption.json", "PaillierAdditionTest", "test", "vectors", [["01"] * 33] * 2),
    ("paillier_threshold.json", "ThresholdDealTest", "test", "p", "ff" * 129),
    ("paillier_threshold.json", "ThresholdDealTest", "test", "numParties", 17),
    ("paillier_threshold.json", "PartialDecryptionTest", "group", "publicKey", "00" * ((1 << 14) + 1)),
    ("paillier_threshold.json", "PartialDecryptionTest", "test", "ciphertexts", ["01"] * 65),
    ("paillier_threshold.json", "DecryptionProofTest", "test", "aggregate", ["01"] * 65),
    ("shamir.json", "ShamirSplitTest", "test", "indices", list(range(1, 5001))),
    ("shamir.json", "ShamirCombineTest", "test", "shares", [{"index": i, "value": "01"} for i in range(1, 5001)]),
]


@pytest.mark.parametrize(("name", "group_type", "where", "field", "value"), OVERSIZED,
                         ids=[f"{case[1]}.{case[3]}" for case in OVERSIZED])
def test_an_oversized_declared_size_fails_its_test_before_any_work(
    name: str, group_type: str, where: str, field: str, value: Any
) -> None:
    # Prepare: a committed test whose size field now asks for gigabytes (or hours)
    document = _one_test_file(name, group_type, where, field, value)

    # Execute
    started = time.monotonic()
    with memory_ceiling():
        report = verify_document(name, document, schema=False)
    elapsed = time.monotonic() - started

    # Assert: a failed test that names the field and the verifier's limit, found at once
    assert report.passed == 0
    assert len(report.failures) == 1, report.failures
    assert f"{field} " in report.failures[0], report.failures
    assert "verifier's limit" in report.failures[0] or "must be a JSON integer" in report.failures[0]
    assert "MemoryError" not in report.failures[0]
    assert elapsed < 5


@pytest.mark.parametrize("rate", ["1" + "0" * 400, "-" + "1" + "0" * 400, "1/3"])
def test_a_poisson_rate_that_is_no_binary64_value_fails_its_test_by_name(rate: str) -> None:
    # Prepare: a rate beyond binary64's range (float() of it overflows) or between two doubles
    document = _one_test_file("dp_sampler.json", "PoissonSampleTest", "test", "rate", rate)

    # Execute
    report = verify_document("dp_sampler.json", document, schema=False)

    # Assert: the verifier's own finding, not a foreign exception's
    assert report.passed == 0
    assert len(report.failures) == 1, report.failures
    assert "VectorError: rate" in report.failures[0] and "is not a binary64 value" in report.failures[0]


def test_the_committed_vectors_stay_within_the_limits() -> None:
    # Execute
    reports = verify_directory()

    # Assert
    assert [failure for report in reports for failure in report.failures] == []


def test_a_vector_file_above_the_size_limit_is_reported_unread(tmp_path: Path) -> None:
    # Prepare: a (sparse) file one byte above the limit where prg.json belongs
    with (tmp_path / "prg.json").open("wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)

    # Execute
    reports = {report.name: report for report in verify_directory(tmp_path)}

    # Assert
    failures = reports["prg.json"].failures
    assert len(failures) == 1 and "larger than" in failures[0] and f"{MAX_FILE_BYTES}" in failures[0]


def test_a_fifo_in_the_vector_folder_is_reported_without_blocking(tmp_path: Path) -> None:
    # Prepare: a named pipe called prg.json (opening it for reading waits for a writer)
    fifo = tmp_path / "prg.json"
    os.mkfifo(fifo, 0o600)
    reports: list[FileReport] = []

    # Execute
    outcome = outcome_within(lambda: reports.extend(verify_directory(tmp_path)), fifo)

    # Assert
    assert outcome is None
    assert "not a regular file" in next(report for report in reports if report.name == "prg.json").failures[0]


def test_nesting_deeper_than_the_limit_is_reported_as_a_failed_file(tmp_path: Path) -> None:
    # Prepare: a test field nested one level deeper than the limit (far below the parser's own)
    document = load_vectors("ring.json")
    nested: Any = 1
    for _ in range(MAX_NESTING):
        nested = [nested]
    document["testGroups"][0]["tests"][0]["a"] = nested

    # Execute
    report = verify_document("ring.json", document)

    # Assert
    assert report.passed == 0
    assert report.failures == [f"the file nests JSON values more than {MAX_NESTING} levels deep"]


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_generate_never_writes_through_a_link_or_into_a_pipe(kind: str, tmp_path: Path) -> None:
    # Prepare: an output folder someone else prepared (say under /tmp): prg.json is a link to
    # one of the user's files, or a named pipe nobody reads (an open for writing would wait)
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's own file\n")
    folder = tmp_path / "out"
    folder.mkdir()
    planted = folder / "prg.json"
    if kind == "symlink":
        planted.symlink_to(victim)
    else:
        os.mkfifo(planted, 0o600)
    suites = [suite for suite in SUITES if suite.filename == "prg.json"]

    # Execute
    outcome = outcome_within(lambda: generate_directory(folder, suites), planted)

    # Assert: refused with the library's error; the linked file is untouched
    assert isinstance(outcome, ConfigurationError), repr(outcome)
    assert str(planted) in str(outcome)
    assert victim.read_text() == "the user's own file\n"


@pytest.mark.parametrize("content", [b"{", b"\xff\xfe", b"[" * 100_000])
def test_load_vectors_refuses_a_malformed_file_with_the_librarys_error(content: bytes, tmp_path: Path) -> None:
    # Prepare: not JSON, not UTF-8, nested beyond the parser's depth
    (tmp_path / "prg.json").write_bytes(content)

    # Execute / Assert
    with pytest.raises(DecodeError, match=r"prg\.json"):
        load_vectors("prg.json", tmp_path)


def test_a_file_of_many_tests_each_inside_its_limits_is_refused_before_any_test_runs() -> None:
    # Prepare: prg.json with enough tests at their length limit to pass the file's work budget
    document = _one_test_file("prg.json", "PrgTest", "test", "length", MAX_ELEMENTS)
    group = document["testGroups"][0]
    count = int(MAX_FILE_WORK) + 1
    group["tests"] = [dict(group["tests"][0], tcId=number) for number in range(1, count + 1)]
    document["numberOfTests"] = count

    # Execute
    report = verify_document("prg.json", document, schema=False)

    # Assert: one failure naming the budget, and not one test run
    assert report.passed == 0
    assert len(report.failures) == 1, report.failures[:3]
    assert f"above the verifier's limit {MAX_FILE_WORK}" in report.failures[0]
    assert "no test was run" in report.failures[0]


def test_a_file_just_inside_the_work_budget_runs_its_tests() -> None:
    # Prepare: tests at a quarter of their limit, together exactly at the budget
    document = _one_test_file("prg.json", "PrgTest", "test", "length", MAX_ELEMENTS // 4)
    group = document["testGroups"][0]
    count = 4 * int(MAX_FILE_WORK)
    group["tests"] = [dict(group["tests"][0], tcId=number) for number in range(1, count + 1)]
    document["numberOfTests"] = count

    # Execute
    report = verify_document("prg.json", document, schema=False)

    # Assert: run, not refused (each fails only because its expected output was for another length)
    assert report.passed + len(report.failures) == count
    assert not any("verifier's limit" in failure for failure in report.failures)


def test_the_committed_files_stay_far_inside_the_work_budget() -> None:
    # Execute
    costs = {suite.filename: file_work(load_vectors(suite.filename)) for suite in SUITES}

    # Assert
    assert max(costs.values()) <= MAX_FILE_WORK / 3, costs


@pytest.mark.parametrize("schema", ["a" * 5000, "x" * 300 + ".json", "prg_test_schema.json/", 7, None])
def test_a_schema_name_no_file_system_takes_fails_the_file_by_name(schema: object) -> None:
    # Prepare: a file naming a schema no file system can look up (longer than a file name may be),
    # or not a name at all; the name is the file's, so it is untrusted
    document = load_vectors("ring.json")
    document["schema"] = schema

    # Execute
    report = verify_document("ring.json", document)

    # Assert: the file fails, named and shortened, instead of an OSError escaping the verifier
    pytest.importorskip("jsonschema")
    assert report.schema == "missing"
    assert report.failures[0].startswith("no schema named ")
    assert len(report.failures[0]) < 300
