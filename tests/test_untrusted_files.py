"""Untrusted files and records other than wire messages: key files, passphrases, vector files,
the accountant's state file, the model tensors a hospital passes. Whatever they hold, they raise
only the library's errors (secagg/errors.py), and a write that fails leaves the previous file
whole (no lost data)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg import wire
from secagg._files import write_regular_file
from secagg.dp import DPConfig, NoisePlan, PrivacyAccountant, calibrate
from secagg.errors import ConfigurationError, ConfigurationTypeError, DecodeError, SecAggError
from secagg.integrations import keras as keras_adapter
from secagg.integrations import torch as torch_adapter
from secagg.integrations.flower.keys import read_identity_key, read_public_key, read_trusted_keys, write_identity_key
from secagg.keys_command import main as keys_main
from secagg.paillier.storage import ProtectedSecret, protect, unprotect
from secagg.primitives.signing import SigningKey
from secagg.vectors import SUITES, generate_directory, load_vectors, verify_directory
from tests.integrations.paillier_keys import key_files, material

torch = pytest.importorskip("torch")

LONE_SURROGATE = "\udcff"  # what os.environ and os.fsdecode make of a byte that is not UTF-8
KEY_HEX = "ab" * 32


def _private(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


# --- model tensors a hospital passes ---------------------------------------------------------------

NAME_READERS: dict[str, Callable[[str], object]] = {
    "torch flatten": lambda name: torch_adapter.flatten_state_dict({name: torch.zeros(2)}),
    "torch digest": lambda name: torch_adapter.model_digest({name: torch.zeros(2)}),
    "torch update": lambda name: torch_adapter.hospital_update(
        1, {name: torch.zeros(2)}, {name: torch.ones(2)}, num_samples=3
    ),
    "keras flatten": lambda name: keras_adapter.flatten_weights({name: np.zeros(2)}),
    "keras digest": lambda name: keras_adapter.model_digest({name: np.zeros(2)}),
}


@pytest.mark.parametrize("reader", NAME_READERS)
def test_a_tensor_name_that_is_not_unicode_is_refused_with_the_librarys_error(reader: str) -> None:
    # Prepare: a state dict / weight mapping whose key holds a lone surrogate (a name decoded
    # from bytes with surrogateescape): the model digest hashes names as UTF-8, which has no code for it

    # Execute / Assert
    with pytest.raises(ConfigurationError, match="not valid Unicode"):
        NAME_READERS[reader](f"layer{LONE_SURROGATE}.weight")


# --- passphrases ---------------------------------------------------------------------------------


def test_a_passphrase_that_is_not_unicode_is_refused_with_the_librarys_error() -> None:
    # Prepare: a well-formed sealed header (cheapest scrypt cost), so that unprotecting reaches the
    # key derivation; a passphrase from an environment variable holding a byte that is not UTF-8
    header = wire.encode(ProtectedSecret(10, 1, 1, bytes(16), bytes(44)))
    passphrase = "correct horse battery" + LONE_SURROGATE

    # Execute / Assert: reading and sealing alike
    with pytest.raises(ConfigurationError, match="not valid Unicode"):
        unprotect(header, passphrase)
    with pytest.raises(ConfigurationError, match="not valid Unicode"):
        protect(material(3, 2).shares[0], passphrase, scrypt_log_n=10, allow_weak_kdf_for_testing=True)


# --- key files -----------------------------------------------------------------------------------

PATH_READERS: dict[str, Callable[[object], object]] = {
    "identity key": read_identity_key,  # type: ignore[dict-item]
    "trusted keys": read_trusted_keys,  # type: ignore[dict-item]
    "public key": read_public_key,  # type: ignore[dict-item]
    "vector folder": lambda folder: load_vectors("prg.json", folder),  # type: ignore[arg-type]
}


class _BytesPath:
    """An os.PathLike whose path is bytes (no configured path is)."""

    def __fspath__(self) -> bytes:
        return b"federation.keys"


@pytest.mark.parametrize(
    "path", [3, ["federation.keys"], b"federation.keys", _BytesPath()], ids=["int", "list", "bytes", "bytes PathLike"]
)
@pytest.mark.parametrize("reader", PATH_READERS)
def test_a_path_of_the_wrong_type_is_refused_with_the_librarys_error(reader: str, path: object) -> None:
    # Prepare: a configuration that gives a number, a list or bytes where a file path belongs
    # (an int would otherwise be read as an open file descriptor)

    # Execute / Assert
    with pytest.raises(ConfigurationTypeError, match="path"):
        PATH_READERS[reader](path)


def test_a_vector_folder_that_cannot_be_listed_or_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    # Prepare: a folder name longer than the system allows (listing it fails with ENAMETOOLONG),
    # and a number where the folder belongs

    # Execute / Assert
    with pytest.raises(ConfigurationError, match="cannot list the vector folder"):
        verify_directory(tmp_path / ("x" * 300))
    with pytest.raises(ConfigurationTypeError, match="vector folder"):
        verify_directory(3)  # type: ignore[arg-type]


NON_CANONICAL_KEYS = {
    "inner spaces": " ".join(KEY_HEX[i : i + 2] for i in range(0, 64, 2)),
    "two inner spaces": f"{KEY_HEX[:2]} {KEY_HEX[2:4]} {KEY_HEX[4:]}",  # an even length, as two digits a byte
    "inner tab": KEY_HEX[:32] + "\t" + KEY_HEX[32:],
    "non-ASCII digits": "\u0661" * 64,
}


@pytest.mark.parametrize("text", NON_CANONICAL_KEYS.values(), ids=list(NON_CANONICAL_KEYS))
def test_a_key_that_is_not_64_hex_digits_is_refused(text: str, tmp_path: Path) -> None:
    # Prepare: the formats are 64 hex digits a line; bytes.fromhex also reads "ab ab ab ...",
    # so a line another reader would refuse names a key here
    identity = _private(tmp_path / "hospital.key", text.encode("utf-8") + b"\n")
    trusted = _private(tmp_path / "federation.keys", ("cd" * 32 + "\n" + text + "\n").encode("utf-8"))
    public = _private(tmp_path / "other.key.pub", text.encode("utf-8") + b"\n")

    # Execute / Assert
    with pytest.raises(DecodeError, match="hex"):
        read_identity_key(identity)
    with pytest.raises(DecodeError, match="line 2"):
        read_trusted_keys(trusted)
    with pytest.raises(ConfigurationError, match="public key in hex"):
        keys_main(argparse.Namespace(action="trust", out=str(tmp_path / "out.keys"), keys=["cd" * 32, str(public)]))
    assert not (tmp_path / "out.keys").exists()


@pytest.mark.parametrize("separator", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e"])
def test_only_a_newline_ends_a_line_of_the_trusted_keys_file(separator: str, tmp_path: Path) -> None:
    # Prepare: two keys separated by an ASCII control that str.splitlines() also splits on (a
    # vertical tab, form feed, file/group/record separator): a reader splitting on newlines sees one
    # malformed line where this one saw two trusted keys
    trusted = _private(tmp_path / "federation.keys", f"{KEY_HEX}{separator}{'cd' * 32}\n".encode("ascii"))

    # Execute / Assert: the node's reader and `secagg keys check` alike
    with pytest.raises(DecodeError, match="line 1"):
        read_trusted_keys(trusted)
    with pytest.raises(ConfigurationError, match="line 1"):
        keys_main(argparse.Namespace(action="check", trusted=str(trusted), identity=[]))


@settings(max_examples=40)
@given(st.binary(max_size=160))
def test_any_bytes_in_a_key_file_give_a_key_or_the_librarys_error(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    # Prepare: arbitrary bytes, owner-only
    folder = tmp_path_factory.mktemp("keys")
    path = _private(folder / "any.key", data)

    # Execute / Assert: each reader returns or raises a SecAggError, nothing else
    for reader in (read_identity_key, read_trusted_keys):
        with contextlib.suppress(SecAggError):
            reader(path)


# --- vector files --------------------------------------------------------------------------------

STRICT_JSON = {
    "duplicate key": b'{"schema": "a.json", "schema": "b.json"}',
    "NaN": b'{"numberOfTests": NaN}',
    "Infinity": b'{"numberOfTests": -Infinity}',
    "a number beyond binary64": b'{"numberOfTests": 1, "tests": [{"x": 1e999}]}',  # Python reads inf, silently
}


@pytest.mark.parametrize("content", STRICT_JSON.values(), ids=list(STRICT_JSON))
def test_a_vector_file_that_is_not_strict_json_is_refused(content: bytes, tmp_path: Path) -> None:
    # Prepare: JSON that Python's parser reads one way (the last duplicate wins; NaN is not JSON)
    # and a strict reader of another implementation refuses or reads another way
    (tmp_path / "prg.json").write_bytes(content)

    # Execute / Assert
    with pytest.raises(DecodeError, match=r"prg\.json"):
        load_vectors("prg.json", tmp_path)


PRG_SUITE = [suite for suite in SUITES if suite.filename == "prg.json"]


def _failing(real: Callable[..., object], error: int) -> Callable[..., object]:
    def fail(*args: object, **kwargs: object) -> object:
        raise OSError(error, os.strerror(error))

    return fail


@pytest.mark.parametrize("call", ["write", "replace", "fsync"])
def test_an_interrupted_vector_write_leaves_the_previous_file_whole(
    call: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a generated prg.json, then a second generation whose write fails (a full disk,
    # a failing rename or sync)
    generate_directory(tmp_path, PRG_SUITE)
    target = tmp_path / "prg.json"
    before = target.read_bytes()
    target.write_bytes(before.replace(b'"numberOfTests"', b'"numberOfTests" '))  # distinguishable
    previous = target.read_bytes()
    monkeypatch.setattr(os, call, _failing(getattr(os, call), errno.ENOSPC))

    # Execute
    with pytest.raises(ConfigurationError, match=r"prg\.json"):
        generate_directory(tmp_path, PRG_SUITE)
    monkeypatch.undo()

    # Assert: the previous file is intact and still loads; no temporary file is left
    assert target.read_bytes() == previous
    load_vectors("prg.json", tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["prg.json"]


def test_a_previous_vector_file_this_process_may_not_write_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a generated prg.json that the user may no longer write (os.access says so, as for a
    # read-only file of another user): replacing it by a rename would bypass its permissions
    generate_directory(tmp_path, PRG_SUITE)
    target = tmp_path / "prg.json"
    target.write_bytes(b"{}")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: mode != os.W_OK and real_access(path, mode, **kw))

    # Execute / Assert
    with pytest.raises(ConfigurationError, match="permission denied"):
        generate_directory(tmp_path, PRG_SUITE)
    assert target.read_bytes() == b"{}"


# --- the accountant's state file -----------------------------------------------------------------

CONFIG = DPConfig(epsilon=3.0, delta=1e-5, rounds=5, l2_clip=1.0, min_honest=4)


@pytest.fixture(scope="module")
def plan() -> NoisePlan:
    return calibrate(CONFIG, num_clients=5, scale=1024.0, dimension=31)


@pytest.mark.parametrize("call", ["fchmod", "fsync", "replace"])
def test_an_interrupted_state_write_leaves_the_previous_count_whole(
    call: str, plan: NoisePlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a state file recording one released round; the next charge's write fails
    path = tmp_path / "budget.json"
    PrivacyAccountant(plan, path).record_round(1)
    previous = path.read_bytes()
    accountant = PrivacyAccountant(plan, path)
    monkeypatch.setattr(os, call, _failing(getattr(os, call), errno.EIO))

    # Execute
    with pytest.raises(ConfigurationError, match=r"budget\.json"):
        accountant.record_round(2)
    monkeypatch.undo()

    # Assert: the file still records one round, and a restarted accountant reads it
    assert path.read_bytes() == previous
    assert PrivacyAccountant(plan, path).num_releases == 1
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# --- new secret files: durable before the call returns -------------------------------------------


def _recording_fsync(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record what each os.fsync synced: "file" or "folder"."""
    synced: list[str] = []
    real = os.fsync

    def fsync(descriptor: int) -> None:
        synced.append("folder" if stat.S_ISDIR(os.fstat(descriptor).st_mode) else "file")
        real(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


def test_a_new_key_file_is_synced_with_its_folder_before_the_call_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the dealer destroys the key material once write_key_files returns; a crash after
    # that must not leave an empty or missing share file, so file and folder are synced first
    synced = _recording_fsync(monkeypatch)

    # Execute
    write_identity_key(tmp_path / "hospital.key", SigningKey.generate())

    # Assert
    assert synced == ["file", "folder"]


def test_a_failing_sync_of_a_new_key_file_is_reported_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the disk cannot make the file durable (an I/O error on fsync)
    monkeypatch.setattr(os, "fsync", _failing(os.fsync, errno.EIO))

    # Execute / Assert: refused, and no half-durable key file is left to be trusted later
    with pytest.raises(ConfigurationError, match=r"hospital\.key"):
        write_identity_key(tmp_path / "hospital.key", SigningKey.generate())
    assert list(tmp_path.iterdir()) == []


def test_a_key_write_interrupted_by_the_user_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: Ctrl-C while the key file is synced (only an OSError removed the file: a truncated key
    # file was left behind, and every later write of that key is refused as an overwrite)
    def interrupted(descriptor: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)

    # Execute / Assert: the interrupt ends the call, and no key file is left
    with pytest.raises(KeyboardInterrupt):
        write_identity_key(tmp_path / "hospital.key", SigningKey.generate())
    assert list(tmp_path.iterdir()) == []


def test_a_key_ceremony_interrupted_by_the_user_leaves_nothing_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: Ctrl-C while the second file (the first share) is synced: the public key written before
    # it was left behind (only a ConfigurationError removed the files written), part of a ceremony
    real, files = os.fsync, []

    def interrupted(descriptor: int) -> None:
        if stat.S_ISREG(os.fstat(descriptor).st_mode):
            files.append(descriptor)
            if len(files) == 2:
                raise KeyboardInterrupt
        real(descriptor)

    monkeypatch.setattr(os, "fsync", interrupted)

    # Execute / Assert: the interrupt ends the call, and no file of the ceremony is left
    with pytest.raises(KeyboardInterrupt):
        key_files(tmp_path, 3, 2)
    assert list(tmp_path.iterdir()) == []


def test_a_new_vector_file_follows_the_umask_as_any_new_file(tmp_path: Path) -> None:
    # Prepare: a user whose umask keeps new files private (077): a new file is 0600, as open() makes it
    # (the atomic writer gave every new file 0644, group- and world-readable whatever the umask)
    previous = os.umask(0o077)
    try:
        # Execute
        generate_directory(tmp_path, PRG_SUITE)
    finally:
        os.umask(previous)

    # Assert: 0666 less the umask, no temporary left; a replaced file keeps its own mode
    assert stat.S_IMODE((tmp_path / "prg.json").stat().st_mode) == 0o600
    assert sorted(path.name for path in tmp_path.iterdir()) == ["prg.json"]
    (tmp_path / "prg.json").chmod(0o640)
    generate_directory(tmp_path, PRG_SUITE)
    assert stat.S_IMODE((tmp_path / "prg.json").stat().st_mode) == 0o640


# --- write_regular_file: what replaces a file keeps its place ----------------------------------------


def test_a_link_where_a_regular_file_is_written_is_refused_and_left_alone(tmp_path: Path) -> None:
    # Prepare: a symbolic link planted where the file goes, pointing at one of the user's files
    target = tmp_path / "users_own.txt"
    target.write_bytes(b"mine")
    link = tmp_path / "prg.json"
    link.symlink_to(target)

    # Execute / Assert: refused, in one sentence naming the file once; neither the link nor its target
    # is replaced or written
    with pytest.raises(ConfigurationError, match="not a regular file") as refusal:
        write_regular_file(link, "vector file", b"{}")
    assert str(refusal.value).count("cannot write the vector file") == 1, refusal.value
    assert link.is_symlink() and target.read_bytes() == b"mine"


def test_a_written_file_keeps_the_previous_files_permissions_and_a_new_one_has_the_umasks(tmp_path: Path) -> None:
    # Prepare: an existing file the user made owner-only; the common umask 022
    kept = tmp_path / "kept.json"
    kept.write_bytes(b"{}")
    kept.chmod(0o600)
    previous = os.umask(0o022)

    # Execute
    try:
        write_regular_file(kept, "vector file", b"[]")
        write_regular_file(tmp_path / "new.json", "vector file", b"[]")
    finally:
        os.umask(previous)

    # Assert: the replacement keeps 0600; a new file is 0644 under umask 022 (not a temporary file's 0600)
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and kept.read_bytes() == b"[]"
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o644


def test_an_interrupt_during_a_write_leaves_the_previous_file_and_no_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the write is interrupted (Ctrl-C) halfway
    target = tmp_path / "prg.json"
    target.write_bytes(b"previous")

    def interrupted(descriptor: int, data: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "write", interrupted)

    # Execute / Assert: the interrupt ends the call; nothing of the write is left behind
    with pytest.raises(KeyboardInterrupt):
        write_regular_file(target, "vector file", b"next")
    monkeypatch.undo()
    assert target.read_bytes() == b"previous"
    assert [path.name for path in tmp_path.iterdir()] == ["prg.json"]


def test_a_replaced_file_is_synced_with_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: record the size of each file synced and which folder is
    synced: list[tuple[str, int]] = []
    real = os.fsync

    def fsync(descriptor: int) -> None:
        info = os.fstat(descriptor)
        synced.append(("folder", info.st_ino) if stat.S_ISDIR(info.st_mode) else ("file", info.st_size))
        real(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)

    # Execute
    write_regular_file(tmp_path / "prg.json", "vector file", b"{}")

    # Assert: the data (2 bytes) before the rename, then the file's own folder (the new name)
    assert synced == [("file", 2), ("folder", tmp_path.stat().st_ino)]


def test_a_new_key_file_holds_its_data_when_it_is_synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: record the size of each file when it is synced
    sizes: list[int] = []
    real = os.fsync

    def fsync(descriptor: int) -> None:
        info = os.fstat(descriptor)
        if stat.S_ISREG(info.st_mode):
            sizes.append(info.st_size)
        real(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)

    # Execute
    write_identity_key(tmp_path / "hospital.key", SigningKey.generate())

    # Assert: what was synced is the whole key file (flushed first), not the empty file
    assert sizes == [(tmp_path / "hospital.key").stat().st_size] and sizes[0] > 0


def test_a_vector_file_name_that_is_not_a_str_is_refused_and_an_empty_folder_is_the_committed_one() -> None:
    # Prepare / Execute / Assert: a number where the file name belongs is the library's type error
    with pytest.raises(ConfigurationTypeError, match="vector file name"):
        load_vectors(3)  # type: ignore[arg-type]
    # and an empty folder name means the committed vectors, as None does (not the working folder)
    assert load_vectors("prg.json", "") == load_vectors("prg.json")


@pytest.mark.parametrize("path", [3, b"prg.json", _BytesPath()], ids=["int", "bytes", "bytes PathLike"])
def test_a_write_to_a_path_of_the_wrong_type_is_refused_with_the_librarys_error(path: object) -> None:
    # Execute / Assert: an int would be taken for an open file descriptor
    with pytest.raises(ConfigurationTypeError, match="path"):
        write_regular_file(path, "vector file", b"{}")  # type: ignore[arg-type]


def test_a_write_to_a_path_holding_a_nul_byte_is_refused_with_the_librarys_error(tmp_path: Path) -> None:
    # Execute / Assert: no system call takes a NUL byte (Python raises ValueError); shown visibly
    with pytest.raises(ConfigurationError, match=r"cannot write the vector file .*a\\0b"):
        write_regular_file(f"{tmp_path}/a\0b", "vector file", b"{}")
    assert list(tmp_path.iterdir()) == []
