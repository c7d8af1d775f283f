"""Key files of a Flower federation: identity keys, trusted-key lists, the Paillier public key and shares.

Nothing here needs ``flwr``. Formats (all written with mode 0600, never over an existing file):

- identity key file: the 32-byte Ed25519 seed as 64 lowercase hex digits and a
  newline. Readable by its owner only: a file that group or others may read is
  refused, as ssh refuses such private keys.
- trusted-keys file: the federation's out-of-band list of identity public keys,
  one per line as 64 hex digits; blank lines and lines starting with ``#`` are ignored.
  Public, but whoever may write it decides whom the node trusts: a file that group or
  others may write is refused.
- Paillier public-key file: the wire encoding of the
  :class:`~secagg.paillier.ThresholdPublicKey` (what the server loads); refused likewise
  when group or others may write it.
- key-share file: :func:`secagg.paillier.write_protected_file` output (scrypt +
  AES-256-GCM under the node's passphrase) of one :class:`~secagg.paillier.KeyShare`.

Every reader takes regular files only, of a bounded size (``MAX_*_FILE``), opened
without blocking (:func:`secagg._files.read_regular_file`): a named pipe, folder or
device given as a key file is refused with ConfigurationError instead of read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from secagg import wire
from secagg._file_kinds import _shown
from secagg._files import WRITABLE_BY_OWNER_ONLY, read_regular_file
from secagg.errors import ConfigurationError, DecodeError
from secagg.paillier.ceremony import ThresholdKeyMaterial
from secagg.paillier.key_checks import check_loaded_key
from secagg.paillier.keys import KeyShare, ThresholdPublicKey
from secagg.paillier.parameters import check_dealt_shape
from secagg.paillier.storage import (
    DEFAULT_SCRYPT_LOG_N,
    file_holds,
    protect,
    read_private_file,
    unprotect_file,
    write_new_private_file,
)
from secagg.primitives.signing import PUBLIC_KEY_SIZE, SEED_SIZE, SigningKey, check_trusted_key

__all__ = [
    "holds_listed_key",
    "load_key_share",
    "read_identity_key",
    "read_node_identity",
    "read_public_key",
    "read_trusted_keys",
    "write_identity_key",
    "write_key_files",
    "write_public_key",
    "write_trusted_keys",
]

PathLike = str | os.PathLike[str]

MAX_IDENTITY_KEY_FILE = 1024
"""Largest identity key file read (the seed's 64 hex digits, a newline and room for stray spaces)."""
MAX_TRUSTED_KEYS_FILE = 1 << 20
"""Largest trusted-keys file read (1 MiB: thousands of keys with comments)."""
MAX_PUBLIC_KEY_FILE = 1 << 21
"""Largest Paillier public-key file read (2 MiB; the largest threshold key, 8192 bits with 256
verification keys, encodes to about 0.5 MiB)."""
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_TRUST_ADVICE = "whoever may write it decides whom this node trusts; make it writable by its owner only"


def _read(path: PathLike, what: str, max_bytes: int) -> bytes:
    """The bytes of a public but integrity-sensitive file, refused if group or others may write it
    (checked on the file actually read), if it is not a regular file or if it is larger than ``max_bytes``."""
    return read_regular_file(path, what, max_bytes, forbidden_mode=WRITABLE_BY_OWNER_ONLY, advice=_TRUST_ADVICE)


def _hex_key(text: str, size: int, where: str) -> bytes:
    """The ``size``-byte key written as ``text``: exactly ``2 * size`` hex digits (``bytes.fromhex``
    alone would also read digits separated by spaces, a line another reader refuses)."""
    value = hex_key(text)
    if value is None:
        raise DecodeError(f"{where}: not a hex string (hex digits only, two per byte)")
    if len(value) != size:
        raise DecodeError(f"{where}: expected {size} bytes, got {len(value)}")
    return value


def hex_key(text: str) -> bytes | None:
    """The bytes ``text`` spells in hex digits alone (either case, two per byte), None if it holds
    anything else (spaces between the digits included)."""
    if not text.isascii() or not all(c in _HEX_DIGITS for c in text) or len(text) % 2:
        return None
    return bytes.fromhex(text)


def write_identity_key(path: PathLike, identity: SigningKey) -> None:
    """Write ``identity``'s seed to a new owner-only file."""
    write_new_private_file(path, identity.seed.hex().encode("ascii") + b"\n")


def read_identity_key(path: PathLike) -> SigningKey:
    """The identity key in ``path``; ConfigurationError if group or others may read the file."""
    # The mode is checked on the opened file: the file checked is the file read.
    text = read_private_file(path, "identity key file", MAX_IDENTITY_KEY_FILE).decode("ascii", errors="replace").strip()
    seed = _hex_key(text, SEED_SIZE, f"identity key file {_shown(path)}")
    return SigningKey.generate(lambda size: seed)  # the public key derived from the stored seed


def holds_listed_key(path: PathLike, trusted: frozenset[bytes]) -> bool:
    """Whether the file at ``path`` holds one of the ``trusted`` public keys (a ``.pub`` given for an
    identity file), read whatever its mode (a public key needs no secrecy); False if it cannot be read."""
    try:
        text = read_regular_file(path, "identity key file", MAX_IDENTITY_KEY_FILE).decode("ascii", errors="replace")
    except ConfigurationError:
        return False
    return hex_key(text.strip()) in trusted


def read_node_identity(key_path: PathLike, trusted_path: PathLike) -> tuple[SigningKey, frozenset[bytes]]:
    """A node's identity key and trusted list; ConfigurationError if the identity file holds a public
    key on the list (a ``.pub`` named in its place: the same format, and its "seed" is public),
    also when others may read it, as a ``.pub`` usually is (not the advice to chmod it)."""
    listed = ConfigurationError(f"identity-key-file {_shown(key_path)} holds a public key on the trusted list, not an "
                                "identity key: name the identity file (from `secagg keys new`), not its .pub")
    try:
        key = read_identity_key(key_path)
    except ConfigurationError:
        try:
            public = holds_listed_key(key_path, read_trusted_keys(trusted_path))
        except ConfigurationError:  # the trusted list's own errors come after this one's
            public = False
        if public:
            raise listed from None
        raise
    trusted = read_trusted_keys(trusted_path)
    if key.seed in trusted:
        raise listed
    return key, trusted


def write_trusted_keys(path: PathLike, keys: Iterable[bytes]) -> None:
    """Write the federation's trusted identity public keys, one hex line each, to a new file."""
    keys = list(keys)
    if any(len(key) != PUBLIC_KEY_SIZE for key in keys):
        raise ConfigurationError(f"identity public keys are {PUBLIC_KEY_SIZE} bytes")
    lines = [check_trusted_key(key, f"key {number}").hex() for number, key in enumerate(keys, start=1)]
    write_new_private_file(path, "".join(line + "\n" for line in lines).encode("ascii"))


def read_trusted_lines(path: PathLike) -> list[str]:
    """The lines of the trusted-keys file ``path`` (checked as :func:`read_trusted_keys` reads it)."""
    text = _read(path, "trusted-keys file", MAX_TRUSTED_KEYS_FILE).decode("ascii", errors="replace")
    # Lines end at "\n" alone ("\r" before it is stripped with the blanks): str.splitlines() also splits
    # at ASCII controls (form feed, file separator, ...), where a reader of lines sees one malformed line.
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def read_trusted_keys(path: PathLike) -> frozenset[bytes]:
    """The trusted identity public keys listed in ``path`` (DecodeError naming the bad line)."""
    keys = set()
    for number, line in enumerate(read_trusted_lines(path), start=1):
        entry = line.strip()
        if entry and not entry.startswith("#"):
            where = f"trusted-keys file {_shown(path)}, line {number}"
            keys.add(check_trusted_key(_hex_key(entry, PUBLIC_KEY_SIZE, where), where))
    if not keys:
        raise ConfigurationError(f"trusted-keys file {_shown(path)} lists no key")
    return frozenset(keys)


def write_public_key(path: PathLike, public: ThresholdPublicKey) -> None:
    """Write the federation's threshold public key (wire encoding) to a new file."""
    write_new_private_file(path, wire.encode(public))


def read_public_key(path: PathLike) -> ThresholdPublicKey:
    """The threshold public key in ``path`` (validated: key size policy, parameters, and 2t > l:
    :mod:`secagg.paillier.key_checks`; DecodeError otherwise)."""
    data = _read(path, "public-key file", MAX_PUBLIC_KEY_FILE)
    try:
        public = wire.decode(data, ThresholdPublicKey)
    except DecodeError as exc:
        raise DecodeError(f"the public-key file {_shown(path)}{file_holds(data, ThresholdPublicKey)}: {exc}") from exc
    return check_loaded_key(public, f"public-key file {_shown(path)}")


def load_key_share(path: PathLike, passphrase: str | bytes) -> KeyShare:
    """The key share sealed in ``path``; AuthenticationError naming the file for a wrong passphrase
    (or an altered file)."""
    secret = unprotect_file(path, passphrase, "key-share file")
    if not isinstance(secret, KeyShare):
        raise ConfigurationError(f"{_shown(path)} holds a single-key private key, not a threshold key share")
    return secret


def write_key_files(
    material: ThresholdKeyMaterial,
    directory: PathLike,
    passphrases: Sequence[str | bytes],
    *,
    scrypt_log_n: int = DEFAULT_SCRYPT_LOG_N,
) -> tuple[Path, list[Path]]:
    """The dealer's last step: ``public-key.bin`` and ``key-share-<i>.bin`` (sealed under
    ``passphrases[i - 1]``) in ``directory``; returns their paths. Deliver each share file to
    its hospital, the public key to the server and the nodes, then destroy ``material``.
    A key every session refuses (2t <= l) is not written (ConfigurationError naming the
    least safe threshold; :func:`secagg.paillier.parameters.check_dealt_shape`). Every share is
    sealed and every path checked first: a refused passphrase or an existing file leaves nothing
    written (ConfigurationError), and so does a write that fails or is interrupted midway."""
    check_dealt_shape(material.public.num_parties, material.public.threshold)
    if len(passphrases) != len(material.shares):
        raise ConfigurationError(f"{len(material.shares)} key shares need as many passphrases")
    folder = Path(directory)
    public_path = folder / "public-key.bin"
    # Seal every share and check every path before writing: a refusal (a short passphrase, an
    # existing file) leaves nothing on disk, no part of a ceremony the dealer was told had failed.
    sealed = [
        (folder / f"key-share-{share.index}.bin", protect(share, passphrase, scrypt_log_n=scrypt_log_n))
        for share, passphrase in zip(material.shares, passphrases, strict=True)
    ]
    files = [(public_path, wire.encode(material.public)), *sealed]
    for path, _ in files:
        if os.path.lexists(path):
            raise ConfigurationError(f"refusing to overwrite {_shown(path)} (nothing written)")
    written: list[Path] = []
    try:
        for path, data in files:
            write_new_private_file(path, data)
            written.append(path)
    except BaseException:  # a failed write, or an interrupt: no part of the ceremony is left
        for path in written:  # only files this call created (O_EXCL)
            path.unlink(missing_ok=True)
        raise
    return public_path, [path for path, _ in sealed]
