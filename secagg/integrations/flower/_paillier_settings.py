"""What the Paillier mod (:func:`~secagg.integrations.flower.paillier_client.make_paillier_mod`)
is built with: every secure mod's :class:`~secagg.integrations.flower._node.NodeSettings`, plus
the node's key share (its file and passphrase), the encryption's obfuscation and whether the
decryption runs in constant time, all checked when the mod is built.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from secagg._validate import require_bool, require_instance, require_optional_path
from secagg.errors import ConfigurationTypeError
from secagg.integrations.flower._node import NodeSettings
from secagg.paillier import Obfuscation

__all__ = ["PaillierSettings"]

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class PaillierSettings(NodeSettings):
    """The Paillier mod's settings (the factory's arguments, checked)."""

    key_share_file: PathLike | None
    passphrase: str | bytes | None
    obfuscation: Obfuscation
    constant_time: bool

    def __post_init__(self) -> None:
        super().__post_init__()
        require_optional_path("key_share_file", self.key_share_file)
        if self.passphrase is not None and not isinstance(self.passphrase, (str, bytes)):
            raise ConfigurationTypeError(f"passphrase must be str, bytes or None, got {type(self.passphrase).__name__}")
        require_instance("obfuscation", self.obfuscation, Obfuscation)
        require_bool("constant_time", self.constant_time)
