"""A file name in a refusal or a warning is shown with every unprintable character escaped: whoever
named the file (another user, in a sticky folder such as /tmp) chose those characters, and the
message reaches a terminal and a log, where a line break or an escape sequence would forge a line
or repaint the screen."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from secagg._files import PRIVATE, read_regular_file
from secagg.errors import ConfigurationError, DecodeError, SecretFileLinkWarning
from secagg.integrations.flower.keys import read_identity_key, read_trusted_keys

FORGED = "key\n2026-01-01 00:00:00 INFO secagg: all good\x1b[2K\r\u202eyek"


def _printable(text: str) -> bool:
    return all(char.isprintable() or char == " " for char in text)


def test_a_missing_file_whose_name_holds_control_characters_is_named_escaped(tmp_path: Path) -> None:
    # Execute
    with pytest.raises(ConfigurationError) as refused:
        read_regular_file(tmp_path / FORGED, "identity key file", 64)
    # Assert: one line, no escape sequence, the name still recognisable
    text = str(refused.value)
    assert _printable(text), repr(text)
    assert "key\\n2026-01-01" in text and "\\x1b[2K\\r\\u202eyek" in text


def test_a_folder_whose_name_holds_control_characters_is_named_escaped(tmp_path: Path) -> None:
    # Prepare: a folder others may write, on the way to a secret
    folder = tmp_path / FORGED
    folder.mkdir()
    secret = folder / "secret"
    secret.write_bytes(b"x")
    secret.chmod(0o600)
    folder.chmod(0o777)
    try:
        # Execute
        with pytest.raises(ConfigurationError, match="which group or others may write") as refused:
            read_regular_file(secret, "identity key file", 64, forbidden_mode=PRIVATE)
    finally:
        folder.chmod(0o700)
    # Assert
    assert _printable(str(refused.value)), repr(str(refused.value))


def test_the_second_name_warning_names_the_file_escaped(tmp_path: Path) -> None:
    # Prepare: a secret with a second name
    secret = tmp_path / FORGED
    secret.write_bytes(b"x")
    secret.chmod(0o600)
    os.link(secret, tmp_path / "other")
    # Execute
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_regular_file(secret, "identity key file", 64, forbidden_mode=PRIVATE)
    # Assert
    [warning] = [w for w in caught if issubclass(w.category, SecretFileLinkWarning)]
    assert _printable(str(warning.message)), repr(str(warning.message))


def test_key_file_refusals_of_their_content_name_the_file_escaped(tmp_path: Path) -> None:
    # Prepare: an identity key and a trusted list whose names hold control characters, their
    # content malformed (the refusal names the file and the line)
    identity = tmp_path / FORGED
    identity.write_text("zz\n")
    identity.chmod(0o600)
    trusted = tmp_path / (FORGED + ".keys")
    trusted.write_text("not-a-key\n")
    trusted.chmod(0o600)
    # Execute
    with pytest.raises(DecodeError) as bad_key:
        read_identity_key(identity)
    with pytest.raises(DecodeError) as bad_list:
        read_trusted_keys(trusted)
    # Assert
    for refused in (bad_key, bad_list):
        assert _printable(str(refused.value)), repr(str(refused.value))
