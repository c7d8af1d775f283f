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
shared among its k neighbours, and any t of them recover each secret. On the
complete graph a client also keeps a share of its own self-mask seed (index =
its own id), which it reveals only in its own unmask response as a survivor
(:attr:`MaskingConfig.self_share`): a survivor's seed then has t live holders
as long as t clients answer, so n - t dropouts (not n - 1 - t) are survived.

The graph and mode names and the wire record are in :mod:`secagg.masking.config_record`,
the safety rules in :mod:`secagg.masking.config_checks`, and the constructors that choose
the parameters (:meth:`MaskingConfig.secagg`, :meth:`MaskingConfig.secagg_plus`) in
:mod:`secagg.masking.config_choice`; this module holds the config itself: its fields,
their validation and what follows from them (guarantee, ring, record, digest).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import ClassVar

from secagg import wire
from secagg._validate import check_fields
from secagg.descriptor import DESCRIPTOR_DIGEST_SIZE, NO_DESCRIPTOR
from secagg.errors import ConfigurationError
from secagg.guarantee import Guarantee
from secagg.masking.config_checks import check_degree, check_dropouts, check_identities, check_threshold
from secagg.masking.config_choice import choose_mode, secagg_config, secagg_plus_config
from secagg.masking.config_record import (
    ACTIVE,
    COMPLETE,
    GRAPH_CODES,
    HARARY,
    MAX_CLIENTS,
    MODE_CODES,
    SEMI_HONEST,
    ConfigRecord,
    config_from_record,
    config_to_record,
)
from secagg.masking.parameters import (
    SECURITY_PARAMETER,
    complete_guarantee,
    corrupt_count,
    corrupt_neighbour_bound,
    dropout_count,
)
from secagg.ring import NarrowRing

# The vocabulary and the wire record live in config_record; re-exported for existing imports.
# choose_mode lives in config_choice; re-exported for existing imports.
__all__ = ["ACTIVE", "COMPLETE", "HARARY", "MAX_CLIENTS", "SEMI_HONEST", "ConfigRecord", "MaskingConfig", "choose_mode"]


@dataclass(frozen=True)
class MaskingConfig:
    """Parameters of one masking aggregation, shared by all parties.

    Attributes:
        num_clients: n, the clients on the roster, with ids 1..n.
        threshold: t, the Shamir threshold within each neighbourhood.
        vector_length: d, the length of every input vector.
        graph: ``"complete"`` (SecAgg) or ``"harary"`` (SecAgg+).
        degree: k, neighbours per client (n - 1 for the complete graph; even for harary).
        ring_bits: b in 8..64 (default 32): inputs and sums live in Z_(2^b); masked
            inputs travel bit-packed, b bits per coordinate.
        mode: ``"active"`` (the default: signed keys and a ConsistencyCheck round, which needs
            ``identity_keys``) or ``"semi-honest"``, by name (an honest-but-curious server only).
        identity_keys: active mode: the Ed25519 public key of client i at index i - 1,
            distributed out of band (a PKI the server does not control).
        corrupt_fraction: gamma, the assumed fraction of clients colluding with the server:
            ``ceil(gamma n)`` clients on the complete graph, ``floor(gamma n)`` on a Harary graph.
        dropout_fraction: delta, the assumed fraction of clients that drop out over the
            whole session (all four stages together); refused if t cannot tolerate
            ``floor(delta n)`` dropouts. The constructors :meth:`secagg` and
            :meth:`secagg_plus` also take it per round (``dropout_per_round``).
        descriptor: the 32-byte digest of the application's
            :class:`~secagg.descriptor.SessionDescriptor` (quantization, layout, model,
            round, training parameters); part of the record, hence of the session id
            and of what active-mode clients sign. :data:`~secagg.descriptor.NO_DESCRIPTOR`
            (the default) for raw ring vectors: it binds no encoding, so an application that
            quantizes and leaves it out gives up the split-setup protection for its clip, bits
            and weights (docs/masking.md).
    """

    num_clients: int
    threshold: int
    vector_length: int
    graph: str = COMPLETE
    degree: int = 0
    ring_bits: int = 32
    mode: str = ACTIVE
    identity_keys: tuple[bytes, ...] = field(default=(), repr=False)
    corrupt_fraction: float = 0.0
    dropout_fraction: float = 0.0
    descriptor: bytes = field(default=NO_DESCRIPTOR, repr=False)

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
        if self.graph not in GRAPH_CODES:
            raise ConfigurationError(f"graph must be 'complete' or 'harary', got {self.graph!r}")
        if self.mode not in MODE_CODES:
            raise ConfigurationError(f"mode must be 'semi-honest' or 'active', got {self.mode!r}")
        NarrowRing(self.ring_bits)
        if not 1 <= self.vector_length < 1 << 32:
            raise ConfigurationError(f"vector_length must be in 1..2^32-1, got {self.vector_length}")
        for name, value in (("corrupt_fraction", self.corrupt_fraction), ("dropout_fraction", self.dropout_fraction)):
            if not 0.0 <= value < 1.0:
                raise ConfigurationError(f"{name} must be in [0, 1), got {value}")
        if self.graph == COMPLETE and self.degree not in (0, n - 1):
            raise ConfigurationError(f"the complete graph has degree n - 1 = {n - 1}, got {self.degree}")
        if self.graph == COMPLETE:
            object.__setattr__(self, "degree", n - 1)
        if not isinstance(self.descriptor, bytes) or len(self.descriptor) != DESCRIPTOR_DIGEST_SIZE:
            raise ConfigurationError(f"descriptor must be a {DESCRIPTOR_DIGEST_SIZE}-byte digest")
        self._check_degree()
        self._check_threshold()
        self._check_dropouts()
        self._check_identities()

    # The safety rules (secagg.masking.config_checks), bound as methods.
    _check_degree = check_degree
    _check_threshold = check_threshold
    _check_dropouts = check_dropouts
    _check_identities = check_identities

    @property
    def corrupt_neighbours(self) -> int:
        """Corrupt clients a neighbourhood may hold: ceil(gamma * n) on the complete
        graph; on a Harary graph the count a uniformly random client's neighbourhood exceeds with
        probability below 2^-41/n, so all n exceed it with probability below 2^-41
        (:func:`~secagg.masking.parameters.corrupt_neighbour_bound`)."""
        if self.graph == COMPLETE:
            return corrupt_count(self.num_clients, self.corrupt_fraction)
        return corrupt_neighbour_bound(self.num_clients, self.degree, self.corrupt_fraction)

    @property
    def holders(self) -> int:
        """Other clients holding shares of one client's secrets: n - 1 (complete) or k (Harary)."""
        return self.num_clients - 1 if self.graph == COMPLETE else self.degree

    @property
    def self_share(self) -> bool:
        """True on the complete graph: each client also holds a share of its own self-mask
        seed at its own index, revealed only by itself as a survivor (spec 12.8).

        Not on a Harary graph: there the completion guarantee is a tail bound over the
        neighbours that survive (a client that drops at Unmasking still needs t live
        neighbours), which the self-held share would not improve, while in active mode it
        would cost one more in 2t > k + corrupt neighbours (docs/threat-model.md)."""
        return self.graph == COMPLETE

    @property
    def colluders(self) -> int:
        """c as declared: ``ceil(gamma n)`` (complete graph) or ``floor(gamma n)`` (Harary)."""
        if self.graph == COMPLETE:
            return corrupt_count(self.num_clients, self.corrupt_fraction)
        return dropout_count(self.num_clients, self.corrupt_fraction)

    @property
    def guarantee(self) -> Guarantee:
        """What this configuration protects against and how many dropouts it survives.

        Complete graph, computed from t (:func:`~secagg.masking.parameters.complete_guarantee`):
        semi-honest, c = t - 2 (a session may complete with t inputs, and c < t
        holders reconstruct nothing); active, ``c = min(t - 2, 2t - n - 1)`` (the
        largest c with 2t > n + c, the own seed share counted); d = n - t (a survivor's
        seed has t live holders, itself included).
        Harary graph: the declared c = floor(gamma n) and d = floor(delta n),
        except with probability 2^-40 (privacy) and 2^-20 (completion).
        """
        t, lying = self.threshold, self.mode == ACTIVE
        if self.graph == COMPLETE:
            colluders, dropouts = complete_guarantee(self.num_clients, t, lying)
            return Guarantee(colluders, dropouts, lying_server=lying)
        return Guarantee(
            self.colluders,
            dropout_count(self.num_clients, self.dropout_fraction),
            lying_server=lying,
            privacy_failure_bits=SECURITY_PARAMETER,
            completion_failure_bits=20,
        )

    @property
    def ring(self) -> NarrowRing:
        """The ring the inputs and the aggregate live in; masks are computed in its container."""
        return NarrowRing(self.ring_bits)

    @property
    def rounds(self) -> int:
        """Number of protocol rounds (ConsistencyCheck only in active mode)."""
        return self.ROUNDS_ACTIVE if self.mode == ACTIVE else self.ROUNDS_SEMI_HONEST

    def record(self) -> ConfigRecord:
        """The operative parameters as a wire struct."""
        return config_to_record(self)

    def digest(self) -> bytes:
        """SHA-256 of ``b"secagg/v1/config" || record``: what every party agrees on."""
        out: wire.Parts = [b"secagg/v1/config"]
        self.record()._encode_body(out)
        return hashlib.sha256(b"".join(out)).digest()

    @classmethod
    def from_record(cls, record: ConfigRecord) -> MaskingConfig:
        """Rebuild a config from its wire record, validating it again.

        The declared colluders and dropouts come back as fractions c/n and d/n;
        ConfigurationError unless the rebuilt config has exactly this record
        (so a record whose c or d the threshold does not support is refused).
        """
        return config_from_record(cls, record)

    # The constructors that choose the parameters (secagg.masking.config_choice), bound as class methods.
    secagg = classmethod(secagg_config)
    secagg_plus = classmethod(secagg_plus_config)

