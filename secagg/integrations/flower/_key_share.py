"""Where a Paillier node finds its key share and the share's passphrase (node config, file, environment).

The share never leaves the node and is never stored in ``context.state``: :func:`load_node_share`
reads it afresh for every message. Re-exported by :mod:`secagg.integrations.flower.paillier_client`.
"""

from __future__ import annotations

import os

from flwr.app import Context

from secagg._file_kinds import _shown
from secagg.errors import ConfigurationError
from secagg.integrations.flower._node import config_path
from secagg.integrations.flower.keys import load_key_share
from secagg.paillier import KeyShare
from secagg.paillier.storage import read_private_file

__all__ = ["KEY_SHARE_FILE", "MAX_PASSPHRASE_FILE", "PASSPHRASE_ENV", "PASSPHRASE_FILE", "load_node_share"]

KEY_SHARE_FILE = "key-share-file"
"""Node-config key: path of this node's protected key-share file."""
PASSPHRASE_FILE = "key-share-passphrase-file"  # noqa: S105  (a config key, not a secret)
"""Node-config key: path of a file holding the key share's passphrase (first line)."""
PASSPHRASE_ENV = "SECAGG_KEY_SHARE_PASSPHRASE"  # noqa: S105  (a variable name, not a secret)
"""Environment variable holding the key share's passphrase (the last resort)."""
MAX_PASSPHRASE_FILE = 1 << 16
"""Largest passphrase file read (its first line is the passphrase)."""

PathLike = str | os.PathLike[str]


def load_node_share(context: Context, key_share_file: PathLike | None, passphrase: str | bytes | None) -> KeyShare:
    """Load and check this node's key share (never cached in the node's state): ``key_share_file``, else
    the node config's ``key-share-file``; ``passphrase``, else the passphrase file, else the environment."""
    path = config_path(context, KEY_SHARE_FILE, key_share_file)
    if path is None:
        raise ConfigurationError(f"no key share: set {KEY_SHARE_FILE!r} in the node config")
    if passphrase is None:
        passphrase_path = config_path(context, PASSPHRASE_FILE, None)
        if passphrase_path is not None:
            # A secret: 0600, checked on the open file; a regular file (a pipe would serve one message only)
            data = read_private_file(passphrase_path, "passphrase file", MAX_PASSPHRASE_FILE)
            try:
                lines = data.decode("utf-8").splitlines()
            except UnicodeDecodeError:  # the decoder's message holds a byte of the secret and its position
                raise ConfigurationError(
                    f"cannot read the passphrase file {_shown(passphrase_path)}: it is not UTF-8 text; save the "
                    "passphrase in UTF-8"
                ) from None
            passphrase = lines[0] if lines else ""
        else:
            passphrase = os.environ.get(PASSPHRASE_ENV)
    if not passphrase:
        raise ConfigurationError(f"no passphrase for the key share: set {PASSPHRASE_FILE!r} or ${PASSPHRASE_ENV}")
    return load_key_share(path, passphrase)
