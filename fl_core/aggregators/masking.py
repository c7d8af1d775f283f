"""Pairwise-masking aggregators: ``secagg`` (complete graph) and ``secagg+`` (Harary graph).

Each round is one fresh :func:`secagg.masking.run_session` over the sampled
clients, with their weighted encodings
(:class:`~fl_core.aggregators.base.WeightedQuantizer`) as inputs: new key
pairs, new masks, so nothing links two rounds. The server learns the ring sum
``(sum n_k q_k, sum n_k)`` of the clients it includes, and nothing else.

Client ids of the session are 1..m, assigned to the round's clients in
ascending order of their own ids (the identity when the clients are 1..m, as
in the demo; otherwise a skipped round's reason spells out the mapping). Dropout stages map onto protocol rounds as in
:class:`~fl_core.aggregators.base.DropoutStage`. If fewer clients than the
threshold remain, the session aborts with ThresholdError and the round is
returned as skipped, with the protocol's message as the reason.
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
    WeightedQuantizer,
    check_round,
    skipped,
)
from secagg.errors import ConfigurationError, ThresholdError
from secagg.guarantee import Guarantee
from secagg.masking import COMPLETE, HARARY, MaskingConfig, Round, run_session
from secagg.primitives.randomness import RandomBytes, system_random

__all__ = ["MIN_CLIENTS", "STAGE_TO_ROUND", "MaskingAggregator"]

MIN_CLIENTS = 3
"""The fewest clients a masking session can have (secagg.masking refuses fewer)."""

STAGE_TO_ROUND: Mapping[DropoutStage, Round] = {
    DropoutStage.JOIN: Round.ADVERTISE_KEYS,
    DropoutStage.SETUP: Round.SHARE_KEYS,
    DropoutStage.UPLOAD: Round.MASKED_INPUT,
    DropoutStage.FINALIZE: Round.UNMASKING,
}
"""The masking round whose message a client dropping at each stage never sends."""


class MaskingAggregator:
    """The weighted mean through a SecAgg (``graph="complete"``) or SecAgg+ (``"harary"``) session.

    Options:
        quantizer: the weighted encoding; its ``num_clients`` bounds the clients per round.
        graph: ``"complete"`` or ``"harary"`` (SecAgg+ with k, t derived from the fractions).
        corrupt_fraction: assumed fraction of clients colluding with the server
            (secagg+ default 0.05; secagg default: the most colluders, up to a third,
            that keep the default dropout tolerance; see ``MaskingConfig.secagg``).
        dropout_fraction: assumed fraction of clients that drop (secagg+ only; default 0.1).
        random_bytes: the source of every secret (keys, masks); ``system_random``
            unless a test injects a deterministic one.
    """

    def __init__(
        self,
        quantizer: WeightedQuantizer,
        *,
        graph: str = HARARY,
        corrupt_fraction: float | None = None,
        dropout_fraction: float | None = None,
        random_bytes: RandomBytes = system_random,
    ) -> None:
        if graph not in (COMPLETE, HARARY):
            raise ConfigurationError(f"graph must be {COMPLETE!r} or {HARARY!r}, got {graph!r}")
        if quantizer.config.num_clients < MIN_CLIENTS:
            raise ConfigurationError(
                f"secure aggregation needs at least {MIN_CLIENTS} clients, "
                f"got num_clients={quantizer.config.num_clients}"
            )
        if graph == COMPLETE and dropout_fraction is not None:
            raise ConfigurationError("dropout_fraction applies to secagg+ only (secagg tolerates a minority)")
        self.quantizer = quantizer
        self.graph = graph
        self.corrupt_fraction = corrupt_fraction
        self.dropout_fraction = dropout_fraction
        self.random_bytes = random_bytes
        self._configs: dict[tuple[int, int], MaskingConfig] = {}
        self._rounds = 0
        # Validate the protocol parameters now, for a full round, not mid-training.
        self.masking_config(quantizer.config.num_clients, 1)

    @property
    def guarantee(self) -> Guarantee:
        """What a full round (every client) guarantees, computed from its parameters."""
        return self.masking_config(self.quantizer.config.num_clients, 1).guarantee

    @property
    def name(self) -> str:
        """``"secagg"`` or ``"secagg+"``."""
        return "secagg" if self.graph == COMPLETE else "secagg+"

    def masking_config(self, num_clients: int, vector_length: int) -> MaskingConfig:
        """The (cached) session parameters for ``num_clients`` clients and ``vector_length`` encoded values."""
        key = (num_clients, vector_length)
        if key not in self._configs:
            ring_bits = self.quantizer.config.ring_bits
            if self.graph == COMPLETE:
                self._configs[key] = MaskingConfig.secagg(
                    num_clients, vector_length, ring_bits=ring_bits, corrupt_fraction=self.corrupt_fraction
                )
            else:
                self._configs[key] = MaskingConfig.secagg_plus(
                    num_clients,
                    vector_length,
                    ring_bits=ring_bits,
                    corrupt_fraction=0.05 if self.corrupt_fraction is None else self.corrupt_fraction,
                    dropout_fraction=0.1 if self.dropout_fraction is None else self.dropout_fraction,
                )
        return self._configs[key]

    def aggregate(
        self,
        updates: Sequence[ClientUpdate],
        dropouts: Mapping[int, DropoutStage] | None = None,
        *,
        rng: np.random.Generator,
    ) -> AggregationResult:
        """Run one masking session over ``updates``; see the module docstring."""
        start = time.perf_counter()
        stages = check_round(updates, dropouts, self.quantizer.config.num_clients)
        if len(updates) < MIN_CLIENTS:
            raise ConfigurationError(f"a {self.name} round needs at least {MIN_CLIENTS} clients, got {len(updates)}")
        encodings = self.quantizer.encode_all(updates, rng)
        ordered = sorted(u.client_id for u in updates)
        session_id = {client: index for index, client in enumerate(ordered, start=1)}
        self._rounds += 1
        config = dataclasses.replace(
            self.masking_config(len(ordered), self.quantizer.encoded_length(updates[0].vector.shape[0])),
            descriptor=self.quantizer.descriptor(self._rounds),
        )
        try:
            session = run_session(
                config,
                {session_id[c]: encodings[c] for c in ordered},
                {session_id[c]: STAGE_TO_ROUND[stage] for c, stage in stages.items()},
                random_bytes=self.random_bytes,
                record_transcript=False,
            )
        except ThresholdError as exc:
            # The session aborted; the server learnt nothing. Bytes of the aborted
            # session are not reported by the driver, so none are counted.
            reason = f"{self.name}: {exc}"
            if ordered != list(range(1, len(ordered) + 1)):
                reason += f" (protocol ids 1..{len(ordered)} are clients {ordered})"
            return skipped(reason, 0.0, time.perf_counter() - start)
        included = frozenset(ordered[index - 1] for index in session.included)
        mean = self.quantizer.decode(session.aggregate, len(session.included))
        return AggregationResult(
            mean=mean,
            included=included,
            bytes_per_client=session.bytes_per_client_upload,
            seconds=time.perf_counter() - start,
        )
