"""The ``paillier`` aggregator: the weighted mean through packed threshold Paillier.

At construction a key ceremony (:func:`secagg.paillier.deal_threshold_key`)
gives each of the ``num_clients`` hospitals a t-of-n key share; it runs once
and every round reuses the key. Each round is one session of
:mod:`secagg.paillier.protocol`: the sampled hospitals encrypt their weighted
encodings (:class:`~fl_core.aggregators.base.WeightedQuantizer`), the server
multiplies the ciphertexts, and the first t hospitals still online return
partial decryptions (with proofs) of that one aggregate. The server learns
``(sum n_k q_k, sum c_k, sum n_k)`` (mean, clipped counts, sample total) and
nothing else.

Hospitals get key-share indices 1..n in the order they are first seen (ascending
client id within a round), and keep them
(:mod:`fl_core.aggregators.paillier_hospitals`). Dropout stages: JOIN, SETUP and UPLOAD
mean no upload and no partial decryption; FINALIZE means the update is
uploaded, but the hospital does not decrypt. A round is skipped, with the reason,
if fewer than ``min_contributors`` hospitals upload or fewer than t of the
round's hospitals remain to decrypt.

Values wider than one packing slot allows (the 64-bit-ring encodings used for
the feature moments) are split into 32-bit limbs that are summed separately and
recombined exactly. What the aggregator is sized by before its key exists (slot
layout, limbs, default t and min_contributors, honest floor) is in
:mod:`fl_core.aggregators.paillier_layout`, re-exported here; its key (size, the
``insecure_small_key`` warning, the ceremony or reused material) in
:mod:`fl_core.aggregators.paillier_key`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from fl_core.aggregators.base import (
    AggregationResult,
    ClientUpdate,
    DropoutStage,
    check_round,
    skipped,
    uploaders,
    with_withheld,
)
from fl_core.aggregators.binding import ModelCheck, check_lengths, check_models, check_run_id, segments_authority
from fl_core.aggregators.clipping import ClipPolicy, ClipSchedule, clip_policy
from fl_core.aggregators.paillier_hospitals import SimulatedHospitals
from fl_core.aggregators.paillier_key import DEFAULT_KEY_BITS, INSECURE_KEY_BITS, aggregator_key, key_size
from fl_core.aggregators.paillier_layout import (
    LIMB_BITS,
    checked_shape,
    ciphertext_bytes,
    join_limbs,
    packing_layout,
    paillier_shape,
    round_guarantee,
    split_limbs,
    supported_honest,
    value_bits,
)
from fl_core.aggregators.quantizer import WeightedQuantizer
from secagg._validate import require_callable, require_instance, require_int
from secagg.dp.floors import decrypted_shortfall, decrypted_sums
from secagg.errors import ConfigurationError, SecAggError
from secagg.guarantee import Guarantee
from secagg.paillier import (
    DEFAULT_CONSTANT_TIME,
    Obfuscation,
    Server,
    SessionParameters,
    ThresholdKeyMaterial,
    Workers,
)
from secagg.paillier.keys import key_policy
from secagg.primitives.randomness import RandomBytes, system_random
from secagg.segments import SegmentTable

__all__ = [
    "DEFAULT_KEY_BITS",
    "INSECURE_KEY_BITS",
    "LIMB_BITS",
    "PaillierAggregator",
    "ciphertext_bytes",
    "packing_layout",
    "paillier_shape",
    "supported_honest",
    "value_bits",
]

ROUND_LABEL = b"fl_core/paillier-round"  # of a round's session context (PaillierAggregator.round_context)

IntArray = npt.NDArray[np.int64]


class PaillierAggregator:
    """The weighted mean through packed threshold Paillier (see the module docstring).

    Options:
        quantizer: the weighted encoding; its ``num_clients`` is the number of
            hospitals, and of key shares.
        key_bits: modulus size (default 3072; at least 2048).
        insecure_small_key: use a :data:`INSECURE_KEY_BITS`-bit key (or ``key_bits``
            if given, down to 128) for quick demos and tests. NOT secure; warns.
        threshold: t, the partial decryptions needed (refused unless 2t > num_clients + c:
            see :func:`secagg.paillier.parameters.check_decryption_majority`). Default
            (:func:`secagg.paillier.parameters.default_threshold`): ``(num_clients + c) // 2 + 1``
            with ``colluders`` declared, else the active masking default's trade-off, the most
            colluders (up to a third) that leave one dropout (40% from 20 hospitals on):
            5 hospitals 4-of-5, c = 2, one dropout (:attr:`guarantee`).
        min_contributors: fewest uploads hospitals agree to decrypt the sum of
            (default ``min(num_clients, max(2, t, c + 2))``).
        colluders: c, the hospitals that may collude with the server (declared, as
            :class:`secagg.paillier.PaillierConfig` and the Flower ``PaillierOptions`` take it):
            sizes the default t and is refused unless t >= c + 1, 2t > num_clients + c and
            min_contributors >= c + 2; the computed :attr:`guarantee` is at least c.
        obfuscation: ``"textbook"`` (default; r^n) or ``"djn"`` (faster for long
            vectors, extra assumption; see :mod:`secagg.paillier.encryption`).
        workers: processes for the big-integer work (1: none).
        constant_time: hospitals exponentiate with their key share using GMP's
            side-channel-silent ``powmod_sec`` (the default,
            :data:`secagg.paillier.DEFAULT_CONSTANT_TIME`). ``constant_time=False`` opts out
            (about 1.4x faster partial decryptions at 2048 bits) and gives up that protection:
            timing and cache side channels on the shares (docs/paillier.md, "Other limits").
        random_bytes: source of every secret (key ceremony, encryption, proofs).
        key_material: reuse the key of an earlier ceremony instead of running one.
        clipping: how each segment's clip moves between rounds (``"adaptive"``,
            the default, or ``"fixed"``; :mod:`fl_core.aggregators.clipping`).
        run_id: the run every round's session binds (a u64, in its descriptor and its round
            context, :meth:`round_context`): drawn from ``secrets`` for each aggregator (the
            default, None), so two runs over one key never share a session; or the caller's.
    """

    def __init__(
        self,
        quantizer: WeightedQuantizer,
        *,
        key_bits: int | None = None,
        insecure_small_key: bool = False,
        threshold: int | None = None,
        min_contributors: int | None = None,
        colluders: int | None = None,
        obfuscation: str | Obfuscation = Obfuscation.TEXTBOOK,
        workers: int = 1,
        constant_time: bool = DEFAULT_CONSTANT_TIME,
        random_bytes: RandomBytes = system_random,
        key_material: ThresholdKeyMaterial | None = None,
        clipping: str | ClipPolicy = "adaptive",
        run_id: int | None = None,
    ) -> None:
        require_instance("quantizer", quantizer, WeightedQuantizer)
        self.run_id = check_run_id(run_id)
        self.schedule = ClipSchedule(clip_policy(clipping), quantizer.config.clip)
        num_parties = quantizer.config.num_clients
        if num_parties < 2:
            raise ConfigurationError(f"paillier aggregation needs at least 2 hospitals, got num_clients={num_parties}")
        # Checked first, before any key or worker process exists; None means "the default".
        self.threshold, self.min_contributors, self.colluders = checked_shape(
            num_parties, threshold, min_contributors, colluders
        )
        self.constant_time = require_instance("constant_time", constant_time, bool)
        self.random_bytes = require_callable("random_bytes", random_bytes)
        self.quantizer = quantizer
        self.insecure = require_instance("insecure_small_key", insecure_small_key, bool)
        bits = key_size(key_bits, self.insecure)  # warns with insecure_small_key
        try:
            self.obfuscation = Obfuscation(obfuscation)
        except ValueError as exc:
            raise ConfigurationError(f"obfuscation must be 'textbook' or 'djn', got {obfuscation!r}") from exc
        self.workers = Workers(workers)
        self.material = aggregator_key(
            bits, num_parties, self.threshold, insecure=self.insecure, key_material=key_material,
            random_bytes=random_bytes, workers=self.workers,
        )  # fmt: skip
        self.value_bits = value_bits(quantizer.config)
        self.layout, self.split = packing_layout(quantizer.config, num_parties, self.material.public.key.key_bits)
        self.hospitals = SimulatedHospitals(self.material, self.obfuscation, self.random_bytes, self.workers)
        self._rounds = 0

    @property
    def name(self) -> str:
        """``"paillier"``."""
        return "paillier"

    @property
    def guarantee(self) -> Guarantee:
        """What a full round (every hospital uploads) guarantees; a smaller round's: :meth:`round_guarantee`."""
        return self.round_guarantee(self.material.public.num_parties)

    def round_guarantee(self, num_clients: int) -> Guarantee:
        """A round of ``num_clients`` hospitals' guarantee (:func:`~.paillier_layout.round_guarantee`)."""
        public = self.material.public
        num_clients = require_int("num_clients", num_clients, 1, public.num_parties)
        return round_guarantee(public.num_parties, public.threshold, self.min_contributors, num_clients,
                               public.key.key_bits)  # fmt: skip

    def honest_floor(self, num_clients: int, vector_length: int) -> int:
        """The largest h a round of ``num_clients`` hospitals supports: its ``min_contributors`` less
        the colluders its guarantee tolerates (:func:`secagg.dp.floors.decrypted_sums`)."""
        contributors = min(self.min_contributors, num_clients)
        return contributors - decrypted_sums(self.material.public, num_clients, contributors).colluders

    def honest_shortfall(self, honest: int, num_clients: int, vector_length: int) -> str | None:
        """Why a round of ``num_clients`` hospitals lets a key-share holder decrypt a sum with fewer
        than ``honest`` honest uploads (:func:`secagg.dp.floors.decrypted_shortfall`: the round's
        ``min_contributors``, as its session sets it, less the colluders its guarantee tolerates), or None.
        None for a round of fewer hospitals than t: it never decrypts, so it releases no sum, and
        :meth:`upload_shortfall` skips it before anything is charged (as :meth:`aggregate` skips it)."""
        if num_clients < self.material.public.threshold:
            return None
        contributors = min(self.min_contributors, num_clients)
        guarantee = decrypted_sums(self.material.public, num_clients, contributors)
        return decrypted_shortfall(honest, contributors, guarantee)

    def check_session(self, client_ids: Sequence[int]) -> None:
        """ConfigurationError if a session over ``client_ids`` is refused outright, for everyone: a
        hospital never seen before when every key share is taken (:meth:`SimulatedHospitals.check_new`).
        :meth:`aggregate` checks it, and a DP round before its charge."""
        self.hospitals.check_new(client_ids)

    def upload_shortfall(self, uploads: int, num_clients: int, vector_length: int) -> str | None:
        """Why ``uploads`` are too few for the round's sum to be decrypted, or None: below
        ``min_contributors``, or below t (a hospital decrypts only a sum holding its own upload, so
        the t partial decryptions come from uploaders)."""
        needed = max(self.min_contributors, self.material.public.threshold)
        return None if uploads >= needed else f"paillier: {uploads} hospitals would upload; {needed} are needed"

    def round_context(self, server_round: int, model_digest: bytes) -> bytes:
        """The 32-byte context of round ``server_round``'s session: SHA-256 of
        ``"fl_core/paillier-round"``, the run id (u64), the round (u64) and the model digest."""
        return hashlib.sha256(
            ROUND_LABEL + self.run_id.to_bytes(8, "big") + server_round.to_bytes(8, "big") + model_digest
        ).digest()

    def check_table(self, table: SegmentTable) -> SegmentTable:
        """``table`` if it can encode: the quantizer's check (no clipped count wraps the ring) and no
        segment longer than the packing slot's bound ``max_weight * qmax`` (a clipped count must fit
        the slot); ConfigurationError otherwise."""
        table, config = self.quantizer.check_table(table), self.quantizer.config
        longest = max(s.length for s in table.segments)
        if longest > config.max_weight * config.qmax:
            raise ConfigurationError(
                f"paillier: a segment of {longest} coordinates exceeds the packing slot's bound "
                f"{config.max_weight * config.qmax}; split it or raise max_samples_per_client"
            )
        return table

    def round_parameters(
        self, hospitals: Sequence[int], vector_length: int, table: SegmentTable, server_round: int, model_digest: bytes
    ) -> SessionParameters:
        """The session parameters of round ``server_round`` over ``hospitals`` (the roster, in this
        order) with ``vector_length``-long updates laid out by ``table``, trained from the model whose
        digest is ``model_digest``: the key, the packing layout, the encoded length (in limbs), the
        round's ``min_contributors``, the hospitals' identity keys, the round context
        (:meth:`round_context`) and, as its descriptor, this quantization, the segment table with
        every clip, the model digest, the run id, the round and the quantizer's bound entries. Its
        session id binds everything that shapes a hospital's upload or the decoding of the sum
        (tests/fl_core/test_fl_paillier_binding_guard.py)."""
        length = self.quantizer.encoded_length(vector_length, table)
        return SessionParameters(
            public=self.material.public,
            layout=self.layout,
            vector_length=2 * length if self.split else length,
            roster=tuple(hospitals),
            min_contributors=min(self.min_contributors, len(hospitals)),
            identity_keys=tuple(self.hospitals.identity(client).public for client in hospitals),
            context=self.round_context(server_round, model_digest),
            descriptor=self.quantizer.descriptor(server_round, table, model_digest=model_digest, run_id=self.run_id),
        )

    def aggregate(
        self,
        updates: Sequence[ClientUpdate],
        dropouts: Mapping[int, DropoutStage] | None = None,
        *,
        rng: np.random.Generator,
        segments: SegmentTable | None = None,
        model_digest: bytes | None = None,
    ) -> AggregationResult:
        """Run one Paillier session over ``updates``; see the module docstring."""
        start = time.perf_counter()
        stages = check_round(updates, dropouts, self.quantizer.config.num_clients, rng=rng)
        self.check_session([u.client_id for u in updates])
        models = check_models(updates, model_digest)
        if models.skipped_reason is not None:
            return skipped(f"paillier: {models.skipped_reason}", 0.0, time.perf_counter() - start)
        length, models, updates = check_lengths(updates, models, segments_authority(segments))
        stages = models.stages(stages)
        table = self.check_table(self.schedule.table(length, segments))
        encoded = self.quantizer.encode_round(updates, stages, rng, table, ring=False)  # withholds, at UPLOAD
        ids = sorted(u.client_id for u in updates)
        self.hospitals.assign(ids)
        with key_policy(self.insecure):
            result = self._session(updates, encoded.stages, encoded.encodings, ids, start, table, models, length)
        return with_withheld(result, encoded.withheld)

    def _session(
        self,
        updates: Sequence[ClientUpdate],
        stages: Mapping[int, DropoutStage],
        encodings: Mapping[int, IntArray],
        ids: list[int],
        start: float,
        table: SegmentTable,
        models: ModelCheck,
        length: int,
    ) -> AggregationResult:
        self._rounds += 1
        sent = [u.client_id for u in uploaders(updates, stages)]
        threshold = self.material.public.threshold
        if len(sent) < self.min_contributors:
            reason = f"paillier: {len(sent)} hospitals uploaded; at least {self.min_contributors} are needed"
        elif len(ids) < threshold:  # no session: its hospitals never decrypt (SessionParameters refuses it)
            reason = (f"paillier: a round of {len(ids)} hospitals never decrypts: t = {threshold} partial "
                      "decryptions are needed")
        else:
            reason = ""
        if reason:
            return skipped(reason, 0.0, time.perf_counter() - start, models.refused)
        params = self.round_parameters(ids, length, table, self._rounds, models.digest)
        server = Server(params, workers=self.workers)
        uploads = {c: split_limbs(encodings[c]) if self.split else encodings[c] for c in sent}
        digests, errors, bytes_sent = self.hospitals.upload(params, server, uploads)

        guarantee = params.guarantee  # the session's, computed by the protocol for this round's hospitals

        def skip(reason: str) -> AggregationResult:
            result = skipped(reason, bytes_sent / len(updates), time.perf_counter() - start, models.refused, errors)
            return dataclasses.replace(result, guarantee=guarantee)

        accepted = sorted(server.included)
        if len(accepted) < params.min_contributors:
            return skip(f"paillier: {len(accepted)} uploads accepted; at least {params.min_contributors} are needed")
        # Hospitals of this round that never drop (and whose upload was accepted: a hospital refuses to
        # decrypt a sum without its own upload) decrypt, in key-share order, until t answers verify.
        live = self.hospitals.in_share_order(c for c in ids if c not in stages and c not in errors)
        threshold = self.material.public.threshold
        if len(live) < threshold:
            return skip(
                f"paillier: {len(live)} hospitals remain to decrypt; {threshold} partial decryptions are needed"
            )
        answered, answer_bytes = self.hospitals.decrypt(params, server, live, digests, errors, self.constant_time)
        bytes_sent += answer_bytes
        if answered < threshold:
            return skip(
                f"paillier: {answered} partial decryptions verified; {threshold} are needed (dropped: {len(errors)})"
            )
        try:
            total = server.finish()
            sums = join_limbs(total) if self.split else total
            decoded = self.quantizer.decode_sum(sums, len(accepted), table)
        except SecAggError as exc:  # e.g. an upload that overflowed its slots: refused, never a wrong sum
            return skip(f"paillier: the decrypted sum is refused: {exc}")
        self.schedule.observe(decoded.clipping)
        return AggregationResult(
            mean=decoded.mean,
            included=frozenset(accepted),
            bytes_per_client=bytes_sent / len(updates),
            seconds=time.perf_counter() - start,
            clipping=decoded.clipping,
            refused=models.refused,
            errors=errors,
            guarantee=guarantee,
        )

    def close(self) -> None:
        """Stop worker processes, if any."""
        self.workers.close()

    def describe(self) -> dict[str, Any]:
        """Key size, threshold and packing layout, for logs."""
        public = self.material.public
        return {
            "key_bits": public.key.key_bits,
            "threshold": public.threshold,
            "parties": public.num_parties,
            "layout": self.layout.describe(),
            "limbs": 2 if self.split else 1,
            "obfuscation": self.obfuscation.value,
        }
