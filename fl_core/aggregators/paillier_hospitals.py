"""The hospitals a :class:`~fl_core.aggregators.paillier.PaillierAggregator` plays, and what each keeps
between rounds: its key-share index, its encryptor and its identity key.

Hospitals get key-share indices 1..n in the order they are first seen (ascending client id within a
round), and keep them; a hospital beyond the key's n shares is refused. Each keeps one encryptor for
the aggregator's lifetime (the DJN base and its table are made once, like obfuscators precomputed
offline) and one identity key, drawn when it is first needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from secagg.errors import ConfigurationError
from secagg.paillier import Encryptor, Obfuscation, ThresholdKeyMaterial, Workers
from secagg.primitives.randomness import RandomBytes
from secagg.primitives.signing import SigningKey

__all__ = ["SimulatedHospitals"]


class SimulatedHospitals:
    """Key-share indices, encryptors and identity keys of the hospitals, kept across rounds."""

    def __init__(
        self, material: ThresholdKeyMaterial, obfuscation: Obfuscation, random_bytes: RandomBytes, workers: Workers
    ) -> None:
        self.material = material
        self.obfuscation = obfuscation
        self.random_bytes = random_bytes
        self.workers = workers
        self._share_index: dict[int, int] = {}
        self._encryptors: dict[int, Encryptor] = {}
        self._identities: dict[int, SigningKey] = {}

    def assign(self, client_ids: Sequence[int]) -> None:
        """Give each hospital of ``client_ids`` not seen before the next key-share index."""
        for client in sorted(client_ids):
            if client not in self._share_index:
                if len(self._share_index) == self.material.public.num_parties:
                    raise ConfigurationError(
                        f"client {client} is a new hospital, but all {len(self._share_index)} key shares are taken"
                    )
                self._share_index[client] = len(self._share_index) + 1

    def share_index(self, client: int) -> int:
        """The key-share index (1..n) of ``client``, assigned by :meth:`assign`."""
        return self._share_index[client]

    def in_share_order(self, clients: Iterable[int]) -> list[int]:
        """``clients`` in key-share order (the order they are asked to decrypt)."""
        return sorted(clients, key=self._share_index.__getitem__)

    def encryptor(self, client: int) -> Encryptor:
        """The encryptor ``client`` keeps for the aggregator's lifetime."""
        if client not in self._encryptors:
            self._encryptors[client] = Encryptor(
                self.material.public.key,
                obfuscation=self.obfuscation,
                random_bytes=self.random_bytes,
                workers=self.workers,
            )
        return self._encryptors[client]

    def identity(self, client: int) -> SigningKey:
        """The identity key of ``client`` (the simulation plays every hospital: each gets its own once)."""
        if client not in self._identities:
            self._identities[client] = SigningKey.generate(self.random_bytes)
        return self._identities[client]
