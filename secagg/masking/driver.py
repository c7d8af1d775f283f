"""The narrated in-memory driver: n clients and the server, every round, in one process.

This is the protocol's best documentation and the engine under fl_core, the
benchmarks and the tests. Every message passes through the wire encoding, as
it would over a network; the driver only moves bytes between the pure
client and server transitions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from secagg._validate import require_instance, require_int, require_mapping
from secagg.errors import ConfigurationError, ConfigurationTypeError, SecAggError
from secagg.masking.client import ClientState, client_start, client_step
from secagg.masking.config import ACTIVE, MAX_CLIENTS, MaskingConfig
from secagg.masking.messages import Round
from secagg.masking.server import ServerResult, server_start, server_step
from secagg.masking.server_state import abort_report, attach_report
from secagg.masking.session import CONTEXT_SIZE, check_context
from secagg.primitives.randomness import RandomBytes, system_random
from secagg.primitives.signing import SigningKey
from secagg.ring import RingVector

__all__ = ["SessionResult", "Tamper", "TranscriptEntry", "make_identities", "run_session"]

Tamper = Callable[[Round, str, int, bytes], "bytes | None"]
"""A test hook ``(round, direction, client, data) -> data'`` applied to every message
in flight; ``direction`` is ``"up"`` (client to server) or ``"down"``; returning
None drops the message. It models a lying server or a network attacker."""


@dataclass(frozen=True)
class TranscriptEntry:
    """One message the server received: its round, sender and bytes."""

    round: Round
    sender: int
    data: bytes


@dataclass(frozen=True)
class SessionResult:
    """What one aggregation session produced.

    Attributes:
        aggregate: the exact ring sum of the inputs of ``included``.
        included: the clients whose masked input the server used.
        transcript: everything the server received (empty if not recorded).
        bytes_sent: total bytes by direction: ``"client_upload"``, ``"client_download"``.
        client_errors: clients that aborted, with the error each raised.
        server_rejected: messages the server rejected, with the reason.
        share_refusals: ``(receiver, sender)``: the receiver's unmask response left out the
            sender's share, i.e. it says it refused the sender's share box (its claim, unproven:
            :func:`~secagg.masking.server_state.refusal_reason`); the receiver stays included.
        share_liars: ``(holder, owner, secret)``: a share the holder revealed lies off the owner's
            polynomial for that secret (the holder lied or the owner dealt it a wrong share; the
            server cannot tell which, docs/spec.md 12.9), as ``ServerState.share_liars`` holds
            them; the holder's record is also the last of ``server_rejected``'s, and both stay in.
        client_mask_s: per client, seconds spent in the masked-input step
            (opening shares, expanding and adding every mask, encoding).
        server_unmask_s: server seconds from the masked inputs to the aggregate:
            decoding and summing the masked inputs, reconstructing secrets and
            removing self-masks and the pairwise masks of dropped clients.
    """

    aggregate: RingVector
    included: frozenset[int]
    transcript: tuple[TranscriptEntry, ...]
    bytes_sent: Mapping[str, int]
    client_errors: Mapping[int, SecAggError]
    server_rejected: tuple[tuple[int, str], ...]
    share_refusals: tuple[tuple[int, int], ...] = ()
    share_liars: tuple[tuple[int, int, str], ...] = ()
    client_mask_s: Mapping[int, float] = field(default_factory=dict)
    server_unmask_s: float = 0.0

    @property
    def bytes_per_client_upload(self) -> float:
        """Mean bytes one included client uploaded over the whole session."""
        return self.bytes_sent["client_upload"] / max(1, len(self.included))


def make_identities(
    num_clients: int, random_bytes: RandomBytes = system_random
) -> tuple[dict[int, SigningKey], tuple[bytes, ...]]:
    """Fresh Ed25519 identity keys for clients 1..n (``1 <= n <= MAX_CLIENTS``) and the public keys for the config."""
    num_clients = require_int("num_clients", num_clients, 1, MAX_CLIENTS)
    keys = {client: SigningKey.generate(random_bytes) for client in range(1, num_clients + 1)}
    return keys, tuple(keys[client].public for client in range(1, num_clients + 1))


def run_session(
    config: MaskingConfig,
    inputs: Mapping[int, RingVector],
    dropouts: Mapping[int, Round] | None = None,
    *,
    context: bytes | None = None,
    identities: Mapping[int, SigningKey] | None = None,
    random_bytes: RandomBytes = system_random,
    record_transcript: bool = True,
    tamper: Tamper | None = None,
) -> SessionResult:
    """Run one aggregation of ``inputs`` (client id -> ring vector, ids 1..n).

    ``dropouts[c] = r`` makes client c go silent from round r on: it never sends
    its round-r message. ``context`` (32 bytes) binds the session; by default
    the server draws a fresh one from ``random_bytes``, so every session has its
    own session id and graph. Raises ThresholdError if fewer than the threshold
    remain (AuthenticationError if no t shares of a secret reconstruct it); the server
    then has learned nothing beyond what it already held. The error's message is a
    short summary; :func:`~secagg.masking.abort_report` of it gives the structured
    record (:class:`~secagg.masking.AbortReport`: who went missing at which round,
    ``server_rejected``, ``share_refusals``, ``share_liars`` and ``client_errors`` as this result
    would hold them).
    """
    require_instance("config", config, MaskingConfig)
    require_mapping("inputs", inputs)
    dropouts = dict(require_mapping("dropouts", {} if dropouts is None else dropouts))
    if context is not None:
        check_context(context)
    for client, stage in dropouts.items():
        if not isinstance(client, int) or isinstance(client, bool) or not 1 <= client <= config.num_clients:
            raise ConfigurationError(f"dropouts name client {client!r}, not in 1..{config.num_clients}")
        if not isinstance(stage, Round):
            raise ConfigurationTypeError(
                f"dropouts: client {client}'s stage must be a Round (e.g. Round.MASKED_INPUT), got {stage!r}"
            )
    if set(inputs) != set(range(1, config.num_clients + 1)):
        raise ConfigurationError(f"inputs must be given for client ids 1..{config.num_clients}")
    for client, vector in inputs.items():
        try:
            config.ring.check(np.asarray(vector), config.vector_length)
        except ConfigurationError as exc:
            raise ConfigurationError(f"client {client}: input vector: {exc}") from exc
    if config.mode == ACTIVE and identities is None:
        raise ConfigurationError("active mode needs the clients' identity keys")
    run = _Run(config, dropouts, identities or {}, random_bytes, record_transcript, tamper)
    context = random_bytes(CONTEXT_SIZE) if context is None else context
    try:
        return _run_session(config, inputs, context, run)
    except SecAggError as exc:
        report = abort_report(exc)
        if report is not None:  # the server aborted: its report gains the clients' own aborts
            attach_report(exc, replace(report, client_errors=dict(run.errors)))
        raise


def _run_session(config: MaskingConfig, inputs: Mapping[int, RingVector], context: bytes, run: _Run) -> SessionResult:
    """:func:`run_session`'s rounds, its arguments checked."""
    # Round 0, AdvertiseKeys: each client makes fresh key pairs and sends the public halves.
    uploads = run.start_clients(context)
    # The server relays each client its neighbours' keys; each client
    # Shamir-shares its mask key and self-mask seed, and sends them sealed.
    server, downloads = server_step(server_start(config, context=context), run.receive(Round.ADVERTISE_KEYS, uploads))
    uploads = run.step_clients(Round.SHARE_KEYS, downloads)
    # The server routes the sealed shares; each client opens its shares and sends its masked input.
    server, downloads = server_step(server, run.receive(Round.SHARE_KEYS, uploads))
    uploads = run.step_clients(Round.MASKED_INPUT, downloads, inputs)
    started = time.perf_counter()
    server, downloads = server_step(server, run.receive(Round.MASKED_INPUT, uploads))
    server_s = time.perf_counter() - started
    if config.mode == ACTIVE:
        # Active mode: clients sign the survivor set, so all of them see the same one.
        uploads = run.step_clients(Round.CONSISTENCY_CHECK, downloads)
        server, downloads = server_step(server, run.receive(Round.CONSISTENCY_CHECK, uploads))
    # Unmasking: each client reveals one share per neighbour, the server removes the masks.
    uploads = run.step_clients(Round.UNMASKING, downloads)
    started = time.perf_counter()
    server, _ = server_step(server, run.receive(Round.UNMASKING, uploads))
    server_s += time.perf_counter() - started
    assert isinstance(server.result, ServerResult)
    return SessionResult(
        aggregate=server.result.aggregate,
        included=server.result.included,
        transcript=tuple(run.transcript),
        bytes_sent=dict(run.bytes_sent),
        client_errors=dict(run.errors),
        server_rejected=server.rejected,
        share_refusals=server.refusals,
        share_liars=server.share_liars,
        client_mask_s=dict(run.mask_seconds),
        server_unmask_s=server_s,
    )


class _Run:
    """The driver's bookkeeping: client states, dropouts, bytes, transcript."""

    def __init__(
        self,
        config: MaskingConfig,
        dropouts: Mapping[int, Round],
        identities: Mapping[int, SigningKey],
        random_bytes: RandomBytes,
        record_transcript: bool,
        tamper: Tamper | None,
    ) -> None:
        self.config = config
        self.dropouts = dropouts
        self.identities = identities
        self.random_bytes = random_bytes
        self.record = record_transcript
        self.tamper = tamper
        self.states: dict[int, ClientState] = {}
        self.errors: dict[int, SecAggError] = {}
        self.transcript: list[TranscriptEntry] = []
        self.bytes_sent = {"client_upload": 0, "client_download": 0}
        self.mask_seconds: dict[int, float] = {}

    def _active(self, client: int, round_: Round) -> bool:
        dropped = self.dropouts.get(client)
        return client not in self.errors and (dropped is None or round_ < dropped)

    def start_clients(self, context: bytes) -> dict[int, bytes]:
        uploads = {}
        for client in range(1, self.config.num_clients + 1):
            if self._active(client, Round.ADVERTISE_KEYS):
                state, message = client_start(
                    self.config, client, context=context,
                    identity=self.identities.get(client), random_bytes=self.random_bytes,
                )
                self.states[client] = state
                uploads[client] = message
        return uploads

    def step_clients(
        self, round_: Round, downloads: Mapping[int, bytes], inputs: Mapping[int, RingVector] | None = None
    ) -> dict[int, bytes]:
        uploads = {}
        for client, data in sorted(downloads.items()):
            data_in = self._in_flight(round_, "down", client, data)
            if data_in is None:
                continue
            self.bytes_sent["client_download"] += len(data_in)
            if not self._active(client, round_):
                continue
            try:
                started = time.perf_counter()
                self.states[client], uploads[client] = client_step(
                    self.states[client], data_in,
                    input_vector=None if inputs is None else np.asarray(inputs[client]),
                    identity=self.identities.get(client), random_bytes=self.random_bytes,
                )
                if round_ == Round.MASKED_INPUT:
                    self.mask_seconds[client] = time.perf_counter() - started
            except SecAggError as exc:
                self.errors[client] = exc  # an honest client aborts rather than reveal anything
        return uploads

    def receive(self, round_: Round, uploads: Mapping[int, bytes]) -> dict[int, bytes]:
        arrived = {}
        for client, data in uploads.items():
            data_out = self._in_flight(round_, "up", client, data)
            if data_out is None:
                continue
            self.bytes_sent["client_upload"] += len(data_out)
            arrived[client] = data_out
            if self.record:
                self.transcript.append(TranscriptEntry(round_, client, data_out))
        return arrived

    def _in_flight(self, round_: Round, direction: str, client: int, data: bytes) -> bytes | None:
        return data if self.tamper is None else self.tamper(round_, direction, client, data)
