"""Valid encodings and valid protocol states to fuzz from, all deterministic.

- :class:`MaskingRecording`: one honest masking session (all clients present),
  stepped through the pure state machines with ``InsecureDeterministicRandom``;
  it keeps, for every client phase and every server phase, the state just
  before the step and the honest inbound messages of that step.
- :func:`paillier_world`: a 256-bit 3-of-5 threshold key and a single key over
  fixed safe primes (test sizes: used inside ``insecure_key_sizes_for_testing``),
  a session of three signed uploads, a decryption request, a partial decryption
  and passphrase-protected secrets with a cheap scrypt cost.
- :func:`flower_messages` and :func:`descriptor_messages`: the Flower adapter's
  setup messages and the session descriptor.

Everything is built once per process (``functools.cache``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from secagg import wire
from secagg.descriptor import SessionDescriptor, encode_parameters
from secagg.encoding import QuantizationConfig
from secagg.integrations.flower.protocol import IdentityAnnouncement, PaillierSetup, PaillierUpload, RoundSetup
from secagg.masking import (
    ACTIVE,
    ClientPhase,
    ClientState,
    MaskingConfig,
    ServerPhase,
    ServerState,
    client_start,
    client_step,
    make_identities,
    server_start,
    server_step,
)
from secagg.masking.messages import ShareBundle
from secagg.paillier import (
    IN_MEMORY_ONLY,
    NO_OWN_UPLOAD,
    Client,
    DecryptingParty,
    DecryptionRequest,
    PartialDecryption,
    Server,
    SessionParameters,
    SingleKeyMaterial,
    SlotLayout,
    ThresholdKeyMaterial,
    deal_threshold_key_from_primes,
    insecure_key_sizes_for_testing,
    protect,
    single_key_from_primes,
)
from secagg.paillier.messages import EncryptedVector
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.primitives.signing import SigningKey

__all__ = [
    "BAD",
    "CONTEXT",
    "PASSPHRASE",
    "MaskingRecording",
    "PaillierWorld",
    "all_seeds",
    "descriptor_messages",
    "flower_messages",
    "masking_recording",
    "paillier_world",
]

BAD = 2
"""The client whose message the server-step targets replace."""
CONTEXT = bytes(range(32))
PASSPHRASE = "correct horse battery staple"
# 256-bit modulus from two 128-bit safe primes (tests/paillier/helpers.py).
P256, Q256 = 257677444273259825498918592161036850467, 277324266308887785437020978572338714063


# --- masking ----------------------------------------------------------------------


@dataclass
class MaskingRecording:
    """One honest session, kept phase by phase."""

    config: MaskingConfig
    identities: Mapping[int, SigningKey]
    inputs: dict[int, np.ndarray]
    client_states: dict[ClientPhase, dict[int, ClientState]] = field(default_factory=dict)
    client_inbound: dict[ClientPhase, dict[int, bytes]] = field(default_factory=dict)
    server_states: dict[ServerPhase, ServerState] = field(default_factory=dict)
    server_inbound: dict[ServerPhase, dict[int, bytes]] = field(default_factory=dict)
    extra: list[bytes] = field(default_factory=list)

    def messages(self) -> list[bytes]:
        """Every message of the session, client states and a share bundle."""
        out = [data for inbound in self.client_inbound.values() for data in inbound.values()]
        out += [data for inbound in self.server_inbound.values() for data in inbound.values()]
        out += [state.to_bytes() for states in self.client_states.values() for state in states.values()]
        return out + self.extra


MASKING_CONFIGS = ("semi", "harary", "active")


def _config(name: str) -> tuple[MaskingConfig, dict[int, SigningKey]]:
    if name == "semi":
        return MaskingConfig(num_clients=5, threshold=3, vector_length=6, mode="semi-honest"), {}
    if name == "harary":
        harary = MaskingConfig(
            num_clients=7, threshold=3, vector_length=6, graph="harary", degree=4, ring_bits=64, mode="semi-honest"
        )
        return harary, {}
    identities, public = make_identities(5, InsecureDeterministicRandom(77))
    return MaskingConfig(num_clients=5, threshold=3, vector_length=6, mode=ACTIVE, identity_keys=public), identities


@functools.cache
def masking_recording(name: str) -> MaskingRecording:
    """The honest session of the configuration ``name`` (``semi``, ``harary``, ``active``)."""
    config, identities = _config(name)
    random_bytes = InsecureDeterministicRandom(11)
    generator = np.random.default_rng(5)
    inputs = {
        c: generator.integers(0, config.ring.modulus, config.vector_length, dtype=config.ring.dtype)
        for c in range(1, config.num_clients + 1)
    }
    record = MaskingRecording(config, identities, inputs)
    states: dict[int, ClientState] = {}
    uploads: dict[int, bytes] = {}
    for client in range(1, config.num_clients + 1):
        states[client], uploads[client] = client_start(
            config, client, context=CONTEXT, identity=identities.get(client), random_bytes=random_bytes
        )
    server = server_start(config, context=CONTEXT)
    while server.phase != ServerPhase.DONE:
        record.server_states[server.phase] = server
        record.server_inbound[server.phase] = dict(uploads)
        server, downloads = server_step(server, uploads)
        uploads = {}
        for client, data in sorted(downloads.items()):
            phase = ClientPhase(states[client].phase)
            record.client_states.setdefault(phase, {})[client] = states[client]
            record.client_inbound.setdefault(phase, {})[client] = data
            states[client], uploads[client] = client_step(
                states[client], data, input_vector=inputs[client], identity=identities.get(client),
                random_bytes=random_bytes,
            )
    record.client_states[ClientPhase.DONE] = dict(states)
    assert server.result is not None and server.result.included == frozenset(inputs)
    bundle = ShareBundle(1, 2, (12345).to_bytes(33, "big"), (678).to_bytes(33, "big"))
    record.extra.append(wire.encode(bundle))
    return record


# --- Paillier ---------------------------------------------------------------------


@dataclass
class PaillierWorld:
    """A small (insecure, test-only) Paillier deployment and its valid messages."""

    material: ThresholdKeyMaterial
    single: SingleKeyMaterial
    params: SessionParameters
    identities: Mapping[int, SigningKey]
    uploads: dict[int, EncryptedVector]
    request: DecryptionRequest
    partial: PartialDecryption
    protected_share: bytes
    protected_private: bytes
    closed_server: Server

    def messages(self) -> list[bytes]:
        """Keys, uploads, request, partial and protected secrets, encoded."""
        items: list[wire.Message] = [
            self.material.public.key, self.material.public, self.material.shares[0], self.material.shares[4],
            self.single.public, self.single.private, *self.uploads.values(), self.request, self.partial,
        ]
        return [wire.encode(m) for m in items] + [self.protected_share, self.protected_private]


@functools.cache
def paillier_world() -> PaillierWorld:
    """Built inside ``insecure_key_sizes_for_testing`` (256-bit keys)."""
    with insecure_key_sizes_for_testing():
        material = deal_threshold_key_from_primes(
            P256, Q256, num_parties=5, threshold=3, random_bytes=InsecureDeterministicRandom(7)
        )
        single = single_key_from_primes(P256, Q256, random_bytes=InsecureDeterministicRandom(8))
        identities = {k: SigningKey.generate(InsecureDeterministicRandom(1000 + k)) for k in (1, 2, 3)}
        params = SessionParameters(
            public=material.public, layout=SlotLayout(16, 3, material.public.key.key_bits), vector_length=12,
            roster=(1, 2, 3), min_contributors=2, identity_keys=tuple(identities[k].public for k in (1, 2, 3)),
            context=CONTEXT,
        )
        uploads = {
            k: Client(params, k, identities[k], random_bytes=InsecureDeterministicRandom(k)).upload(
                np.arange(12) * k - 20
            )
            for k in (1, 2, 3)
        }
        server = Server(params)
        for upload in uploads.values():
            server.receive_upload(upload)
        request = server.decryption_request(1)
        party = DecryptingParty(
            params, material.shares[0], own_upload=NO_OWN_UPLOAD, random_bytes=InsecureDeterministicRandom(9),
            journal=IN_MEMORY_ONLY,
        )
        partial = party.respond(request)
        server.aggregate_ciphertexts()
        weak = {"scrypt_log_n": 10, "scrypt_r": 1, "allow_weak_kdf_for_testing": True}
        protected_share = protect(
            material.shares[0], PASSPHRASE, random_bytes=InsecureDeterministicRandom(3), **weak  # type: ignore[arg-type]
        )
        protected_private = protect(
            single.private, PASSPHRASE, random_bytes=InsecureDeterministicRandom(4), **weak  # type: ignore[arg-type]
        )
    return PaillierWorld(
        material, single, params, identities, uploads, request, partial, protected_share, protected_private, server
    )


# --- Flower adapter and descriptor --------------------------------------------------


RUN_ID = 31
NODE_IDS = (7, 42, 99, 1000, 5000)


@functools.cache
def flower_messages() -> list[bytes]:
    """RoundSetup, PaillierSetup, IdentityAnnouncement and PaillierUpload, valid."""
    quantization = QuantizationConfig(clip=1.0, bits=8, num_clients=5, ring_bits=32, max_weight=100)
    parameters = encode_parameters({"lr": 0.1, "local-epochs": 2, "name": "x", "flag": True, "blob": b"\x00"})
    masking, identities = _config("active")
    setup = RoundSetup.create(3, NODE_IDS, masking, quantization, "num-examples", bytes(range(32)), RUN_ID, parameters)
    world = paillier_world()
    identity = identities[1]
    with insecure_key_sizes_for_testing():
        paillier = PaillierSetup.create(
            3, NODE_IDS, world.material.public, 3, quantization, 7, "num-examples", bytes(32),
            [identities[k].public for k in range(1, 6)], parameters,
        )
    announcement = IdentityAnnouncement.create(identity, RUN_ID, NODE_IDS[0])
    upload = PaillierUpload(party=1, upload=world.uploads[1])
    semi = RoundSetup.create(3, NODE_IDS, _config("semi")[0], quantization, "w", bytes(32), RUN_ID)
    return [wire.encode(m) for m in (setup, semi, paillier, announcement, upload)]


@functools.cache
def descriptor_messages() -> list[bytes]:
    """Session descriptors with and without quantization and parameters."""
    q = QuantizationConfig(clip=0.5, bits=12, num_clients=10, ring_bits=64, max_weight=1000)
    return [
        wire.encode(SessionDescriptor.create(None)),
        wire.encode(SessionDescriptor.create(
            q, weight_key="num-examples", layout_digest=bytes(range(32)), model_digest=bytes(32), run_id=2**40,
            server_round=9, parameters={"lr": 0.01, "epochs": 3, "opt": "sgd", "nest": False, "raw": b"\xff"},
        )),
    ]


@functools.cache
def all_seeds() -> tuple[bytes, ...]:
    """Every valid encoding above (one corpus for the any-type decoder)."""
    seeds: list[bytes] = []
    for name in MASKING_CONFIGS:
        seeds += masking_recording(name).messages()
    seeds += paillier_world().messages() + flower_messages() + descriptor_messages()
    return tuple(dict.fromkeys(seeds))
