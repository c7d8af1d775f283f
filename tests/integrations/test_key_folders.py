"""A key or trusted-keys file is only as safe as the folders it is reached through (ssh's
StrictModes): whoever may write a folder on the path can rename the file away and put their own
in its place. Every folder the path's lookup goes through (links followed, as the open does) must
belong to this process's user or to root and be writable by its owner only, unless sticky
(``/tmp``'s mode 1777: only an entry's owner may rename or remove it there, and the entry then
met must belong to the user or root). A refusal names the folder and the fix (chmod go-w)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from secagg.cli import main
from secagg.dp._state_file import read_state, write_state
from secagg.errors import ConfigurationError
from secagg.integrations.flower.keys import read_identity_key, read_trusted_keys, write_identity_key, write_trusted_keys
from secagg.primitives.signing import SigningKey

KEYS = [SigningKey.generate().public for _ in range(2)]


def _trusted(folder: Path) -> Path:
    path = folder / "federation.keys"
    write_trusted_keys(path, KEYS)
    return path


def _identity(folder: Path) -> Path:
    path = folder / "hospital.key"
    write_identity_key(path, SigningKey.generate())
    return path


def _pub(folder: Path) -> Path:
    path = folder / "a.key.pub"
    path.write_text(KEYS[0].hex() + "\n")
    path.chmod(0o644)
    return path


def _cli(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Run the command; raise its one-line refusal (exit 2) as the library's error."""
    status = main(arguments)
    if status:
        assert status == 2
        raise ConfigurationError(capsys.readouterr().err.strip())


def _keys_trust(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = path.parent.parent / f"out-{path.parent.name}.keys"
    _cli(["keys", "trust", str(out), str(path), KEYS[1].hex()], capsys)


READERS: dict[str, tuple[Callable[[Path], Path], Callable[[Path, pytest.CaptureFixture[str]], object]]] = {
    "trusted keys": (_trusted, lambda path, _: read_trusted_keys(path)),
    "identity key": (_identity, lambda path, _: read_identity_key(path)),
    "keys check": (_trusted, lambda path, capsys: _cli(["keys", "check", str(path)], capsys)),
    "keys public": (_identity, lambda path, capsys: _cli(["keys", "public", str(path)], capsys)),
    "keys trust .pub": (_pub, _keys_trust),
}


@pytest.mark.parametrize("mode", [0o775, 0o757, 0o777, 0o720, 0o702])
@pytest.mark.parametrize("reader", READERS)
def test_a_key_file_in_a_folder_group_or_others_may_write_is_refused(
    reader: str, mode: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a sound file, in a folder one past the bound (group or others may write it)
    make, read = READERS[reader]
    folder = tmp_path / "keys"
    folder.mkdir()
    path = make(folder)
    folder.chmod(mode)

    # Execute / Assert: refused, naming the folder, its mode and the fix
    with pytest.raises(ConfigurationError) as refusal:
        read(path, capsys)
    message = str(refusal.value)
    assert f"{folder} " in message and f"(mode {mode:04o})" in message and f"chmod go-w {folder}" in message


@pytest.mark.parametrize("mode", [0o755, 0o700, 0o1777, 0o1770])
@pytest.mark.parametrize("reader", READERS)
def test_a_key_file_in_a_folder_only_its_owner_may_write_or_a_sticky_one_is_read(
    reader: str, mode: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: at the bound: writable by its owner only, or sticky (as /tmp, 1777)
    make, read = READERS[reader]
    folder = tmp_path / "keys"
    folder.mkdir()
    path = make(folder)
    folder.chmod(mode)

    # Execute / Assert: read as before
    read(path, capsys)


def test_a_folder_further_up_that_others_may_write_is_refused(tmp_path: Path) -> None:
    # Prepare: the file's own folder is sound; the one above it may be written by anyone (not sticky),
    # so anyone can rename the sound folder away and put one of theirs under its name
    shared = tmp_path / "shared"
    folder = shared / "site" / "keys"
    folder.mkdir(parents=True)
    path = _trusted(folder)
    shared.chmod(0o777)

    # Execute / Assert
    with pytest.raises(ConfigurationError, match=f"chmod go-w {shared}$"):
        read_trusted_keys(path)
    shared.chmod(0o1777)  # sticky: others cannot rename our folder in it
    assert read_trusted_keys(path) == frozenset(KEYS)


def test_a_relative_path_and_dot_dot_are_checked_as_the_open_resolves_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the working folder may be written by anyone; the file is named relative to it
    shared = tmp_path / "shared"
    (shared / "sub").mkdir(parents=True)
    _trusted(shared)
    shared.chmod(0o777)
    monkeypatch.chdir(shared / "sub")

    # Execute / Assert
    with pytest.raises(ConfigurationError, match=f"chmod go-w {shared}$"):
        read_trusted_keys("../federation.keys")


def test_a_link_into_a_folder_others_may_write_is_refused(tmp_path: Path) -> None:
    # Prepare: the link sits in a sound folder, the file it leads to in a folder anyone may write
    shared, mine = tmp_path / "shared", tmp_path / "mine"
    shared.mkdir()
    mine.mkdir()
    target = _trusted(shared)
    shared.chmod(0o777)
    link = mine / "federation.keys"
    link.symlink_to(target)

    # Execute / Assert: the folder of the file actually read is named
    with pytest.raises(ConfigurationError, match=f"chmod go-w {shared}$"):
        read_trusted_keys(link)


def test_a_link_in_a_folder_others_may_write_is_refused(tmp_path: Path) -> None:
    # Prepare: the file is in a sound folder, but the link naming it sits where anyone may replace it
    shared, mine = tmp_path / "shared", tmp_path / "mine"
    shared.mkdir()
    mine.mkdir()
    link = shared / "federation.keys"
    link.symlink_to(_trusted(mine))
    shared.chmod(0o777)

    # Execute / Assert
    with pytest.raises(ConfigurationError, match=f"chmod go-w {shared}$"):
        read_trusted_keys(link)


ROOT = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="giving a file away needs root")


@ROOT
def test_a_folder_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    # Prepare: a folder of mode 0755 that belongs to another user (nobody), who may replace what is in it
    folder = tmp_path / "theirs"
    folder.mkdir()
    path = _identity(folder)
    os.chown(folder, 65534, 65534)

    # Execute / Assert
    with pytest.raises(ConfigurationError, match="belongs to user 65534") as refusal:
        read_identity_key(path)
    assert str(folder) in str(refusal.value)


@ROOT
def test_a_link_of_another_user_in_a_sticky_folder_is_refused(tmp_path: Path) -> None:
    # Prepare: in a sticky folder anyone may write (as /tmp), another user planted the link we name:
    # they may replace it at will (the sticky bit protects an entry for its owner only)
    sticky, mine = tmp_path / "sticky", tmp_path / "mine"
    sticky.mkdir()
    mine.mkdir()
    link = sticky / "federation.keys"
    link.symlink_to(_trusted(mine))
    os.lchown(link, 65534, 65534)
    sticky.chmod(0o1777)

    # Execute / Assert
    with pytest.raises(ConfigurationError, match="belongs to user 65534") as refusal:
        read_trusted_keys(link)
    assert str(link) in str(refusal.value)


def test_the_dp_accountants_state_file_in_a_folder_others_may_write_is_refused(tmp_path: Path) -> None:
    # Prepare: the privacy budget spent so far, in a folder anyone may write: a copy of an earlier
    # state put in its place would give the budget back (the file itself is refused if others may write it)
    folder = tmp_path / "state"
    folder.mkdir()
    path = folder / "dp-state.json"
    write_state(path, b"{}")
    assert read_state(path) == {}
    folder.chmod(0o777)

    # Execute / Assert
    with pytest.raises(ConfigurationError, match=f"chmod go-w {folder}$"):
        read_state(path)


@pytest.mark.parametrize(("mode", "refused"), [(0o775, True), (0o777, True), (0o755, False), (0o1777, False)])
def test_keys_new_refuses_a_folder_every_reader_would_refuse_before_writing(
    mode: int, refused: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a key folder made under a umask of 002 (0775), or anyone's (0777): the identity written
    # there would be refused by the node that loads it; at the bound, 0755 and sticky 1777
    folder = tmp_path / "keys"
    folder.mkdir()
    folder.chmod(mode)
    key = folder / "hospital.key"

    # Execute
    status = main(["keys", "new", str(key)])
    err = capsys.readouterr().err

    # Assert: refused up front naming the folder and the fix, nothing written; or made as before
    if refused:
        assert status == 2 and f"(mode {mode:04o})" in err and f"chmod go-w {folder}" in err, err
        assert list(folder.iterdir()) == []
    else:
        assert status == 0, err
        read_identity_key(key)
