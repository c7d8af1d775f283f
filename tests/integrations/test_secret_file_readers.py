"""Readers of secret files: what a refusal says never holds the secret's bytes (a node's refusal goes
to the server in its error reply and into the round's report), and a truncated or altered key-share
file raises only the library's errors."""

from __future__ import annotations

import errno
import os
import shlex
import socket
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from flwr.app import Context, RecordDict

import secagg
import secagg.errors
from secagg.errors import ConfigurationError, SecAggError
from secagg.integrations.flower._key_share import load_node_share
from secagg.integrations.flower.keys import (
    load_key_share,
    read_identity_key,
    read_public_key,
    read_trusted_keys,
    write_identity_key,
    write_public_key,
    write_trusted_keys,
)
from secagg.paillier.storage import SecretFileLinkWarning, protect, write_new_private_file
from secagg.primitives.signing import SigningKey
from tests.integrations.paillier_keys import PASSPHRASE, material


def _node_context(share: Path, passphrase_file: Path) -> Context:
    config = {"key-share-file": str(share), "key-share-passphrase-file": str(passphrase_file)}
    return Context(77, 1, config, RecordDict(), {})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "secret", [b"a hospital pass\xe9phrase\n", b"\xffa hospital passphrase\n"], ids=["mid", "first"]
)
def test_a_passphrase_file_that_is_not_utf8_is_refused_without_its_bytes(secret: bytes, tmp_path: Path) -> None:
    # Prepare: a passphrase file in Latin-1 (not UTF-8); the decoder's own message names the byte
    # and its position, a piece of the passphrase the refusal would send to the server
    passphrase_file = tmp_path / "passphrase"
    write_new_private_file(passphrase_file, secret)
    share = tmp_path / "share.bin"  # never reached: the passphrase is refused first

    # Execute / Assert: refused, naming the file and the fix, holding none of the file's bytes
    with pytest.raises(ConfigurationError, match="UTF-8") as refusal:
        load_node_share(_node_context(share, passphrase_file), None, None)
    message = str(refusal.value)
    assert str(passphrase_file) in message
    for leak in ("0xe9", "0xff", "position", "\\xe9", "\\xff", "é"):
        assert leak not in message


def test_a_truncated_or_altered_key_share_file_raises_only_the_librarys_errors(tmp_path: Path) -> None:
    # Prepare: a sealed share (cheapest scrypt), cut at every length up to its header and beyond,
    # and with single bits flipped across it
    good = protect(material(3, 2).shares[0], PASSPHRASE, scrypt_log_n=10, allow_weak_kdf_for_testing=True)
    variants = [good[:length] for length in (*range(0, 64), len(good) // 2, len(good) - 1)]
    variants += [good[:i] + bytes([good[i] ^ 0x01]) + good[i + 1 :] for i in range(0, len(good), 97)]

    # Execute / Assert: each one a SecAggError, never a raw ValueError, KeyError or the like
    for number, data in enumerate(variants):
        path = tmp_path / f"share-{number}.bin"
        write_new_private_file(path, data)
        with pytest.raises(SecAggError):
            load_key_share(path, PASSPHRASE)


# --- what stands at a key file's path instead of a file: each named for what it is ---------------

READERS: dict[str, Callable[[Path], object]] = {
    "identity key": read_identity_key,
    "trusted keys": read_trusted_keys,
    "public key": read_public_key,
    "key share": lambda path: load_key_share(path, PASSPHRASE),
    "passphrase": lambda path: load_node_share(_node_context(path.parent / "share.bin", path), None, None),
}


def _reader_refusal(reader: str, path: Path) -> str:
    with pytest.raises(ConfigurationError) as refusal:
        READERS[reader](path)
    assert not isinstance(refusal.value.__cause__, ConfigurationError)
    return str(refusal.value)


@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_key_file_that_is_a_loop_of_symbolic_links_is_named_as_such(reader: str, tmp_path: Path) -> None:
    # Prepare: the key file's path is one of two links naming each other (open() fails with ELOOP)
    path, other = tmp_path / "hospital.key", tmp_path / "other.key"
    path.symlink_to(other)
    other.symlink_to(path)
    # Execute
    message = _reader_refusal(reader, path)
    # Assert: the file named, and what it is (not the system's bare "Too many levels of symbolic links")
    assert f"{path} is a loop of symbolic links" in message, message


@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_key_file_in_a_folder_that_is_a_loop_of_symbolic_links_names_the_folder(reader: str, tmp_path: Path) -> None:
    # Prepare: the key file's folder is a loop of links
    folder, other = tmp_path / "keys", tmp_path / "other"
    folder.symlink_to(other)
    other.symlink_to(folder)
    # Execute
    message = _reader_refusal(reader, folder / "hospital.key")
    # Assert: the folder named as the loop, in the words the state file's reader uses for it
    assert f"its folder {folder} is a loop of symbolic links" in message, message


@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_key_file_that_is_a_dangling_symbolic_link_names_its_missing_target(reader: str, tmp_path: Path) -> None:
    # Prepare: a link to a file that is not there (a secret volume not mounted yet, a moved key)
    path, target = tmp_path / "hospital.key", tmp_path / "mounted" / "hospital.key"
    path.symlink_to(target)
    # Execute
    message = _reader_refusal(reader, path)
    # Assert: the link and its target named (not the bare "No such file or directory" for a path that exists)
    assert f"{path} is a symbolic link to {target}, which does not exist" in message, message


def _socket(path: Path) -> None:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()  # the socket file stays


@pytest.mark.skipif(os.name != "posix", reason="named pipes and sockets are POSIX files")
@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize(
    ("make", "kind"),
    [(os.mkfifo, "a named pipe"), (os.mkdir, "a folder"), (_socket, "a socket")],
    ids=["fifo", "folder", "socket"],
)
def test_a_pipe_folder_or_socket_in_place_of_a_key_file_is_named_for_what_it_is(
    reader: str, make: Callable[[Path], None], kind: str, tmp_path: Path
) -> None:
    # Prepare: no writer on the pipe (a blocking open would wait for one forever)
    path = tmp_path / "hospital.key"
    make(path)
    # Execute: returns at once
    message = _reader_refusal(reader, path)
    # Assert: named, not a regular file, and which kind of thing it is
    assert f"{path} is not a regular file: it is {kind}" in message, message


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null device here")
@pytest.mark.parametrize("reader", ["identity key", "trusted keys", "public key", "key share"])
def test_a_device_in_place_of_a_key_file_is_named_for_what_it_is(reader: str) -> None:
    message = _reader_refusal(reader, Path("/dev/null"))
    assert "/dev/null is not a regular file: it is a device" in message, message


# --- a secret file with a second name (hard link): warned, still read; public files never ---------

SECRET_READERS = ["identity key", "key share", "passphrase"]


def _written(reader: str, path: Path) -> None:
    """The file ``reader`` reads, written at ``path`` as the library writes it (0600, a new file)."""
    if reader == "identity key":
        write_identity_key(path, SigningKey.generate())
    elif reader == "key share":
        write_new_private_file(
            path, protect(material(3, 2).shares[0], PASSPHRASE, scrypt_log_n=10, allow_weak_kdf_for_testing=True)
        )
    elif reader == "passphrase":
        write_new_private_file(path, PASSPHRASE.encode() + b"\n")
        write_new_private_file(
            path.parent / "share.bin",
            protect(material(3, 2).shares[0], PASSPHRASE, scrypt_log_n=10, allow_weak_kdf_for_testing=True),
        )
    elif reader == "trusted keys":
        write_trusted_keys(path, [b"\1" * 32, b"\2" * 32])
    else:
        write_public_key(path, material(3, 2).public)


@pytest.mark.skipif(not hasattr(os, "link"), reason="no hard links here")
@pytest.mark.parametrize("reader", SECRET_READERS)
def test_a_secret_file_with_a_second_hard_link_is_read_with_a_warning_naming_it(reader: str, tmp_path: Path) -> None:
    # Prepare: the secret, and a second name for it in another folder (a copy left in a shared folder,
    # the temporary name of an interrupted write)
    path = tmp_path / "hospital.key"
    _written(reader, path)
    (tmp_path / "elsewhere").mkdir()
    os.link(path, tmp_path / "elsewhere" / "copy")

    # Execute
    with pytest.warns(SecretFileLinkWarning) as warned:
        READERS[reader](path)

    # Assert: one warning, naming the file, its number of names and how to find the others
    assert len(warned) == 1
    message = str(warned[0].message)
    assert f"{path} has 2 names (hard links)" in message and f"-samefile {path}" in message, message


@pytest.mark.skipif(not hasattr(os, "link"), reason="no hard links here")
@pytest.mark.parametrize("reader", ["trusted keys", "public key"])
def test_a_public_file_with_a_second_hard_link_is_read_without_a_warning(reader: str, tmp_path: Path) -> None:
    # Prepare: a public (integrity-sensitive, not secret) file with a second name
    path = tmp_path / "federation.keys"
    _written(reader, path)
    os.link(path, tmp_path / "copy")
    # Execute / Assert: no warning (a second name of a public file reveals nothing)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SecretFileLinkWarning)
        READERS[reader](path)


@pytest.mark.parametrize("reader", SECRET_READERS)
def test_a_secret_file_with_one_name_is_read_without_a_warning(reader: str, tmp_path: Path) -> None:
    # Control: the file as the library writes it (its temporary name removed) has one name
    path = tmp_path / "hospital.key"
    _written(reader, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SecretFileLinkWarning)
        READERS[reader](path)


@pytest.mark.skipif(not hasattr(os, "link"), reason="no hard links here")
def test_a_secret_file_with_a_second_hard_link_is_refused_where_the_warning_is_an_error(tmp_path: Path) -> None:
    # Prepare: the documented way to refuse such a file
    path = tmp_path / "hospital.key"
    _written("identity key", path)
    os.link(path, tmp_path / "copy")
    # Execute / Assert: the read raises the warning instead of returning the key
    with warnings.catch_warnings():
        warnings.simplefilter("error", SecretFileLinkWarning)
        with pytest.raises(SecretFileLinkWarning, match="has 2 names"):
            read_identity_key(path)


@pytest.mark.skipif(not hasattr(os, "link"), reason="no hard links here")
@pytest.mark.parametrize("reader", SECRET_READERS)
def test_the_second_name_warning_points_at_the_callers_line_not_the_librarys(reader: str, tmp_path: Path) -> None:
    # Prepare: a secret with a second name
    path = tmp_path / "hospital.key"
    _written(reader, path)
    os.link(path, tmp_path / "copy")
    # Execute
    with pytest.warns(SecretFileLinkWarning) as warned:
        READERS[reader](path)
    # Assert: the warning is attributed to the code that asked for the read (here this file), as a
    # warning about a caller's input is, not to a line inside secagg (the same line for every reader)
    assert [Path(w.filename) for w in warned] == [Path(__file__)], [w.filename for w in warned]


@pytest.mark.skipif(not hasattr(os, "link"), reason="no hard links here")
@pytest.mark.parametrize("reader", SECRET_READERS)
def test_a_second_name_made_an_error_is_the_librarys_configuration_error(reader: str, tmp_path: Path) -> None:
    # Prepare: a secret with a second name, the warning made an error as the docs say
    path = tmp_path / "hospital.key"
    _written(reader, path)
    os.link(path, tmp_path / "copy")
    # Execute / Assert: a refusal every caller handles as one (a node's handler catches SecAggError to
    # drop the round's state and reply with the reason), not a bare UserWarning escaping the library
    with warnings.catch_warnings():
        warnings.simplefilter("error", SecretFileLinkWarning)
        with pytest.raises(ConfigurationError, match="has 2 names"):
            READERS[reader](path)


def test_the_second_name_warning_is_exported_with_the_librarys_errors() -> None:
    # Where a user looks for what the library raises (and secagg's top level, which re-exports them);
    # secagg.paillier.storage keeps exporting it
    assert secagg.errors.SecretFileLinkWarning is SecretFileLinkWarning
    assert secagg.SecretFileLinkWarning is SecretFileLinkWarning
    assert "SecretFileLinkWarning" in secagg.errors.__all__ and "SecretFileLinkWarning" in secagg.__all__
    assert issubclass(SecretFileLinkWarning, UserWarning) and issubclass(SecretFileLinkWarning, SecAggError)


# --- a link's target in a message: another user's bytes, escaped ------------------------------------

_HOSTILE_TARGET = "missing\x1b]0;pwned\x07\n[secagg] round 3 ok\u202e\udcff"


@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_dangling_links_target_is_shown_with_its_unprintable_characters_escaped(reader: str, tmp_path: Path) -> None:
    # Prepare: a link to nothing whose target (chosen by whoever made the link: another user, in a
    # sticky folder such as /tmp) holds a terminal escape, a newline forging a log line, a right-to-left
    # override and a byte that is not UTF-8
    path = tmp_path / "hospital.key"
    os.symlink(_HOSTILE_TARGET, path)
    # Execute
    message = _reader_refusal(reader, path)
    # Assert: named as a dangling link, its target escaped: no control character reaches a terminal or
    # a log, and the message encodes as UTF-8 (a node's error reply is a protobuf string)
    assert f"{path} is a symbolic link to missing\\x1b]0;pwned\\x07\\n[secagg] round 3 ok\\u202e\\udcff" in message
    assert all(char.isprintable() for char in message), repr(message)
    message.encode("utf-8")


def test_a_looping_links_target_is_shown_escaped(tmp_path: Path) -> None:
    # Prepare: a link to itself through a name holding a newline
    path = tmp_path / "hospital.key"
    os.symlink("hospital.key\n", tmp_path / "hospital.key\n")
    os.symlink("hospital.key\n", path)
    # Execute
    message = _reader_refusal("identity key", path)
    # Assert
    assert "is a loop of symbolic links (it leads to hospital.key\\n," in message, message


def test_a_regular_file_whose_open_failed_is_not_called_something_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: open() fails with ENXIO ("No such device or address", a socket's error) though a regular
    # file stands at the path when it is looked at (a socket replaced meanwhile, a FUSE file system's
    # error); os.open fails so for this path only
    path = tmp_path / "hospital.key"
    write_identity_key(path, SigningKey.generate())
    real_open = os.open

    def failing_open(name: object, *args: int) -> int:
        if os.fspath(name) == str(path):  # type: ignore[call-overload]
            raise OSError(errno.ENXIO, os.strerror(errno.ENXIO), str(path))
        return real_open(name, *args)  # type: ignore[call-overload]

    monkeypatch.setattr(os, "open", failing_open)
    # Execute
    message = _reader_refusal("identity key", path)
    # Assert: the system's words, not "is not a regular file: it is neither a file nor a folder" for a
    # regular file
    assert "not a regular file" not in message and "No such device or address" in message, message


@pytest.mark.skipif(not hasattr(os, "link"), reason="no hard links here")
def test_the_second_name_warnings_find_command_quotes_the_path(tmp_path: Path) -> None:
    # Prepare: a secret in a folder whose name holds a space and a shell metacharacter, with a second name
    folder = tmp_path / "hospital keys;x"
    folder.mkdir()
    path = folder / "identity key"
    _written("identity key", path)
    os.link(path, tmp_path / "copy")
    # Execute
    with pytest.warns(SecretFileLinkWarning) as warned:
        read_identity_key(path)
    # Assert: the command given to find the other names runs as printed (the path one shell word)
    assert f"-samefile {shlex.quote(str(path))}`" in str(warned[0].message), warned[0].message
