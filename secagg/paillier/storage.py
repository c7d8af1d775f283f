"""Passphrase protection of key shares and private keys at rest (scrypt + AES-256-GCM).

Format (a wire message, tag 0x0405)::

    ProtectedSecret = u8 scrypt_log_n | u8 scrypt_r | u8 scrypt_p | salt (16 bytes) |
                      u32 length | nonce (12) | AES-256-GCM ciphertext | tag (16)

    key = scrypt(passphrase (UTF-8), salt, N = 2^log_n, r, p, 32 bytes)
    associated data = "secagg/v1/paillier-protected-secret" || u8 log_n || u8 r || u8 p || salt
    plaintext = wire encoding of a KeyShare or a PrivateKey

The associated data covers the KDF parameters, so lowering them in a stored
file makes it fail authentication instead of weakening it.

Costs. The default (N = 2^17, r = 8, p = 1: 128 MiB, about half a second)
follows OWASP's scrypt guidance. **Writing** refuses less than
N = 2^15 and r = 8 (32 MiB per guess, a quarter of the default: the cheapest
cost we still call passphrase protection) and a passphrase of fewer than
12 characters (ConfigurationError); tests may lower the cost to N = 2^10 with
``allow_weak_kdf_for_testing``. **Reading** (decoding) refuses, before
scrypt runs, a header whose ``128 * r * N * p`` exceeds 256 MiB (scrypt's
memory is 128 * r * N bytes and its work grows with p as well), so a hostile
file cannot exhaust memory or time (DecodeError). A wrong passphrase or any
altered byte raises AuthenticationError.

Files. :func:`write_new_private_file` creates a secret file with mode 0600, into
a folder its readers accept, and never overwrites; :func:`read_private_file` refuses, as ssh does for private
keys, a secret file that group or others may access (ConfigurationError).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import ClassVar

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from secagg import wire
from secagg._files import PRIVATE, SecretFileLinkWarning, read_regular_file
from secagg._new_files import write_new_file
from secagg.errors import AuthenticationError, ConfigurationError, DecodeError, SecAggError
from secagg.paillier._arguments import require_flag, require_path, require_random_bytes
from secagg.paillier.key_checks import check_loaded_key
from secagg.paillier.keys import KeyShare, PrivateKey, ThresholdPublicKey
from secagg.primitives import aead
from secagg.primitives.randomness import RandomBytes, system_random
from secagg.wire import U8, FixedBytes, VarBytes, wire_field

__all__ = [
    "DEFAULT_SCRYPT_LOG_N",
    "MAX_SCRYPT_MEMORY",
    "MIN_PASSPHRASE_LENGTH",
    "MIN_WRITE_SCRYPT_LOG_N",
    "MIN_WRITE_SCRYPT_R",
    "ProtectedSecret",
    "SecretFileLinkWarning",
    "protect",
    "read_private_file",
    "read_protected_file",
    "unprotect",
    "write_new_private_file",
    "write_protected_file",
]

DEFAULT_SCRYPT_LOG_N = 17
"""scrypt N = 2^17 with r = 8, p = 1 (128 MiB)."""

MIN_SCRYPT_LOG_N = 10
"""The smallest cost a file may declare (readable; written only with ``allow_weak_kdf_for_testing``)."""
MIN_WRITE_SCRYPT_LOG_N = 15
"""The smallest N = 2^15 written without the test switch (with r >= 8: 32 MiB per guess)."""
MIN_WRITE_SCRYPT_R = 8
MIN_PASSPHRASE_LENGTH = 12
"""Characters (of a str) or bytes a new file's passphrase needs at least."""
MAX_SCRYPT_MEMORY = 256 << 20
"""Ceiling on 128 * r * N * p for any header, read or written: 256 MiB."""
MAX_SCRYPT_LOG_N = 21  # 128 * 1 * 2^21 * 1 = MAX_SCRYPT_MEMORY
MAX_SCRYPT_R = 255
MAX_SCRYPT_P = 255
SALT_SIZE = 16
PROTECTED_LABEL = b"secagg/v1/paillier-protected-secret"
MAX_SEALED = 1 << 20
MAX_PROTECTED_FILE = MAX_SEALED + 64
"""Largest protected file read: the header (under 64 bytes) and the longest sealed secret."""

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
        # Checked at decoding, before scrypt ever runs on a hostile header.
        if not MIN_SCRYPT_LOG_N <= self.scrypt_log_n <= MAX_SCRYPT_LOG_N:
            raise DecodeError(f"scrypt log2(N) must be in {MIN_SCRYPT_LOG_N}..{MAX_SCRYPT_LOG_N}")
        if not 1 <= self.scrypt_r <= MAX_SCRYPT_R or not 1 <= self.scrypt_p <= MAX_SCRYPT_P:
            raise DecodeError(f"scrypt r must be in 1..{MAX_SCRYPT_R} and p in 1..{MAX_SCRYPT_P}")
        if self.scrypt_memory > MAX_SCRYPT_MEMORY:
            raise DecodeError(
                f"scrypt parameters N = 2^{self.scrypt_log_n}, r = {self.scrypt_r}, p = {self.scrypt_p} need "
                f"128 * r * N * p = {self.scrypt_memory >> 20} MiB, above the {MAX_SCRYPT_MEMORY >> 20} MiB ceiling"
            )

    @property
    def scrypt_memory(self) -> int:
        """``128 * r * N * p`` in bytes: the bound on scrypt's memory and work."""
        return 128 * self.scrypt_r * (1 << self.scrypt_log_n) * self.scrypt_p

    @property
    def associated_data(self) -> bytes:
        """What the AEAD authenticates besides the ciphertext."""
        return PROTECTED_LABEL + bytes([self.scrypt_log_n, self.scrypt_r, self.scrypt_p]) + self.salt


def _passphrase_bytes(passphrase: str | bytes) -> bytes:
    try:
        raw = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
    except UnicodeEncodeError as exc:  # e.g. an environment variable holding a byte that is not UTF-8
        raise ConfigurationError(
            "the passphrase is not valid Unicode (a lone surrogate, as decoding bytes that are not UTF-8 "
            "leaves); give it as bytes or in UTF-8"
        ) from exc
    if not isinstance(raw, bytes) or not raw:
        raise ConfigurationError("passphrase must be a non-empty str or bytes")
    return raw


def _check_new_protection(
    passphrase: str | bytes, scrypt_log_n: int, scrypt_r: int, scrypt_p: int, weak_for_testing: bool
) -> None:
    """The floor for a newly written secret: passphrase length and scrypt cost."""
    _passphrase_bytes(passphrase)
    if len(passphrase) < MIN_PASSPHRASE_LENGTH:
        raise ConfigurationError(
            f"passphrase has {len(passphrase)} characters; a key file needs at least {MIN_PASSPHRASE_LENGTH}"
        )
    for name, value in (("scrypt_log_n", scrypt_log_n), ("scrypt_r", scrypt_r), ("scrypt_p", scrypt_p)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigurationError(f"{name} must be an int, got {value!r}")
    min_log_n, min_r = (MIN_SCRYPT_LOG_N, 1) if weak_for_testing else (MIN_WRITE_SCRYPT_LOG_N, MIN_WRITE_SCRYPT_R)
    if scrypt_log_n < min_log_n or scrypt_r < min_r or scrypt_p < 1:
        raise ConfigurationError(
            f"scrypt N = 2^{scrypt_log_n}, r = {scrypt_r}, p = {scrypt_p} is below the floor for key files "
            f"(N >= 2^{min_log_n}, r >= {min_r}, p >= 1)"
        )
    if scrypt_log_n > MAX_SCRYPT_LOG_N or scrypt_r > MAX_SCRYPT_R or scrypt_p > MAX_SCRYPT_P or (
        128 * scrypt_r * (1 << scrypt_log_n) * scrypt_p > MAX_SCRYPT_MEMORY
    ):
        raise ConfigurationError(
            f"scrypt N = 2^{scrypt_log_n}, r = {scrypt_r}, p = {scrypt_p} exceeds the reading ceiling "
            f"(128 * r * N * p <= {MAX_SCRYPT_MEMORY >> 20} MiB): nobody could read the file back"
        )


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
    allow_weak_kdf_for_testing: bool = False,
) -> bytes:
    """The wire encoding of a :class:`ProtectedSecret` sealing ``secret`` under ``passphrase``.

    ConfigurationError for a passphrase under :data:`MIN_PASSPHRASE_LENGTH`
    characters, or an scrypt cost below N = 2^15, r = 8 (the floor; with
    ``allow_weak_kdf_for_testing``, tests only: N = 2^10) or above the reading
    ceiling (128 * r * N * p <= 256 MiB).
    """
    if not isinstance(secret, (KeyShare, PrivateKey)):
        raise ConfigurationError("only a KeyShare or a PrivateKey can be protected")
    random_bytes = require_random_bytes(random_bytes)
    allow_weak = require_flag("allow_weak_kdf_for_testing", allow_weak_kdf_for_testing)
    _check_new_protection(passphrase, scrypt_log_n, scrypt_r, scrypt_p, allow_weak)
    header = ProtectedSecret(scrypt_log_n, scrypt_r, scrypt_p, random_bytes(SALT_SIZE), b"")
    key = _derive(passphrase, header)
    sealed = aead.seal(key, wire.encode(secret), header.associated_data, random_bytes)
    return wire.encode(ProtectedSecret(scrypt_log_n, scrypt_r, scrypt_p, header.salt, sealed))


def unprotect(data: bytes, passphrase: str | bytes) -> Secret:
    """The key share or private key sealed in ``data``.

    Raises DecodeError (malformed, or a share of a t-of-l key with 2t <= l, which every
    session refuses: :func:`~secagg.paillier.key_checks.check_loaded_key`),
    AuthenticationError (wrong passphrase or altered bytes), or the key's own validation errors.
    """
    box = wire.decode(data, ProtectedSecret)
    plaintext = aead.open_sealed(_derive(passphrase, box), box.sealed, box.associated_data)
    secret = wire.decode_any(plaintext)
    if not isinstance(secret, (KeyShare, PrivateKey)):
        raise DecodeError(f"protected secret holds a {type(secret).__name__}, not a key share or private key")
    check_loaded_key(secret.public, "protected key share")
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
    allow_weak_kdf_for_testing: bool = False,
) -> None:
    """Write :func:`protect` output to a new file readable by its owner only (mode 0600).

    Refuses to overwrite an existing file, and the passphrases and costs
    :func:`protect` refuses (ConfigurationError).
    """
    data = protect(
        secret,
        passphrase,
        scrypt_log_n=scrypt_log_n,
        scrypt_r=scrypt_r,
        scrypt_p=scrypt_p,
        random_bytes=random_bytes,
        allow_weak_kdf_for_testing=allow_weak_kdf_for_testing,
    )
    write_new_private_file(path, data)


def write_new_private_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to a file that must not exist yet, readable by its owner only (0600).

    The file is created with its final mode (no window in which others could read it) in the
    same folder, synced, and only then given its name, which never replaces an existing file or
    link (ConfigurationError): a crash leaves no empty or partial key under that name (except on a
    file system without hard links, where the file is created at its name and then written). A
    folder on its path that another user owns, or that group or others may write (not sticky), is
    refused before anything is written (ConfigurationError naming it), as every reader refuses it.
    The folder is synced before it returns (best effort: some file systems cannot sync a folder), so
    a crash after it returned does not lose the file where the folder's sync succeeded. A write
    or sync that fails (a full disk, an I/O error) removes what it created and raises
    ConfigurationError; one interrupted (KeyboardInterrupt) removes it too
    (:func:`secagg._new_files.write_new_file`).
    """
    write_new_file(require_path(path), "key file", data)


def read_private_file(path: str | os.PathLike[str], what: str, max_bytes: int = MAX_PROTECTED_FILE) -> bytes:
    """The bytes of the secret file ``path`` (``what`` names it in errors).

    ConfigurationError if it cannot be read, is not a regular file (a pipe, folder or
    device), holds more than ``max_bytes`` or if group or others have any access to it
    (as ssh refuses such private keys): the mode is checked on the opened file, so it is
    the file actually read (:func:`secagg._files.read_regular_file`).
    """
    return read_regular_file(require_path(path), what, max_bytes, forbidden_mode=PRIVATE)


def read_protected_file(path: str | os.PathLike[str], passphrase: str | bytes) -> Secret:
    """Read and :func:`unprotect` a file written by :func:`write_protected_file`.

    ConfigurationError if group or others may access the file (see :func:`read_private_file`);
    AuthenticationError naming the file for a wrong passphrase (or an altered file).
    """
    return unprotect_file(path, passphrase, "protected key file")


def unprotect_file(path: str | os.PathLike[str], passphrase: str | bytes, kind: str) -> Secret:
    """:func:`unprotect` the private file ``path``; a passphrase that does not open it raises
    AuthenticationError naming the file (``kind``) and the likely cause, a wrong passphrase."""
    data = read_private_file(path, kind)
    try:
        return unprotect(data, passphrase)
    except DecodeError as exc:
        raise DecodeError(f"the {kind} {os.fspath(path)}{file_holds(data, ProtectedSecret)}: {exc}") from exc
    except AuthenticationError:
        raise AuthenticationError(
            f"cannot open the {kind} {os.fspath(path)}: wrong passphrase (or the file was altered); "
            "give the passphrase it was sealed under"
        ) from None


def file_holds(data: bytes, expected: type[wire.Message]) -> str:
    """What a key file that is not an ``expected`` holds, for refusals (a public-key file and a
    key-share file given in each other's place): ", which holds ...", or "" if it holds neither."""
    with contextlib.suppress(SecAggError):
        found = type(wire.decode_any(data))
        if found is not expected and found in (ProtectedSecret, ThresholdPublicKey):
            return (", which holds a sealed key share or private key (a key-share file)" if found is ProtectedSecret
                    else ", which holds the federation's public key (a public-key file)")  # fmt: skip
    return ""
