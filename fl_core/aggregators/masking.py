"""Pairwise-masking aggregators: ``secagg`` (complete graph) and ``secagg+`` (Harary graph).

Each round is one fresh :func:`secagg.masking.run_session` over the sampled
clients, with their weighted encodings
(:class:`~fl_core.aggregators.base.WeightedQuantizer`) as inputs: new key
pairs, new masks, so nothing links two rounds. The server learns the ring sum
``(sum n_k q_k, sum n_k)`` of the clients it includes, and nothing else.

Client ids of the session are 1..m, assigned to the round's clients in
ascending order of their own ids (the identity when the clients are 1..m, as
in the demo; otherwise a skipped round's reason spells out the mapping, up to ten ids). Dropout stages map onto
protocol rounds as in
:class:`~fl_core.aggregators.base.DropoutStage`. If fewer clients than the
threshold remain, the session aborts with ThresholdError and the round is
returned as skipped; the reason names the aggregation and its mode, the clients
that dropped (and at which stage; up to ten, then how many more), then gives the protocol's message (with the
threshold and the dropouts the configuration survives, which follow the mode).

Each session's descriptor binds the round's model digest and the aggregator's run
id (:mod:`fl_core.aggregators.binding`): a client that declares another model than
the round's is refused before the session, as a ``JOIN`` dropout with the reason in
``AggregationResult.refused``; two aggregators never share a session. Each result states its
session's guarantee, computed for the round's n (:meth:`MaskingAggregator.round_guarantee`): fewer
clients than the full roster can tolerate fewer colluders or dropouts (:mod:`fl_core.guarantees`).

Mode: ``"active"`` by default, so a server that lies (about who dropped, or by
sending different clients different views) learns no more than the sum: every
hospital holds a long-term Ed25519 identity key, made once per aggregator from
its ``random_bytes`` (the public keys stand for a PKI the server does not control),
signs its key advertisement and takes part in the ConsistencyCheck round; the
session config lists the public keys in session-id order. ``"semi-honest"`` is
opt-in by name: fewer bytes and one round less, and a higher dropout tolerance at
small n, but it does NOT resist a server that lies about dropouts.

Defaults (``MaskingConfig.secagg_plus`` and ``MaskingConfig.secagg``): the
complete graph up to 100 clients, sized to survive one dropout below 20 clients
and 10% of the clients at each of the four stages from 20 on; SecAgg+ with the
same per-stage assumption beyond 100 clients.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence

import numpy as np

from fl_core.aggregators.base import (
    AggregationResult,
    ClientUpdate,
    DropoutStage,
    check_round,
    skipped,
    with_withheld,
)
from fl_core.aggregators.binding import NO_MODEL, check_lengths, check_models, check_run_id, segments_authority
from fl_core.aggregators.clipping import ClipPolicy, ClipSchedule, clip_policy
from fl_core.aggregators.quantizer import WeightedQuantizer
from secagg._validate import require_callable, require_instance, require_int
from secagg.dp.floors import masking_floor, unmasked_shortfall
from secagg.errors import ConfigurationError, ThresholdError
from secagg.guarantee import Guarantee
from secagg.masking import ACTIVE, COMPLETE, HARARY, SEMI_HONEST, MaskingConfig, Round, run_session
from secagg.masking.server_state import summary_list
from secagg.primitives.randomness import RandomBytes, system_random
from secagg.primitives.signing import SigningKey, placeholder_public_keys
from secagg.segments import SegmentTable

__all__ = [
    "MASKING_MODES",
    "MIN_CLIENTS",
    "STAGE_TO_ROUND",
    "MaskingAggregator",
    "session_config",
    "supported_honest",
]

MASKING_MODES = (ACTIVE, SEMI_HONEST)
"""The masking modes, the default first: ``"active"`` resists a server that lies about
dropouts; ``"semi-honest"`` (opt-in) protects only against an honest-but-curious one."""

MIN_CLIENTS = 3
"""The fewest clients a masking session can have (secagg.masking refuses fewer)."""

STAGE_TO_ROUND: Mapping[DropoutStage, Round] = {
    DropoutStage.JOIN: Round.ADVERTISE_KEYS,
    DropoutStage.SETUP: Round.SHARE_KEYS,
    DropoutStage.UPLOAD: Round.MASKED_INPUT,
    DropoutStage.FINALIZE: Round.UNMASKING,
}
"""The masking round whose message a client dropping at each stage never sends."""


def session_config(
    graph: str,
    num_clients: int,
    vector_length: int,
    *,
    ring_bits: int = 32,
    corrupt_fraction: float | None = None,
    dropout_fraction: float | None = None,
    dropout_per_round: float | None = None,
    mode: str = ACTIVE,
    identity_keys: tuple[bytes, ...] = (),
) -> MaskingConfig:
    """The session parameters a :class:`MaskingAggregator` with these options uses for ``num_clients``
    clients: ``MaskingConfig.secagg`` (``graph="complete"``) or ``MaskingConfig.secagg_plus``."""
    if graph == COMPLETE:
        return MaskingConfig.secagg(
            num_clients, vector_length, ring_bits=ring_bits, corrupt_fraction=corrupt_fraction,
            dropout_fraction=dropout_fraction or 0.0, dropout_per_round=dropout_per_round, mode=mode,
            identity_keys=identity_keys,
        )  # fmt: skip
    return MaskingConfig.secagg_plus(
        num_clients, vector_length, ring_bits=ring_bits, corrupt_fraction=corrupt_fraction,
        dropout_fraction=dropout_fraction, dropout_per_round=dropout_per_round, mode=mode, identity_keys=identity_keys,
    )  # fmt: skip


def supported_honest(
    graph: str,
    num_clients: int,
    *,
    mode: str = ACTIVE,
    corrupt_fraction: float | None = None,
    dropout_fraction: float | None = None,
    dropout_per_round: float | None = None,
) -> int:
    """The largest h (honest noise shares every sum the server can unmask holds,
    :func:`secagg.dp.floors.masking_floor`) of a full round of ``num_clients`` clients of a
    :class:`MaskingAggregator` with these options, before any key exists: t and c do not depend on
    the identity keys, so active mode's are stand-ins here (distinct and well-formed, as a config needs)."""
    stand_ins = placeholder_public_keys(num_clients) if mode == ACTIVE else ()
    config = session_config(
        graph, num_clients, 1, corrupt_fraction=corrupt_fraction, dropout_fraction=dropout_fraction,
        dropout_per_round=dropout_per_round, mode=mode, identity_keys=stand_ins,
    )  # fmt: skip
    return masking_floor(config)


class MaskingAggregator:
    """The weighted mean through a SecAgg (``graph="complete"``) or SecAgg+ (``"harary"``) session.

    Options:
        quantizer: the weighted encoding; its ``num_clients`` bounds the clients per round.
        graph: ``"complete"`` or ``"harary"`` (SecAgg+ with k, t derived from the fractions).
        corrupt_fraction: assumed fraction of clients colluding with the server
            (default: on the complete graph the most colluders, up to a third, that
            keep the dropout tolerance, see ``MaskingConfig.secagg``; on a sparse
            SecAgg+ graph, beyond 100 clients, 0.05).
        dropout_per_round: assumed fraction of clients that drop at *each* of the
            four stages (4x that over a round). Default: one dropout below 20
            clients, 10% per stage from 20 on.
        dropout_fraction: instead, the assumed fraction of clients that drop over
            the whole round (all stages together).
        random_bytes: the source of every secret (keys, masks); ``system_random``
            unless a test injects a deterministic one.
        clipping: how each segment's clip moves between rounds (``"adaptive"``,
            the default, or ``"fixed"``; :mod:`fl_core.aggregators.clipping`).
        mode: ``"active"`` (the default: signed keys and a consistency round, private
            against a server that lies about dropouts) or ``"semi-honest"`` (opt-in:
            cheaper, but does NOT resist a lying server); see the module docstring.
        run_id: the run every round's session descriptor binds (a u64): drawn from
            ``secrets`` for each aggregator (the default, None), so two runs or two
            aggregators never share a session; a caller that names its runs gives its own.
    """

    def __init__(
        self,
        quantizer: WeightedQuantizer,
        *,
        graph: str = HARARY,
        corrupt_fraction: float | None = None,
        dropout_fraction: float | None = None,
        dropout_per_round: float | None = None,
        random_bytes: RandomBytes = system_random,
        clipping: str | ClipPolicy = "adaptive",
        mode: str = ACTIVE,
        run_id: int | None = None,
    ) -> None:
        require_instance("quantizer", quantizer, WeightedQuantizer)
        self.run_id = check_run_id(run_id)
        if not isinstance(mode, str) or mode not in MASKING_MODES:
            raise ConfigurationError(
                f"mode must be {ACTIVE!r} (the default: resists a server that lies about dropouts) or "
                f"{SEMI_HONEST!r} (opt-in: does not), got {mode!r}"
            )
        self.schedule = ClipSchedule(clip_policy(clipping), quantizer.config.clip)
        if graph not in (COMPLETE, HARARY):
            raise ConfigurationError(f"graph must be {COMPLETE!r} or {HARARY!r}, got {graph!r}")
        if quantizer.config.num_clients < MIN_CLIENTS:
            raise ConfigurationError(
                f"secure aggregation needs at least {MIN_CLIENTS} clients, "
                f"got num_clients={quantizer.config.num_clients}"
            )
        if dropout_fraction is not None and dropout_per_round is not None:
            raise ConfigurationError("give dropout_per_round or the session-wide dropout_fraction, not both")
        self.quantizer = quantizer
        self.graph = graph
        self.corrupt_fraction = corrupt_fraction
        self.dropout_fraction = dropout_fraction
        self.dropout_per_round = dropout_per_round
        self.random_bytes = require_callable("random_bytes", random_bytes)
        self.mode = mode
        self._configs: dict[tuple[int, int], MaskingConfig] = {}
        self._identities: dict[int, SigningKey] = {}
        self._rounds = 0
        if mode == ACTIVE:
            # Each hospital's long-term identity key, made once (hospitals 1..n here,
            # any other id when it first takes part), from random_bytes so seeded runs repeat.
            self._identity_keys(range(1, quantizer.config.num_clients + 1))
        # Validate the protocol parameters now, for a full round, not mid-training.
        self.masking_config(quantizer.config.num_clients, 1)

    @property
    def guarantee(self) -> Guarantee:
        """What a full round (every client) guarantees, computed from its parameters. A round of
        fewer clients runs its own session, whose guarantee can be weaker (:meth:`round_guarantee`)."""
        return self.round_guarantee(self.quantizer.config.num_clients)

    def round_guarantee(self, num_clients: int) -> Guarantee:
        """What a round of ``num_clients`` clients guarantees: its session's, computed for that n
        (the threshold and c the mode picks for it; 6 clients in active mode tolerate 1 colluder, 8
        tolerate 3). ConfigurationError for a count no round runs with (below :data:`MIN_CLIENTS`,
        above the quantizer's ``num_clients``)."""
        num_clients = require_int("num_clients", num_clients, 1, self.quantizer.config.num_clients)
        self.check_session(range(num_clients))
        return self.masking_config(num_clients, 1).guarantee

    @property
    def name(self) -> str:
        """``"secagg"`` or ``"secagg+"``."""
        return "secagg" if self.graph == COMPLETE else "secagg+"

    def _identity_keys(self, hospitals: Sequence[int]) -> tuple[bytes, ...]:
        """The public identity keys of ``hospitals`` in that order (session ids 1..m), made on first use."""
        for hospital in sorted(set(hospitals) - set(self._identities)):
            self._identities[hospital] = SigningKey.generate(self.random_bytes)
        return tuple(self._identities[hospital].public for hospital in hospitals)

    def session_identities(self, hospitals: Sequence[int]) -> tuple[tuple[bytes, ...], dict[int, SigningKey] | None]:
        """For a session whose ids 1..m are ``hospitals`` in this order: the public identity keys
        in session-id order (the config's ``identity_keys``) and the signing keys by session id
        (``run_session``'s ``identities``); ``((), None)`` in semi-honest mode."""
        if self.mode != ACTIVE:
            return (), None
        public = self._identity_keys(hospitals)
        return public, {index: self._identities[hospital] for index, hospital in enumerate(hospitals, start=1)}

    def masking_config(self, num_clients: int, vector_length: int) -> MaskingConfig:
        """The (cached) session parameters for ``num_clients`` clients and ``vector_length`` encoded values.

        In active mode its identity keys are those of hospitals 1..``num_clients``; a
        round replaces them with its own hospitals' keys, in session-id order."""
        key = (num_clients, vector_length)
        if key not in self._configs:
            identity_keys = self._identity_keys(range(1, num_clients + 1)) if self.mode == ACTIVE else ()
            self._configs[key] = session_config(
                self.graph, num_clients, vector_length, ring_bits=self.quantizer.config.ring_bits,
                corrupt_fraction=self.corrupt_fraction, dropout_fraction=self.dropout_fraction,
                dropout_per_round=self.dropout_per_round, mode=self.mode, identity_keys=identity_keys,
            )  # fmt: skip
        return self._configs[key]

    def round_config(
        self,
        hospitals: Sequence[int],
        vector_length: int,
        table: SegmentTable,
        server_round: int,
        model_digest: bytes = NO_MODEL,
    ) -> MaskingConfig:
        """The bound configuration of round ``server_round`` over ``hospitals`` (session ids 1..m in
        this order) with ``vector_length``-long updates laid out by ``table``, trained from the model
        whose digest is ``model_digest``: the session parameters (:meth:`masking_config`, for the
        encoded length), the hospitals' identity keys and, as its descriptor, this quantization, the
        segment table with every clip, the model digest, the run id, the round and the quantizer's
        bound entries (:meth:`WeightedQuantizer.descriptor`). Everything that shapes a hospital's
        encoding or the decoding of the sum is in it, so it is what every hospital agrees on
        (tests/fl_core/test_fl_masking_binding_guard.py)."""
        base = self.masking_config(len(hospitals), self.quantizer.encoded_length(vector_length, table))
        identity_keys, _ = self.session_identities(hospitals)
        descriptor = self.quantizer.descriptor(server_round, table, model_digest=model_digest, run_id=self.run_id)
        return dataclasses.replace(base, descriptor=descriptor, identity_keys=identity_keys)

    def honest_floor(self, num_clients: int, vector_length: int) -> int:
        """The largest h a session of ``num_clients`` clients supports: the honest inputs in the
        smallest sum its server can unmask (:func:`secagg.dp.floors.masking_floor`)."""
        return masking_floor(self.masking_config(num_clients, vector_length))

    def honest_shortfall(self, honest: int, num_clients: int, vector_length: int) -> str | None:
        """Why a session of ``num_clients`` clients (its threshold, graph and mode) lets the server
        unmask a sum with fewer than ``honest`` honest inputs (:func:`secagg.dp.floors.unmasked_shortfall`),
        or None. None below :data:`MIN_CLIENTS` too: :meth:`aggregate` refuses such a round itself."""
        if num_clients < MIN_CLIENTS:
            return None
        return unmasked_shortfall(honest, self.masking_config(num_clients, vector_length))

    def check_session(self, client_ids: Sequence[int]) -> None:
        """ConfigurationError if a session over ``client_ids`` is refused outright (fewer than
        :data:`MIN_CLIENTS`), for everyone: :meth:`aggregate` checks it, and a DP round before its charge."""
        if len(client_ids) < MIN_CLIENTS:
            raise ConfigurationError(f"a {self.name} round needs at least {MIN_CLIENTS} clients, got {len(client_ids)}")

    def upload_shortfall(self, uploads: int, num_clients: int, vector_length: int) -> str | None:
        """Why ``uploads`` are too few for a session of ``num_clients`` clients to unmask anything
        (below its threshold t: no client's secrets can be reconstructed), or None."""
        if num_clients < MIN_CLIENTS:
            return None  # check_session refuses such a round
        threshold = self.masking_config(num_clients, vector_length).threshold
        if uploads >= threshold:
            return None
        return f"{self.name}: {uploads} hospitals would upload, below the session's threshold t = {threshold}"

    def aggregate(
        self,
        updates: Sequence[ClientUpdate],
        dropouts: Mapping[int, DropoutStage] | None = None,
        *,
        rng: np.random.Generator,
        segments: SegmentTable | None = None,
        model_digest: bytes | None = None,
    ) -> AggregationResult:
        """Run one masking session over ``updates``; see the module docstring."""
        start = time.perf_counter()
        stages = check_round(updates, dropouts, self.quantizer.config.num_clients, rng=rng)
        self.check_session([u.client_id for u in updates])
        models = check_models(updates, model_digest)
        if models.skipped_reason is not None:
            return skipped(f"{self.name}: {models.skipped_reason}", 0.0, time.perf_counter() - start)
        length, models, updates = check_lengths(updates, models, segments_authority(segments))
        stages = models.stages(stages)
        table = self.quantizer.check_table(self.schedule.table(length, segments))
        encoded = self.quantizer.encode_round(updates, stages, rng, table)  # withholds what it cannot encode
        encodings, stages = encoded.encodings, encoded.stages
        ordered = sorted(u.client_id for u in updates)
        session_id = {client: index for index, client in enumerate(ordered, start=1)}
        self._rounds += 1
        config = self.round_config(ordered, length, table, self._rounds, models.digest)
        _, identities = self.session_identities(ordered)
        try:
            session = run_session(
                config,
                {session_id[c]: encodings[c] for c in ordered},
                {session_id[c]: STAGE_TO_ROUND[stage] for c, stage in stages.items()},
                identities=identities,
                random_bytes=self.random_bytes,
                record_transcript=False,
            )
        except ThresholdError as exc:
            # The session aborted; the server learnt nothing. Bytes of the aborted
            # session are not reported by the driver, so none are counted.
            reason = self._skip_reason(exc, stages, ordered)
            aborted = dataclasses.replace(
                skipped(reason, 0.0, time.perf_counter() - start, models.refused), guarantee=config.guarantee
            )
            return with_withheld(aborted, encoded.withheld)
        included = frozenset(ordered[index - 1] for index in session.included)
        decoded = self.quantizer.decode_sum(self.quantizer.integers_of(session.aggregate), len(session.included), table)
        self.schedule.observe(decoded.clipping)
        return AggregationResult(
            mean=decoded.mean,
            included=included,
            bytes_per_client=session.bytes_per_client_upload,
            seconds=time.perf_counter() - start,
            clipping=decoded.clipping,
            refused=models.refused,
            withheld=encoded.withheld,
            guarantee=config.guarantee,
        )

    def _skip_reason(self, exc: ThresholdError, stages: Mapping[int, DropoutStage], ordered: list[int]) -> str:
        """Why the round was skipped: the mode, the clients that dropped (their own ids), the protocol's message;
        each list names up to :data:`~secagg.masking.server_state.SUMMARY_IDS` entries, then counts the rest."""
        dropped = summary_list([f"{client} at {stage.name.lower()}" for client, stage in sorted(stages.items())])
        reason = (
            f"{self.name} ({self.mode} mode): round skipped, clients that dropped: {dropped or 'none'}; protocol: {exc}"
        )
        if ordered != list(range(1, len(ordered) + 1)):
            reason += f" (protocol ids 1..{len(ordered)} are clients [{summary_list([str(c) for c in ordered])}])"
        return reason
