"""The generator reproduces the committed files, the verifier can fail, and the
command line prints what the issue promises."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import secagg.masking
import secagg.paillier  # noqa: F401  (registers the Paillier message types)
from secagg import wire
from secagg.cli import main
from secagg.vectors import DATA_DIR, SCHEMA_DIR, SUITES, load_schema, load_vectors, verify_document

SPEC = Path(__file__).resolve().parents[2] / "docs" / "spec.md"


@pytest.fixture(scope="module")
def generation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    """``secagg vectors generate`` into a folder it creates, once per module (generating every file
    takes seconds): the folder, the exit status and what it printed."""
    directory = tmp_path_factory.mktemp("vectors") / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(["vectors", "generate", str(directory)])
    return directory, status, printed.getvalue()


@pytest.fixture(scope="module")
def generated(generation: tuple[Path, int, str]) -> Path:
    return generation[0]


def test_generation_equals_the_committed_files_byte_for_byte(generated: Path) -> None:
    # Execute
    differing = [suite.filename for suite in SUITES
                 if (generated / suite.filename).read_bytes() != (DATA_DIR / suite.filename).read_bytes()]

    # Assert
    assert differing == [], "run `secagg vectors generate secagg/vectors/data` and review the diff"


def _first(document: dict[str, Any], key: str) -> dict[str, Any]:
    for group in document["testGroups"]:
        for test in group["tests"]:
            if key in test and test["result"] == "valid":
                return dict(test)
    raise AssertionError(f"no valid test with {key}")


def _flip_hex(text: str) -> str:
    return ("1" if text[0] != "1" else "2") + text[1:]


@pytest.mark.parametrize(("name", "key"), [
    ("prg.json", "output"),
    ("shamir.json", "encodings"),
    ("aead.json", "sealed"),
    ("wire_masking.json", "encoded"),
    ("masking_derivations.json", "sessionId"),
    ("masking_sessions_secagg.json", "aggregate"),
    ("masking_sessions_active.json", "rounds"),
    ("quantization.json", "integers"),
])
def test_a_mutated_expected_value_fails_verification(name: str, key: str) -> None:
    # Prepare: change one expected value of one valid test
    document = load_vectors(name)
    for group in document["testGroups"]:
        for test in group["tests"]:
            if key in test and test["result"] == "valid":
                value = test[key]
                if isinstance(value, str):
                    test[key] = _flip_hex(value)
                elif key == "rounds":
                    message = value[1]["clientMessages"][0]
                    message["message"] = message["message"][:-2] + format(int(message["message"][-2:], 16) ^ 1, "02x")
                elif key == "encodings":
                    value[0] = _flip_hex(value[0])
                else:
                    value[0] = value[0] + 1
                break
        else:
            continue
        break

    # Execute
    report = verify_document(name, document)

    # Assert
    assert report.failed >= 1


def test_an_invalid_vector_marked_valid_fails() -> None:
    # Prepare: a vector whose step must fail, claimed to succeed
    document = load_vectors("x25519.json")
    for group in document["testGroups"]:
        for test in group["tests"]:
            if test["result"] == "invalid":
                test["result"] = "valid"
                test.pop("error")
                test.update(public="00" * 32, shared="00" * 32)
                break

    # Execute
    report = verify_document("x25519.json", document)

    # Assert
    assert report.failed >= 1


def test_a_wrong_error_class_fails() -> None:
    # Prepare
    document = load_vectors("shamir.json")
    test = next(t for g in document["testGroups"] for t in g["tests"] if t.get("error") == "AuthenticationError")
    test["error"] = "DecodeError"

    # Execute
    report = verify_document("shamir.json", document)

    # Assert
    assert any("expected DecodeError" in failure for failure in report.failures)


def test_schemas_are_draft_2020_12_and_closed() -> None:
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        schema = json.loads(path.read_text())

        jsonschema.Draft202012Validator.check_schema(schema)
        assert _objects_are_closed(schema), path.name


def _objects_are_closed(node: Any) -> bool:
    """Every object schema with named properties forbids others (notes is a map of flags;
    ``if`` conditions only test a field and are not object schemas)."""
    if isinstance(node, dict):
        if "properties" in node and node.get("additionalProperties") is not False:
            return False
        return all(_objects_are_closed(value) for key, value in node.items() if key != "if")
    if isinstance(node, list):
        return all(_objects_are_closed(value) for value in node)
    return True


def test_schema_rejects_an_unknown_field() -> None:
    # Prepare
    document = copy.deepcopy(load_vectors("aead.json"))
    document["testGroups"][0]["tests"][0]["nonceHex"] = "00"

    # Execute
    errors = list(jsonschema.Draft202012Validator(load_schema("aead_test_schema.json")).iter_errors(document))

    # Assert
    assert errors


def test_every_file_has_valid_and_invalid_vectors() -> None:
    # The deterministic randomness stream is a test utility, not a primitive: it has no refusals.
    # *_bad.json files hold only negative cases (their positive twins live in the other files).
    for suite in SUITES:
        results = {t["result"] for g in load_vectors(suite.filename)["testGroups"] for t in g["tests"]}
        if suite.filename == "deterministic_random.json":
            assert results == {"valid"}
        elif suite.filename.endswith("_bad.json"):
            assert results == {"invalid"}, suite.filename
        else:
            assert {"valid", "invalid"} <= results, suite.filename


def test_every_message_has_valid_and_invalid_encodings() -> None:
    # Prepare: every message type of the masking and Paillier layers (other test modules
    # register probe types of their own; integrations are specified with their adapters)
    layers = ("secagg.masking.", "secagg.paillier.")
    names = {cls.__name__ for cls in wire.message_types() if cls.__module__.startswith(layers)}
    seen: dict[str, set[str]] = {}

    # Execute
    for name in ("wire_masking.json", "wire_paillier.json"):
        for group in load_vectors(name)["testGroups"]:
            if group["type"] == "WireMessageTest":
                seen.setdefault(group["message"], set()).update(t["result"] for t in group["tests"])

    # Assert
    assert names <= set(seen), sorted(names - set(seen))
    assert all(seen[name] == {"valid", "invalid"} for name in names)


def test_the_spec_names_every_vector_file() -> None:
    # Prepare
    text = SPEC.read_text(encoding="utf-8")

    # Execute
    missing = [suite.filename for suite in SUITES if not re.search(re.escape(suite.filename), text)]

    # Assert
    assert missing == []


def test_command_verify_prints_counts_and_succeeds(capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    status = main(["vectors", "verify"])

    # Assert
    lines = capsys.readouterr().out.strip().splitlines()
    assert status == 0
    assert re.fullmatch(r"\d+ passed, 0 failed", lines[-1])
    assert len(lines) == len(SUITES) + 1


def test_command_verify_fails_on_a_corrupted_folder(generated: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: one flipped byte in one committed file
    for path in generated.glob("*.json"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    target = tmp_path / "hkdf.json"
    text = target.read_text()
    okm = re.search(r'"okm": "([0-9a-f])', text)
    assert okm is not None
    flipped = "0" if okm.group(1) != "0" else "1"
    target.write_text(text[: okm.start(1)] + flipped + text[okm.end(1):])

    # Execute
    status = main(["vectors", "verify", str(tmp_path)])

    # Assert
    out = capsys.readouterr().out
    assert status == 1
    assert re.search(r"\d+ passed, 1 failed\n$", out)
    assert "hkdf.json" in out


def test_command_generate_writes_every_file(generation: tuple[Path, int, str]) -> None:
    # Execute: the module's one run of `secagg vectors generate` (the folder did not exist before)
    directory, status, printed = generation

    # Assert
    assert status == 0
    assert sorted(p.name for p in directory.glob("*.json")) == sorted(s.filename for s in SUITES)
    assert len(printed.strip().splitlines()) == len(SUITES)


def test_verify_without_jsonschema_still_checks_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: make `import jsonschema` fail
    monkeypatch.setitem(sys.modules, "jsonschema", None)

    # Execute
    report = verify_document("ring.json", load_vectors("ring.json"))

    # Assert
    assert report.schema.startswith("skipped")
    assert report.failures == []
    assert report.passed == load_vectors("ring.json")["numberOfTests"]


MALFORMED_VECTOR_FILES = [
    "[1, 2]",
    '{"testGroups": 5}',
    '{"testGroups": [1]}',
    '{"testGroups": [{"type": "prg", "tests": [1]}]}',
    '{"testGroups": [{"type": "prg", "tests": 7}]}',
    '{"notes": 3, "testGroups": [{"type": "prg", "tests": [{"tcId": 1, "flags": ["x"]}]}]}',
    '{"testGroups": [{"type": "prg", "tests": [{"tcId": 1, "flags": 9}]}]}',
    '{"testGroups": [{"type": "prg", "tests": [{"tcId": 1, "flags": [[1]]}]}]}',
    '{"schema": "../../../pyproject.toml", "testGroups": []}',
    '{"schema": "/etc/passwd", "testGroups": []}',
    "[" * 100_000 + "]" * 100_000,
]


@pytest.mark.parametrize("content", MALFORMED_VECTOR_FILES, ids=range(len(MALFORMED_VECTOR_FILES)))
def test_command_verify_reports_a_malformed_vector_file_as_failed(
    content: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a reviewer's folder whose prg.json is not the expected structure
    (tmp_path / "prg.json").write_text(content)

    # Execute
    status = main(["vectors", "verify", str(tmp_path)])

    # Assert: a failed file in the report (exit 1), not a foreign exception
    out = capsys.readouterr().out
    assert status == 1
    assert "prg.json" in out


def test_command_generate_into_a_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: the folder argument names an existing file
    (tmp_path / "file").write_text("")

    # Execute
    with pytest.raises(SystemExit) as exit_info:
        main(["vectors", "generate", str(tmp_path / "file" / "out")])

    # Assert: argparse's one-line usage error, no traceback
    assert exit_info.value.code == 2
    assert "is not a directory" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_command_verify_of_a_folder_that_is_not_there_is_a_usage_error(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a mistyped folder, or a path naming one vector file instead of its folder
    target = tmp_path / "my-vectors"
    if kind == "file":
        target.write_text("{}")

    # Execute
    with pytest.raises(SystemExit) as exit_info:
        main(["vectors", "verify", str(target)])

    # Assert: one usage error naming the path (exit 2), not one "file missing" failure per vector file
    captured = capsys.readouterr()
    assert exit_info.value.code == 2
    assert "file missing" not in captured.out
    assert f"{target} is not a folder" in captured.err


def test_command_verify_of_a_folder_without_vector_files_says_so_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: the parent of the vector folder, say, holding no *.json file itself
    (tmp_path / "data").mkdir()

    # Execute
    status = main(["vectors", "verify", str(tmp_path)])

    # Assert: one line naming the folder (exit 1), not one "file missing" failure per vector file
    captured = capsys.readouterr()
    assert status == 1
    assert "file missing" not in captured.out
    assert f"no vector files (*.json) in {tmp_path}" in captured.err
