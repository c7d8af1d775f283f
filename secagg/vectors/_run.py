"""Loading, verifying and generating vector files."""

from __future__ import annotations

import functools
import importlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from secagg._files import read_regular_file, write_regular_file
from secagg._strict_json import strict_loads
from secagg.errors import ConfigurationError, ConfigurationTypeError, DecodeError, SecAggError
from secagg.vectors import (
    _bad_sessions,
    _bindings,
    _compression,
    _derivations,
    _dp,
    _encoding,
    _flower,
    _keys,
    _masking,
    _paillier,
    _paillier_bindings,
    _primitives,
    _sessions,
    _sharing,
    _signatures,
    _sparsity,
    _wire,
)
from secagg.vectors._format import Json, canonical_json
from secagg.vectors._limits import MAX_FILE_BYTES, MAX_FILE_WORK, MAX_NESTING, check_limits, file_work, nesting_depth
from secagg.vectors._suite import CHECKERS, Suite

__all__ = [
    "DATA_DIR",
    "SCHEMA_DIR",
    "SUITES",
    "FileReport",
    "generate_directory",
    "load_schema",
    "load_vectors",
    "verify_directory",
    "verify_document",
]

DATA_DIR = Path(__file__).resolve().parent / "data"
"""The committed vector files (shipped as package data)."""

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
"""One JSON Schema per vector file type (shipped as package data)."""

SUITES: tuple[Suite, ...] = (
    *_primitives.SUITES[:1],
    *_encoding.SUITES,
    *_primitives.SUITES[1:],
    *_keys.SUITES,
    *_sharing.SUITES,
    *_signatures.SUITES,
    *_wire.SUITES,
    *_masking.SUITES[:1],
    *_derivations.SUITES,
    *_masking.SUITES[1:],
    *_sessions.SUITES,
    *_bad_sessions.SUITES,
    *_paillier.SUITES,
    *_flower.SUITES,
    *_bindings.SUITES[:2],
    *_paillier_bindings.SUITES,
    *_bindings.SUITES[2:],
    *_compression.SUITES,
    *_dp.SUITES,
    *_sparsity.SUITES,
)
"""Every vector file, in the order the spec presents them."""

RESULTS = ("valid", "invalid", "acceptable")


@dataclass
class FileReport:
    """The verification of one vector file."""

    name: str
    passed: int = 0
    failures: list[str] = field(default_factory=list)
    schema: str = "skipped (jsonschema is not installed)"

    @property
    def failed(self) -> int:
        """Failed tests, plus one for each file-level problem (schema, counts)."""
        return len(self.failures)

    def line(self) -> str:
        """One summary line: name, counts, schema status."""
        return f"{self.name}: {self.passed} passed, {self.failed} failed (schema: {self.schema})"


def load_vectors(name: str, directory: Path | str | None = None) -> Json:
    """The parsed vector file ``name`` (e.g. ``"prg.json"``) from ``directory``
    (default: the committed vectors). ConfigurationError if it is not a regular file of
    at most MAX_FILE_BYTES, DecodeError if it is not JSON."""
    if not isinstance(name, str):
        raise ConfigurationTypeError(f"the vector file name must be a str, got {type(name).__name__}")
    return _load(_folder(directory) / name)


def _folder(directory: object) -> Path:
    """The vector folder ``directory`` names (None or "": the committed vectors); ConfigurationTypeError
    unless it is a str or an os.PathLike of str."""
    folder = DATA_DIR if directory is None or directory == "" else directory
    if not isinstance(folder, (str, os.PathLike)) or not isinstance(os.fspath(folder), str):
        raise ConfigurationTypeError(
            f"the vector folder must be a str or os.PathLike path, got {type(folder).__name__}"
        )
    return Path(folder)


def _load(path: Path) -> Json:
    """The JSON in the vector file ``path``: a regular file of at most MAX_FILE_BYTES, opened without
    blocking, strict JSON (no repeated name in an object, no NaN or Infinity, no number beyond binary64)."""
    data = read_regular_file(path, "vector file", MAX_FILE_BYTES)
    try:
        document: Json = strict_loads(data)
    except (ValueError, RecursionError, DecodeError) as exc:  # UnicodeDecodeError is a ValueError; nesting
        raise DecodeError(f"the vector file {path} is not JSON: {exc}") from exc
    return document


def load_schema(name: str) -> Json:
    """The JSON Schema ``name`` (e.g. ``"prg_test_schema.json"``)."""
    with (SCHEMA_DIR / name).open(encoding="utf-8") as handle:
        schema: Json = json.load(handle)
    return schema


@functools.cache
def _schema_names() -> frozenset[str]:
    """The names of the JSON Schemas shipped (``*.json`` in :data:`SCHEMA_DIR`)."""
    return frozenset(path.name for path in SCHEMA_DIR.glob("*.json") if path.is_file())


def _schema_errors(document: Json) -> tuple[str, list[str]]:
    # jsonschema is optional (the test extra installs it): without it the semantic checks still run.
    try:
        jsonschema = importlib.import_module("jsonschema")
    except ImportError:
        return "skipped (jsonschema is not installed)", []
    name = str(document.get("schema", ""))
    # Looked up among the schemas shipped, never on the file system: the name is the untrusted
    # file's, and one longer than a file name may be would raise OSError from a lookup.
    if name not in _schema_names():
        shown = name if len(name) <= 80 else f"{name[:80]}... ({len(name)} characters)"
        return "missing", [f"no schema named {shown!r} in {SCHEMA_DIR}"]
    validator = jsonschema.Draft202012Validator(load_schema(name))
    errors = []
    for error in validator.iter_errors(document):
        reason = _reason(error, jsonschema.exceptions.best_match)
        errors.append(f"schema: {'/'.join(str(p) for p in reason.absolute_path)}: {reason.message}"[:300])
    return ("ok" if not errors else "FAILED"), errors[:10]


def _reason(error: Any, best_match: Callable[[list[Any]], Any]) -> Any:
    """The error under a ``oneOf`` of group types that says where and why: the group's own branch.

    The validator's message for a group that matches no branch is the whole group's value, with
    the reason lost; each branch for another group type fails on its ``type`` constant, so the
    branch that does not is the group's own, and its most relevant error is the reason.
    """
    while error.context:
        branches: dict[object, list[Any]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        own = [
            subs for subs in branches.values()
            if not any(sub.validator == "const" and list(sub.relative_path) == ["type"] for sub in subs)
        ]
        error = best_match(own[0] if len(own) == 1 else list(error.context))
    return error


def _nesting_errors(document: object) -> list[str]:
    """Nesting deeper than any vector file needs (the schema validator and the checks recurse)."""
    if nesting_depth(document) > MAX_NESTING:
        return [f"the file nests JSON values more than {MAX_NESTING} levels deep"]
    return []


def _shape_errors(document: object) -> list[str]:
    """What keeps an untrusted file from being walked: the containers the checks iterate."""
    if not isinstance(document, dict):
        return ["the file does not hold a JSON object"]
    groups = document.get("testGroups", [])
    if not isinstance(groups, list) or not all(isinstance(group, dict) for group in groups):
        return ["testGroups is not a list of objects"]
    if not isinstance(document.get("notes", {}), dict):
        return ["notes is not an object"]
    for number, group in enumerate(groups, start=1):
        tests = group.get("tests", [])
        if not isinstance(tests, list) or not all(isinstance(test, dict) for test in tests):
            return [f"testGroups[{number}].tests is not a list of objects"]
        for test in tests:
            flags = test.get("flags", [])
            if not isinstance(flags, list) or not all(isinstance(flag, str) for flag in flags):
                return [f"tcId {test.get('tcId')!r}: flags is not a list of strings"]
    return []


def _structure_errors(document: Json) -> list[str]:
    """File-level checks that hold with or without the schema."""
    errors = []
    tests = [test for group in document.get("testGroups", []) for test in group.get("tests", [])]
    if document.get("numberOfTests") != len(tests):
        errors.append(f"numberOfTests is {document.get('numberOfTests')}, the file holds {len(tests)} tests")
    ids = [test.get("tcId") for test in tests]
    if ids != list(range(1, len(tests) + 1)):
        errors.append("tcIds are not 1..numberOfTests in order")
    notes = document.get("notes", {})
    for test in tests:
        undocumented = [flag for flag in test.get("flags", []) if flag not in notes]
        if undocumented:
            errors.append(f"tcId {test.get('tcId')}: flags {undocumented} are not described in notes")
        if test.get("result") not in RESULTS:
            errors.append(f"tcId {test.get('tcId')}: result {test.get('result')!r} is not one of {RESULTS}")
    return errors


def verify_document(name: str, document: Json, *, schema: bool = True) -> FileReport:
    """Check one parsed vector file: schema (unless ``schema`` is false), structure, then every test."""
    report = FileReport(name)
    shape = _nesting_errors(document) or _shape_errors(document)
    if shape:
        report.schema = "not checked"
        report.failures += shape
        return report
    work = file_work(document)
    if work > MAX_FILE_WORK:  # refused whole: running the tests up to the budget would spend it anyway
        report.failures.append(
            f"the file's tests ask for {work:.1f} tests' worth of work at their limits, above the verifier's "
            f"limit {MAX_FILE_WORK} (docs/vectors.md, 'Limits'); no test was run"
        )
        return report
    if schema:
        report.schema, schema_errors = _schema_errors(document)
        report.failures += schema_errors
    report.failures += _structure_errors(document)
    for group in document.get("testGroups", []):
        checker = CHECKERS.get(str(group.get("type")))
        for test in group.get("tests", []):
            if checker is None:
                report.failures.append(f"tcId {test.get('tcId')}: no checker for group type {group.get('type')!r}")
                continue
            try:
                check_limits(group, test)
                checker(group, test)
            except Exception as exc:  # every disagreement is reported, none is raised
                report.failures.append(f"tcId {test.get('tcId')} ({test.get('comment')}): {type(exc).__name__}: {exc}")
            else:
                report.passed += 1
    return report


def verify_directory(directory: Path | str | None = None) -> list[FileReport]:
    """Verify every ``*.json`` file in ``directory`` (default: the committed vectors).

    A vector file this library knows that is missing from the folder is reported
    as a failed file. ConfigurationError if the folder cannot be listed (a name too long,
    an I/O error), ConfigurationTypeError if ``directory`` is not a path.
    """
    folder = _folder(directory)
    try:
        paths = sorted(folder.glob("*.json"))
    except OSError as exc:  # a name too long, an I/O error
        raise ConfigurationError(f"cannot list the vector folder {folder}: {exc.strerror or exc}") from exc
    reports = []
    for path in paths:
        try:
            document = _load(path)
        except SecAggError as exc:
            report = FileReport(path.name, schema="not checked")
            report.failures.append(f"cannot read: {exc}")
            reports.append(report)
            continue
        reports.append(verify_document(path.name, document))
    present = {report.name for report in reports}
    for suite in SUITES:
        if suite.filename not in present:
            reports.append(FileReport(suite.filename, failures=["file missing"], schema="not checked"))
    return reports


def generate_directory(directory: Path | str, suites: Iterable[Suite] = SUITES) -> list[tuple[str, int]]:
    """Write every vector file into ``directory``; return (file name, number of tests) pairs."""
    folder = Path(directory)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a dangling link, a file in the way, a read-only parent
        raise ConfigurationError(f"cannot create the vector folder {folder}: {exc.strerror or exc}") from exc
    written = []
    for suite in suites:
        document: dict[str, Any] = suite.generate()
        # A vector the implementation disagrees with (e.g. an expected error class that
        # changed) is never written: generation checks its own output first.
        report = verify_document(suite.filename, json.loads(canonical_json(document)), schema=False)
        if report.failures:
            raise SecAggError(f"generated {suite.filename} does not verify: {report.failures[0]}")
        write_regular_file(folder / suite.filename, "vector file", canonical_json(document).encode("utf-8"))
        written.append((suite.filename, int(document["numberOfTests"])))
    return written
