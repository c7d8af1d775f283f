"""A trusted list never takes a key anyone can sign for, nor one point under a second encoding.

``public_key_problem`` already refuses such keys in a masking config, a Paillier session and a
node's announcement; the places a key enters the federation's trusted list refuse them too, where
the key is added or read: ``secagg keys trust`` and ``check``, the trusted-keys file's writer and
reader, and ``SecAggOptions.trusted_keys``."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("flwr")

from secagg.cli import main
from secagg.errors import ConfigurationError, SecAggError
from secagg.integrations.flower import PaillierOptions, SecAggOptions
from secagg.integrations.flower.keys import read_trusted_keys, write_trusted_keys
from secagg.primitives.signing import SigningKey

from .paillier_keys import material

P = (1 << 255) - 19
BAD = {
    "small order (the identity)": ((1).to_bytes(32, "little"), "small order"),
    "small order (order 4)": (bytes(32), "small order"),
    "non-canonical": ((P + 2).to_bytes(32, "little"), "not canonically encoded"),
}
GOOD = [SigningKey.generate().public for _ in range(2)]


@pytest.mark.parametrize(("key", "why"), BAD.values(), ids=BAD.keys())
def test_keys_trust_refuses_the_key_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: bytes, why: str
) -> None:
    out = tmp_path / "federation.keys"
    assert main(["keys", "trust", str(out), GOOD[0].hex(), GOOD[1].hex(), key.hex()]) == 2
    err = capsys.readouterr().err
    assert key.hex() in err and why in err and "never trusted" in err
    assert not out.exists()


@pytest.mark.parametrize(("key", "why"), BAD.values(), ids=BAD.keys())
def test_a_trusted_keys_file_listing_the_key_is_refused_by_its_readers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: bytes, why: str
) -> None:
    listed = tmp_path / "federation.keys"
    listed.write_text("".join(k.hex() + "\n" for k in [*GOOD, key]))
    listed.chmod(0o644)
    with pytest.raises(SecAggError, match=f"line 3.*{why}"):
        read_trusted_keys(listed)
    assert main(["keys", "check", str(listed)]) == 2
    err = capsys.readouterr().err
    assert "line 3" in err and why in err


@pytest.mark.parametrize(("key", "why"), BAD.values(), ids=BAD.keys())
def test_write_trusted_keys_refuses_the_key(tmp_path: Path, key: bytes, why: str) -> None:
    out = tmp_path / "federation.keys"
    with pytest.raises(ConfigurationError, match=why):
        write_trusted_keys(out, [*GOOD, key])
    assert not out.exists()


@pytest.mark.parametrize(("key", "why"), BAD.values(), ids=BAD.keys())
def test_secagg_options_refuse_the_key(key: bytes, why: str) -> None:
    with pytest.raises(ConfigurationError, match=f"trusted_keys.*{why}"):
        SecAggOptions(protocol="secagg", trusted_keys=frozenset([*GOOD, key]))


def test_real_keys_are_still_trusted(tmp_path: Path) -> None:
    out = tmp_path / "federation.keys"
    assert main(["keys", "trust", str(out), GOOD[0].hex(), GOOD[1].hex()]) == 0
    assert read_trusted_keys(out) == frozenset(GOOD)
    assert SecAggOptions(protocol="secagg", trusted_keys=frozenset(GOOD)).trusted_keys == frozenset(GOOD)


@pytest.mark.parametrize(("key", "why"), BAD.values(), ids=BAD.keys())
def test_paillier_options_refuse_the_key(key: bytes, why: str) -> None:
    public = material(3, 2).public
    with pytest.raises(ConfigurationError, match=f"trusted_keys.*{why}"):
        PaillierOptions(public_key=public, trusted_keys=frozenset([*GOOD, key]))
    assert PaillierOptions(public_key=public, trusted_keys=frozenset(GOOD)).trusted_keys == frozenset(GOOD)
