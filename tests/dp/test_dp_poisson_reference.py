"""A reference Poisson sample written from docs/spec.md alone (sections 5, 19.1 and 19.6).

It shares no code with secagg: the stream is HKDF-SHA256 (hmac/hashlib) and AES-128 in ECB over
big-endian counter blocks from zero (the CTR keystream of section 5, built by hand); each row's
word is ``int.from_bytes(..., "little")``, its top 53 bits are compared with floor(rate * 2^53)
computed in exact rationals. It must agree with :func:`secagg.dp.poisson_mask` and with the
committed PoissonSampleTest vectors.
"""

from __future__ import annotations

import hashlib
import hmac
from fractions import Fraction

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secagg.dp import SeededRandomSource, poisson_mask
from secagg.vectors import load_vectors


def _stream(seed: bytes, length: int) -> bytes:
    """Section 19.1: AES-128-CTR keystream under HKDF-SHA256(seed, salt "", info "secagg/v1/prg:dp-sampler", 16)."""
    prk = hmac.new(bytes(32), seed, hashlib.sha256).digest()  # empty salt = 32 zero bytes (RFC 5869)
    key = hmac.new(prk, b"secagg/v1/prg:dp-sampler" + b"\x01", hashlib.sha256).digest()[:16]
    encrypt = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    blocks = b"".join(i.to_bytes(16, "big") for i in range(-(-length // 16)))
    return encrypt.update(blocks)[:length]


def reference_mask(seed: bytes, offset: int, rate: float | None, rows: int) -> tuple[list[bool], int]:
    """Section 19.6: (the mask, the bytes drawn) after ``offset`` bytes of the stream were read."""
    if rate is None or rate == 1:
        return [True] * rows, 0
    threshold = int(Fraction(rate) * 2**53)  # floor: the value is positive
    data = _stream(seed, offset + 8 * rows)[offset:]
    words = [int.from_bytes(data[8 * i : 8 * i + 8], "little") for i in range(rows)]
    return [w >> 11 < threshold for w in words], 8 * rows


@pytest.mark.parametrize("seed", [bytes(32), bytes(range(32)), b"\xff" * 32])
@pytest.mark.parametrize("rate", [None, 1.0, 0.5, 0.1, 0.3, 1e-6, 2.0**-60, 0.999999])
@pytest.mark.parametrize("offset", [0, 5])
def test_the_spec_reference_agrees_with_poisson_mask(seed: bytes, rate: float | None, offset: int) -> None:
    source = SeededRandomSource(seed)
    source.random_bytes(offset)
    expected, drawn = reference_mask(seed, offset, rate, 300)
    assert poisson_mask(300, rate, source).tolist() == expected
    # and it drew exactly those bytes: the stream goes on right after them
    assert source.random_bytes(8) == _stream(seed, offset + drawn + 8)[-8:]


def test_the_reference_stream_is_the_sampler_stream() -> None:
    seed = bytes(range(32))
    assert _stream(seed, 100) == SeededRandomSource(seed).random_bytes(100)


def test_the_spec_reference_reproduces_the_committed_vectors() -> None:
    groups = [g for g in load_vectors("dp_sampler.json")["testGroups"] if g["type"] == "PoissonSampleTest"]
    valid = [t for g in groups for t in g["tests"] if t["result"] == "valid"]
    assert len(valid) >= 10
    for test in valid:
        rate = None if "rate" not in test else float(Fraction(test["rate"]))
        mask, drawn = reference_mask(bytes.fromhex(test["seed"]), test["offset"], rate, test["size"])
        assert "".join("1" if row else "0" for row in mask) == test["output"], test["comment"]
        assert drawn == test["bytesConsumed"], test["comment"]
        if "threshold" in test:
            assert int(Fraction(test["rate"]) * 2**53) == test["threshold"], test["comment"]
