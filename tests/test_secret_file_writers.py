"""Every writer of a secret file (key share, private key, identity key, passphrase) and of the key
files the ceremony writes beside them refuses a folder that every reader of the file refuses: one that
group or others may write (not sticky) or that another user owns, where they could swap the file
once written. Nothing is written then: a key is never made where its holder would refuse to load it.
Tests run as root here, so modes and owners are set and read, never tested by an access failing."""

from __future__ import annotations

import argparse
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from secagg._files import write_regular_file
from secagg.errors import ConfigurationError
from secagg.integrations.flower.keys import write_identity_key, write_trusted_keys
from secagg.keys_command import main as keys_main
from secagg.paillier.storage import write_new_private_file, write_protected_file
from secagg.primitives.signing import SigningKey
from tests.integrations.paillier_keys import PASSPHRASE, key_files, material

POSIX_ONLY = pytest.mark.skipif(os.name != "posix", reason="folder modes and owners are checked on POSIX")


def _keys_new(path: Path) -> None:
    keys_main(argparse.Namespace(action="new", path=str(path)))


WRITERS: dict[str, Callable[[Path], object]] = {
    "protected file": lambda folder: write_protected_file(
        folder / "share.bin", material(3, 2).shares[0], PASSPHRASE, scrypt_log_n=10, allow_weak_kdf_for_testing=True
    ),
    "identity key": lambda folder: write_identity_key(folder / "hospital.key", SigningKey.generate()),
    "passphrase": lambda folder: write_new_private_file(folder / "passphrase", b"hospital passphrase\n"),
    "trusted keys": lambda folder: write_trusted_keys(folder / "federation.keys", [b"\1" * 32, b"\2" * 32]),
    "key ceremony": lambda folder: key_files(folder, 3, 2),
    "secagg keys new": lambda folder: _keys_new(folder / "hospital.key"),
}


@POSIX_ONLY
@pytest.mark.parametrize("writer", WRITERS)
def test_a_secret_is_not_written_into_a_folder_others_may_write(writer: str, tmp_path: Path) -> None:
    # Prepare: a folder group and others may write, not sticky: they could rename the key away
    # and put theirs in its place (every reader refuses such a folder)
    folder = tmp_path / "keys"
    folder.mkdir()
    folder.chmod(0o777)

    # Execute / Assert: refused naming the folder and the fix; nothing written
    with pytest.raises(ConfigurationError, match="chmod go-w") as refusal:
        WRITERS[writer](folder)
    assert str(folder) in str(refusal.value)
    assert list(folder.iterdir()) == []


@POSIX_ONLY
@pytest.mark.parametrize("writer", WRITERS)
def test_a_secret_is_not_written_into_a_folder_another_user_owns(writer: str, tmp_path: Path) -> None:
    # Prepare: a folder 0755 that belongs to another user (nobody): its owner may swap the key
    folder = tmp_path / "keys"
    folder.mkdir()
    folder.chmod(0o755)
    os.chown(folder, 65534, 65534)

    # Execute / Assert
    with pytest.raises(ConfigurationError, match="belongs to user 65534") as refusal:
        WRITERS[writer](folder)
    assert str(folder) in str(refusal.value)
    assert list(folder.iterdir()) == []


@POSIX_ONLY
@pytest.mark.parametrize("writer", WRITERS)
def test_a_secret_is_written_into_a_private_or_sticky_folder(writer: str, tmp_path: Path) -> None:
    # Prepare: the folders a key belongs in: the user's own 0700 folder, and a sticky folder others
    # may write (as /tmp, mode 1777), where only an entry's owner may rename it
    private, sticky = tmp_path / "private", tmp_path / "sticky"
    private.mkdir(mode=0o700)
    sticky.mkdir()
    sticky.chmod(0o1777)

    # Execute
    for folder in (private, sticky):
        WRITERS[writer](folder)

    # Assert: written, owner-only
    for folder in (private, sticky):
        written = [path for path in folder.iterdir() if not path.name.endswith(".pub")]
        assert written and all(path.stat().st_mode & 0o777 == 0o600 for path in written)


def test_a_secret_file_is_created_in_a_missing_folder_with_its_error(tmp_path: Path) -> None:
    # Prepare: a folder that does not exist (the folder check must not hide the create's own error)
    path = tmp_path / "absent" / "hospital.key"

    # Execute / Assert
    with pytest.raises(ConfigurationError, match="does not exist"):
        write_identity_key(path, SigningKey.generate())


# --- the key's name appears only with the whole, synced key -------------------------------------


def test_a_key_files_name_appears_only_once_its_data_is_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: record, whenever a regular file is synced, whether the key's own name exists yet (a crash
    # before the sync may leave the name holding an empty or partial key: never loadable, and every
    # later write of that key refused as an overwrite)
    path, seen = tmp_path / "hospital.key", []
    real = os.fsync

    def fsync(descriptor: int) -> None:
        if stat.S_ISREG(os.fstat(descriptor).st_mode):
            seen.append(os.path.lexists(path))
        real(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)

    # Execute
    write_identity_key(path, SigningKey.generate())

    # Assert: the file's data was synced before the name existed; the key is whole and owner-only
    assert seen and seen[0] is False
    assert path.stat().st_mode & 0o777 == 0o600 and len(path.read_bytes()) == 65
    assert [entry.name for entry in tmp_path.iterdir()] == ["hospital.key"]


def test_a_file_that_appears_at_the_keys_name_during_the_write_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: another process creates the key's name while the key is written (after the check that
    # it is free): the new key must not replace it
    path = tmp_path / "hospital.key"
    real = os.fsync

    def fsync(descriptor: int) -> None:
        real(descriptor)
        if not path.exists() and stat.S_ISREG(os.fstat(descriptor).st_mode):
            path.write_bytes(b"theirs\n")

    monkeypatch.setattr(os, "fsync", fsync)

    # Execute / Assert: refused as an overwrite; theirs untouched; no temporary file left
    with pytest.raises(ConfigurationError, match="refusing to overwrite"):
        write_identity_key(path, SigningKey.generate())
    assert path.read_bytes() == b"theirs\n"
    assert [entry.name for entry in tmp_path.iterdir()] == ["hospital.key"]


def test_a_key_is_written_where_hard_links_are_not_supported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: a file system without hard links (os.link fails with EPERM, as on FAT)
    def no_link(*args: object, **kwargs: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    path = tmp_path / "hospital.key"
    identity = SigningKey.generate()

    # Execute
    write_identity_key(path, identity)

    # Assert: written whole and owner-only, no temporary file left
    assert path.read_bytes() == identity.seed.hex().encode("ascii") + b"\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert [entry.name for entry in tmp_path.iterdir()] == ["hospital.key"]


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o277, 0o477, 0o777])
@pytest.mark.parametrize("hard_links", [True, False], ids=["linked", "in place"])
def test_a_secret_file_is_exactly_0600_whatever_the_umask(
    mask: int, hard_links: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a umask that also takes the owner's own read or write bit (0o277, 0o477): the file
    # was created 0400 or 0200 (0600 less the umask), a key its owner could not read back once the
    # dealer had destroyed the material; never more than 0600 either way
    if not hard_links:
        monkeypatch.setattr(os, "link", lambda *args, **kwargs: (_ for _ in ()).throw(PermissionError(1, "no")))
    path = tmp_path / "hospital.key"
    previous = os.umask(mask)
    try:
        # Execute
        write_identity_key(path, SigningKey.generate())
    finally:
        os.umask(previous)

    # Assert
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("writer", ["key file", "replaced file"])
def test_a_file_of_the_longest_name_the_folder_takes_is_written(writer: str, tmp_path: Path) -> None:
    # Prepare: a name of 250 bytes (the limit is 255 on most file systems): the temporary file beside
    # it must not need a longer one (it was named "." + the name + ".<16 hex digits>")
    path = tmp_path / ("k" * 246 + ".key")

    # Execute
    if writer == "key file":
        write_identity_key(path, SigningKey.generate())
    else:
        write_regular_file(path, "vector file", b"{}\n")

    # Assert
    assert path.read_bytes()
    assert [entry.name for entry in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize("target", ["dangling", "existing"])
def test_a_link_planted_at_a_keys_name_is_neither_followed_nor_replaced(target: str, tmp_path: Path) -> None:
    # Prepare: a link at the key's name, to nothing (the write would create the file it names,
    # wherever that is) or to a file of the user's (the write would overwrite it)
    elsewhere = tmp_path / "elsewhere"
    if target == "existing":
        elsewhere.write_bytes(b"the user's own file\n")
    path = tmp_path / "hospital.key"
    path.symlink_to(elsewhere)

    # Execute / Assert: refused; the link and what it names untouched, no temporary left
    with pytest.raises(ConfigurationError, match="refusing to overwrite"):
        write_identity_key(path, SigningKey.generate())
    assert path.is_symlink() and os.readlink(path) == str(elsewhere)
    assert elsewhere.read_bytes() == b"the user's own file\n" if target == "existing" else not elsewhere.exists()
    expected = {path.name, elsewhere.name} if target == "existing" else {path.name}
    assert {entry.name for entry in tmp_path.iterdir()} == expected
