"""How Paillier rounds over Flower are run: :class:`PaillierOptions`, validated at construction.

The key comes from the ceremony, so its threshold t (of l key shares) is the dealer's choice;
the options' default takes the library's (:func:`secagg.paillier.parameters.default_threshold`,
as :class:`~secagg.paillier.PaillierConfig` and fl_core's ``paillier`` aggregator do) and refuses
a key dealt below it; fewer colluders are accepted by name only (``colluders=c``), and the
computed guarantee (:meth:`PaillierOptions.guarantee`) is logged and reported with every round.
Re-exported by :mod:`secagg.integrations.flower.paillier_server`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from secagg.clipping import ClipPolicy, ClipSchedule, clip_policy
from secagg.descriptor import Parameter
from secagg.dp.config import DPConfig
from secagg.encoding import QuantizationConfig
from secagg.errors import ConfigurationError
from secagg.guarantee import Guarantee
from secagg.integrations.flower._grid import TrainingBatch
from secagg.integrations.flower._masking_options import DEFAULT_CLIP, DEFAULT_MAX_WEIGHT
from secagg.integrations.flower._masking_plan import round_table
from secagg.integrations.flower.compression import RoundCompression, check_options
from secagg.integrations.flower.dp import check_dp_options
from secagg.integrations.flower.policy import paillier_default_colluders
from secagg.integrations.flower.protocol import paillier_layout
from secagg.integrations.flower.run_binding import check_run_config_option
from secagg.paillier import SlotLayout, ThresholdPublicKey
from secagg.paillier.keys import check_key_bits
from secagg.paillier.packing import MAX_CLIENTS
from secagg.paillier.parameters import check_decryption_majority, default_threshold, threshold_guarantee
from secagg.primitives.signing import PUBLIC_KEY_SIZE, check_trusted_key
from secagg.segments import SegmentTable

__all__ = ["MIN_NODES", "PaillierOptions"]

MIN_NODES = 2
"""The fewest nodes a Paillier round can have (a sum of one update is that update)."""


@dataclass(frozen=True)
class PaillierOptions:
    """How Paillier rounds are run; validated here, so an unsafe setting never starts.

    Attributes:
        public_key: the federation's threshold public key (from the ceremony).
            At least 2048 bits and a threshold of at least 2.
        clip: every float array's starting clip (coordinates clipped to ``[-clip, clip]``).
        bits: quantization bits per value, sign included.
        max_weight: public bound on one node's weight (the value under ``weight_key``).
        weight_key: the MetricRecord key of the weight (FedAvg's ``weighted_by_key``).
        min_contributors: fewest uploads a key-share holder is asked to decrypt
            the sum of (default ``max(2, t, colluders + 2)``); a round with fewer nodes is refused.
        colluders: c, the hospitals that may collude with the server. None (the default): the
            library's default threshold (:func:`~secagg.paillier.parameters.default_threshold`, the
            active masking default's trade-off): a key of l shares must be at least
            ``default_threshold(l)``-of-l (4 shares: 3-of-4, c = 1; 5: 4-of-5, c = 2; one dropout
            each), a key dealt for fewer is refused, naming both guarantees. An int declares c by
            name: refused unless t >= c + 1, 2t > l + c (else two disjoint groups of holders
            decrypt two sums that differ in one upload) and min_contributors >= c + 2; declaring
            fewer than the default's (``colluders=0`` for a 3-of-5 key) accepts a lower threshold
            and gives up resistance to colluding hospitals for dropouts (3-of-5: c = 0, two
            dropouts in a round of all five; a round of n nodes survives at most n - t, since only
            its nodes decrypt), as the computed guarantee (:meth:`guarantee`) logged and reported
            with every round says.
        trusted_keys: the federation's identity public keys (the key ceremony's public
            trusted-keys file, ``read_trusted_keys``); a node announcing another key is left
            out at ``identify`` (every node checks the round's keys against its own trusted list
            anyway). PaillierGrid refuses options without it: one node with a stray key would
            otherwise make every node refuse every round it is sampled in.
        stage_timeout: seconds to wait for the replies of one stage.
        poll_interval: seconds between two pulls of replies within a stage.
        max_nodes: if set, rounds of up to this many nodes are validated now and
            larger rounds are skipped with the reason; otherwise each round is validated before
            anything is sent. At most the key's number of shares (every node holds its own share,
            so a larger round is skipped anyway): a larger value is refused here.
        clipping: how each array's clip moves between rounds: ``"adaptive"`` (the
            default: toward 0.1% clipped, from the securely summed clipped counts),
            ``"fixed"`` (by name), or a ClipPolicy, as in SecAggOptions.
        clips: starting clips of named float arrays (``"<record>/<array>"``), overriding ``clip``.
        sparsity: a fraction in (0, 1] or a sequence of array names: send only that part of each
            update, the rest kept by the node for later rounds, as in SecAggOptions.
        rotate: rotate the float coordinates sent by a public per-round rotation, as in SecAggOptions.
        dp: a :class:`~secagg.dp.DPConfig`: every round is a distributed-DP round
            (:mod:`secagg.integrations.flower.dp`); ``clip``, ``bits`` and ``clipping`` then do
            not apply (the encoding follows from the DP configuration and nothing is clipped),
            ``max_weight`` bounds a node's patients (the encoding's range); the noise is sized
            for h = ``min_contributors`` less the colluders the round's guarantee tolerates.
        dp_state_file: the accountant's state file (survives a restart); None: in memory.
        run_config: the ServerApp's ``context.run_config``: its digest is bound into every round
            (:mod:`~secagg.integrations.flower.run_binding`), and a node served another run config
            refuses the round. None (the default): no run config is bound.
    """

    public_key: ThresholdPublicKey
    clip: float = DEFAULT_CLIP
    bits: int = 16
    max_weight: int = DEFAULT_MAX_WEIGHT
    weight_key: str = "num-examples"
    min_contributors: int | None = None
    colluders: int | None = None
    trusted_keys: frozenset[bytes] | None = None
    stage_timeout: float = 60.0
    poll_interval: float = 0.5
    max_nodes: int | None = None
    clipping: str | ClipPolicy = "adaptive"
    clips: Mapping[str, float] | None = None
    sparsity: float | Sequence[str] | None = None
    rotate: bool = False
    dp: DPConfig | None = None
    dp_state_file: str | None = None
    run_config: Mapping[str, Parameter] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_config", check_run_config_option(self.run_config))  # a read-only copy
        clip_policy(self.clipping)
        check_dp_options(self.dp, self.clips)
        object.__setattr__(self, "sparsity", check_options(self.sparsity, self.rotate, self.dp is not None))
        if not isinstance(self.public_key, ThresholdPublicKey):
            raise ConfigurationError("public_key must be the federation's ThresholdPublicKey")
        check_key_bits(self.public_key.key.key_bits)
        if self.public_key.threshold < 2:
            raise ConfigurationError(
                f"a {self.public_key.threshold}-of-{self.public_key.num_parties} key lets one key-share holder "
                "decrypt every update; the threshold must be at least 2"
            )
        for name, value in (("stage_timeout", self.stage_timeout), ("poll_interval", self.poll_interval)):
            if not (np.isfinite(value) and value > 0):
                raise ConfigurationError(f"{name} must be a positive number of seconds, got {value}")
        if not self.weight_key:
            raise ConfigurationError("weight_key must be a non-empty string")
        if self.trusted_keys is not None:
            check_trusted_keys(self.trusted_keys)
        if self.colluders is not None and (
            isinstance(self.colluders, bool) or not isinstance(self.colluders, int) or self.colluders < 0
        ):
            raise ConfigurationError(f"colluders must be a non-negative int, got {self.colluders!r}")
        colluders = self.colluders or 0
        if self.contributors < max(2, colluders + 2):
            raise ConfigurationError(
                f"min_contributors {self.contributors} is unsafe against {colluders} colluders; "
                f"need >= {max(2, colluders + 2)}"
            )
        if self.public_key.threshold < colluders + 1:
            raise ConfigurationError(
                f"a {self.public_key.threshold}-of-{self.public_key.num_parties} key is unsafe against "
                f"{colluders} colluding share holders; need t >= {colluders + 1}"
            )
        check_decryption_majority(self.public_key.num_parties, self.public_key.threshold, colluders)
        self._check_contributors_fit()
        if self.colluders is None:
            self._check_default_threshold()
            self._check_default_colluders()
        if self.max_nodes is not None and not self.fewest_nodes <= self.max_nodes <= MAX_CLIENTS:
            raise ConfigurationError(f"max_nodes must be in {self.fewest_nodes}..{MAX_CLIENTS}, got {self.max_nodes}")
        if self.max_nodes is not None and self.max_nodes > self.public_key.num_parties:
            raise ConfigurationError(
                f"max_nodes {self.max_nodes} is above the key's {self.public_key.num_parties} shares: every node holds "
                "its own share, so no round can have more nodes than the key has shares (check_round_nodes); "
                f"give max_nodes <= {self.public_key.num_parties}, or deal a key with more shares"
            )
        self.layout(self.max_nodes or self.fewest_nodes)  # overflow and packing checks

    def _check_contributors_fit(self) -> None:
        """ConfigurationError if ``min_contributors`` exceeds the key's shares: every node holds its own
        share, so no round has that many nodes and every round would be skipped (refused whether or not
        ``colluders`` is named, which skips the default checks)."""
        parties = self.public_key.num_parties
        if self.contributors > parties:
            raise ConfigurationError(
                f"min_contributors {self.contributors} is above the key's {parties} shares: every node holds its "
                f"own share, so no round has that many nodes and every round would be skipped; give "
                f"min_contributors <= {parties}"
            )

    def _check_default_threshold(self) -> None:
        """ConfigurationError if the key's threshold is below the library's default for its shares,
        naming what the key and the default guarantee and the opt-in by name."""
        parties, threshold = self.public_key.num_parties, self.public_key.threshold
        default = default_threshold(parties)
        if threshold >= default:
            return
        key_bits = self.public_key.key.key_bits
        this = threshold_guarantee(parties, threshold, parties, self.contributors, key_bits=key_bits)
        wanted = threshold_guarantee(parties, default, parties, max(2, default), key_bits=key_bits)
        most = max(0, min(threshold - 1, 2 * threshold - parties - 1))
        raise ConfigurationError(
            f"a {threshold}-of-{parties} key is below the default {default}-of-{parties} "
            f"(secagg.paillier.parameters.default_threshold: {wanted}); deal a {default}-of-{parties} key, "
            f"or accept this one by name with PaillierOptions(colluders={most}), giving up resistance to "
            f"colluding hospitals: {this}"
        )

    def _check_default_colluders(self) -> None:
        """ConfigurationError if the computed guarantee (this key, min_contributors) tolerates fewer
        colluders than the library default for the key's shares (:func:`paillier_default_colluders`,
        the floor a node's default policy puts under every round): refused before any round is sent,
        naming both guarantees and the opt-in by name."""
        parties = self.public_key.num_parties
        default = paillier_default_colluders(parties)
        this = self.guarantee(parties)
        if this.colluders >= default:
            return
        threshold = default_threshold(parties)
        wanted = threshold_guarantee(
            parties, threshold, parties, max(2, threshold), key_bits=self.public_key.key.key_bits
        )
        raise ConfigurationError(
            f"min_contributors {self.contributors} with a {self.public_key.threshold}-of-{parties} key tolerates "
            f"fewer colluders than the default ({wanted}): raise min_contributors (the nodes' default policy "
            f"refuses such a round), or accept it by name with PaillierOptions(colluders={max(0, this.colluders)}), "
            f"giving up resistance to colluding hospitals: {this}"
        )

    @property
    def contributors(self) -> int:
        """min_contributors after defaulting."""
        if self.min_contributors is not None:
            return self.min_contributors
        return max(2, self.public_key.threshold, (self.colluders or 0) + 2)

    def guarantee(self, num_nodes: int) -> Guarantee:
        """What a round of ``num_nodes`` nodes guarantees under this key and ``min_contributors``
        (:func:`~secagg.paillier.parameters.threshold_guarantee`: the line the round's session
        computes, logged and reported with the round)."""
        return threshold_guarantee(
            self.public_key.num_parties, self.public_key.threshold, num_nodes, self.contributors,
            key_bits=self.public_key.key.key_bits,
        )

    @property
    def fewest_nodes(self) -> int:
        """The smallest round that can complete: enough uploads and t decrypting nodes."""
        return max(MIN_NODES, self.contributors, self.public_key.threshold)

    def check_round_nodes(self, num_nodes: int) -> None:
        """ConfigurationError if a round of ``num_nodes`` nodes has more nodes than the key has shares:
        every node holds its own share, so two of them would hold one (a copied share, or a node that
        came back under a new node id while its old id is still sampled), and the round's guarantee,
        computed per share, would not be its nodes'."""
        parties = self.public_key.num_parties
        if num_nodes > parties:
            raise ConfigurationError(
                f"{num_nodes} nodes in the round, but the key has {parties} shares (one per hospital): two nodes "
                "would hold one share; refused before the setup is sent"
            )

    def quantization(self, num_nodes: int) -> QuantizationConfig:
        """The quantization for ``num_nodes`` (int64 sums); ConfigurationError if it could overflow."""
        return QuantizationConfig(self.clip, self.bits, num_nodes, ring_bits=64, max_weight=self.max_weight)

    def layout(self, num_nodes: int) -> SlotLayout:
        """The packing layout for ``num_nodes`` (:func:`~secagg.integrations.flower.protocol.paillier_layout`,
        as the round's setup gives it without DP); ConfigurationError if slots could carry or overflow."""
        if num_nodes < self.fewest_nodes:
            raise ConfigurationError(
                f"a Paillier round needs at least {self.fewest_nodes} nodes (min_contributors "
                f"{self.contributors}, threshold {self.public_key.threshold}), got {num_nodes}"
            )
        if self.max_nodes is not None and num_nodes > self.max_nodes:
            raise ConfigurationError(f"{num_nodes} nodes sampled, but the options allow at most {self.max_nodes}")
        quantization = self.quantization(num_nodes)
        return paillier_layout(quantization, num_nodes, self.public_key.key.key_bits)

    def table(
        self, batch: TrainingBatch, num_nodes: int, schedule: ClipSchedule, compression: RoundCompression | None = None
    ) -> SegmentTable:
        """The round's clip table: one segment per array, the schedule's clips (a named starting
        clip until the schedule has moved it), as ``compression`` makes it; ConfigurationError if
        its counts could overflow."""
        return round_table(batch, self.clips, schedule, compression, self.quantization(num_nodes), self.rotate)


def check_trusted_keys(keys: frozenset[bytes]) -> None:
    """The options' ``trusted_keys``: non-empty, each a 32-byte key :func:`check_trusted_key` takes."""
    if not keys or any(len(k) != PUBLIC_KEY_SIZE for k in keys):
        raise ConfigurationError(f"trusted_keys: non-empty, {PUBLIC_KEY_SIZE}-byte keys")
    for key in sorted(keys):
        check_trusted_key(key, "trusted_keys")
