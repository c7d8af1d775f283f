"""Server side of Paillier rounds: a Flower Grid whose training rounds are packed threshold Paillier.

:class:`PaillierGrid` is the Paillier counterpart of
:class:`~secagg.integrations.flower.SecAggGrid`: hand it to any strategy
(``FedAvg().start(grid=PaillierGrid(grid, PaillierOptions(public_key=key, trusted_keys=federation)), ...)``).
The server holds only the federation's :class:`~secagg.paillier.ThresholdPublicKey`
(from the key ceremony, run before the federation starts; docs/integrations.md).
Each training batch becomes one session of :mod:`secagg.paillier.protocol`:

1. ``encrypt``: each node gets a :class:`~secagg.integrations.flower.protocol.PaillierSetup`
   with the strategy's training content; it checks the setup against its own
   key share and the round's clip table, trains, packs and encrypts
   ``(w * q(local - global), c, w)`` (``c``: its clipped count per array) and
   answers with its ``EncryptedVector`` and the index of its key share;
2. the server checks every upload and multiplies the ciphertexts; with fewer
   than ``min_contributors`` uploads the round is skipped;
3. ``decrypt``: every uploading key-share holder gets a ``DecryptionRequest``
   carrying the uploads themselves; it checks them, multiplies them itself and
   answers with its partial decryption and a proof, which the server checks;
4. t valid partial decryptions give the exact integer sum, decoded into the
   weighted mean update and returned to the strategy as one reply; the summed
   clipped counts give the round's clipped fraction (in the report and the log,
   a ClippingWarning above 1%) and, with the adaptive clip (the default), the
   next round's clip of each array (:class:`secagg.clipping.ClipSchedule`).

With ``PaillierOptions(dp=DPConfig(...))`` every round is a distributed-DP round
(:mod:`secagg.integrations.flower.dp`, as for masking): the server calibrates the noise
for the round's nodes and h, the honest uploads in the smallest sum a key-share holder
decrypts (``min_contributors`` less the colluders the round's guarantee tolerates), binds
the DP parameters in ``PaillierSetup.dp`` (and the descriptor), charges the accountant
before anything is sent and refuses a round over the budget; each node encrypts
``round(delta * scale)`` plus its own noise share, with no weight, no clipped count and
no clip table; the report states the epsilon spent.

A node that drops out before uploading is left out of the sum; one that drops
out after uploading still counts, as long as t key-share holders answer. With
fewer than t the round is skipped (no reply; the strategy keeps its model) and
the reason is in :attr:`PaillierGrid.reports`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from flwr.app import Message
from flwr.serverapp import Grid

from secagg import wire
from secagg.clipping import ClipPolicy, ClipSchedule, clip_policy
from secagg.dp.calibration import NoisePlan
from secagg.dp.config import DPConfig
from secagg.encoding import QuantizationConfig
from secagg.errors import ConfigurationError, ProtocolError, SecAggError
from secagg.integrations.flower._grid import LOGGER, SecureGrid, TrainingBatch, aggregated_reply, require_trusted_keys
from secagg.integrations.flower._limits import paillier_reply_limit
from secagg.integrations.flower._masking_options import DEFAULT_CLIP, DEFAULT_MAX_WEIGHT
from secagg.integrations.flower._masking_plan import round_table
from secagg.integrations.flower.clipping import decode_segmented, encoded_length
from secagg.integrations.flower.compression import RoundCompression, check_options
from secagg.integrations.flower.dp import DPRounds, check_dp_options, decode_noised, decrypted_sums, dp_parameters
from secagg.integrations.flower.protocol import (
    DECRYPT,
    ENCRYPT,
    PaillierSetup,
    PaillierUpload,
    paillier_layout,
    round_context,
)
from secagg.paillier import Server, SlotLayout, ThresholdPublicKey
from secagg.paillier.keys import check_key_bits
from secagg.paillier.messages import PartialDecryption
from secagg.paillier.packing import MAX_CLIENTS
from secagg.paillier.parameters import check_decryption_majority
from secagg.primitives.signing import PUBLIC_KEY_SIZE
from secagg.segments import SegmentTable

__all__ = ["MIN_NODES", "PaillierGrid", "PaillierOptions"]

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
        colluders: c, the hospitals that may collude with the server (declared):
            refused unless t >= c + 1, 2t > l + c (l key shares: else two disjoint groups of
            holders decrypt two sums that differ in one upload) and min_contributors >= c + 2.
        trusted_keys: the federation's identity public keys (the key ceremony's public
            trusted-keys file, ``read_trusted_keys``); a node announcing another key is left
            out at ``identify`` (every node checks the round's keys against its own trusted list
            anyway). PaillierGrid refuses options without it: one node with a stray key would
            otherwise make every node refuse every round it is sampled in.
        stage_timeout: seconds to wait for the replies of one stage.
        poll_interval: seconds between two pulls of replies within a stage.
        max_nodes: if set, rounds of up to this many nodes are validated now and
            larger rounds are refused; otherwise each round is validated before
            anything is sent.
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
    """

    public_key: ThresholdPublicKey
    clip: float = DEFAULT_CLIP
    bits: int = 16
    max_weight: int = DEFAULT_MAX_WEIGHT
    weight_key: str = "num-examples"
    min_contributors: int | None = None
    colluders: int = 0
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

    def __post_init__(self) -> None:
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
        if self.trusted_keys is not None and (
            not self.trusted_keys or any(len(k) != PUBLIC_KEY_SIZE for k in self.trusted_keys)
        ):
            raise ConfigurationError(f"trusted_keys: non-empty, {PUBLIC_KEY_SIZE}-byte keys")
        if isinstance(self.colluders, bool) or not isinstance(self.colluders, int) or self.colluders < 0:
            raise ConfigurationError(f"colluders must be a non-negative int, got {self.colluders!r}")
        if self.contributors < max(2, self.colluders + 2):
            raise ConfigurationError(
                f"min_contributors {self.contributors} is unsafe against {self.colluders} colluders; "
                f"need >= {max(2, self.colluders + 2)}"
            )
        if self.public_key.threshold < self.colluders + 1:
            raise ConfigurationError(
                f"a {self.public_key.threshold}-of-{self.public_key.num_parties} key is unsafe against "
                f"{self.colluders} colluding share holders; need t >= {self.colluders + 1}"
            )
        check_decryption_majority(self.public_key.num_parties, self.public_key.threshold, self.colluders)
        if self.max_nodes is not None and not self.fewest_nodes <= self.max_nodes <= MAX_CLIENTS:
            raise ConfigurationError(f"max_nodes must be in {self.fewest_nodes}..{MAX_CLIENTS}, got {self.max_nodes}")
        self.layout(self.max_nodes or self.fewest_nodes)  # overflow and packing checks

    @property
    def contributors(self) -> int:
        """min_contributors after defaulting."""
        if self.min_contributors is not None:
            return self.min_contributors
        return max(2, self.public_key.threshold, self.colluders + 2)

    @property
    def fewest_nodes(self) -> int:
        """The smallest round that can complete: enough uploads and t decrypting nodes."""
        return max(MIN_NODES, self.contributors, self.public_key.threshold)

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
        return round_table(batch, self.clips, schedule, compression, self.quantization(num_nodes))


class PaillierGrid(SecureGrid):
    """A Grid that runs training rounds through packed threshold Paillier; everything else passes through.

    See the module docstring for the stages; :attr:`reports` records every round.
    """

    def __init__(self, grid: Grid, options: PaillierOptions) -> None:
        if not isinstance(options, PaillierOptions):
            raise ConfigurationError("PaillierGrid needs PaillierOptions (with the federation's public key)")
        require_trusted_keys(options.trusted_keys, "PaillierOptions")
        self.options = options
        super().__init__(grid, options.stage_timeout, options.poll_interval)
        self.schedule = ClipSchedule(clip_policy(options.clipping), options.clip)
        self.dp = None if options.dp is None else DPRounds(options.dp, options.dp_state_file)

    def secure_round(self, instructions: list[Message]) -> Message | None:
        """Run one Paillier session over the nodes ``instructions`` address (see the module docstring)."""
        started = time.perf_counter()
        options = self.options
        batch = TrainingBatch.create(instructions, len(self.reports) + 1)
        sampled = batch.node_ids
        options.layout(len(sampled))  # refuse before sending anything
        compression = RoundCompression.draw(batch.layout, options.sparsity, options.rotate)  # public seeds
        if self.dp is None:
            options.table(batch, len(sampled), self.schedule, compression)
        dropped: dict[int, str] = {}
        errors: dict[int, str] = {}
        # Stage 0: learn the identity keys of nodes not seen yet (uploads are signed with them).
        self.identify(batch, options.trusted_keys, dropped, errors)
        batch = batch.subset(node for node in sampled if node in self.identities)
        nodes = batch.node_ids
        try:
            options.layout(len(nodes))
            setup, table, plan = self._setup(batch, compression)
        except ConfigurationError as exc:
            return self._skip(batch, started, dropped, errors, str(exc))
        run_id = self.run.run_id
        context = round_context(run_id, batch.server_round, batch.digest)
        server = Server(setup.session_parameters(options.public_key, context, run_id))
        # Stage 1: setup + training content out, encrypted updates back.
        payload = wire.encode(setup)
        data_bytes = server.params.upload_data_bytes
        uploads = self.stage(batch, ENCRYPT, dict.fromkeys(nodes, payload), dropped, errors,
                             limit=paillier_reply_limit(ENCRYPT, data_bytes), with_training=True)
        holders = self._accept_uploads(setup, server, uploads, dropped, errors)
        self.forget_failed_identities(dropped, ENCRYPT)
        included = [nodes[client - 1] for client in sorted(server.included)]
        if len(included) < server.params.min_contributors:
            reason = f"{len(included)} nodes uploaded; at least {server.params.min_contributors} are needed"
            return self._skip(batch, started, dropped, errors, reason)
        # Stage 2: each uploading key-share holder decrypts the aggregate. The share index is the
        # node's word (outside its signed upload): when two nodes claim one share, both are asked,
        # and only the answer whose proof verifies against that share's key is kept, so a node
        # claiming another's share costs only itself (the other's answer is not lost).
        requests = {node: wire.encode(server.decryption_request(party)) for node, party in sorted(holders.items())}
        threshold = options.public_key.threshold
        if len(set(holders.values())) < threshold:
            reason = (
                f"{len(set(holders.values()))} key-share holders uploaded; {threshold} partial decryptions are needed"
            )
            return self._skip(batch, started, dropped, errors, reason)
        answers = self.stage(batch, DECRYPT, requests, dropped, errors, limit=paillier_reply_limit(DECRYPT, data_bytes))
        for node, data in sorted(answers.items()):
            try:
                partial = wire.decode(data, PartialDecryption)
                if partial.party != holders[node]:
                    raise ProtocolError(f"node {node} answered as party {partial.party}, not {holders[node]}")
                server.receive_partial(partial)
            except SecAggError as exc:
                errors[node], dropped[node] = str(exc), DECRYPT
        return self._finish(batch, started, dropped, errors, server, (setup, table, plan), included, compression)

    def _setup(
        self, batch: TrainingBatch, compression: RoundCompression | None
    ) -> tuple[PaillierSetup, SegmentTable | None, NoisePlan | None]:
        """The round's setup with its clip table (cut to ``compression``), or (DP) its noise plan,
        charged to the budget; ConfigurationError (the round is skipped) if the round is unfit or
        over the budget."""
        options, nodes = self.options, batch.node_ids
        keys = [self.identities[node] for node in nodes]
        if self.dp is None:
            table = options.table(batch, len(nodes), self.schedule, compression)
            setup = PaillierSetup.create(
                batch.server_round, nodes, options.public_key, options.contributors, options.quantization(len(nodes)),
                encoded_length(table), options.weight_key, batch.digest, keys, batch.parameters, table.describe(),
                b"" if compression is None else compression.parameters(),
            )
            return setup, table, None
        plan, quantization = self.dp.plan_round(
            len(nodes), batch.layout.size, decrypted_sums(options.public_key, len(nodes), options.contributors),
            options.max_weight, 64,
        )
        setup = PaillierSetup.create(
            batch.server_round, nodes, options.public_key, options.contributors, quantization,
            batch.layout.size, options.weight_key, batch.digest, keys, batch.parameters, dp=dp_parameters(plan),
        )
        skip = self.dp.charge(batch.server_round, len(nodes))
        if skip is not None:
            raise ConfigurationError(skip)
        return setup, None, plan

    def _finish(
        self,
        batch: TrainingBatch,
        started: float,
        dropped: dict[int, str],
        errors: dict[int, str],
        server: Server,
        fixed: tuple[PaillierSetup, SegmentTable | None, NoisePlan | None],
        included: list[int],
        compression: RoundCompression | None = None,
    ) -> Message | None:
        """Stage 3: combine t partial decryptions, unpack, decode the weighted mean and the clipped
        counts (DP: the noised sum over the included nodes, refused below h contributions)."""
        (setup, table, plan), nodes = fixed, batch.node_ids
        clipping, epsilon = None, None
        try:
            sums = server.finish()
            if plan is not None:
                mean, weight_total = decode_noised(sums, plan, setup.quantization, len(included))
            else:
                assert table is not None  # a round without DP has a clip table
                mean, weight_total, clipping = decode_segmented(sums, table, setup.quantization, len(included))
        except SecAggError as exc:
            return self._skip(batch, started, dropped, errors, str(exc))
        if clipping is not None:
            self.schedule.observe(clipping)
        if compression is not None:
            mean = compression.expand(mean, batch.layout)
        if self.dp is not None:
            epsilon = self.dp.spent()
        report = batch.report(
            started, dropped, errors, aggregate=sums, included=included, weight_total=weight_total, clipping=clipping,
            epsilon_spent=epsilon,
        )
        self.reports.append(report)
        LOGGER.info(
            "paillier round %d: %d of %d nodes aggregated in %.1f s; %s",
            batch.server_round, len(included), len(nodes), report.seconds,
            f"clipped {report.clipped_fraction:.3%} of the coordinates" if epsilon is None
            else f"DP, epsilon spent {epsilon:.4g}",
        )
        return aggregated_reply(batch, mean, self.options.weight_key, weight_total)

    def _accept_uploads(
        self,
        setup: PaillierSetup,
        server: Server,
        uploads: dict[int, bytes],
        dropped: dict[int, str],
        errors: dict[int, str],
    ) -> dict[int, int]:
        """Hand each node's upload to the Paillier server; node -> the key-share index it claims."""
        holders: dict[int, int] = {}
        num_parties = self.options.public_key.num_parties
        for node, data in sorted(uploads.items()):
            try:
                upload = wire.decode(data, PaillierUpload)
                if upload.upload.client != setup.protocol_id(node):
                    raise ProtocolError(f"node {node} uploaded as client {upload.upload.client}")
                if upload.party > num_parties:
                    raise ProtocolError(f"node {node} claims key share {upload.party} of {num_parties}")
                server.receive_upload(upload.upload)
            except SecAggError as exc:
                errors[node], dropped[node] = str(exc), ENCRYPT
                continue
            holders[node] = upload.party
        return holders

    def _skip(
        self, batch: TrainingBatch, started: float, dropped: dict[int, str], errors: dict[int, str], reason: str
    ) -> Message | None:
        """Record a skipped round; the strategy gets no reply (None) and keeps its model."""
        LOGGER.warning("paillier round %d skipped: %s", batch.server_round, reason)
        self.reports.append(batch.report(started, dropped, errors, reason=reason))
        return None
