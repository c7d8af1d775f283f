"""Fuzz targets: every decoder and every stage entry point, as ``bytes -> None``.

A target may raise :class:`~secagg.errors.SecAggError` (the input was refused);
anything else escaping is a bug. :func:`run` applies that rule. Server-step
targets check more: the honest clients alone satisfy the threshold, so the
step must not raise at all, and the malicious client's message is either
accepted or recorded in ``state.rejected`` (:class:`RoundAborted` otherwise).

Targets, by name (``TARGETS``):

- ``decode_any``: :func:`secagg.wire.decode_any` on any bytes.
- ``decode:<Type>``: :func:`secagg.wire.decode` for each registered message type,
  then the accessors a receiver calls on the decoded value (config records,
  quantization, descriptor digest, key fingerprints, signatures); Paillier key
  types under both key-size policies.
- ``client_step:<config>:<phase>``: ``client_step`` of client 1 in each ClientPhase.
- ``client_state:<config>``: ``ClientState.from_bytes`` of mutated stored states,
  then a step with the message that state expected.
- ``server_step:<config>:<phase>``: ``server_step`` in each ServerPhase with the
  honest messages of every client but :data:`~.corpus.BAD` and fuzz bytes for it.
- ``paillier:receive_upload[_resigned]``, ``paillier:receive_partial``,
  ``paillier:respond[_resigned]``: the Paillier roles; ``_resigned`` re-signs a
  decodable mutated upload with its client's identity key (a malicious but
  enrolled hospital), so the fuzz reaches past the signature check.
- ``storage:unprotect``, ``storage:unprotect_resealed`` (mutated plaintexts sealed
  under the right passphrase), ``storage:load_key_share`` (files of any bytes),
  ``flower:read_public_key``, ``flower:read_trusted_keys``, ``flower:read_identity_key``,
  ``shamir:share_from_bytes``.
- ``flower:read_dp`` (a round's bound DP parameters, as a node reads them before it
  trains) and ``flower:parse_table`` (a round's clip table).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from secagg import wire
from secagg.descriptor import SessionDescriptor
from secagg.dp import DPConfig
from secagg.dp.encoding import calibrated, dp_scale, size_encoding
from secagg.encoding import QuantizationConfig
from secagg.errors import SecAggError
from secagg.integrations.flower.clipping import parse_table
from secagg.integrations.flower.dp import dp_parameters, read_dp
from secagg.integrations.flower.keys import load_key_share, read_identity_key, read_public_key, read_trusted_keys
from secagg.integrations.flower.protocol import IdentityAnnouncement, PaillierSetup, RoundSetup
from secagg.masking import ClientPhase, ServerPhase, client_step, server_step
from secagg.masking.client import ClientState
from secagg.paillier import (
    IN_MEMORY_ONLY,
    NO_OWN_UPLOAD,
    DecryptingParty,
    Server,
    insecure_key_sizes_for_testing,
    unprotect,
)
from secagg.paillier.keys import KeyShare, PrivateKey, PublicKey, ThresholdPublicKey
from secagg.paillier.messages import DecryptionRequest, EncryptedVector
from secagg.paillier.storage import ProtectedSecret, _derive
from secagg.primitives import aead, shamir
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.segments import Segment, SegmentTable

from . import corpus

__all__ = ["TARGETS", "RoundAborted", "Target", "run"]


class RoundAborted(AssertionError):  # noqa: N818 - a property violation, reported as a test failure
    """server_step raised (or lost the malicious client) although the honest clients suffice."""


@dataclass(frozen=True)
class Target:
    """A fuzz target: ``call(data)`` and the valid encodings to mutate (``seeds``)."""

    name: str
    call: Callable[[bytes], object]
    seeds: Callable[[], list[bytes]]
    donors: Callable[[], tuple[bytes, ...]] = corpus.all_seeds


def run(target: Target, data: bytes) -> None:
    """``target.call(data)``; the library's own errors are the allowed outcome."""
    with contextlib.suppress(SecAggError):
        target.call(data)


TARGETS: dict[str, Target] = {}


def _register(name: str, call: Callable[[bytes], object], seeds: Callable[[], list[bytes]]) -> None:
    TARGETS[name] = Target(name, call, functools.cache(seeds))


# --- decoders -----------------------------------------------------------------------


def _seeds_of(cls: type[wire.Message]) -> Callable[[], list[bytes]]:
    def seeds() -> list[bytes]:
        with insecure_key_sizes_for_testing():
            return [s for s in corpus.all_seeds() if wire.decode_any(s).__class__ is cls]

    return seeds


def _accessors(message: wire.Message) -> None:
    """What a receiver does with a freshly decoded message before protocol logic."""
    if isinstance(message, ClientState):
        message.masking_config  # noqa: B018 - validates the stored config record
        repr(message)
    elif isinstance(message, SessionDescriptor):
        message.digest()
    elif isinstance(message, RoundSetup):
        message.masking_config  # noqa: B018
        message.quantization  # noqa: B018
        message.weight_name  # noqa: B018
        message.bound_masking_config(corpus.RUN_ID)
        message.protocol_id(corpus.NODE_IDS[0])
    elif isinstance(message, PaillierSetup):
        message.quantization  # noqa: B018
        message.weight_name  # noqa: B018
        message.descriptor(corpus.RUN_ID).digest()
        with insecure_key_sizes_for_testing():
            message.session_parameters(corpus.paillier_world().material.public, corpus.CONTEXT, corpus.RUN_ID)
    elif isinstance(message, IdentityAnnouncement):
        message.verify(corpus.RUN_ID, corpus.NODE_IDS[0])
    elif isinstance(message, EncryptedVector):
        message.digest  # noqa: B018
    elif isinstance(message, (PublicKey, ThresholdPublicKey)):
        message.fingerprint  # noqa: B018
    elif isinstance(message, (KeyShare, PrivateKey)):
        repr(message)


def _decode_any(data: bytes) -> None:
    _accessors(wire.decode_any(data))


def _decoder(cls: type[wire.Message]) -> Callable[[bytes], None]:
    def call(data: bytes) -> None:
        _accessors(wire.decode(data, cls))
        with contextlib.suppress(SecAggError), insecure_key_sizes_for_testing():
            _accessors(wire.decode(data, cls))  # small keys reach the deeper key checks

    return call


def _register_decoders() -> None:
    _register("decode_any", _decode_any, lambda: list(corpus.all_seeds()))
    corpus.flower_messages()  # registers the Flower adapter's message types
    # The library's types only: other test modules register probe types with no corpus, and
    # whether they are registered yet depends on which test modules ran first.
    for cls in wire.message_types():
        if cls.__module__.startswith("secagg."):
            _register(f"decode:{cls.__name__}", _decoder(cls), _seeds_of(cls))


# --- masking client ---------------------------------------------------------------


def _client_step(config: str, phase: ClientPhase) -> Callable[[bytes], object]:
    def call(data: bytes) -> object:
        record = corpus.masking_recording(config)
        state = record.client_states[phase][1]
        return client_step(
            state, data, input_vector=record.inputs[1], identity=record.identities.get(1),
            random_bytes=InsecureDeterministicRandom(1),
        )

    return call


def _client_inbound(config: str, phase: ClientPhase) -> Callable[[], list[bytes]]:
    """Client 1's message of this phase (weighted up), then every other server -> client message."""

    def seeds() -> list[bytes]:
        record = corpus.masking_recording(config)
        own = record.client_inbound.get(phase, {}).get(1)
        others = [d for inbound in record.client_inbound.values() for d in inbound.values() if d != own]
        return ([own] * len(others) if own else []) + others

    return seeds


def _client_state(config: str) -> Callable[[bytes], object]:
    def call(data: bytes) -> object:
        record = corpus.masking_recording(config)
        state = ClientState.from_bytes(data)
        state.masking_config  # noqa: B018
        phase = ClientPhase(state.phase)
        inbound = record.client_inbound.get(phase, {}).get(state.client, b"")
        return client_step(
            state, inbound, input_vector=record.inputs.get(state.client, record.inputs[1]),
            identity=record.identities.get(state.client), random_bytes=InsecureDeterministicRandom(1),
        )

    return call


def _client_states(config: str) -> Callable[[], list[bytes]]:
    return lambda: [
        s.to_bytes() for states in corpus.masking_recording(config).client_states.values() for s in states.values()
    ]


# --- masking server ---------------------------------------------------------------


def server_round(config: str, phase: ServerPhase, data: bytes, sender: int = corpus.BAD) -> None:
    """One server step with honest messages from everyone but ``sender``, ``data`` from it.

    Raises :class:`RoundAborted` if the step raises anything (the honest clients
    satisfy the threshold) or if the message neither counts nor is recorded.
    """
    record = corpus.masking_recording(config)
    state = record.server_states[phase]
    inbound = {c: m for c, m in record.server_inbound[phase].items() if c != corpus.BAD}
    inbound[sender] = data
    try:
        new_state, _ = server_step(state, inbound)
    except Exception as exc:
        raise RoundAborted(
            f"server_step in {phase.name} ({config}) raised {type(exc).__name__}: {exc} "
            f"for one client's message {data[:64].hex()}..."
        ) from exc
    recorded = {client for client, _ in new_state.rejected[len(state.rejected):]}
    if sender not in recorded and not _counted(new_state, phase, sender):
        raise RoundAborted(f"server_step in {phase.name} ({config}): client {sender}'s message was silently lost")


def _counted(state: object, phase: ServerPhase, client: int) -> bool:
    if phase == ServerPhase.COLLECT_KEYS:
        return client in state.roster  # type: ignore[attr-defined]
    if phase == ServerPhase.COLLECT_SHARES:
        return client in state.shared  # type: ignore[attr-defined]
    if phase == ServerPhase.COLLECT_MASKED:
        return client in state.survivors  # type: ignore[attr-defined]
    if phase == ServerPhase.COLLECT_CONSISTENCY:
        return client in {s.client for s in state.signers}  # type: ignore[attr-defined]
    return True  # an accepted unmask response is used (or its liar recorded)


def _server_step(config: str, phase: ServerPhase) -> Callable[[bytes], object]:
    return lambda data: server_round(config, phase, data)


def _server_seeds(config: str, phase: ServerPhase) -> Callable[[], list[bytes]]:
    def seeds() -> list[bytes]:
        record = corpus.masking_recording(config)
        own = record.server_inbound[phase][corpus.BAD]
        others = [d for p, inbound in record.server_inbound.items() for d in inbound.values() if d != own]
        return [own] * len(others) + others

    return seeds


def _register_masking() -> None:
    for config in corpus.MASKING_CONFIGS:
        active = config == "active"
        for phase in ClientPhase:
            if phase == ClientPhase.AWAIT_SURVIVORS and not active:
                continue
            _register(f"client_step:{config}:{phase.name}", _client_step(config, phase), _client_inbound(config, phase))
        _register(f"client_state:{config}", _client_state(config), _client_states(config))
        for server_phase in ServerPhase:
            if server_phase == ServerPhase.DONE or (server_phase == ServerPhase.COLLECT_CONSISTENCY and not active):
                continue
            _register(
                f"server_step:{config}:{server_phase.name}", _server_step(config, server_phase),
                _server_seeds(config, server_phase),
            )


# --- Paillier roles -----------------------------------------------------------------


@contextlib.contextmanager
def _small_keys() -> Iterator[None]:
    with insecure_key_sizes_for_testing():
        yield


def _fresh_server() -> Server:
    """A server holding the uploads of clients 1 and 2, still open."""
    world = corpus.paillier_world()
    server = Server(world.params)
    for client in (1, 2):
        server.receive_upload(world.uploads[client])
    return server


def _closed_server() -> Server:
    """A copy of the closed server that asked for partial decryptions (none received)."""
    server = copy.copy(corpus.paillier_world().closed_server)
    server._partials = {}
    return server


def _resign(upload: EncryptedVector) -> EncryptedVector:
    identity = corpus.paillier_world().identities.get(upload.client)
    if identity is None:
        return upload
    return dataclasses.replace(upload, signature=identity.sign(upload.payload))


def _receive_upload(data: bytes) -> None:
    with _small_keys():
        _fresh_server().receive_upload(data)


def _receive_upload_resigned(data: bytes) -> None:
    with _small_keys():
        _fresh_server().receive_upload(wire.encode(_resign(wire.decode(data, EncryptedVector))))


def _receive_partial(data: bytes) -> None:
    with _small_keys():
        _closed_server().receive_partial(data)


def _party() -> DecryptingParty:
    world = corpus.paillier_world()
    return DecryptingParty(
        world.params, world.material.shares[0], own_upload=NO_OWN_UPLOAD, random_bytes=InsecureDeterministicRandom(9),
        journal=IN_MEMORY_ONLY,
    )


def _respond(data: bytes) -> None:
    with _small_keys():
        _party().respond(data)


def _respond_resigned(data: bytes) -> None:
    with _small_keys():
        request = wire.decode(data, DecryptionRequest)
        request = dataclasses.replace(request, uploads=tuple(_resign(u) for u in request.uploads))
        _party().respond(wire.encode(request))


def _paillier_seeds(kind: str) -> Callable[[], list[bytes]]:
    """The role's own message (weighted up), then the other Paillier messages."""

    def seeds() -> list[bytes]:
        world = corpus.paillier_world()
        own = {
            "upload": [wire.encode(world.uploads[3])], "request": [wire.encode(world.request)],
            "partial": [wire.encode(world.partial)],
        }[kind]
        return own * 4 + [m for m in world.messages() if m not in own]

    return seeds


# --- storage and key files ---------------------------------------------------------


def _unprotect(data: bytes) -> None:
    with _small_keys():
        box = wire.decode(data, ProtectedSecret)
        if box.scrypt_memory > 1 << 21:
            return  # a legal but costly header (up to 256 MiB of scrypt): decoded, not derived, here
        unprotect(data, corpus.PASSPHRASE)


@functools.cache
def _seal_key() -> tuple[ProtectedSecret, bytes]:
    header = wire.decode(corpus.paillier_world().protected_share, ProtectedSecret)
    return header, _derive(corpus.PASSPHRASE, header)


def _unprotect_resealed(data: bytes) -> None:
    """``data`` is the plaintext: sealed correctly, so unprotect's inner decoding sees it."""
    header, key = _seal_key()
    sealed = aead.seal(key, data, header.associated_data, InsecureDeterministicRandom(len(data)))
    with _small_keys():
        unprotect(wire.encode(dataclasses.replace(header, sealed=sealed)), corpus.PASSPHRASE)


def _key_plaintexts() -> list[bytes]:
    world = corpus.paillier_world()
    return [wire.encode(world.material.shares[1]), wire.encode(world.single.private)]


_TMP = tempfile.mkdtemp(prefix="secagg-fuzz-")


def _in_file(data: bytes) -> Path:
    path = Path(_TMP) / f"input-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


def _load_key_share(data: bytes) -> None:
    with _small_keys():
        box = wire.decode(data, ProtectedSecret)
        if box.scrypt_memory <= 1 << 21:
            load_key_share(_in_file(data), corpus.PASSPHRASE)


def _read_public_key(data: bytes) -> None:
    with _small_keys():
        read_public_key(_in_file(data))


def _read_trusted_keys(data: bytes) -> None:
    read_trusted_keys(_in_file(data))


def _read_identity_key(data: bytes) -> None:
    read_identity_key(_in_file(data))


def _text_key_seeds() -> list[bytes]:
    world = corpus.paillier_world()
    keys = [i.public.hex().encode() for i in world.identities.values()]
    return [b"\n".join(keys) + b"\n", b"# trusted\n\n" + keys[0] + b"\n", world.identities[1].seed.hex().encode()]


def _share_from_bytes(data: bytes) -> None:
    shamir.Share.from_bytes(data)


_DP_NODES = 5


@functools.cache
def _dp_world() -> tuple[bytes, QuantizationConfig]:
    """A round's bound DP bytes for 5 nodes (h = 2, dimension 17) and the quantization they are read with."""
    config = DPConfig(epsilon=2.0, delta=1e-5, rounds=2, l2_clip=1.0, min_honest=2)
    plan = calibrated(config, _DP_NODES, dp_scale(config.l2_clip, 17), 17)
    quantization, _ = size_encoding(plan, num_clients=_DP_NODES, max_samples_per_client=16)
    return dp_parameters(plan), quantization


def _read_dp(data: bytes) -> None:
    _, quantization = _dp_world()
    read_dp(data, quantization, _DP_NODES)


def _table_seeds() -> list[bytes]:
    return [
        SegmentTable((Segment("arrays/w", 12, 0.5, False), Segment("arrays/steps", 2, None, True))).describe(),
        SegmentTable.flat(16, 0.5).describe(),
    ]


def _register_paillier_and_storage() -> None:
    _register("paillier:receive_upload", _receive_upload, _paillier_seeds("upload"))
    _register("paillier:receive_upload_resigned", _receive_upload_resigned, _paillier_seeds("upload"))
    _register("paillier:receive_partial", _receive_partial, _paillier_seeds("partial"))
    _register("paillier:respond", _respond, _paillier_seeds("request"))
    _register("paillier:respond_resigned", _respond_resigned, _paillier_seeds("request"))
    protected = lambda: [corpus.paillier_world().protected_share, corpus.paillier_world().protected_private]  # noqa: E731
    _register("storage:unprotect", _unprotect, protected)
    _register("storage:unprotect_resealed", _unprotect_resealed, _key_plaintexts)
    _register("storage:load_key_share", _load_key_share, protected)
    public = lambda: [wire.encode(corpus.paillier_world().material.public)]  # noqa: E731
    _register("flower:read_public_key", _read_public_key, public)
    _register("flower:read_trusted_keys", _read_trusted_keys, _text_key_seeds)
    _register("flower:read_identity_key", _read_identity_key, _text_key_seeds)
    _register("shamir:share_from_bytes", _share_from_bytes, lambda: [shamir.Share(3, 12345).to_bytes()])
    _register("flower:read_dp", _read_dp, lambda: [_dp_world()[0]])
    _register("flower:parse_table", parse_table, _table_seeds)


_register_decoders()
_register_masking()
_register_paillier_and_storage()
