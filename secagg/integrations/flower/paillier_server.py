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
fewer than t, or when the strategy samples fewer nodes than a round needs (or more
than ``max_nodes`` or the key's shares), the round is skipped (no reply; the strategy
keeps its model; the run goes on) and the reason is in :attr:`PaillierGrid.reports`.
"""

from __future__ import annotations

import time

from flwr.app import Message
from flwr.serverapp import Grid

from secagg import wire
from secagg.clipping import ClipSchedule, clip_policy
from secagg.dp.calibration import NoisePlan
from secagg.errors import ConfigurationError, ProtocolError, SecAggError
from secagg.guarantee import Guarantee
from secagg.integrations.flower._grid import (
    LOGGER,
    SecureGrid,
    TrainingBatch,
    aggregated_reply,
    identify_shortfall,
    require_trusted_keys,
)
from secagg.integrations.flower._limits import paillier_reply_limit
from secagg.integrations.flower._paillier_options import MIN_NODES, PaillierOptions
from secagg.integrations.flower.clipping import decode_segmented, encoded_length
from secagg.integrations.flower.compression import RoundCompression
from secagg.integrations.flower.dp import DPRounds, decode_noised, decrypted_sums, dp_parameters
from secagg.integrations.flower.protocol import (
    DECRYPT,
    ENCRYPT,
    PaillierSetup,
    PaillierUpload,
    round_context,
)
from secagg.integrations.flower.run_binding import bind_run_config, run_config_digest
from secagg.paillier import Server
from secagg.paillier.messages import PartialDecryption
from secagg.segments import SegmentTable

__all__ = ["MIN_NODES", "PaillierGrid", "PaillierOptions"]

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
        if options.run_config is not None:  # bound with the training content, before anything is sent
            bind_run_config(instructions, run_config_digest(options.run_config))
        batch = TrainingBatch.create(instructions, len(self.reports) + 1)
        sampled = batch.node_ids
        dropped: dict[int, str] = {}
        errors: dict[int, str] = {}
        try:  # refused before sending anything; the options are validated: this round's node count is not
            options.layout(len(sampled))
        except ConfigurationError as exc:
            return self._skip(batch, started, dropped, errors, str(exc))
        compression = RoundCompression.draw(batch.layout, options.sparsity, options.rotate)  # public seeds
        if self.dp is None:
            options.table(batch, len(sampled), self.schedule, compression)
        # Stage 0: learn the identity keys of nodes not seen yet (uploads are signed with them).
        self.identify(batch, options.trusted_keys, dropped, errors)
        batch = batch.subset(node for node in sampled if node in self.identities)
        nodes = batch.node_ids
        if len(nodes) < options.fewest_nodes:  # said so, not as the setup's refusal of the nodes left
            reason = identify_shortfall(len(nodes), len(sampled), "Paillier", options.fewest_nodes)
            return self._skip(batch, started, dropped, errors, reason)
        try:
            options.check_round_nodes(len(nodes))
            options.layout(len(nodes))
            setup, table, plan = self._setup(batch, compression)
        except ConfigurationError as exc:
            return self._skip(batch, started, dropped, errors, str(exc))
        run_id = self.run.run_id
        context = round_context(run_id, batch.server_round, batch.digest)
        server = Server(setup.session_parameters(options.public_key, context, run_id))
        guarantee = server.params.guarantee  # computed for this round's nodes
        LOGGER.info("paillier round %d (n = %d, %d-of-%d key, min_contributors %d): %s", batch.server_round,
                    len(nodes), options.public_key.threshold, options.public_key.num_parties,
                    server.params.min_contributors, guarantee)
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
            return self._skip(batch, started, dropped, errors, reason, guarantee)
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
            return self._skip(batch, started, dropped, errors, reason, guarantee)
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
                b"" if compression is None else compression.parameters(), message_type=batch.message_type,
            )
            return setup, table, None
        plan, quantization = self.dp.plan_round(
            len(nodes), batch.layout.size, decrypted_sums(options.public_key, len(nodes), options.contributors),
            options.max_weight, 64,
        )
        setup = PaillierSetup.create(
            batch.server_round, nodes, options.public_key, options.contributors, quantization,
            batch.layout.size, options.weight_key, batch.digest, keys, batch.parameters, dp=dp_parameters(plan),
            message_type=batch.message_type,
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
            return self._skip(batch, started, dropped, errors, str(exc), server.params.guarantee)
        if clipping is not None:
            self.schedule.observe(clipping)
        if compression is not None:
            mean = compression.expand(mean, batch.layout)
        if self.dp is not None:
            epsilon = self.dp.spent()
        report = batch.report(
            started, dropped, errors, aggregate=sums, included=included, weight_total=weight_total, clipping=clipping,
            epsilon_spent=epsilon, guarantee=server.params.guarantee,
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
        self,
        batch: TrainingBatch,
        started: float,
        dropped: dict[int, str],
        errors: dict[int, str],
        reason: str,
        guarantee: Guarantee | None = None,
    ) -> Message | None:
        """Record a skipped round; the strategy gets no reply (None) and keeps its model."""
        LOGGER.warning("paillier round %d skipped: %s", batch.server_round, reason)
        self.reports.append(batch.report(started, dropped, errors, reason=reason, guarantee=guarantee,
                                         epsilon_spent=self.dp.reported() if self.dp is not None else None))
        return None
