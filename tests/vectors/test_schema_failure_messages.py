"""A vector file edited by hand fails its schema with a line that says where and why.

The schemas hold each group type in a ``oneOf``; the validator's own message for a group that
matches none of them is the whole group's value followed by "is not valid under any of the
given schemas", cut at 300 characters: the path stopped at the group and the reason was lost.
"""

from __future__ import annotations

import copy

import pytest

from secagg.vectors import load_vectors, verify_document

pytest.importorskip("jsonschema")


def _schema_failures(name: str, edit: str) -> list[str]:
    document = copy.deepcopy(load_vectors(name))
    test = document["testGroups"][0]["tests"][0]
    if edit == "extra field":
        test["extra"] = 1
    elif edit == "wrong type":
        test["comment"] = 7
    report = verify_document(name, document)
    assert report.schema == "FAILED"
    return [failure for failure in report.failures if failure.startswith("schema:")]


@pytest.mark.parametrize("name", ["aead.json", "shamir.json", "prg.json"])
def test_an_unexpected_field_is_named_with_its_path(name: str) -> None:
    (line,) = _schema_failures(name, "extra field")
    assert line.startswith("schema: testGroups/0/tests/0: ")
    assert "'extra' was unexpected" in line
    assert len(line) <= 300


def test_a_value_of_the_wrong_type_is_named_with_its_path() -> None:
    (line,) = _schema_failures("aead.json", "wrong type")
    assert line == "schema: testGroups/0/tests/0/comment: 7 is not of type 'string'"


def test_an_invalid_test_without_its_error_field_says_what_is_missing() -> None:
    # Prepare: an "invalid" test of signatures.json with its "error" (the expected secagg.errors class) removed
    document = copy.deepcopy(load_vectors("signatures.json"))
    test = next(t for g in document["testGroups"] for t in g["tests"] if t.get("result") == "invalid" and "error" in t)
    del test["error"]
    # Execute
    report = verify_document("signatures.json", document)
    # Assert: the test's failure names the missing field in the library's words (it was "KeyError: 'error'")
    (line,) = [f for f in report.failures if f.startswith(f"tcId {test['tcId']} ")]
    assert "KeyError" not in line
    assert "'error'" in line and "secagg.errors" in line
