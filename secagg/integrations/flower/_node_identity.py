"""A Flower node's identity: its key files, named explicitly or in the node config, the
federation's trusted keys, the signed ``identify`` announcement and the round's identity check."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from flwr.app import Context, Message

from secagg import wire
from secagg.errors import AuthenticationError, ConfigurationError
from secagg.integrations.flower.keys import read_node_identity
from secagg.integrations.flower.protocol import IdentityAnnouncement
from secagg.primitives.signing import SigningKey

__all__ = [
    "IDENTITY_KEY_FILE",
    "TRUSTED_KEYS_FILE",
    "NodeIdentity",
    "announce_identity",
    "check_identities",
    "config_path",
    "node_identity",
]


def config_path(context: Context, key: str, explicit: str | os.PathLike[str] | None) -> str | None:
    """``explicit`` if given, else the node-config value under ``key`` (None if neither)."""
    if explicit is not None:
        return os.fspath(explicit)
    value = context.node_config.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"node config {key!r} must be a path string, got {value!r}")
    return value


IDENTITY_KEY_FILE = "identity-key-file"
"""Node-config key: path of this node's Ed25519 identity key file."""
TRUSTED_KEYS_FILE = "trusted-keys-file"
"""Node-config key: path of the federation's trusted identity public keys."""
_SET_KEY_FILES = (f"set {IDENTITY_KEY_FILE!r} and {TRUSTED_KEYS_FILE!r} in the node config (its own key from "
                  "`secagg keys new`, the federation's list from `secagg keys trust`)")


@dataclass(frozen=True)
class NodeIdentity:
    """This node's identity key and the federation's keys it trusts."""

    key: SigningKey
    trusted: frozenset[bytes]


def node_identity(
    context: Context, key_file: str | os.PathLike[str] | None, trusted_file: str | os.PathLike[str] | None
) -> NodeIdentity | None:
    """The node's identity and trusted keys (explicit paths, else the node config), or None if it has none."""
    key_path = config_path(context, IDENTITY_KEY_FILE, key_file)
    if key_path is None:
        return None
    trusted_path = config_path(context, TRUSTED_KEYS_FILE, trusted_file)
    if trusted_path is None:
        raise ConfigurationError(f"an identity key needs the federation's trusted keys: {_SET_KEY_FILES}")
    return NodeIdentity(*read_node_identity(key_path, trusted_path))


def announce_identity(message: Message, identity: NodeIdentity | None) -> bytes:
    """The ``identify`` stage: this node's signed :class:`IdentityAnnouncement`."""
    if identity is None:
        raise ConfigurationError(f"asked for an identity key, but this node has none: {_SET_KEY_FILES}")
    announcement = IdentityAnnouncement.create(identity.key, message.metadata.run_id, message.metadata.dst_node_id)
    return wire.encode(announcement)


def check_identities(
    keys: Sequence[bytes], node_ids: Sequence[int], protocol_id: int, identity: NodeIdentity
) -> None:
    """Every key of the round trusted, none twice, this node's own key at its own protocol id."""
    for client, key in enumerate(keys, start=1):
        if key not in identity.trusted:
            raise AuthenticationError(
                f"the identity key of protocol client {client} (node {node_ids[client - 1]}) "
                "is not on the federation's trusted list"
            )
    if len(set(keys)) != len(keys):
        raise AuthenticationError("the round's identity keys name one key for two nodes")
    if keys[protocol_id - 1] != identity.key.public:
        raise AuthenticationError(f"the round puts another identity key at this node's protocol id {protocol_id}")
