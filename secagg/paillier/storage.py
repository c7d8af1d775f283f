"""Passphrase protection of key shares and private keys at rest (scrypt + AES-256-GCM).

Format (a wire message, tag 0x0405)::

    ProtectedSecret = u8 scrypt_log_n | u8 scrypt_r | u8 scrypt_p | salt (16 bytes) |
                      u32 length | nonce (12) | AES-256-GCM ciphertext | tag (16)

    key = scrypt(passphrase (UTF-8), salt, N = 2^log_n, r, p, 32 bytes)
    associated data = "secagg/v1/paillier-protected-secret" || u8 log_n || u8 r || u8 p || salt
    plaintext = wire encoding of a KeyShare or a PrivateKey

The associated data covers the KDF parameters, so lowering them in a stored
file makes it fail authentication instead of weakening it. The default cost
(N = 2^17, r = 8: 128 MiB, about half a second) follows OWASP's scrypt
guidance; decoding refuses parameters above 2^22 / 32 / 16 so a hostile file
cannot exhaust memory. A wrong passphrase or any altered byte raises
AuthenticationError.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from secagg import wire
from secagg.errors import ConfigurationError, DecodeError
from secagg.paillier.keys import KeyShare, PrivateKey
from secagg.primitives import aead
from secagg.primitives.randomness import RandomBytes, system_random
from secagg.wire import U8, FixedBytes, VarBytes, wire_field

__all__ = [
    "DEFAULT_SCRYPT_LOG_N",
    "ProtectedSecret",
    "protect",
    "read_protected_file",
    "unprotect",
    "write_new_private_file",
    "write_protected_file",
]

DEFAULT_SCRYPT_LOG_N = 17
"""scrypt N = 2^17 with r = 8, p = 1 (128 MiB)."""

MIN_SCRYPT_LOG_N = 10
MAX_SCRYPT_LOG_N = 22
MAX_SCRYPT_R = 32
MAX_SCRYPT_P = 16
SALT_SIZE = 16
PROTECTED_LABEL = b"secagg/v1/paillier-protected-secret"
MAX_SEALED = 1 << 20

Secret = KeyShare | PrivateKey


@dataclass(frozen=True)
class ProtectedSecret(wire.Message):
    """A key share or private key sealed under a passphrase (see the module docstring)."""

    TAG: ClassVar[int] = 0x0405

    scrypt_log_n: int = wire_field(U8)
    scrypt_r: int = wire_field(U8)
    scrypt_p: int = wire_field(U8)
    salt: bytes = wire_field(FixedBytes(SALT_SIZE))
    sealed: bytes = wire_field(VarBytes(MAX_SEALED))

    def __post_init__(self) -> None:
        if not MIN_SCRYPT_LOG_N <= self.scrypt_log_n <= MAX_SCRYPT_LOG_N:
            raise ConfigurationError(f"scrypt log2(N) must be in {MIN_SCRYPT_LOG_N}..{MAX_SCRYPT_LOG_N}")
        if not 1 <= self.scrypt_r <= MAX_SCRYPT_R or not 1 <= self.scrypt_p <= MAX_SCRYPT_P:
            raise ConfigurationError(f"scrypt r must be in 1..{MAX_SCRYPT_R} and p in 1..{MAX_SCRYPT_P}")

    @property
    def associated_data(self) -> bytes:
        """What the AEAD authenticates besides the ciphertext."""
        return PROTECTED_LABEL + bytes([self.scrypt_log_n, self.scrypt_r, self.scrypt_p]) + self.salt


def _passphrase_bytes(passphrase: str | bytes) -> bytes:
    raw = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
    if not isinstance(raw, bytes) or not raw:
        raise ConfigurationError("passphrase must be a non-empty str or bytes")
    return raw


def _derive(passphrase: str | bytes, header: ProtectedSecret) -> bytes:
    kdf = Scrypt(
        salt=header.salt, length=aead.KEY_SIZE, n=1 << header.scrypt_log_n, r=header.scrypt_r, p=header.scrypt_p
    )
    return kdf.derive(_passphrase_bytes(passphrase))


def protect(
    secret: Secret,
    passphrase: str | bytes,
    *,
    scrypt_log_n: int = DEFAULT_SCRYPT_LOG_N,
    scrypt_r: int = 8,
    scrypt_p: int = 1,
    random_bytes: RandomBytes = system_random,
) -> bytes:
    """The wire encoding of a :class:`ProtectedSecret` sealing ``secret`` under ``passphrase``."""
    if not isinstance(secret, (KeyShare, PrivateKey)):
        raise ConfigurationError("only a KeyShare or a PrivateKey can be protected")
    header = ProtectedSecret(scrypt_log_n, scrypt_r, scrypt_p, random_bytes(SALT_SIZE), b"")
    key = _derive(passphrase, header)
    sealed = aead.seal(key, wire.encode(secret), header.associated_data, random_bytes)
    return wire.encode(ProtectedSecret(scrypt_log_n, scrypt_r, scrypt_p, header.salt, sealed))


def unprotect(data: bytes, passphrase: str | bytes) -> Secret:
    """The key share or private key sealed in ``data``.

    Raises DecodeError (malformed), AuthenticationError (wrong passphrase or
    altered bytes), or the key's own validation errors.
    """
    box = wire.decode(data, ProtectedSecret)
    plaintext = aead.open_sealed(_derive(passphrase, box), box.sealed, box.associated_data)
    secret = wire.decode_any(plaintext)
    if not isinstance(secret, (KeyShare, PrivateKey)):
        raise DecodeError(f"protected secret holds a {type(secret).__name__}, not a key share or private key")
    return secret


def write_protected_file(
    path: str | os.PathLike[str],
    secret: Secret,
    passphrase: str | bytes,
    *,
    scrypt_log_n: int = DEFAULT_SCRYPT_LOG_N,
    scrypt_r: int = 8,
    scrypt_p: int = 1,
    random_bytes: RandomBytes = system_random,
) -> None:
    """Write :func:`protect` output to a new file readable by its owner only (mode 0600).

    Refuses to overwrite an existing file (ConfigurationError).
    """
    data = protect(
        secret, passphrase, scrypt_log_n=scrypt_log_n, scrypt_r=scrypt_r, scrypt_p=scrypt_p, random_bytes=random_bytes
    )
    write_new_private_file(path, data)


def write_new_private_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to a file that must not exist yet, readable by its owner only (0600).

    The file is created with its final mode (no window in which others could
    read it); an existing file is never overwritten (ConfigurationError).
    """
    try:
        descriptor = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise ConfigurationError(f"refusing to overwrite {path}") from exc
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def read_protected_file(path: str | os.PathLike[str], passphrase: str | bytes) -> Secret:
    """Read and :func:`unprotect` a file written by :func:`write_protected_file`."""
    return unprotect(Path(path).read_bytes(), passphrase)
