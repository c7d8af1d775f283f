"""How masking rounds over Flower are run: :class:`SecAggOptions`, validated at construction.

Each option is documented on the class; :class:`~secagg.integrations.flower.server.SecAggGrid`
turns the options into each round's masking and quantization configuration
(:meth:`SecAggOptions.masking`, :meth:`SecAggOptions.quantization`). Re-exported by
:mod:`secagg.integrations.flower.server`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from secagg.clipping import ClipPolicy, clip_policy
from secagg.descriptor import Parameter
from secagg.dp.config import DPConfig
from secagg.encoding import WORD_RINGS, QuantizationConfig, smallest_ring_bits
from secagg.errors import ConfigurationError
from secagg.integrations.flower.compression import check_options
from secagg.integrations.flower.dp import check_dp_options
from secagg.integrations.flower.run_binding import check_run_config_option
from secagg.masking import ACTIVE, SEMI_HONEST, MaskingConfig
from secagg.masking.config import MAX_CLIENTS
from secagg.primitives.signing import PUBLIC_KEY_SIZE, check_trusted_key, placeholder_public_keys

__all__ = ["DEFAULT_CLIP", "DEFAULT_MAX_WEIGHT", "MIN_NODES", "SECAGG", "SECAGG_PLUS", "SecAggOptions"]

MIN_NODES = 3
"""The fewest nodes a masking session can have."""
DEFAULT_CLIP = 0.5
"""Default clip of update coordinates (updates are local minus global model)."""
DEFAULT_MAX_WEIGHT = 4096
"""Default public bound on one node's weight (its example count)."""
SECAGG = "secagg"
SECAGG_PLUS = "secagg+"


def _placeholder_keys(count: int) -> tuple[bytes, ...]:
    """Distinct stand-in identity keys, to validate active-mode settings before any node is asked."""
    return placeholder_public_keys(count)


@dataclass(frozen=True)
class SecAggOptions:
    """How secure rounds are run; validated here, so an unsafe setting never starts.

    Attributes:
        protocol: ``"secagg"`` (complete graph; the default: hospital federations
            are small enough for it) or ``"secagg+"`` (sparse Harary graph, k and t
            derived from the fractions).
        clip: update coordinates are clipped to ``[-clip, clip]`` before quantization.
        bits: quantization bits per value, sign included.
        ring_bits: b in 8..64: the ring Z_(2^b) the masked sums live in; None (the default):
            the smallest word ring that cannot overflow for each round's nodes (Z_(2^32) up
            to 16 nodes at the default bounds, Z_(2^64) beyond), logged with the round's guarantee.
        max_weight: public bound on one node's weight (the value under
            ``weight_key``); a larger weight makes that node drop out.
        weight_key: the MetricRecord key of the weight in a node's training
            reply, and of the weight total in the aggregated reply (FedAvg's
            ``weighted_by_key``).
        threshold: SecAgg only: the Shamir threshold (default: the smallest safe
            one for the declared colluders, see ``MaskingConfig.secagg``). A fixed
            t holds for every round, and is checked here for a round of ``max_nodes``
            (without it, of 3 nodes, where t > 2 is refused): pass ``max_nodes`` with it.
        corrupt_fraction: assumed fraction of nodes colluding with the server
            (default: on the complete graph the most colluders, up to a third,
            that keep the dropout tolerance; 0.05 on a sparse secagg+ graph).
        dropout_per_round: assumed fraction of nodes dropping out at *each* of the
            four stages (setup, share-keys, masked-input, and consistency-check /
            unmask), so 4x that over a round. Default: one dropout below 20
            nodes, 10% per stage from 20 on. secagg+ uses the complete graph up
            to 100 nodes and a Harary graph sized for this assumption beyond.
        dropout_fraction: secagg+ only, instead of ``dropout_per_round``: the
            assumed fraction of nodes dropping out over the whole round.
        mode: ``"active"`` (the default: signed keys, identity keys checked by
            every node against the federation's trusted list, and the
            consistency-check stage) or ``"semi-honest"``, by name only: it does
            not resist a server that lies about dropouts, and the server's log
            and every node's say so; nodes refuse it unless their policy allows it.
        trusted_keys: active mode: the federation's identity public keys (the key ceremony's
            public trusted-keys file, ``read_trusted_keys``); a node announcing another key is
            left out at ``identify`` (the nodes check the keys themselves anyway). SecAggGrid
            refuses active options without it: every node refuses a setup holding a key off its
            own list, so one node with a stray key would fail every round it is sampled in.
        stage_timeout: seconds to wait for the replies of one stage.
        poll_interval: seconds between two pulls of replies within a stage.
        max_nodes: if set, the settings are validated for rounds of up to this
            many nodes now; rounds with more nodes are refused. Otherwise each
            round is validated for its sampled nodes before anything is sent.
        clipping: how each array's clip moves between rounds: ``"adaptive"`` (the
            default: toward 0.1% clipped, from the securely summed clipped counts,
            :mod:`secagg.clipping`), ``"fixed"`` (by name), or a ClipPolicy. ``clip`` is
            every float array's starting clip.
        clips: starting clips of named float arrays (``"<record>/<array>"``), overriding ``clip``.
        dp: a :class:`~secagg.dp.DPConfig`: every round is a distributed-DP round
            (:mod:`secagg.integrations.flower.dp`); ``clip``, ``bits`` and ``clipping`` then do
            not apply (the encoding follows from the DP configuration and nothing is clipped),
            ``max_weight`` bounds a node's patients (the encoding's range).
        dp_state_file: the accountant's state file (survives a restart); None: in memory.
        run_config: the ServerApp's ``context.run_config``: its digest is bound into every round
            (:mod:`~secagg.integrations.flower.run_binding`), and a node served another run config
            refuses the round. None (the default): no run config is bound.
        sparsity: send only part of each update (:mod:`~secagg.integrations.flower.compression`):
            a fraction in (0, 1] (a random subset of that share of the coordinates, drawn
            afresh each round from a public seed) or a sequence of array names
            (``"<record>/<array>"``); each node keeps what it did not send and adds it later.
            None (the default): every coordinate.
        rotate: rotate the float coordinates sent by a public per-round random rotation
            (one segment with one clip; integer arrays stay exact). Neither option applies with ``dp``.
    """

    protocol: str = SECAGG
    clip: float = DEFAULT_CLIP
    bits: int = 16
    ring_bits: int | None = None
    max_weight: int = DEFAULT_MAX_WEIGHT
    weight_key: str = "num-examples"
    threshold: int | None = None
    corrupt_fraction: float | None = None
    dropout_fraction: float | None = None
    dropout_per_round: float | None = None
    mode: str = ACTIVE
    trusted_keys: frozenset[bytes] | None = None
    stage_timeout: float = 60.0
    poll_interval: float = 0.5
    max_nodes: int | None = None
    clipping: str | ClipPolicy = "adaptive"
    clips: Mapping[str, float] | None = None
    dp: DPConfig | None = None
    dp_state_file: str | None = None
    sparsity: float | Sequence[str] | None = None
    rotate: bool = False
    run_config: Mapping[str, Parameter] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_config", check_run_config_option(self.run_config))  # a read-only copy
        clip_policy(self.clipping)
        check_dp_options(self.dp, self.clips)
        object.__setattr__(self, "sparsity", check_options(self.sparsity, self.rotate, self.dp is not None))
        if self.protocol not in (SECAGG, SECAGG_PLUS):
            raise ConfigurationError(f"protocol must be {SECAGG!r} or {SECAGG_PLUS!r}, got {self.protocol!r}")
        if self.protocol == SECAGG_PLUS and self.threshold is not None:
            raise ConfigurationError("secagg+ derives its threshold; set corrupt_fraction and dropout_fraction")
        if self.protocol == SECAGG and self.dropout_fraction is not None:
            raise ConfigurationError("dropout_fraction applies to secagg+ only (use dropout_per_round)")
        if self.dropout_fraction is not None and self.dropout_per_round is not None:
            raise ConfigurationError("give dropout_per_round or the round-wide dropout_fraction, not both")
        if self.mode not in (SEMI_HONEST, ACTIVE):
            raise ConfigurationError(f"mode must be {SEMI_HONEST!r} or {ACTIVE!r}, got {self.mode!r}")
        if self.trusted_keys is not None and (
            self.mode != ACTIVE or not self.trusted_keys or any(len(k) != PUBLIC_KEY_SIZE for k in self.trusted_keys)
        ):
            raise ConfigurationError(f"trusted_keys: active mode only, non-empty, {PUBLIC_KEY_SIZE}-byte keys")
        for key in sorted(self.trusted_keys or ()):
            check_trusted_key(key, "trusted_keys")
        for name, value in (("stage_timeout", self.stage_timeout), ("poll_interval", self.poll_interval)):
            if not (np.isfinite(value) and value > 0):
                raise ConfigurationError(f"{name} must be a positive number of seconds, got {value}")
        if not self.weight_key:
            raise ConfigurationError("weight_key must be a non-empty string")
        if self.max_nodes is not None and not MIN_NODES <= self.max_nodes <= MAX_CLIENTS:
            raise ConfigurationError(f"max_nodes must be in {MIN_NODES}..{MAX_CLIENTS}, got {self.max_nodes}")
        # Validate what can be validated before any node is sampled.
        nodes = self.max_nodes or MIN_NODES
        self.quantization(nodes)
        if self.max_nodes is not None or not (self.mode == ACTIVE and self.protocol == SECAGG_PLUS):
            # (Active SecAgg+ is infeasible for the smallest rounds; each round is validated anyway.)
            self.masking(nodes, 2)


    def quantization(self, num_nodes: int) -> QuantizationConfig:
        """The quantization for ``num_nodes``; ConfigurationError if the ring could overflow."""
        return QuantizationConfig(
            self.clip, self.bits, num_nodes, self.ring_for(num_nodes), max_weight=self.max_weight
        )

    def ring_for(self, num_nodes: int) -> int:
        """The ring of a round of ``num_nodes``: ``ring_bits`` if set, else the smallest that fits."""
        if self.ring_bits is not None:
            return self.ring_bits
        return smallest_ring_bits(self.bits, num_nodes, self.max_weight, WORD_RINGS)

    def masking(
        self, num_nodes: int, vector_length: int, identity_keys: tuple[bytes, ...] = (), ring_bits: int | None = None
    ) -> MaskingConfig:
        """The masking configuration for ``num_nodes``; ConfigurationError if unsafe or infeasible.

        In active mode ``identity_keys`` are the nodes' keys in protocol-id
        order (stand-ins are used when none are given, to validate the rest).
        """
        if num_nodes < MIN_NODES:
            raise ConfigurationError(f"secure aggregation needs at least {MIN_NODES} nodes, got {num_nodes}")
        if self.max_nodes is not None and num_nodes > self.max_nodes:
            raise ConfigurationError(f"{num_nodes} nodes sampled, but the options allow at most {self.max_nodes}")
        keys = (identity_keys or _placeholder_keys(num_nodes)) if self.mode == ACTIVE else ()
        if self.protocol == SECAGG:
            return MaskingConfig.secagg(
                num_nodes,
                vector_length,
                threshold=self.threshold,
                ring_bits=ring_bits or self.ring_for(num_nodes),
                mode=self.mode,
                identity_keys=keys,
                corrupt_fraction=self.corrupt_fraction,
                dropout_per_round=self.dropout_per_round,
            )
        return MaskingConfig.secagg_plus(
            num_nodes,
            vector_length,
            ring_bits=ring_bits or self.ring_for(num_nodes),
            mode=self.mode,
            identity_keys=keys,
            corrupt_fraction=self.corrupt_fraction,
            dropout_fraction=self.dropout_fraction,
            dropout_per_round=self.dropout_per_round,
        )
