"""Every key, passphrase and trusted-keys file is opened without blocking and read only if it
is a regular file of a sane size: a named pipe, a directory, a device or a huge file given
in its place is refused with the library's ConfigurationError, naming the file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from secagg.cli import main
from secagg.errors import ConfigurationError
from secagg.integrations.flower.keys import (
    load_key_share,
    read_identity_key,
    read_public_key,
    read_trusted_keys,
    write_identity_key,
)
from secagg.paillier.storage import read_protected_file
from secagg.primitives.signing import SigningKey
from tests.hostile import SPECIAL_FILES, outcome_within, special_file

READERS: dict[str, Callable[[Path], object]] = {
    "identity key": read_identity_key,
    "trusted keys": read_trusted_keys,
    "public key": read_public_key,
    "key share": lambda path: load_key_share(path, "passphrase"),
    "protected file": lambda path: read_protected_file(path, "passphrase"),
    "keys public": lambda path: main(["keys", "public", str(path)]),
    "keys check": lambda path: main(["keys", "check", str(path)]),
    "keys trust": lambda path: main(["keys", "trust", str(path.parent / "out.keys"), str(path), "00" * 32]),
}


@pytest.mark.parametrize("kind", SPECIAL_FILES)
@pytest.mark.parametrize("reader", READERS)
def test_a_special_file_in_place_of_a_key_file_is_refused_without_blocking(
    reader: str, kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a named pipe (an open for reading waits for a writer), a folder, or /dev/zero (endless)
    path = special_file(kind, tmp_path)

    # Execute
    outcome = outcome_within(lambda: READERS[reader](path), path)

    # Assert: the library's error (or the command's exit 2 with its one line), saying what is wrong
    message = capsys.readouterr().err if reader.startswith("keys") else str(outcome)
    if reader.startswith("keys"):
        assert outcome is None, outcome
    else:
        assert isinstance(outcome, ConfigurationError), repr(outcome)
    assert "not a regular file" in message and str(path) in message


@pytest.mark.parametrize("reader", READERS)
def test_a_key_file_of_absurd_size_is_refused_unread(
    reader: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a (sparse) file of 1 GiB, owner-only, where a key file of a few hundred bytes belongs
    path = tmp_path / "huge.key"
    with path.open("wb") as handle:
        handle.truncate(1 << 30)
    path.chmod(0o600)

    # Execute
    outcome = outcome_within(lambda: READERS[reader](path), path)

    # Assert
    message = capsys.readouterr().err if reader.startswith("keys") else str(outcome)
    if not reader.startswith("keys"):
        assert isinstance(outcome, ConfigurationError), repr(outcome)
    assert "larger than" in message and str(path) in message


OWNED_READERS = [reader for reader in READERS if reader != "keys trust"]  # a .pub argument is no key file


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="giving a file away needs root")
@pytest.mark.parametrize("reader", OWNED_READERS)
def test_a_key_file_owned_by_another_user_is_refused(
    reader: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: an owner-only file that belongs to another user (nobody), who may therefore read
    # it and put their own key (or list of trusted keys) in its place; a link named like ours leads to it
    target = tmp_path / "theirs.key"
    write_identity_key(target, SigningKey.generate())
    os.chown(target, 65534, 65534)
    link = tmp_path / "hospital.key"
    link.symlink_to(target)

    # Execute
    outcome = outcome_within(lambda: READERS[reader](link), link)

    # Assert
    message = capsys.readouterr().err if reader.startswith("keys") else str(outcome)
    if not reader.startswith("keys"):
        assert isinstance(outcome, ConfigurationError), repr(outcome)
    assert "belongs to user 65534" in message and str(link) in message


PATH_READERS: dict[str, Callable[[str], object]] = {
    "identity key": read_identity_key,
    "trusted keys": read_trusted_keys,
    "public key": read_public_key,
    "key share": lambda path: load_key_share(path, "passphrase"),
    "protected file": lambda path: read_protected_file(path, "passphrase"),
}


@pytest.mark.parametrize("reader", PATH_READERS)
def test_an_empty_path_is_refused_as_no_file_given(reader: str) -> None:
    # Prepare: an empty path, e.g. a run config's default `public-key-file = ""` passed on as it stands
    # Execute / Assert: refused as a path never set, not as a file that does not exist
    with pytest.raises(ConfigurationError, match="empty path") as refusal:
        PATH_READERS[reader]("")
    assert "No such file" not in str(refusal.value)
