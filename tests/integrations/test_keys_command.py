"""``secagg keys``: identities are 0600 and never overwritten; trusted lists refuse duplicates and strangers."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from secagg.cli import main
from secagg.errors import ConfigurationError
from secagg.integrations.flower.keys import (
    read_identity_key,
    read_node_identity,
    read_public_key,
    read_trusted_keys,
    write_identity_key,
    write_trusted_keys,
)
from secagg.primitives.signing import SigningKey

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> int:
    return main(["keys", *args])


def two_hospitals(folder: Path) -> tuple[Path, Path]:
    """Identity keys ``a.key`` and ``b.key`` (each with its ``.pub``) made in ``folder``."""
    a, b = folder / "a.key", folder / "b.key"
    assert run("new", str(a)) == 0 and run("new", str(b)) == 0
    return a, b


def test_new_identity_is_owner_only_and_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare / Execute
    path = tmp_path / "hospital.key"
    assert run("new", str(path)) == 0
    public = (tmp_path / "hospital.key.pub").read_text().strip()
    original = path.read_bytes()
    # Assert
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_identity_key(path).public.hex() == public
    assert public in capsys.readouterr().out
    assert run("new", str(path)) == 2 and path.read_bytes() == original
    assert "refusing to overwrite" in capsys.readouterr().err


def test_trust_and_check_refuse_duplicates_strangers_and_loose_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: three hospitals and one stranger
    keys = [tmp_path / f"h{i}.key" for i in range(4)]
    for key in keys:
        assert run("new", str(key)) == 0
    pubs = [str(key) + ".pub" for key in keys[:3]]
    federation = tmp_path / "federation.keys"
    # Execute / Assert: a list of three; the same key twice is refused
    assert run("trust", str(federation), *pubs) == 0
    assert len(read_trusted_keys(federation)) == 3
    assert run("trust", str(tmp_path / "twice.keys"), pubs[0], pubs[0]) == 2
    assert not (tmp_path / "twice.keys").exists()
    assert run("check", str(federation), "--identity", str(keys[0])) == 0
    capsys.readouterr()
    # The stranger's identity is not on the list
    assert run("check", str(federation), "--identity", str(keys[3])) == 2
    refusal = capsys.readouterr().err
    assert "is not in" in refusal
    assert f"send {keys[3]}.pub" in refusal and "secagg keys trust" in refusal, refusal  # what to do about it
    # A hand-edited list with a repeated line is refused, naming the line
    edited = tmp_path / "edited.keys"
    lines = federation.read_text().splitlines()
    edited.write_text("\n".join([*lines, lines[0]]) + "\n")
    assert run("check", str(edited)) == 2
    assert "line 4: the key of line 1 again" in capsys.readouterr().err
    # A malformed key, and an identity file others may read
    assert run("trust", str(tmp_path / "bad.keys"), "abcd") == 2
    keys[1].chmod(0o644)
    assert run("public", str(keys[1])) == 2
    assert "group or others" in capsys.readouterr().err


def test_the_provisioning_walkthrough_in_the_docs_runs(tmp_path: Path) -> None:
    # Prepare: the sh block under "Provisioning identities", with this interpreter's secagg
    text = (ROOT / "docs" / "integrations.md").read_text()
    section = text[text.index("### Provisioning identities") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    secagg = f'"{sys.executable}" -m secagg.cli'
    script = "set -euo pipefail\n" + block.group(1).replace("secagg keys", f"{secagg} keys")
    # Execute
    result = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=60, check=False,
    )
    # Assert
    assert result.returncode == 0, result.stderr
    assert "3 distinct hospital keys, your identity is listed" in result.stdout


def test_the_identity_key_mode_is_checked_on_the_file_actually_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a 0600 identity, and a group- and world-readable one that an attacker swaps in
    # right after any path-based mode check (the race between checking a path and reading it)
    path, loose = tmp_path / "hospital.key", tmp_path / "loose.key"
    assert run("new", str(path)) == 0 and run("new", str(loose)) == 0
    private_public, loose_public = read_identity_key(path).public, read_identity_key(loose).public
    loose.chmod(0o644)
    real_stat = os.stat

    def stat_then_swap(target: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        result = real_stat(target, *args, **kwargs)
        if os.fspath(target) == str(path) and loose.exists():
            os.replace(loose, path)
        return result

    monkeypatch.setattr(os, "stat", stat_then_swap)
    # Execute
    try:
        public = read_identity_key(path).public
    except ConfigurationError:
        public = None
    # Assert: the key read came from a file whose mode was checked (or it was refused)
    assert public != loose_public
    assert public in (private_public, None)


def test_an_identity_path_that_cannot_be_created_or_opened_is_a_library_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a folder that does not exist, and a path no system call accepts (a NUL byte,
    # as a node-config string or an API caller may hold)
    missing = tmp_path / "no-such-folder" / "hospital.key"
    # Execute / Assert: one line and exit 2 from the command; ConfigurationError from the API
    assert run("new", str(missing)) == 2
    assert "no-such-folder" in capsys.readouterr().err
    for bad in ("hospital\0.key", str(missing)):
        with pytest.raises(ConfigurationError):
            read_identity_key(bad)
    with pytest.raises(ConfigurationError):
        write_identity_key("hospital\0.key", SigningKey.generate())
    for read in (read_trusted_keys, read_public_key):
        with pytest.raises(ConfigurationError):
            read("federation\0.keys")


@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666])
def test_a_trusted_list_or_public_key_others_may_write_is_refused(tmp_path: Path, mode: int) -> None:
    # Prepare: a trusted-keys file (public) that group or others may rewrite to add their own key
    path = tmp_path / "trusted.keys"
    write_trusted_keys(path, [SigningKey.generate().public])
    assert len(read_trusted_keys(path)) == 1  # as written: 0600
    path.chmod(0o644)
    assert len(read_trusted_keys(path)) == 1  # readable by all is fine: it is public
    path.chmod(mode)
    # Execute / Assert
    with pytest.raises(ConfigurationError, match="writable by group or others"):
        read_trusted_keys(path)
    with pytest.raises(ConfigurationError, match="writable by group or others"):
        read_public_key(path)


def test_keys_check_refuses_a_trusted_list_others_may_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a well-formed list of two keys that group and others may rewrite
    path = tmp_path / "federation.keys"
    write_trusted_keys(path, [SigningKey.generate().public, SigningKey.generate().public])
    path.chmod(0o666)
    # Execute
    status = run("check", str(path))
    # Assert: refused as the nodes refuse it, not approved for use
    assert status == 2
    assert "writable by group or others" in capsys.readouterr().err


def test_trust_refuses_a_list_that_check_would_refuse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: `secagg keys trust out a.pub` wrote a one-key list (exit 0) that `secagg keys check`
    # then refused ("lists 1 key(s); a federation needs at least 2"): refused only later, by another step.
    key = tmp_path / "h.key"
    assert run("new", str(key)) == 0
    lonely = tmp_path / "lonely.keys"
    # Execute / Assert
    assert run("trust", str(lonely), str(key) + ".pub") == 2
    assert "at least 2" in capsys.readouterr().err
    assert not lonely.exists()


def test_trust_refuses_an_identity_key_given_for_its_public_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: two hospitals; the list builder types b.key (the private seed) for b.key.pub
    a, b = two_hospitals(tmp_path)
    capsys.readouterr()
    seed = b.read_text().strip()
    # Execute: the private file beside its .pub, and beside the other public keys it belongs to
    beside_pub = run("trust", str(tmp_path / "one.keys"), f"{a}.pub", str(b))
    beside_list = run("trust", str(tmp_path / "two.keys"), f"{a}.pub", f"{b}.pub", str(b))
    refusals = capsys.readouterr().err
    # Assert: refused, nothing written, no seed in a public list; the message says which file to give
    assert (beside_pub, beside_list) == (2, 2)
    assert not (tmp_path / "one.keys").exists() and not (tmp_path / "two.keys").exists()
    assert f"{b} is an identity (private) key" in refusals and f"{b}.pub" in refusals, refusals
    assert seed not in refusals


def test_trust_refuses_a_seed_typed_beside_its_own_public_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: two hospitals; the list builder pastes b's seed (the content of b.key) as a hex
    # argument instead of a file, beside b.key.pub
    a, b = two_hospitals(tmp_path)
    capsys.readouterr()
    seed = b.read_text().strip()
    # Execute
    code = run("trust", str(tmp_path / "federation.keys"), f"{a}.pub", f"{b}.pub", seed)
    refusal = capsys.readouterr().err
    # Assert: refused as a file would be, nothing written, and the seed not echoed
    assert code == 2
    assert not (tmp_path / "federation.keys").exists()
    assert "argument 3" in refusal and f"{b}.pub" in refusal, refusal
    assert seed not in refusal


def test_trust_names_a_key_made_from_another_hospitals_public_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: hospital a's genuine key pair; another party sends c.pub, a key whose seed is a's
    # public key (anyone can derive it, so anyone can sign as c). a's .pub is then the "seed" of a
    # listed key, as an identity file given for its .pub would be.
    a = tmp_path / "a.key"
    assert run("new", str(a)) == 0
    capsys.readouterr()
    public_a = bytes.fromhex(Path(f"{a}.pub").read_text().strip())
    made = SigningKey.generate(lambda size: public_a).public
    c = tmp_path / "c.pub"
    c.write_text(made.hex() + "\n")
    # Execute
    code = run("trust", str(tmp_path / "federation.keys"), f"{a}.pub", str(c))
    refusal = capsys.readouterr().err
    # Assert: refused, nothing written; the message names c.pub, whose key anyone can sign as, and
    # does not declare a's genuine public key a private key to be replaced by a.key.pub.pub
    assert code == 2
    assert not (tmp_path / "federation.keys").exists()
    assert str(c) in refusal and "anyone can sign as it" in refusal, refusal
    assert f"give {a}.pub.pub" not in refusal, refusal


def test_a_public_key_given_as_the_identity_is_named_also_when_others_may_read_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a list of two; a.key.pub as `secagg keys new` leaves it under umask 022 (0644), given
    # for the identity to `keys check` and to a node (read_node_identity)
    a, b = two_hospitals(tmp_path)
    assert run("trust", str(tmp_path / "federation.keys"), f"{a}.pub", f"{b}.pub") == 0
    os.chmod(f"{a}.pub", 0o644)
    capsys.readouterr()
    # Execute
    code = run("check", str(tmp_path / "federation.keys"), "--identity", f"{a}.pub")
    refusal = capsys.readouterr().err
    with pytest.raises(ConfigurationError) as node:
        read_node_identity(f"{a}.pub", tmp_path / "federation.keys")
    # Assert: both say it is a listed public key, not "chmod 600 it" (a public key needs no secrecy,
    # and the advice only led to the next refusal)
    assert code == 2
    assert f"{a}.pub holds a public key on the list" in refusal and "chmod" not in refusal, refusal
    assert "holds a public key on the trusted list" in str(node.value), node.value
    assert "chmod" not in str(node.value), node.value


def test_check_names_a_public_key_given_as_the_identity(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: a list of two; the hospital passes its .pub (owner-only, as under umask 077) for --identity
    a, b = two_hospitals(tmp_path)
    assert run("trust", str(tmp_path / "federation.keys"), f"{a}.pub", f"{b}.pub") == 0
    os.chmod(f"{a}.pub", 0o600)
    capsys.readouterr()
    # Execute
    code = run("check", str(tmp_path / "federation.keys"), "--identity", f"{a}.pub")
    # Assert: refused, saying the file is a public key on the list and which file to give
    refusal = capsys.readouterr().err
    assert code == 2
    assert f"{a}.pub holds a public key on the list" in refusal and f"give {a}" in refusal, refusal


def test_new_on_an_existing_identity_says_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare
    path = tmp_path / "hospital.key"
    assert run("new", str(path)) == 0
    capsys.readouterr()
    # Execute
    assert run("new", str(path)) == 2
    # Assert: what was refused, and the two ways on
    err = capsys.readouterr().err
    assert f"refusing to overwrite {path}" in err
    assert "choose another path" in err and "remove it deliberately" in err and "nothing written" in err
