"""Readers of secret files: what a refusal says never holds the secret's bytes (a node's refusal goes
to the server in its error reply and into the round's report), and a truncated or altered key-share
file raises only the library's errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from flwr.app import Context, RecordDict

from secagg.errors import ConfigurationError, SecAggError
from secagg.integrations.flower._key_share import load_node_share
from secagg.integrations.flower.keys import load_key_share
from secagg.paillier.storage import protect, write_new_private_file
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
