"""The key-file writer (:func:`secagg._new_files.write_new_file`) under failure and attack: what every
writer of a secret leaves behind when a system call fails, when the file system has no hard links,
when a folder appears between its check and the write, and that what each writer writes its reader
reads back whatever the umask. Tests run as root here: modes and owners are set and read, never
tested by an access failing."""

from __future__ import annotations

import argparse
import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

import secagg._files as files
from secagg.errors import ConfigurationError
from secagg.integrations.flower.keys import (
    load_key_share,
    read_identity_key,
    read_public_key,
    read_trusted_keys,
    write_identity_key,
    write_public_key,
    write_trusted_keys,
)
from secagg.keys_command import main as keys_main
from secagg.paillier.answer_journal import AnswerJournal
from secagg.paillier.storage import (
    read_private_file,
    read_protected_file,
    write_new_private_file,
    write_protected_file,
)
from secagg.primitives.signing import SigningKey
from tests.integrations.paillier_keys import PASSPHRASE, key_files, material

POSIX_ONLY = pytest.mark.skipif(os.name != "posix", reason="folder modes and owners are checked on POSIX")


def _entries(folder: Path) -> list[str]:
    return sorted(entry.name for entry in folder.iterdir())


# --- a file system without hard links ------------------------------------------------------------


@pytest.mark.parametrize("code", ["EPERM", "EOPNOTSUPP", "ENOSYS", "EMLINK", "EXDEV", "EINVAL"])
def test_a_key_is_written_where_the_file_system_has_no_hard_links(
    code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: link() failing as file systems without hard links fail it: EPERM (FAT), EOPNOTSUPP,
    # ENOSYS (a FUSE file system that does not implement link, as sshfs without the server's
    # hard-link extension: "Function not implemented"), EMLINK (one link per file), EXDEV, EINVAL (a
    # file system that documents link() on "a device that does not support" it so), where the key was
    # written before
    def no_link(*args: object, **kwargs: object) -> None:
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))

    monkeypatch.setattr(os, "link", no_link)
    path, identity = tmp_path / "hospital.key", SigningKey.generate()

    # Execute
    write_identity_key(path, identity)

    # Assert: written whole and owner-only, no temporary file left
    assert read_identity_key(path).seed == identity.seed
    assert _entries(tmp_path) == ["hospital.key"]


# --- the temporary name: never left as a second name of the secret -------------------------------


@pytest.mark.parametrize("hard_links", [True, False], ids=["linked", "in place"])
def test_a_temporary_name_that_cannot_be_removed_fails_the_write_and_is_named(
    hard_links: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the temporary name cannot be removed once the key has its own (an I/O error): a second,
    # hidden name of the secret would outlive the key file its owner deletes or rotates
    real_unlink = os.unlink

    def unlink(target: str | os.PathLike[str], *args: object, **kwargs: object) -> None:
        if os.path.basename(os.fspath(target)).startswith(".hospital.key."):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_unlink(target)

    monkeypatch.setattr(os, "unlink", unlink)
    if not hard_links:
        monkeypatch.setattr(os, "link", lambda *args, **kwargs: (_ for _ in ()).throw(PermissionError(1, "no")))
    path = tmp_path / "hospital.key"

    # Execute / Assert: refused, naming the leftover to delete; the key's own name not left behind
    with pytest.raises(ConfigurationError, match=r"\.hospital\.key\.[0-9a-f]{16}.*delete it"):
        write_identity_key(path, SigningKey.generate())
    assert not path.exists()


@pytest.mark.parametrize(
    ("call", "error"),
    [
        ("fsync", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))),
        ("fsync", OSError(errno.EIO, os.strerror(errno.EIO))),
        ("link", OSError(errno.EROFS, os.strerror(errno.EROFS))),
        ("link", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))),
        ("fsync", KeyboardInterrupt()),
        ("link", KeyboardInterrupt()),
    ],
    ids=["fsync ENOSPC", "fsync EIO", "link EROFS", "link ENOSPC", "fsync interrupt", "link interrupt"],
)
def test_a_failed_key_write_raises_the_librarys_error_and_leaves_nothing(
    call: str, error: BaseException, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(os, call, fail)
    path = tmp_path / "hospital.key"

    # Execute / Assert: a system call's failure is the library's ConfigurationError naming the file
    # (an interrupt stays one); neither the temporary file nor the key's name is left
    expected = KeyboardInterrupt if isinstance(error, KeyboardInterrupt) else ConfigurationError
    with pytest.raises(expected) as raised:
        write_identity_key(path, SigningKey.generate())
    if expected is ConfigurationError:
        assert str(path) in str(raised.value)
    assert _entries(tmp_path) == []


@pytest.mark.parametrize("hard_links", [True, False], ids=["linked", "in place"])
def test_a_link_planted_at_the_keys_name_during_the_write_is_not_followed(
    hard_links: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a dangling link appears at the key's name after the check that the name is free, while
    # the data is synced: neither link() nor the in-place create may follow it to create its target
    path, target = tmp_path / "hospital.key", tmp_path / "elsewhere"
    real = os.fsync

    def fsync(descriptor: int) -> None:
        real(descriptor)
        if not os.path.lexists(path):
            path.symlink_to(target)

    monkeypatch.setattr(os, "fsync", fsync)
    if not hard_links:
        monkeypatch.setattr(os, "link", lambda *args, **kwargs: (_ for _ in ()).throw(PermissionError(1, "no")))

    # Execute / Assert
    with pytest.raises(ConfigurationError, match="refusing to overwrite"):
        write_identity_key(path, SigningKey.generate())
    assert path.is_symlink() and not target.exists()
    assert _entries(tmp_path) == ["hospital.key"]


def test_a_file_planted_at_the_temporary_name_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: the temporary name is random (16 hex digits from secrets); were it guessed, a link or file
    # planted there is neither followed nor reused (O_EXCL, O_NOFOLLOW): another name is drawn
    tokens = iter(["0" * 16, "1" * 16])
    monkeypatch.setattr(files.secrets, "token_hex", lambda size: next(tokens))
    planted, victim = tmp_path / f".hospital.key.{'0' * 16}", tmp_path / "victim"
    victim.write_bytes(b"the user's own file\n")
    planted.symlink_to(victim)
    path, identity = tmp_path / "hospital.key", SigningKey.generate()

    # Execute
    write_identity_key(path, identity)

    # Assert: the key written under the second name drawn; the planted link and its target untouched
    assert read_identity_key(path).seed == identity.seed
    assert planted.is_symlink() and victim.read_bytes() == b"the user's own file\n"
    assert _entries(tmp_path) == sorted(["hospital.key", planted.name, "victim"])


# --- the folder check: a relative path, a linked folder, a folder made during the write ----------


@POSIX_ONLY
@pytest.mark.parametrize("given", ["hospital.key", "./hospital.key", "sub/../hospital.key"])
def test_a_relative_path_into_a_folder_others_may_write_is_refused(
    given: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the working folder is one group and others may write
    folder = tmp_path / "open"
    (folder / "sub").mkdir(parents=True)
    folder.chmod(0o777)
    monkeypatch.chdir(folder)

    # Execute / Assert
    with pytest.raises(ConfigurationError, match="chmod go-w"):
        write_identity_key(given, SigningKey.generate())
    assert _entries(folder) == ["sub"]


@POSIX_ONLY
def test_a_linked_folder_is_judged_by_the_folder_it_leads_to(tmp_path: Path) -> None:
    # Prepare: a private-looking link to a folder others may write
    target = tmp_path / "open"
    target.mkdir()
    target.chmod(0o777)
    (tmp_path / "keys").symlink_to(target)

    # Execute / Assert
    with pytest.raises(ConfigurationError, match="chmod go-w"):
        write_identity_key(tmp_path / "keys" / "hospital.key", SigningKey.generate())
    assert _entries(target) == []


@POSIX_ONLY
def test_a_folder_another_user_makes_during_the_write_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the key's folder does not exist yet, in a sticky folder others may write (as /tmp):
    # another user makes it, theirs and open to all, between the folder check and the write
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    folder = sticky / "keys"
    real = files._new_temporary

    def new_temporary(where: str, base: str, mode: int = 0o666) -> tuple[int, str]:
        if not os.path.exists(where):
            os.mkdir(where)
            os.chmod(where, 0o777)
            os.chown(where, 65534, 65534)
        return real(where, base, mode)

    monkeypatch.setattr(files, "_new_temporary", new_temporary)

    # Execute / Assert: refused as a folder they own; nothing of the key left in it
    with pytest.raises(ConfigurationError, match="belongs to user 65534"):
        write_identity_key(folder / "hospital.key", SigningKey.generate())
    assert _entries(folder) == []


# --- what each writer writes, its reader reads, whatever the umask -------------------------------


def _identity(folder: Path) -> None:
    identity = SigningKey.generate()
    write_identity_key(folder / "hospital.key", identity)
    assert read_identity_key(folder / "hospital.key").seed == identity.seed


def _keys_new(folder: Path) -> None:
    keys_main(argparse.Namespace(action="new", path=str(folder / "hospital.key")))
    read_identity_key(folder / "hospital.key")


def _ceremony(folder: Path) -> None:
    public_path, share_paths = key_files(folder, 3, 2)
    assert read_public_key(public_path) == material(3, 2).public
    assert [load_key_share(path, PASSPHRASE) for path in share_paths] == list(material(3, 2).shares)


def _trusted(folder: Path) -> None:
    write_trusted_keys(folder / "federation.keys", [b"\1" * 32, b"\2" * 32])
    assert read_trusted_keys(folder / "federation.keys") == {b"\1" * 32, b"\2" * 32}


def _public(folder: Path) -> None:
    write_public_key(folder / "public-key.bin", material(3, 2).public)
    assert read_public_key(folder / "public-key.bin") == material(3, 2).public


def _sealed(folder: Path) -> None:
    share = material(3, 2).shares[0]
    write_protected_file(folder / "share.bin", share, PASSPHRASE, scrypt_log_n=10, allow_weak_kdf_for_testing=True)
    assert read_protected_file(folder / "share.bin", PASSPHRASE) == share


def _raw(folder: Path) -> None:
    write_new_private_file(folder / "passphrase", b"hospital passphrase\n")
    assert read_private_file(folder / "passphrase", "passphrase file") == b"hospital passphrase\n"


def _journal(folder: Path) -> None:
    journal, session = AnswerJournal(folder), bytes(range(32))
    journal.record(session, 3, b"\x07" * 32)
    assert AnswerJournal(folder).answered(session, 3) == b"\x07" * 32


ROUND_TRIPS: dict[str, Callable[[Path], None]] = {
    "identity key": _identity,
    "secagg keys new": _keys_new,
    "key ceremony": _ceremony,
    "trusted keys": _trusted,
    "public key": _public,
    "sealed key share": _sealed,
    "raw private file": _raw,
    "answer journal entry": _journal,
}


@pytest.mark.parametrize("mask", [0o077, 0o022, 0o000])
@pytest.mark.parametrize("writer", ROUND_TRIPS)
def test_what_a_writer_writes_its_reader_reads_whatever_the_umask(writer: str, mask: int, tmp_path: Path) -> None:
    # Prepare: the key's folder made under the same umask (0o000 would make it 0777: made 0700)
    folder = tmp_path / "keys"
    folder.mkdir(mode=0o700)
    previous = os.umask(mask)
    try:
        # Execute / Assert: written, then read back by the library's reader of that file
        ROUND_TRIPS[writer](folder)
    finally:
        os.umask(previous)
    assert all(
        (entry.stat().st_mode & 0o777) == 0o600 for entry in folder.iterdir() if not entry.name.endswith(".pub")
    )
    assert not [entry.name for entry in folder.iterdir() if entry.name.startswith(".")]
