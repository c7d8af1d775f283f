"""The hospitals a :class:`~fl_core.aggregators.paillier.PaillierAggregator` plays, and what each keeps
between rounds: its key-share index, its encryptor and its identity key.

Hospitals get key-share indices 1..n in the order they are first seen (ascending client id within a
round), and keep them; a hospital beyond the key's n shares is refused. Each keeps one encryptor for
the aggregator's lifetime (the DJN base and its table are made once, like obfuscators precomputed
offline) and one identity key, drawn when it is first needed.

In a round's session the hospitals upload (:meth:`SimulatedHospitals.upload`) and decrypt
(:meth:`SimulatedHospitals.decrypt`) through the wire format, as real ones would; a message the
server refuses costs only the hospital that sent it, named with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from secagg import wire
from secagg.errors import ConfigurationError, SecAggError
from secagg.paillier import (
    Client,
    DecryptingParty,
    Encryptor,
    Obfuscation,
    Server,
    SessionParameters,
    ThresholdKeyMaterial,
    Workers,
)
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

    def check_new(self, client_ids: Iterable[int]) -> None:
        """ConfigurationError if the hospitals of ``client_ids`` not seen before outnumber the key
        shares left (naming the first, in id order, that gets none); assigns nothing."""
        new = sorted(set(client_ids) - set(self._share_index))
        left = self.material.public.num_parties - len(self._share_index)
        if len(new) > left:
            raise ConfigurationError(
                f"client {new[left]} is a new hospital, but all {self.material.public.num_parties} key shares are taken"
            )

    def assign(self, client_ids: Sequence[int]) -> None:
        """Give each hospital of ``client_ids`` not seen before the next key-share index (all or
        none: :meth:`check_new` first)."""
        self.check_new(client_ids)
        for client in sorted(client_ids):
            if client not in self._share_index:
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

    def upload(
        self, params: SessionParameters, server: Server, values: Mapping[int, npt.NDArray[np.int64]]
    ) -> tuple[dict[int, bytes], dict[int, str], int]:
        """Each hospital of ``values`` encrypts and signs its values, and the server receives the upload.

        Returns the digests of the accepted uploads, the reason for each upload the server dropped
        (one hospital's bad upload costs only itself) and the bytes sent.
        """
        digests: dict[int, bytes] = {}
        errors: dict[int, str] = {}
        bytes_sent = 0
        for client, vector in values.items():
            sender = Client(params, client, self.identity(client), encryptor=self.encryptor(client))
            data = wire.encode(sender.upload(vector))
            bytes_sent += len(data)
            try:
                server.receive_upload(data)
            except SecAggError as exc:
                errors[client] = f"upload dropped: {exc}"
                continue
            assert sender.upload_digest is not None
            digests[client] = sender.upload_digest
        return digests, errors, bytes_sent

    def decrypt(
        self,
        params: SessionParameters,
        server: Server,
        live: Sequence[int],
        own_uploads: Mapping[int, bytes],
        errors: dict[int, str],
        constant_time: bool,
    ) -> tuple[int, int]:
        """The ``live`` hospitals, in this order, answer the server's decryption request until
        t partial decryptions verify; a refusal or a partial whose proof fails is recorded in
        ``errors`` and the next hospital is asked. Returns (answers verified, bytes sent).

        Each hospital checks that the sum holds its own upload, whose digest ``own_uploads`` names;
        one missing from ``own_uploads`` has no accepted upload of its own and refuses to decrypt
        (recorded in ``errors``), as a real node without an upload in the session refuses: the
        check is never turned off for it."""
        threshold = self.material.public.threshold
        answered = bytes_sent = 0
        for client in live:
            if answered == threshold:
                break
            own = own_uploads.get(client)
            if own is None:
                errors[client] = (
                    "partial decryption refused: the hospital has no accepted upload of its own in this session, "
                    "and decrypts only a sum holding its own upload"
                )
                continue
            index = self.share_index(client)
            party = DecryptingParty(
                params,
                self.material.shares[index - 1],
                own_upload=own,
                random_bytes=self.random_bytes,
                workers=self.workers,
                constant_time=constant_time,
            )
            try:
                answer = wire.encode(party.respond(wire.encode(server.decryption_request(index))))
                bytes_sent += len(answer)
                server.receive_partial(answer)
            except SecAggError as exc:
                errors[client] = f"partial decryption dropped: {exc}"
                continue
            answered += 1
        return answered, bytes_sent
