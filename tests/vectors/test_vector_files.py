"""Every committed vector, one pytest case each, through the single loader.

A new vector file in secagg/vectors/data needs no new test code: the files are
discovered at collection time and each test runs the checker of its group type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from secagg.vectors import DATA_DIR, SUITES, load_vectors, verify_document
from secagg.vectors._suite import CHECKERS

FILES = sorted(path.name for path in Path(DATA_DIR).glob("*.json"))


def _cases() -> list[Any]:
    cases = []
    for name in FILES:
        document = load_vectors(name)
        for group in document["testGroups"]:
            for test in group["tests"]:
                cases.append(pytest.param(group, test, id=f"{name}-{test['tcId']}"))
    return cases


def test_every_suite_has_a_committed_file() -> None:
    # Prepare
    expected = {suite.filename for suite in SUITES}

    # Execute
    committed = set(FILES)

    # Assert
    assert committed == expected


@pytest.mark.parametrize("name", FILES)
def test_file_matches_its_schema_and_structure(name: str) -> None:
    # Prepare
    document = load_vectors(name)
    document["testGroups"] = []  # the tests themselves run one by one below
    document["numberOfTests"] = 0

    # Execute
    report = verify_document(name, document)

    # Assert
    assert report.schema == "ok", report.failures
    assert report.failures == []


@pytest.mark.parametrize(("group", "test"), _cases())
def test_vector(group: dict[str, Any], test: dict[str, Any]) -> None:
    # Prepare
    checker = CHECKERS[group["type"]]

    # Execute / Assert: the checker raises on any disagreement
    checker(group, test)
