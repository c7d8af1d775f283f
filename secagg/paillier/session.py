"""The in-memory driver: one packed-Paillier aggregation session, narrated step by step.

:func:`run_session` plays every role in one process (clients, server,
decrypting parties) and moves their messages as bytes, exactly as a transport
would. It is the reference for how the pieces fit::

    config = PaillierConfig(num_clients=10, vector_length=1000, value_bits=16)
    result = run_session(config, {k: vector_k for k in range(1, 11)}, dropouts={3: Stage.UPLOAD})
    result.aggregate      # exact int64 sum of the vectors of the included clients
    result.included       # frozenset of client ids

Hospitals 1..num_clients are the clients; in threshold mode they are also the
decrypting parties (hospital i holds key share i). In single-key mode a separate
key holder (party 1, not a hospital) decrypts aggregates only.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from secagg import wire
from secagg._validate import check_fields, require_instance, require_int, require_mapping
from secagg.descriptor import NO_DESCRIPTOR
from secagg.errors import ConfigurationError, ConfigurationTypeError, ThresholdError
from secagg.guarantee import Guarantee
from secagg.paillier._arguments import require_flag, require_random_bytes, require_workers
from secagg.paillier._compute import IN_PROCESS, Workers
from secagg.paillier.answer_journal import IN_MEMORY_ONLY
from secagg.paillier.ceremony import (
    SingleKeyMaterial,
    ThresholdKeyMaterial,
    deal_single_key,
    deal_threshold_key,
)
from secagg.paillier.encryption import Obfuscation
from secagg.paillier.keys import (
    DEFAULT_CONSTANT_TIME,
    DEFAULT_KEY_BITS,
    KeyShare,
    PrivateKey,
    check_key_bits,
    key_policy,
)
from secagg.paillier.packing import MAX_VALUES, SlotLayout
from secagg.paillier.parameters import (
    check_declared_colluders,
    default_contributors,
    default_threshold,
    threshold_guarantee,
)
from secagg.paillier.protocol import NO_OWN_UPLOAD, Client, DecryptingParty, Server, SessionParameters
from secagg.primitives.randomness import RandomBytes, system_random
from secagg.primitives.signing import SigningKey

__all__ = ["KeyMaterial", "Mode", "PaillierConfig", "PaillierResult", "Stage", "run_session"]

KeyMaterial = ThresholdKeyMaterial | SingleKeyMaterial
IntArray = npt.NDArray[np.int64]


class Mode(enum.Enum):
    """Who can decrypt: a threshold of hospitals, or one separate key holder."""

    THRESHOLD = "threshold"
    SINGLE_KEY = "single-key"


class Stage(enum.IntEnum):
    """When a hospital goes silent in a session.

    ``UPLOAD``: it never uploads (and, in threshold mode, never decrypts).
    ``DECRYPT``: it uploads, then sends no partial decryption; its vector still counts.
    """

    UPLOAD = 0
    DECRYPT = 1


@dataclass(frozen=True)
class PaillierConfig:
    """Parameters of packed-Paillier sessions among ``num_clients`` hospitals.

    Attributes:
        num_clients: hospitals (clients 1..num_clients); the packing layout
            leaves headroom for all of them.
        vector_length: values per vector.
        value_bits: bits of one signed value, range [-2^(b-1), 2^(b-1) - 1].
        key_bits: modulus size (>= 2048 unless ``allow_insecure_key_bits_for_testing``).
        mode: THRESHOLD (hospitals hold t-of-n shares) or SINGLE_KEY.
        threshold: t (1 in single-key mode); at least 2 in threshold mode (one share holder
            must never decrypt alone). Default (:func:`~secagg.paillier.parameters.default_threshold`):
            with ``colluders`` declared ``(num_clients + colluders) // 2 + 1``, the least t with
            2t > num_clients + colluders; else the active masking default's trade-off, the most
            colluders (up to a third) that still leave one dropout (40% from 20 hospitals on):
            5 hospitals 4-of-5 (c = 2, one dropout), 3 hospitals 2-of-3 (c = 0, one dropout).
        min_contributors: fewest uploads a party agrees to decrypt the sum of;
            default ``min(num_clients, max(2, t, colluders + 2))``; at least 2.
        colluders: c, the hospitals that may collude with the server (declared):
            refused unless t >= c + 1, 2t > num_clients + c (threshold mode: else two
            disjoint groups of share holders decrypt two sums that differ in one upload)
            and min_contributors >= c + 2. Default: none
            declared; the computed :attr:`guarantee` states what holds (at least c when declared).
        obfuscation: TEXTBOOK (r^n) or DJN (short exponent, fixed-base table).
        constant_time: decrypting parties exponentiate with their secret using GMP's
            side-channel-silent ``powmod_sec`` (the default,
            :data:`~secagg.paillier.keys.DEFAULT_CONSTANT_TIME`). ``constant_time=False`` opts out
            (a share's partial decryption about 1.4x faster at 2048 bits, the single key's about
            1.15x) and gives that up: ``powmod``'s sliding windows (and phe's CRT decryption) let an
            attacker co-located with a decrypting party learn bits of its secret through timing or
            cache side channels (docs/threat-model.md; docs/paillier.md, "Other limits").
        allow_insecure_key_bits_for_testing: accept keys down to 128 bits. Tests only.
    """

    num_clients: int
    vector_length: int
    value_bits: int = 16
    key_bits: int = DEFAULT_KEY_BITS
    mode: Mode = Mode.THRESHOLD
    threshold: int | None = None
    min_contributors: int | None = None
    colluders: int | None = None
    obfuscation: Obfuscation = Obfuscation.TEXTBOOK
    constant_time: bool = DEFAULT_CONSTANT_TIME
    allow_insecure_key_bits_for_testing: bool = False

    def __post_init__(self) -> None:
        check_fields(self, ints=("num_clients", "vector_length", "value_bits", "key_bits"),
                     optional_ints=("threshold", "min_contributors", "colluders"))
        for name in ("num_clients", "vector_length", "key_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name} must be a positive int, got {value!r}")
        require_int("vector_length", self.vector_length, 1, MAX_VALUES)
        require_flag("constant_time", self.constant_time)
        require_flag("allow_insecure_key_bits_for_testing", self.allow_insecure_key_bits_for_testing)
        if not isinstance(self.mode, Mode) or not isinstance(self.obfuscation, Obfuscation):
            raise ConfigurationError("mode must be a Mode and obfuscation an Obfuscation")
        check_key_bits(self.key_bits, insecure_for_testing=self.allow_insecure_key_bits_for_testing)
        if self.mode is Mode.SINGLE_KEY and self.threshold not in (None, 1):
            raise ConfigurationError("single-key mode has no threshold (it is 1)")
        if self.colluders is not None and (
            isinstance(self.colluders, bool) or not isinstance(self.colluders, int) or self.colluders < 0
        ):
            raise ConfigurationError(f"colluders must be a non-negative int, got {self.colluders!r}")
        lowest = 1 if self.mode is Mode.SINGLE_KEY else 2
        if not lowest <= self.decryption_threshold <= self.num_parties:
            raise ConfigurationError(
                f"threshold must be in {lowest}..{self.num_parties} (with t = 1 one share holder decrypts "
                f"alone), got {self.decryption_threshold}"
            )
        if not 2 <= self.contributors_needed <= self.num_clients:
            raise ConfigurationError(
                f"min_contributors must be in 2..{self.num_clients} (one upload would be decrypted alone), "
                f"got {self.contributors_needed}"
            )
        check_declared_colluders(
            self.num_parties, self.decryption_threshold, self.contributors_needed, self.colluders or 0,
            threshold_key=self.mode is Mode.THRESHOLD,
        )
        _ = self.layout  # validates value_bits against the key size

    @property
    def num_parties(self) -> int:
        """Decrypting parties: every hospital, or the one key holder."""
        return self.num_clients if self.mode is Mode.THRESHOLD else 1

    @property
    def decryption_threshold(self) -> int:
        """t after defaulting."""
        if self.mode is Mode.SINGLE_KEY:
            return 1
        if self.threshold is not None:
            return self.threshold
        return default_threshold(self.num_clients, self.colluders)

    @property
    def contributors_needed(self) -> int:
        """min_contributors after defaulting."""
        if self.min_contributors is not None:
            return self.min_contributors
        return default_contributors(self.num_clients, self.decryption_threshold, self.colluders)

    @property
    def guarantee(self) -> Guarantee:
        """What this configuration's sessions guarantee, before any key exists: the line their
        :attr:`SessionParameters.guarantee` prints (:func:`~secagg.paillier.parameters.threshold_guarantee`)."""
        return threshold_guarantee(
            self.num_parties, self.decryption_threshold, self.num_clients, self.contributors_needed,
            key_bits=self.key_bits,
        )

    @property
    def layout(self) -> SlotLayout:
        """The packing layout for (value_bits, num_clients, key_bits)."""
        return SlotLayout(self.value_bits, self.num_clients, self.key_bits)

    def deal(self, *, random_bytes: RandomBytes = system_random, workers: Workers = IN_PROCESS) -> KeyMaterial:
        """Run the key ceremony this configuration needs (see :mod:`secagg.paillier.ceremony`)."""
        insecure = self.allow_insecure_key_bits_for_testing
        if self.mode is Mode.SINGLE_KEY:
            return deal_single_key(self.key_bits, random_bytes=random_bytes, insecure_for_testing=insecure)
        return deal_threshold_key(
            self.key_bits,
            num_parties=self.num_parties,
            threshold=self.decryption_threshold,
            random_bytes=random_bytes,
            workers=workers,
            insecure_for_testing=insecure,
        )

    def check_material(self, material: KeyMaterial) -> None:
        """ConfigurationError unless ``material`` fits this configuration's mode, size and threshold."""
        public = material.public
        if (self.mode is Mode.SINGLE_KEY) != isinstance(material, SingleKeyMaterial):
            raise ConfigurationError(f"key material does not fit {self.mode.value} mode")
        if public.key.key_bits != self.key_bits:
            raise ConfigurationError(f"key has {public.key.key_bits} bits, the configuration says {self.key_bits}")
        if (public.num_parties, public.threshold) != (self.num_parties, self.decryption_threshold):
            raise ConfigurationError(
                f"key is {public.threshold}-of-{public.num_parties}, the configuration needs "
                f"{self.decryption_threshold}-of-{self.num_parties}"
            )


@dataclass(frozen=True)
class PaillierResult:
    """Outcome of one session.

    Attributes:
        aggregate: exact int64 sum of the included clients' vectors.
        included: clients whose vectors are in the sum.
        decrypting_parties: parties whose partial decryptions were combined.
        bytes_sent: total bytes sent per role ("clients", "server", "parties").
        bytes_per_client_upload: bytes of one client's upload.
        seconds: wall time per phase ("encrypt" summed over clients,
            "partial_decrypt" summed over parties, "combine").
    """

    aggregate: IntArray
    included: frozenset[int]
    decrypting_parties: frozenset[int]
    bytes_sent: dict[str, int]
    bytes_per_client_upload: float
    seconds: dict[str, float] = field(default_factory=dict)


def _check_arguments(
    config: PaillierConfig, inputs: Mapping[int, npt.ArrayLike], dropouts: Mapping[int, Stage] | None
) -> tuple[dict[int, Stage], dict[int, npt.NDArray[np.int64]]]:
    """run_session's arguments, checked: the dropout stages and the inputs as int64 arrays."""
    require_instance("config", config, PaillierConfig)
    require_mapping("inputs", inputs)
    stages = dict(require_mapping("dropouts", dropouts) if dropouts is not None else {})
    if any(c not in range(1, config.num_clients + 1) or not isinstance(s, Stage) for c, s in stages.items()):
        raise ConfigurationError("dropouts map client ids 1..num_clients to a Stage")
    return stages, _check_inputs(config, inputs)


def _check_inputs(config: PaillierConfig, inputs: Mapping[int, npt.ArrayLike]) -> dict[int, npt.NDArray[np.int64]]:
    expected = set(range(1, config.num_clients + 1))
    if set(inputs) != expected:
        raise ConfigurationError(f"inputs must be given for clients 1..{config.num_clients}, got {sorted(inputs)}")
    arrays = {}
    for client, values in inputs.items():
        try:
            array = np.asarray(values)
        except (TypeError, ValueError) as exc:  # ragged nesting, objects numpy cannot hold
            raise ConfigurationError(f"client {client}: input is not an integer array: {exc}") from exc
        if array.ndim != 1 or array.shape[0] != config.vector_length or array.dtype.kind not in "iu":
            raise ConfigurationError(f"client {client}: input must be a 1-D integer array of {config.vector_length}")
        arrays[client] = array.astype(np.int64)
    return arrays


def _identities(
    identities: Mapping[int, SigningKey] | None, roster: tuple[int, ...], random_bytes: RandomBytes
) -> dict[int, SigningKey]:
    """run_session's identity keys, checked (one SigningKey per roster client), or fresh ones."""
    if identities is None:
        return {c: SigningKey.generate(random_bytes) for c in roster}
    keys = dict(require_mapping("identities", identities))
    if set(keys) != set(roster) or not all(isinstance(key, SigningKey) for key in keys.values()):
        raise ConfigurationError(f"identities must map clients 1..{len(roster)} to their SigningKey")
    return keys


def run_session(
    config: PaillierConfig,
    inputs: Mapping[int, npt.ArrayLike],
    dropouts: Mapping[int, Stage] | None = None,
    *,
    key_material: KeyMaterial | None = None,
    context: bytes | None = None,
    descriptor: bytes = NO_DESCRIPTOR,
    identities: Mapping[int, SigningKey] | None = None,
    random_bytes: RandomBytes = system_random,
    workers: Workers = IN_PROCESS,
) -> PaillierResult:
    """Run one session in memory and return the exact aggregate.

    ``inputs`` maps every client 1..num_clients to its signed integer vector;
    ``dropouts`` maps a client to the :class:`Stage` at which it goes silent.
    ``key_material`` skips the ceremony (reuse one key for many sessions).
    ``identities`` are the hospitals' Ed25519 identity keys (uploads are signed);
    fresh ones are drawn from ``random_bytes`` when None. ``context`` (32 bytes)
    names the session and must never repeat under one key and roster; by
    default a fresh one is drawn from ``random_bytes``, so every call has its
    own session id. ``descriptor`` is the
    digest of the application's :class:`~secagg.descriptor.SessionDescriptor`.
    Raises ThresholdError if fewer than ``min_contributors`` upload or fewer
    than t decrypting parties answer; ConfigurationError for bad arguments.
    """
    stages, vectors = _check_arguments(config, inputs, dropouts)
    random_bytes, workers = require_random_bytes(random_bytes), require_workers(workers)
    if key_material is not None and not isinstance(key_material, (ThresholdKeyMaterial, SingleKeyMaterial)):
        raise ConfigurationTypeError(f"key_material must be key material, got {type(key_material).__name__}")
    roster = tuple(range(1, config.num_clients + 1))
    keys = _identities(identities, roster, random_bytes)
    if context is None:
        context = random_bytes(32)
    with key_policy(config.allow_insecure_key_bits_for_testing):
        # Step 0 (once, not per session): the key ceremony.
        material = key_material if key_material is not None else config.deal(random_bytes=random_bytes, workers=workers)
        config.check_material(material)
        # Step 1: everyone derives the same session parameters and session id.
        params = SessionParameters(
            public=material.public,
            layout=config.layout,
            vector_length=config.vector_length,
            roster=roster,
            min_contributors=config.contributors_needed,
            identity_keys=tuple(keys[c].public for c in roster),
            context=context,
            descriptor=descriptor,
        )
        server = Server(params, workers=workers)
        sent = {"clients": 0, "server": 0, "parties": 0}
        seconds = {"encrypt": 0.0, "partial_decrypt": 0.0, "combine": 0.0}
        upload_size = 0
        # Step 2: every client that does not drop at UPLOAD packs, encrypts and uploads.
        digests: dict[int, bytes] = {}
        for client, vector in vectors.items():
            if stages.get(client) is Stage.UPLOAD:
                continue
            started = time.perf_counter()
            sender = Client(
                params, client, keys[client], obfuscation=config.obfuscation, random_bytes=random_bytes, workers=workers
            )
            data = wire.encode(sender.upload(vector))
            seconds["encrypt"] += time.perf_counter() - started
            assert sender.upload_digest is not None
            digests[client] = sender.upload_digest
            upload_size = len(data)
            sent["clients"] += len(data)
            server.receive_upload(data)
        # Step 3: the server asks live decrypting parties, one after another, until t answered.
        answered: set[int] = set()
        for party in range(1, params.public.num_parties + 1):
            if len(answered) == params.public.threshold:
                break
            if config.mode is Mode.THRESHOLD and party in stages:
                continue  # a hospital that dropped (at any stage) sends no partial decryption
            request = wire.encode(server.decryption_request(party))
            sent["server"] += len(request)
            started = time.perf_counter()
            secret: KeyShare | PrivateKey = (
                material.private if isinstance(material, SingleKeyMaterial) else material.shares[party - 1]
            )
            # Every live hospital uploaded (one that dropped is skipped above); the single key holder sent none.
            own = digests[party] if config.mode is Mode.THRESHOLD else NO_OWN_UPLOAD
            # Built once per party for this one in-memory session, whose server is this driver: nothing
            # asks it again after it is gone, so its answer is kept in the object only, by name.
            decryptor = DecryptingParty(
                params, secret, own_upload=own, random_bytes=random_bytes, workers=workers,
                constant_time=config.constant_time, journal=IN_MEMORY_ONLY,
            )
            answer = wire.encode(decryptor.respond(request))
            seconds["partial_decrypt"] += time.perf_counter() - started
            sent["parties"] += len(answer)
            server.receive_partial(answer)
            answered.add(party)
        if len(answered) < params.public.threshold:
            raise ThresholdError(
                f"only {len(answered)} decrypting parties answered; {params.public.threshold} are needed"
            )
        # Step 4: the server combines t partial decryptions, unpacks and checks for overflow.
        started = time.perf_counter()
        aggregate = server.finish()
        seconds["combine"] = time.perf_counter() - started
    return PaillierResult(
        aggregate=aggregate,
        included=server.included,
        decrypting_parties=frozenset(answered),
        bytes_sent=sent,
        bytes_per_client_upload=float(upload_size),
        seconds=seconds,
    )
