"""The masking protocol's configuration, validated at setup.

A :class:`MaskingConfig` fixes everything the clients and the server must agree
on before keys are generated. Unsafe or infeasible settings are refused here,
with a message that says what would be safe, never discovered mid-round.

- ``complete`` graph (SecAgg, Bonawitz et al. 2017): every client is a
  neighbour of every other; degree k = n - 1.
- ``harary`` graph (SecAgg+, Bell et al. 2020): each client has k neighbours on
  a randomly permuted Harary graph; k and t follow from n, the assumed corrupt
  and dropout fractions, 2^-40 security and 2^-20 failure probability
  (:mod:`secagg.masking.parameters`).

t is the Shamir threshold *within a neighbourhood*: a client's secrets are
shared among its k neighbours, and any t of them recover each secret.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import ClassVar

from secagg import wire
from secagg._validate import check_fields, require_finite, require_int
from secagg.errors import ConfigurationError
from secagg.masking.parameters import corrupt_count, corrupt_neighbour_bound, derive_secagg_plus
from secagg.primitives.signing import PUBLIC_KEY_SIZE
from secagg.ring import Ring
from secagg.wire import U8, U32, FixedBytes, ListOf, wire_field

__all__ = ["ACTIVE", "COMPLETE", "HARARY", "SEMI_HONEST", "ConfigRecord", "MaskingConfig"]

COMPLETE = "complete"
HARARY = "harary"
SEMI_HONEST = "semi-honest"
ACTIVE = "active"
_GRAPH_CODES = {COMPLETE: 0, HARARY: 1}
_MODE_CODES = {SEMI_HONEST: 0, ACTIVE: 1}
MAX_CLIENTS = 1 << 16


@dataclass(frozen=True)
class ConfigRecord(wire.WireStruct):
    """The operative parameters in wire form; their hash is the config digest."""

    num_clients: int = wire_field(U32)
    threshold: int = wire_field(U32)
    degree: int = wire_field(U32)
    vector_length: int = wire_field(U32)
    graph: int = wire_field(U8)
    mode: int = wire_field(U8)
    ring_bits: int = wire_field(U8)
    identity_keys: tuple[bytes, ...] = wire_field(ListOf(FixedBytes(PUBLIC_KEY_SIZE), MAX_CLIENTS))


@dataclass(frozen=True)
class MaskingConfig:
    """Parameters of one masking aggregation, shared by all parties.

    Attributes:
        num_clients: n, the clients on the roster, with ids 1..n.
        threshold: t, the Shamir threshold within each neighbourhood.
        vector_length: d, the length of every input vector.
        graph: ``"complete"`` (SecAgg) or ``"harary"`` (SecAgg+).
        degree: k, neighbours per client (n - 1 for the complete graph; even for harary).
        ring_bits: 32 (default) or 64: inputs and sums live in Z_(2^ring_bits).
        mode: ``"semi-honest"`` or ``"active"`` (signed keys and a ConsistencyCheck round).
        identity_keys: active mode: the Ed25519 public key of client i at index i - 1,
            distributed out of band (a PKI the server does not control).
        corrupt_fraction: gamma, the assumed fraction of clients colluding with the server.
        dropout_fraction: delta, the assumed fraction of clients that drop out.
    """

    num_clients: int
    threshold: int
    vector_length: int
    graph: str = COMPLETE
    degree: int = 0
    ring_bits: int = 32
    mode: str = SEMI_HONEST
    identity_keys: tuple[bytes, ...] = field(default=(), repr=False)
    corrupt_fraction: float = 0.0
    dropout_fraction: float = 0.0

    ROUNDS_SEMI_HONEST: ClassVar[int] = 4
    ROUNDS_ACTIVE: ClassVar[int] = 5

    def __post_init__(self) -> None:
        check_fields(
            self,
            ints=("num_clients", "threshold", "vector_length", "degree", "ring_bits"),
            reals=("corrupt_fraction", "dropout_fraction"),
            byte_tuples=("identity_keys",),
        )
        n = self.num_clients
        if not 3 <= n <= MAX_CLIENTS:
            raise ConfigurationError(f"num_clients must be in 3..{MAX_CLIENTS}, got {n}")
        if self.graph not in _GRAPH_CODES:
            raise ConfigurationError(f"graph must be 'complete' or 'harary', got {self.graph!r}")
        if self.mode not in _MODE_CODES:
            raise ConfigurationError(f"mode must be 'semi-honest' or 'active', got {self.mode!r}")
        Ring(self.ring_bits)
        if not 1 <= self.vector_length < 1 << 32:
            raise ConfigurationError(f"vector_length must be in 1..2^32-1, got {self.vector_length}")
        for name, value in (("corrupt_fraction", self.corrupt_fraction), ("dropout_fraction", self.dropout_fraction)):
            if not 0.0 <= value < 1.0:
                raise ConfigurationError(f"{name} must be in [0, 1), got {value}")
        if self.graph == COMPLETE and self.degree not in (0, n - 1):
            raise ConfigurationError(f"the complete graph has degree n - 1 = {n - 1}, got {self.degree}")
        if self.graph == COMPLETE:
            object.__setattr__(self, "degree", n - 1)
        self._check_degree()
        self._check_threshold()
        self._check_identities()

    def _check_degree(self) -> None:
        k, n = self.degree, self.num_clients
        if self.graph == HARARY and not (2 <= k <= n - 1 and k % 2 == 0):
            raise ConfigurationError(f"harary degree must be even and in 2..n-1 = {n - 1}, got {k}")

    def _check_threshold(self) -> None:
        k, t = self.degree, self.threshold
        if not 2 <= t <= k:
            raise ConfigurationError(
                f"threshold must be in 2..{k} (the degree): t = 1 would let any one neighbour "
                f"reveal a client's secrets, got t = {t}"
            )
        corrupt = self.corrupt_neighbours
        if t <= corrupt:
            raise ConfigurationError(
                f"threshold {t} is unsafe: {corrupt} corrupt neighbours (corrupt_fraction "
                f"{self.corrupt_fraction}) could reconstruct a client's secrets; use t >= {corrupt + 1}"
            )
        # Active mode: two disjoint groups of t responders must be impossible, or a
        # lying server could collect both shares of one client from the two groups.
        span = self.num_clients if self.graph == COMPLETE else k
        if self.mode == ACTIVE and 2 * t <= span + corrupt:
            name = "n" if self.graph == COMPLETE else "k"
            raise ConfigurationError(
                f"threshold {t} is unsafe in active mode: need t > ({name} + corrupt)/2 = "
                f"{(span + corrupt) / 2}, i.e. t >= {(span + corrupt) // 2 + 1}"
            )

    def _check_identities(self) -> None:
        if self.mode == SEMI_HONEST and self.identity_keys:
            raise ConfigurationError("identity_keys are only used in active mode")
        if self.mode == ACTIVE:
            if len(self.identity_keys) != self.num_clients:
                raise ConfigurationError(
                    f"active mode needs one Ed25519 identity key per client ({self.num_clients}), "
                    f"got {len(self.identity_keys)}"
                )
            if any(len(key) != PUBLIC_KEY_SIZE for key in self.identity_keys):
                raise ConfigurationError(f"identity keys must be {PUBLIC_KEY_SIZE}-byte Ed25519 public keys")

    @property
    def corrupt_neighbours(self) -> int:
        """Corrupt clients a neighbourhood may hold: ceil(gamma * n) on the complete
        graph; on a Harary graph the count exceeded with probability below 2^-41/n
        (:func:`~secagg.masking.parameters.corrupt_neighbour_bound`)."""
        if self.graph == COMPLETE:
            return corrupt_count(self.num_clients, self.corrupt_fraction)
        return corrupt_neighbour_bound(self.num_clients, self.degree, self.corrupt_fraction)

    @property
    def ring(self) -> Ring:
        """The ring the inputs and the aggregate live in."""
        return Ring(self.ring_bits)

    @property
    def rounds(self) -> int:
        """Number of protocol rounds (ConsistencyCheck only in active mode)."""
        return self.ROUNDS_ACTIVE if self.mode == ACTIVE else self.ROUNDS_SEMI_HONEST

    def record(self) -> ConfigRecord:
        """The operative parameters as a wire struct."""
        return ConfigRecord(
            num_clients=self.num_clients,
            threshold=self.threshold,
            degree=self.degree,
            vector_length=self.vector_length,
            graph=_GRAPH_CODES[self.graph],
            mode=_MODE_CODES[self.mode],
            ring_bits=self.ring_bits,
            identity_keys=self.identity_keys,
        )

    def digest(self) -> bytes:
        """SHA-256 of ``b"secagg/v1/config" || record``: what every party agrees on."""
        out: wire.Parts = [b"secagg/v1/config"]
        self.record()._encode_body(out)
        return hashlib.sha256(b"".join(out)).digest()

    @classmethod
    def from_record(cls, record: ConfigRecord) -> MaskingConfig:
        """Rebuild a config from its wire record (validating it again)."""
        graphs = {code: name for name, code in _GRAPH_CODES.items()}
        modes = {code: name for name, code in _MODE_CODES.items()}
        if record.graph not in graphs or record.mode not in modes:
            raise ConfigurationError("unknown graph or mode code in config record")
        return cls(
            num_clients=record.num_clients,
            threshold=record.threshold,
            vector_length=record.vector_length,
            graph=graphs[record.graph],
            degree=record.degree,
            ring_bits=record.ring_bits,
            mode=modes[record.mode],
            identity_keys=record.identity_keys,
        )

    @classmethod
    def secagg(
        cls,
        num_clients: int,
        vector_length: int,
        *,
        threshold: int | None = None,
        ring_bits: int = 32,
        mode: str = SEMI_HONEST,
        identity_keys: tuple[bytes, ...] = (),
        corrupt_fraction: float = 0.0,
        dropout_fraction: float = 0.0,
    ) -> MaskingConfig:
        """SecAgg on the complete graph.

        Default threshold: a majority of the n - 1 neighbours (and more than the
        corrupt clients) in semi-honest mode, ``floor((n + corrupt) / 2) + 1`` in
        active mode; at least 2.
        """
        num_clients = require_int("num_clients", num_clients)
        corrupt_fraction = require_finite("corrupt_fraction", corrupt_fraction)
        corrupt = corrupt_count(num_clients, corrupt_fraction)
        if threshold is None:
            span = num_clients + corrupt if mode == ACTIVE else num_clients - 1
            threshold = max(2, span // 2 + 1, corrupt + 1)
        return cls(
            num_clients=num_clients,
            threshold=threshold,
            vector_length=vector_length,
            graph=COMPLETE,
            ring_bits=ring_bits,
            mode=mode,
            identity_keys=identity_keys,
            corrupt_fraction=corrupt_fraction,
            dropout_fraction=dropout_fraction,
        )

    @classmethod
    def secagg_plus(
        cls,
        num_clients: int,
        vector_length: int,
        *,
        corrupt_fraction: float = 0.05,
        dropout_fraction: float = 0.1,
        ring_bits: int = 32,
        mode: str = SEMI_HONEST,
        identity_keys: tuple[bytes, ...] = (),
    ) -> MaskingConfig:
        """SecAgg+ on a Harary graph with k and t derived from n and the fractions.

        Raises ConfigurationError if no (k, t) reaches 2^-40 security and 2^-20
        failure probability for these fractions. Where no sparse graph qualifies
        (small n) this is SecAgg on the complete graph, as in production SecAgg+.
        """
        num_clients = require_int("num_clients", num_clients)
        corrupt_fraction = require_finite("corrupt_fraction", corrupt_fraction)
        dropout_fraction = require_finite("dropout_fraction", dropout_fraction)
        params = derive_secagg_plus(num_clients, corrupt_fraction, dropout_fraction, active=mode == ACTIVE)
        graph = COMPLETE if params.complete else HARARY
        return cls(
            num_clients=num_clients,
            threshold=params.threshold,
            vector_length=vector_length,
            graph=graph,
            degree=params.degree if graph == HARARY else 0,
            ring_bits=ring_bits,
            mode=mode,
            identity_keys=identity_keys,
            corrupt_fraction=corrupt_fraction,
            dropout_fraction=dropout_fraction,
        )
