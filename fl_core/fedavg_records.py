"""What a FedAvg run records: one :class:`RoundRecord` per round and the :class:`FedAvgResult`.

:func:`fl_core.fedavg.run_fedavg` builds them; :mod:`fl_core.fedavg` re-exports both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fl_core.guarantees import weakest
from fl_core.models import Params
from secagg.guarantee import Guarantee

__all__ = ["FedAvgResult", "RoundRecord"]


@dataclass(frozen=True)
class RoundRecord:
    """What happened in one round.

    Attributes:
        round: 1-based round number.
        accuracy: test accuracy of the global model after the round.
        loss: test loss (mean cross-entropy) of the global model after the round.
        aggregation_s: seconds the aggregator took.
        bytes_per_client: bytes uploaded in the round per included client
            (see :class:`~fl_core.aggregators.base.AggregationResult`).
        sampled: ids of the clients sampled for the round.
        dropouts: (client id, stage name) of the sampled clients that dropped out.
        included: ids of the clients whose updates are in the new model.
        skipped_reason: why the model was left unchanged, or None.
        epsilon_spent: with DP, the epsilon spent per patient after this round (at
            ``delta``), else None.
        delta: with DP, the budget's delta, else None.
        clipped_fraction: fraction of the included updates' coordinates that were
            clipped, from the securely summed counts (0.0 for ``plain``).
        rejected: (client id, reason) of the sampled clients whose update was malformed
            (NaN or infinite values, or not the model's length), or could not be encoded (the
            aggregator's :attr:`~fl_core.aggregators.base.AggregationResult.withheld`, e.g. a
            rotation beyond binary64): they withhold it (listed in ``dropouts`` at ``UPLOAD``, or
            earlier) and the round goes on without them; and of those the aggregator refused
            (:attr:`AggregationResult.refused`: trained from another model), listed at ``JOIN``; and
            the messages the aggregator dropped (:attr:`AggregationResult.errors`: e.g. a Paillier upload
            or partial decryption that failed its checks), with the reason saying which.
        guarantee: the round's session's, computed for the clients it ran with (can be weaker than the
            full roster's: :mod:`fl_core.guarantees`); None if no session ran.
    """

    round: int
    accuracy: float
    loss: float
    aggregation_s: float
    bytes_per_client: float
    sampled: tuple[int, ...]
    dropouts: tuple[tuple[int, str], ...]
    included: tuple[int, ...]
    skipped_reason: str | None = None
    epsilon_spent: float | None = None
    delta: float | None = None
    clipped_fraction: float = 0.0
    rejected: tuple[tuple[int, str], ...] = ()
    guarantee: Guarantee | None = None


@dataclass(frozen=True)
class FedAvgResult:
    """The trained global model and the history that produced it.

    ``initial_accuracy``/``initial_loss`` evaluate the model before round 1;
    ``converged`` says training stopped early on the loss criterion; ``left_out`` is (client id,
    reason) of the hospitals whose data the model cannot take, found before round 1 and left out of
    every round (a round's ``rejected`` names one only when the round samples it).
    """

    params: Params = field(repr=False)
    rounds: tuple[RoundRecord, ...]
    initial_accuracy: float
    initial_loss: float
    converged: bool
    left_out: tuple[tuple[int, str], ...] = ()

    @property
    def final_accuracy(self) -> float:
        """Test accuracy of the final global model."""
        return self.rounds[-1].accuracy if self.rounds else self.initial_accuracy

    @property
    def guarantee(self) -> Guarantee | None:
        """The weakest guarantee of the rounds' sessions (:func:`fl_core.guarantees.weakest`): what held
        in every round that ran one, not the full roster's; None if none did."""
        return weakest(r.guarantee for r in self.rounds)
