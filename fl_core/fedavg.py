"""Federated averaging (McMahan et al., AISTATS 2017), in one readable loop.

Each round t = 1..R:

1. the server samples a fraction C of the clients;
2. the simulation decides which of them drop out, and at which stage;
3. every sampled client starts from the global model w and runs E epochs of
   minibatch SGD on its own data, giving w_k; its update is u_k = w_k - w, and it
   declares the digest of the w it received (:func:`fl_core.aggregators.model_digest`);
4. the aggregator returns the sample-weighted mean of the updates that made it
   (for the secure aggregators the server learns nothing else), binding the digest of
   w into the session and refusing a client that declares another model; without DP
   every session binds the local training too (E, B and the learning rate,
   :func:`fl_core.contribution_binding.training_parameters`), and every session, DP or not, binds the
   model's kind and settings (:func:`fl_core.contribution_binding.model_parameters`), so a client that
   trained otherwise, or ran another model, is refused;
5. the server sets w <- w + mean, or keeps w if the round was skipped (too few
   clients left for the protocol: the reason is logged);
6. the global model is evaluated on the held-out test set.

Training stops after R rounds, or earlier once the test loss has changed by
less than ``tolerance`` (relative) for ``patience`` completed rounds in a row.

Every random choice comes from a numpy Generator derived from (seed, purpose,
round, client), so two runs with the same seed and different aggregators see the
same samples, dropouts and minibatches: only the aggregation differs. The exceptions
are a DP round's secrets, its noise and its Poisson sample of patients, drawn from
the DP aggregator's noise source (the OS CSPRNG unless seeded): the amplification by
sampling holds only if nobody but the hospital knows who was sampled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np

from fl_core.aggregators.base import AggregationResult, Aggregator, ClientUpdate, DropoutStage
from fl_core.aggregators.binding import bind_entries, model_digest
from fl_core.contribution_binding import MODEL_PREFIX, TRAINING_PREFIX, model_parameters, training_parameters
from fl_core.data import ClientData
from fl_core.dp import DPAggregator
from fl_core.dp_training import dp_contribution, public_denominator
from fl_core.fedavg_inputs import check_initial, unusable_data
from fl_core.fedavg_records import FedAvgResult, RoundRecord
from fl_core.guarantees import client_fraction, sampled_count, state_guarantee
from fl_core.models import DPModel, FloatArray, IntArray, Model, Params, accuracy, flatten, unflatten
from fl_core.server_opt import ServerOptimizer
from secagg._validate import require_finite, require_instance, require_int, require_rng, require_sequence
from secagg.errors import ConfigurationError, ConfigurationTypeError

__all__ = ["FedAvgConfig", "FedAvgResult", "RoundRecord", "local_sgd", "run_fedavg"]

LOGGER = logging.getLogger("fl_core.fedavg")

# Purpose tags that keep the simulation's random streams independent.
_INIT, _SAMPLE, _DROPOUT, _TRAIN, _AGGREGATE = range(5)
_WITHHELD = DropoutStage.UPLOAD  # the stage at which a hospital with a malformed update goes silent


@dataclass(frozen=True)
class FedAvgConfig:
    """Hyper-parameters of a FedAvg run.

    Attributes:
        rounds: R, the most rounds to run (>= 1).
        local_epochs: E, passes over its data each client makes per round.
        batch_size: B, minibatch size of local SGD.
        learning_rate: step size of local SGD.
        client_fraction: C in (0, 1], fraction of clients sampled per round
            (at least one client).
        dropout: probability that a sampled client drops out of a round, at a
            stage drawn uniformly from :class:`DropoutStage`.
        tolerance: stop early when the relative change of the test loss stays
            below this for ``patience`` completed rounds (0 disables).
        patience: see ``tolerance``.
        seed: seed of every random choice in the simulation.
        server_optimizer: DP rounds only: ``sgd`` or ``adam``, the server's step on the
            noised mean gradient (:class:`fl_core.server_opt.ServerOptimizer`, with
            ``learning_rate``). Post-processing of the released sums: it costs no privacy.
        server_momentum: DP rounds only: heavy-ball momentum (sgd) or beta1 (adam), in [0, 1).
    """

    rounds: int = 20
    local_epochs: int = 2
    batch_size: int = 16
    learning_rate: float = 0.05
    client_fraction: float = 1.0
    dropout: float = 0.0
    tolerance: float = 0.0
    patience: int = 3
    seed: int = 0
    server_optimizer: str = "sgd"
    server_momentum: float = 0.0

    def __post_init__(self) -> None:
        for name in ("rounds", "local_epochs", "batch_size", "patience"):
            require_int(name, getattr(self, name))
        if self.rounds < 1 or self.local_epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ConfigurationError("rounds, local_epochs, batch_size and patience must be at least 1")
        require_int("seed", self.seed, 0)  # numpy seeds are non-negative
        given = {name: getattr(self, name) for name in ("learning_rate", "dropout", "tolerance", "server_momentum")}
        for name, value in given.items():  # ranges below; held as floats
            object.__setattr__(self, name, require_finite(name, value))  # (a Fraction too)
        for name in ("dropout", "tolerance", "server_momentum"):  # a negative Fraction may round to -0.0
            if given[name] < 0:
                raise ConfigurationError(f"{name} must be non-negative, got {given[name]}")
        if not self.learning_rate > 0:
            raise ConfigurationError(f"learning_rate must be positive, got {self.learning_rate}")
        client_fraction(self.client_fraction)  # a number in (0, 1], or refused
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigurationError(f"dropout must be in [0, 1), got {self.dropout}")
        ServerOptimizer(self.server_optimizer, self.learning_rate, self.server_momentum)  # validates
        if not self.tolerance >= 0:
            raise ConfigurationError(f"tolerance must be non-negative, got {self.tolerance}")


def local_sgd(
    model: Model,
    params: Params,
    data: ClientData,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    rng: np.random.Generator,
) -> Params:
    """``epochs`` passes of minibatch SGD over ``data``, reshuffled each pass; returns new parameters.

    ``rng`` (the shuffling) is a ``numpy.random.Generator``: anything else, a legacy ``RandomState``
    too, is a ConfigurationTypeError before any draw, as at every ``rng``."""
    require_rng("rng", rng)
    params = [p.copy() for p in params]
    for _ in range(epochs):
        order = rng.permutation(data.num_samples)
        for start in range(0, data.num_samples, batch_size):
            batch = order[start : start + batch_size]
            _, grads = model.loss_and_grad(params, data.features[batch], data.labels[batch])
            for param, grad in zip(params, grads, strict=True):
                np.subtract(param, learning_rate * grad, out=param)
    return params


def _sample_clients(clients: Sequence[ClientData], fraction: float, rng: np.random.Generator) -> list[ClientData]:
    count = sampled_count(len(clients), fraction)
    chosen = np.sort(rng.choice(len(clients), size=count, replace=False))
    return [clients[int(i)] for i in chosen]


def _draw_dropouts(
    sampled: Sequence[ClientData], probability: float, rng: np.random.Generator
) -> dict[int, DropoutStage]:
    stages = list(DropoutStage)
    drops = rng.random(len(sampled)) < probability
    picks = rng.integers(0, len(stages), size=len(sampled))
    return {c.client_id: stages[int(s)] for c, d, s in zip(sampled, drops, picks, strict=True) if d}


def _local_update(
    model: Model, params: Params, client: ClientData, config: FedAvgConfig, rng: np.random.Generator
) -> FloatArray:
    """``client``'s update: its model after local SGD from ``params``, minus ``params``."""
    local = local_sgd(
        model, params, client,
        epochs=config.local_epochs, batch_size=config.batch_size, learning_rate=config.learning_rate, rng=rng,
    )  # fmt: skip
    return flatten(local) - flatten(params)


def _round_updates(
    model: Model,
    params: Params,
    sampled: Sequence[ClientData],
    dropouts: dict[int, DropoutStage],
    config: FedAvgConfig,
    t: int,
    dp: DPAggregator | None,
    unusable: Mapping[int, str],
) -> tuple[list[ClientUpdate], list[tuple[int, str]]]:
    """The sampled clients' updates of round ``t`` (local SGD, or with ``dp`` one DP contribution) and
    (client, reason) of those whose update is malformed: they withhold it (a stand-in vector, never
    uploaded, keeps the round's shape) and drop at ``UPLOAD`` at the latest (``dropouts`` is updated); so do
    the clients ``unusable`` names (data the model cannot take), with its reason, untrained."""
    updates: list[ClientUpdate] = []
    rejected: list[tuple[int, str]] = []
    expected = flatten(params)
    for client in sampled:
        received = model_digest(params)  # the client's own digest of the global model it trained from
        problem = unusable.get(client.client_id)
        if problem is not None:  # data the model cannot take: never trained on, withheld as a malformed update
            vector = np.zeros_like(expected)
        elif dp is not None:  # the sample is a secret, as the noise is: drawn from the noise source (dp_training)
            vector = dp_contribution(cast(DPModel, model), params, client, dp.config, dp.quantizer.noise_source)
        else:
            rng = np.random.default_rng([config.seed, _TRAIN, t, client.client_id])
            vector = _local_update(model, params, client, config, rng)
        problem = problem or _malformed(vector, expected.shape[0])
        if problem is not None:
            rejected.append((client.client_id, problem))
            dropouts[client.client_id] = min(dropouts.get(client.client_id, _WITHHELD), _WITHHELD)
            LOGGER.warning("round %d: hospital %d withholds its update: %s", t, *rejected[-1])
            vector = np.zeros_like(expected)
        updates.append(ClientUpdate(client.client_id, vector, client.num_samples, model_digest=received))
    return updates, rejected


def _malformed(vector: FloatArray, length: int) -> str | None:
    """Why ``vector`` is not an update of the model's ``length`` coordinates, or None."""
    if not isinstance(vector, np.ndarray) or vector.ndim != 1 or vector.shape[0] != length:
        return f"update has length {getattr(vector, 'size', '?')}, expected {length}"
    if not np.all(np.isfinite(vector)):
        return "update contains NaN or infinite values"
    return None


def _evaluate(model: Model, params: Params, x: FloatArray, y: IntArray) -> tuple[float, float]:
    loss, _ = model.loss_and_grad(params, x, y)
    return accuracy(model, params, x, y), loss



def _record_left_out(
    result: AggregationResult, t: int, dropouts: dict[int, DropoutStage], rejected: list[tuple[int, str]]
) -> None:
    """Add to round ``t``'s record the hospitals the aggregator left out, each with its reason: refused
    (trained from another model: never joined, ``JOIN``), withheld (its update could not be encoded:
    silent at ``UPLOAD``), and those whose message it dropped (``errors``, e.g. a Paillier upload or
    partial decryption that failed its checks; the reason says which)."""
    for client, reason in result.refused:
        dropouts[client] = DropoutStage.JOIN
        rejected.append((client, reason))
        LOGGER.warning("round %d: hospital %d refused: %s", t, client, reason)
    for client, reason in result.withheld:
        rejected.append((client, reason))
        dropouts[client] = min(dropouts.get(client, _WITHHELD), _WITHHELD)
        LOGGER.warning("round %d: hospital %d withholds its update: %s", t, client, reason)
    for client, reason in sorted(result.errors.items()):
        rejected.append((client, reason))
        LOGGER.warning("round %d: hospital %d: %s", t, client, reason)

def _check_arguments(clients: object, aggregator: object, config: object) -> None:
    """ConfigurationTypeError for a wrong-typed argument of :func:`run_fedavg`; ConfigurationError for
    no clients, or two with one id."""
    require_instance("config", config, FedAvgConfig)
    if not isinstance(aggregator, Aggregator):  # a Protocol: require_instance takes concrete classes only
        raise ConfigurationTypeError(
            f"aggregator must be an fl_core Aggregator (make_aggregator(...)), got {type(aggregator).__name__}"
        )
    given = require_sequence("clients", clients)
    clients = [require_instance(f"clients[{i}]", client, ClientData) for i, client in enumerate(given)]
    if not clients or len({c.client_id for c in clients}) != len(clients):
        raise ConfigurationError("FedAvg needs at least one client, with distinct ids")


def run_fedavg(
    model: Model,
    clients: Sequence[ClientData],
    aggregator: Aggregator,
    test_features: FloatArray,
    test_labels: IntArray,
    config: FedAvgConfig,
    *,
    initial_params: Params | None = None,
    on_round: Callable[[RoundRecord], None] | None = None,
) -> FedAvgResult:
    """Train ``model`` on ``clients`` with FedAvg, summing updates through ``aggregator``.

    ``on_round`` is called after every round (progress display). Client ids must
    be distinct. Returns the final parameters and one :class:`RoundRecord` per round run.

    With a :class:`fl_core.dp.DPAggregator` each round is one DP step instead of local
    epochs (:mod:`fl_core.dp_training`): clipped per-example gradients of Poisson-sampled
    patients, noised sum, then the server optimiser's step on ``sum / public denominator``
    (the included hospitals' declared sizes, :func:`fl_core.dp_training.public_denominator`;
    :mod:`fl_core.server_opt`; post-processing: no privacy cost). Training
    stops when the budget refuses a round; every record carries the epsilon spent.
    Each record's guarantee is its session's, for the ``ceil(C * K)`` sampled (:mod:`fl_core.guarantees`,
    checked before any training); :attr:`FedAvgResult.guarantee` is the weakest.
    """
    _check_arguments(clients, aggregator, config)
    # The model's kind and settings shape every hospital's update (DP or not): bound, or the model refused.
    model_entries = model_parameters(model)
    seed = config.seed
    params = model.init(np.random.default_rng([seed, _INIT]))
    if initial_params is not None:
        params = check_initial(initial_params, params)  # exact float64 copies, or refused
    unusable = unusable_data(model, params, clients, test_features, test_labels)
    left_out = tuple(sorted(unusable.items()))  # logged there, once: a round names one only if it samples it
    initial_accuracy, initial_loss = _evaluate(model, params, test_features, test_labels)
    loss = initial_loss
    records: list[RoundRecord] = []
    calm_rounds = 0
    dp = aggregator if isinstance(aggregator, DPAggregator) else None
    if dp is not None and not callable(getattr(model, "clipped_gradient_sum", None)):
        raise ConfigurationError("DP training needs a model with clipped_gradient_sum (fl_core.models.DPModel)")
    if dp is None and (config.server_optimizer != "sgd" or config.server_momentum != 0.0):
        raise ConfigurationError(
            f"server_optimizer={config.server_optimizer!r}, server_momentum={config.server_momentum}: the server "
            "optimiser applies to DP rounds only (a DPAggregator, whose mean is a noised gradient); without DP the "
            "mean update is added as it is, so leave them at 'sgd' and 0"
        )
    server = ServerOptimizer(config.server_optimizer, config.learning_rate, config.server_momentum)
    bind_entries(aggregator, MODEL_PREFIX, model_entries)
    state_guarantee(aggregator, len(clients), config.client_fraction)  # before any training: refused, or stated
    if dp is None:  # every hospital's update is its local training's: bound, as the Flower adapter binds it
        bind_entries(aggregator, TRAINING_PREFIX, training_parameters(config))
    for t in range(1, config.rounds + 1):
        # 1-2: who takes part, and who will drop out (and when).
        sampled = _sample_clients(clients, config.client_fraction, np.random.default_rng([seed, _SAMPLE, t]))
        dropouts = _draw_dropouts(sampled, config.dropout, np.random.default_rng([seed, _DROPOUT, t]))
        # 3: local training from the current global model.
        global_vector = flatten(params)
        updates, rejected = _round_updates(model, params, sampled, dropouts, config, t, dp, unusable)
        # 4: the weighted mean of the updates, computed by the aggregator.
        result = aggregator.aggregate(
            updates, dropouts, rng=np.random.default_rng([seed, _AGGREGATE, t]), model_digest=model_digest(params)
        )
        _record_left_out(result, t, dropouts, rejected)
        # 5: apply it, or keep the model if the round could not complete.
        if result.mean is None:
            LOGGER.warning("round %d skipped, model unchanged: %s", t, result.skipped_reason)
        elif dp is not None:
            # The hospitals whose noised sums are in the release (dropped ones add no patients).
            denominator = public_denominator(
                [c.num_samples for c in sampled if c.client_id in result.included], dp.config
            )
            params = unflatten(server.step(global_vector, result.mean / denominator), params)
        else:
            params = unflatten(global_vector + result.mean, params)
        # 6: evaluate on the held-out test set.
        previous_loss = loss
        accuracy_t, loss = _evaluate(model, params, test_features, test_labels)
        record = RoundRecord(
            round=t,
            accuracy=accuracy_t,
            loss=loss,
            aggregation_s=result.seconds,
            bytes_per_client=result.bytes_per_client,
            sampled=tuple(c.client_id for c in sampled),
            dropouts=tuple((c, stage.name) for c, stage in sorted(dropouts.items())),
            included=tuple(sorted(result.included)),
            skipped_reason=result.skipped_reason,
            epsilon_spent=None if dp is None else dp.spent()[0],
            delta=None if dp is None else dp.config.delta,
            clipped_fraction=result.clipped_fraction,
            rejected=tuple(rejected),
            guarantee=result.guarantee,
        )
        records.append(record)
        if on_round is not None:
            on_round(record)
        if dp is not None and dp.exhausted:
            # The accountant's count: this call's t - 1 would leave out rounds an earlier run released
            # and count skipped rounds, which spent nothing.
            LOGGER.warning(
                "privacy budget exhausted after %d released rounds: training stops", dp.accountant.num_releases
            )
            break
        # Convergence looks only at rounds that changed the model.
        if result.mean is not None and config.tolerance > 0:
            calm = abs(loss - previous_loss) <= config.tolerance * max(abs(previous_loss), 1e-12)
            calm_rounds = calm_rounds + 1 if calm else 0
            if calm_rounds >= config.patience:
                return FedAvgResult(params, tuple(records), initial_accuracy, initial_loss, True, left_out)
    return FedAvgResult(params, tuple(records), initial_accuracy, initial_loss, False, left_out)
