"""``secagg demo``: hospitals train one model with FedAvg; the server sees only aggregates.

What a run does, in order:

1. split a bundled scikit-learn dataset across simulated hospitals and hold out
   a global test set (:func:`fl_core.data.make_federation`);
2. standardise: every hospital computes feature moments locally and the chosen
   aggregator combines them (:func:`fl_core.data.federated_standardiser`); with DP
   that un-noised round never runs: the moments are released noised and charged to
   the budget (:mod:`fl_core.dp_moments`, the default) or features are scaled from
   declared public ranges (:func:`fl_core.public_scaling.public_scaler`);
3. train with FedAvg through the chosen aggregator, printing one table row per
   round (test accuracy and loss, seconds in aggregation, bytes per hospital,
   who made it into the round and who dropped out);
4. for comparison, train plain FedAvg (float aggregation, same seed, same
   samples and dropouts) and a centralised scikit-learn model on the pooled
   data, then print a summary and optionally write it as JSON. With compression
   (``--bytes-per-parameter``, :mod:`fl_core.compression`) it also trains the
   uncompressed encoding in the clear (bit-identical to the uncompressed secure
   run), so the summary shows what the compression costs in accuracy.

:func:`run_demo` is the function API (used by the tests); :func:`main` is what
the command line calls with its parsed arguments. ``python -m fl_core.demo
[OPTIONS]`` is the same as ``secagg demo [OPTIONS]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fl_core.aggregators import CLIPPING_NAMES, make_aggregator
from fl_core.aggregators.base import (
    DEFAULT_BITS,
    DEFAULT_CLIP,
    DEFAULT_MAX_SAMPLES_PER_CLIENT,
    Aggregator,
)
from fl_core.aggregators.quantizer import resolve_ring_bits
from fl_core.budget import BudgetChoice
from fl_core.compression import CompressionConfig
from fl_core.data import (
    DATASETS,
    FEATURE_BOUNDS,
    Federation,
    Standardiser,
    federated_standardiser,
    make_federation,
    moments_quantization,
)
from fl_core.demo_compression import budget_choice, compression_lines, compression_summary, training_aggregator
from fl_core.dp import DPAggregator
from fl_core.dp_moments import (
    DEFAULT_MOMENTS_SHARE,
    DP_SCALINGS,
    MomentsChargedAggregator,
    moments_dp_config,
    release_moments,
)
from fl_core.dp_presets import DEFAULT_DELTA, DP_TRAINING, default_min_honest, dp_config
from fl_core.dp_training import public_denominator
from fl_core.fedavg import FedAvgConfig, FedAvgResult, RoundRecord, run_fedavg
from fl_core.models import MLP, LogisticRegression, Model
from fl_core.public_scaling import public_scaler
from secagg._install import install_hint
from secagg.encoding import QuantizationConfig
from secagg.errors import ConfigurationError

__all__ = ["DemoConfig", "DemoReport", "main", "run_demo"]

DEMO_AGGREGATIONS = ("plain", "plain-quantized", "secagg", "secagg+", "paillier")
"""The aggregations the demo offers. ``plain-quantized`` is the secure aggregations'
arithmetic in the clear: with the same seed its model is bit-identical to theirs."""

LOCAL_TRAINING = {"breast-cancer": (0.1, 5, 16), "digits": (0.2, 1, 16)}
"""Local SGD per dataset as (learning rate, epochs, batch size), tuned on plain FedAvg
with 5 hospitals, Dirichlet(0.5) label skew and 20 rounds over 10-20 seeds."""

TEST_FRACTION = 0.3
"""Held-out share of every class (171 patients for breast-cancer): large enough that
one misclassified patient moves accuracy by 0.6 pp, not 0.9."""

MLP_HIDDEN = 32
"""Hidden units of the digits MLP."""

SECAGG_PLUS_DROPOUT = 0.1
"""The per-stage dropout fraction SecAgg+ is sized for (the library's default: one
dropout below 20 hospitals, 10% of them at each of the four stages from 20 on),
unless ``--dropout`` asks for more over a round."""

EXIT_MISSING_EXTRA = 2
"""Exit code when scikit-learn (the ``examples`` extra) is not installed."""

EXIT_CANNOT_WRITE = 1
"""Exit code when the run finished but ``--json`` could not be written."""

MIN_HOSPITALS = {"plain": 1, "plain-quantized": 1, "secagg": 3, "secagg+": 3, "paillier": 3}
"""Fewest hospitals per aggregation: a secure sum of two would reveal each hospital's
update to the other (the command line checks the same table, secagg.cli.MIN_HOSPITALS)."""

KEYGEN_SECONDS = {1024: 0.5, 2048: 4.0, 3072: 15.0}
"""Typical seconds of one threshold Paillier key ceremony (safe primes) per key size on one
core; the demo runs two (feature moments, then updates). Only for the message it prints."""

_STANDARDISE, _SPLIT = 100, 101  # seed tags for the setup steps' random streams


@dataclass(frozen=True)
class DemoConfig:
    """One demo run. Defaults are the command line's defaults.

    Attributes:
        aggregation: ``plain``, ``plain-quantized``, ``secagg``, ``secagg+`` or ``paillier``.
        hospitals: number of hospitals (>= 3 for the secure aggregations).
        rounds: FedAvg rounds.
        dataset: ``breast-cancer`` (logistic regression) or ``digits`` (MLP).
        partition: ``iid`` or ``dirichlet`` (label skew with ``alpha``).
        alpha: Dirichlet concentration.
        dropout: probability a hospital drops out of a round.
        seed: seed of the data split, sampling, dropouts and training.
        insecure_small_key: paillier only: a 1024-bit key for speed (insecure).
        compare: also train plain FedAvg and the centralised model.
        clip, bits, max_samples_per_client: quantization of the updates, in Z_(2^32)
            when that cannot overflow for ``hospitals``, else Z_(2^64) (:attr:`ring_bits`).
        dp_epsilon: train with distributed DP at this epsilon per patient (None: no DP);
            settings per data set in :mod:`fl_core.dp_presets`, one noised step per round.
        dp_delta: the DP budget's delta.
        clipping: ``"adaptive"`` (default; ``clip`` is the starting clip, see
            :mod:`fl_core.aggregators.clipping`) or ``"fixed"``.
        ring: the updates' ring: ``"word"`` (default: Z_(2^32), or Z_(2^64) when 32 bits
            could overflow), ``"smallest"`` (the smallest Z_(2^b), b in 8..64, that cannot
            overflow: masked uploads of b bits a coordinate) or a width ``"8"``..``"64"``.
        bytes_per_parameter: a budget for each hospital's protected update per round
            (masked vector or ciphertexts) per model parameter; it picks the bits, ring,
            rotation and shared subset of coordinates (:mod:`fl_core.budget`), so it is
            not given with ``bits``, ``ring`` or ``rotate``, nor with DP or ``plain``.
        sparsity: instead, the fraction of coordinates sent each round.
        rotate: every hospital rotates its update by the round's public random rotation
            before quantizing; the server rotates the mean back (:mod:`fl_core.rotated`).
        dp_scaling: with DP, ``"noised-moments"`` (standardise from a noised moments release
            charged ``dp_moments_share`` of epsilon, :mod:`fl_core.dp_moments`) or
            ``"public-ranges"`` (:mod:`fl_core.public_scaling`, nothing released).
    """

    aggregation: str = "secagg+"
    hospitals: int = 5
    rounds: int = 20
    dataset: str = "breast-cancer"
    partition: str = "dirichlet"
    alpha: float = 0.5
    dropout: float = 0.0
    seed: int = 0
    insecure_small_key: bool = False
    compare: bool = True
    clip: float = DEFAULT_CLIP
    bits: int = DEFAULT_BITS
    max_samples_per_client: int = DEFAULT_MAX_SAMPLES_PER_CLIENT
    dp_epsilon: float | None = None
    dp_delta: float = DEFAULT_DELTA
    clipping: str = "adaptive"
    ring: str = "word"
    bytes_per_parameter: float | None = None
    sparsity: float | None = None
    rotate: bool = False
    dp_scaling: str = "noised-moments"
    dp_moments_share: float = DEFAULT_MOMENTS_SHARE

    def __post_init__(self) -> None:
        if self.dp_scaling not in DP_SCALINGS:
            raise ConfigurationError(f"dp_scaling must be one of {', '.join(DP_SCALINGS)}")
        if self.clipping not in CLIPPING_NAMES:
            raise ConfigurationError(f"clipping must be one of {', '.join(CLIPPING_NAMES)}")
        if self.dp_epsilon is not None and self.aggregation == "plain":
            raise ConfigurationError("--dp-epsilon needs an integer encoding: use an aggregation other than plain")
        if self.bytes_per_parameter is not None or self.sparsity is not None:
            self.compression()  # checks the values now, not after the setup
        if self.bytes_per_parameter is not None:
            _check_budget(self)
        if self.rotate and (self.dp_epsilon is not None or self.aggregation == "plain"):
            raise ConfigurationError(
                "--rotate applies to the quantized secure aggregations without --dp-epsilon (a rotation would "
                "change the DP sensitivity's rounding term; docs/privacy.md)"
            )
        if self.aggregation not in DEMO_AGGREGATIONS:
            raise ConfigurationError(f"aggregation must be one of {', '.join(DEMO_AGGREGATIONS)}")
        if self.dataset not in DATASETS:
            raise ConfigurationError(f"dataset must be one of {', '.join(DATASETS)}")
        fewest = MIN_HOSPITALS[self.aggregation]
        if self.hospitals < fewest:
            reason = " (a sum of two reveals each to the other)" if fewest > 1 else ""
            raise ConfigurationError(
                f"{self.aggregation} needs at least {fewest} hospital{'s' if fewest > 1 else ''}{reason}, "
                f"got {self.hospitals}"
            )
        if self.insecure_small_key and self.aggregation != "paillier":
            raise ConfigurationError("--insecure-small-key applies to --aggregation paillier only")
        _ = self.ring_bits  # refuses an unknown ring, or one that could overflow, at construction

    @property
    def ring_bits(self) -> int:
        """The updates' ring Z_(2^b) as :attr:`ring` names it (see :func:`resolve_ring_bits`)."""
        named: int | str = int(self.ring) if isinstance(self.ring, str) and self.ring.isdigit() else self.ring
        ring_bits = resolve_ring_bits(named, self.bits, self.hospitals, self.max_samples_per_client)
        QuantizationConfig(self.clip, self.bits, self.hospitals, ring_bits, max_weight=self.max_samples_per_client)
        return ring_bits

    def compression(self, option: str = "bytes_per_parameter") -> CompressionConfig | None:
        """The fixed fraction of coordinates sent (``sparsity``), or None; a budget is
        :mod:`fl_core.budget`'s (``option``: the budget's name in errors)."""
        if self.bytes_per_parameter is not None and self.sparsity is not None:
            raise ConfigurationError("give bytes_per_parameter or sparsity, not both")
        if self.bytes_per_parameter is not None:
            CompressionConfig(bytes_per_parameter=self.bytes_per_parameter, option=option)  # range check only
        return None if self.sparsity is None else CompressionConfig(fraction=self.sparsity)

    def fedavg(self) -> FedAvgConfig:
        """The FedAvg hyper-parameters of this run (local training from :data:`LOCAL_TRAINING`)."""
        learning_rate, epochs, batch_size = LOCAL_TRAINING[self.dataset]
        momentum, optimizer = 0.0, "sgd"
        if self.dp_epsilon is not None:
            settings = DP_TRAINING[self.dataset]
            learning_rate, momentum = settings.learning_rate, settings.server_momentum
            optimizer = settings.server_optimizer
        return FedAvgConfig(
            rounds=self.rounds,
            local_epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            dropout=self.dropout,
            seed=self.seed,
            server_optimizer=optimizer,
            server_momentum=momentum,
        )

    def as_dict(self) -> dict[str, Any]:
        """The configuration, JSON-ready, with the derived hyper-parameters."""
        fedavg = self.fedavg()
        return {
            **dataclasses.asdict(self),
            "ring_bits": self.ring_bits,
            "learning_rate": fedavg.learning_rate,
            "local_epochs": fedavg.local_epochs,
            "batch_size": fedavg.batch_size,
            "test_fraction": TEST_FRACTION,
        }


@dataclass(frozen=True)
class DemoReport:
    """The results of :func:`run_demo`.

    ``plain_fedavg_accuracy`` and ``centralized_accuracy`` are None when the
    comparison was not run. ``plain`` is the plain FedAvg result (the run itself
    when the aggregation is plain).
    """

    config: DemoConfig
    result: FedAvgResult = field(repr=False)
    plain: FedAvgResult | None = field(repr=False)
    plain_fedavg_accuracy: float | None
    centralized_accuracy: float | None
    centralized_model: str
    seconds: float
    guarantee: str = ""
    privacy: str = ""
    noise_std_per_step: float | None = None
    compression: dict[str, Any] | None = None
    """With compression: ``dimension``, ``count`` (coordinates sent per round),
    ``fraction``, ``choice`` (a budget's bits, ring and rotation: BudgetChoice.as_dict),
    ``protected_bytes`` and ``protected_bytes_per_parameter`` (per hospital
    per round), ``uncompressed_protected_bytes``, and ``uncompressed_accuracy`` (the
    same encoding without compression, in the clear; None without the comparison)."""

    @property
    def final_accuracy(self) -> float:
        """Held-out accuracy of the final global model."""
        return self.result.final_accuracy

    def to_json(self) -> dict[str, Any]:
        """The report as the JSON document ``--json`` writes."""
        return {
            "final_accuracy": self.final_accuracy,
            "plain_fedavg_accuracy": self.plain_fedavg_accuracy,
            "centralized_accuracy": self.centralized_accuracy,
            "centralized_model": self.centralized_model,
            "guarantee": self.guarantee,
            "privacy": self.privacy,
            "compression": self.compression,
            "initial_accuracy": self.result.initial_accuracy,
            "converged_early": self.result.converged,
            "seconds": self.seconds,
            "rounds": [
                {
                    "round": r.round,
                    "accuracy": r.accuracy,
                    "loss": r.loss,
                    "aggregation_s": r.aggregation_s,
                    "bytes_per_client": r.bytes_per_client,
                    "clients_included": list(r.included),
                    "clients_sampled": list(r.sampled),
                    "dropouts": [{"client": c, "stage": s} for c, s in r.dropouts],
                    "skipped_reason": r.skipped_reason,
                    "epsilon_spent": r.epsilon_spent,
                }
                for r in self.result.rounds
            ],
            "configuration": self.config.as_dict(),
        }


def _model(config: DemoConfig, federation: Federation) -> Model:
    if config.dataset == "breast-cancer":
        return LogisticRegression(federation.num_features, federation.num_classes)
    return MLP(federation.num_features, federation.num_classes, hidden=MLP_HIDDEN)


def _aggregator(name: str, config: DemoConfig, **quantization: Any) -> Aggregator:
    options: dict[str, Any] = {"num_clients": config.hospitals, **quantization}
    if name == "plain":
        return make_aggregator("plain")
    if name == "paillier" and config.insecure_small_key:
        options["insecure_small_key"] = True
    if name == "secagg+" and config.dropout > 4 * SECAGG_PLUS_DROPOUT:
        # Size the graph for the dropout rate the simulation will apply over a round
        # (a hospital drops at one stage), when it exceeds the default assumption.
        options["dropout_fraction"] = config.dropout
    return make_aggregator(name, **options)


def _setup(
    config: DemoConfig, federation: Federation, name: str, choice: BudgetChoice | None = None,
    compression: CompressionConfig | None = None,
) -> tuple[Federation, Aggregator]:
    """``federation`` standardised through aggregator ``name``, and the aggregator for the updates.

    With DP, ``config.dp_scaling`` picks the noised moments release, charged to the budget
    (:mod:`fl_core.dp_moments`), or the declared public ranges
    (:func:`fl_core.public_scaling.public_scaler`, nothing released); either way nothing
    is released outside the DP guarantee."""
    if config.dp_epsilon is not None and name != "plain":
        return _dp_setup(config, federation, name)
    moments = _aggregator(
        name, config,
        **moments_quantization(config.hospitals, FEATURE_BOUNDS[config.dataset], config.max_samples_per_client),
    )  # fmt: skip
    standardiser = federated_standardiser(
        federation.clients, moments, np.random.default_rng([config.seed, _STANDARDISE])
    )
    updates = training_aggregator(
        lambda bits, ring_bits: _aggregator(
            name, config, clip=config.clip, bits=bits, ring_bits=ring_bits,
            max_samples_per_client=config.max_samples_per_client, clipping=config.clipping,
        ), config, choice, compression,
    )  # fmt: skip
    return federation.standardised(standardiser), updates


def _dp_setup(config: DemoConfig, federation: Federation, name: str) -> tuple[Federation, Aggregator]:
    """DP mode's scaling and training aggregator (see :func:`_setup`)."""
    assert config.dp_epsilon is not None
    dimension = sum(int(p.size) for p in _model(config, federation).init(np.random.default_rng(0)))
    if config.dp_scaling == "public-ranges":
        dp = dp_config(config.dataset, config.dp_epsilon, rounds=config.rounds, hospitals=config.hospitals,
                       delta=config.dp_delta)  # fmt: skip
        updates = _aggregator(
            name, config, dp=dp, dimension=dimension, max_samples_per_client=config.max_samples_per_client
        )
        return federation.standardised(public_scaler(config.dataset, federation.num_features)), updates
    moments_dp = moments_dp_config(
        config.dp_moments_share * config.dp_epsilon, config.dp_delta, federation.num_features,
        default_min_honest(config.hospitals), DP_TRAINING[config.dataset].moments_clip_share,
    )  # fmt: skip
    moments = _aggregator(
        name, config, dp=moments_dp, dimension=2 * federation.num_features,
        max_samples_per_client=config.max_samples_per_client,
    )  # fmt: skip
    release = release_moments(
        config.dataset, federation.clients, moments, config.dp_moments_share,
        np.random.default_rng([config.seed, _STANDARDISE]),
    )  # fmt: skip
    # The training rounds compose with the moments release in one Renyi account: the total
    # budget is (dp_epsilon, dp_delta) for both (fl_core.dp_moments, "Accounting").
    dp = dp_config(config.dataset, config.dp_epsilon, rounds=config.rounds, hospitals=config.hospitals,
                   delta=config.dp_delta)  # fmt: skip
    training = _aggregator(
        name, config, dp=dp, dimension=dimension, max_samples_per_client=config.max_samples_per_client,
        preceding=((release.aggregator.plan, 1),),
    )  # fmt: skip
    if not isinstance(training, DPAggregator):
        raise ConfigurationError("DP training needs a DPAggregator")
    updates = MomentsChargedAggregator(training, release)
    return federation.standardised(release.standardiser), updates


def _check_budget(config: DemoConfig) -> None:
    """A byte budget picks bits, ring and rotation, and needs a protected update without DP."""
    given = [name for name, value in (("--bits", config.bits != DEFAULT_BITS), ("--ring-bits", config.ring != "word"),
                                      ("--rotate", config.rotate)) if value]  # fmt: skip
    if config.dp_epsilon is not None:
        given.append("--dp-epsilon")
    if config.aggregation == "plain":
        given.append("--aggregation plain")
    if given:
        raise ConfigurationError(
            "--bytes-per-parameter picks the bits, ring and rotation of a quantized aggregation without DP; "
            f"not with {', '.join(given)}"
        )


def _centralized(config: DemoConfig, federation: Federation) -> tuple[float, str]:
    """Accuracy of a scikit-learn model trained on the pooled raw data, standardised centrally."""
    features, labels = federation.pooled()
    scaler = Standardiser.fit(features)
    if config.dataset == "breast-cancer":
        linear_model = importlib.import_module("sklearn.linear_model")
        model = linear_model.LogisticRegression(max_iter=1000)
        name = "scikit-learn LogisticRegression"
    else:
        neural_network = importlib.import_module("sklearn.neural_network")
        model = neural_network.MLPClassifier((MLP_HIDDEN,), activation="tanh", max_iter=300, random_state=config.seed)
        name = f"scikit-learn MLPClassifier ({MLP_HIDDEN} tanh units)"
    model.fit(scaler.apply(features), labels)
    return float(model.score(scaler.apply(federation.test_features), federation.test_labels)), name


def run_demo(
    config: DemoConfig,
    *,
    on_round: Callable[[RoundRecord], None] | None = None,
    on_status: Callable[[str], None] | None = None,
    option: str = "bytes_per_parameter",
) -> DemoReport:
    """Run the demo described by ``config`` (see the module docstring); returns its report.

    ``on_round`` gets every round's record; ``on_status`` a line before each step
    that may take a while without rounds to show (the comparison runs).
    Needs scikit-learn (the ``examples`` extra) for the datasets. ``option`` names the
    byte budget in the error a budget that cannot be met raises (before any training).
    """
    started = time.perf_counter()
    raw = make_federation(
        config.dataset, config.hospitals, partition=config.partition, alpha=config.alpha,
        test_fraction=TEST_FRACTION, rng=np.random.default_rng([config.seed, _SPLIT]),
    )  # fmt: skip
    model = _model(config, raw)
    dimension = sum(int(p.size) for p in model.init(np.random.default_rng(0)))
    choice = budget_choice(config, dimension, option)  # refuses a budget that cannot be met, now
    compression = config.compression(option)
    federation, aggregator = _setup(config, raw, config.aggregation, choice, compression)
    summary = compression_summary(aggregator, config, choice, dimension)
    result = run_fedavg(
        model, federation.clients, aggregator, federation.test_features, federation.test_labels,
        config.fedavg(), on_round=on_round,
    )  # fmt: skip
    plain: FedAvgResult | None = result if config.aggregation == "plain" and summary is None else None
    centralized: float | None = None
    centralized_name = ""
    if config.compare:
        if on_status is not None:
            on_status("training plain FedAvg and a centralised model on the pooled data, for comparison...")
        if plain is None:
            plain_federation, plain_aggregator = _setup(config, raw, "plain")
            plain = run_fedavg(
                model, plain_federation.clients, plain_aggregator, plain_federation.test_features,
                plain_federation.test_labels, config.fedavg(),
            )  # fmt: skip
        centralized, centralized_name = _centralized(config, raw)
        if summary is not None:
            if on_status is not None:
                on_status("training the same encoding uncompressed, in the clear, for the compression's cost...")
            full_name = "plain" if config.aggregation == "plain" else "plain-quantized"
            full_federation, full_aggregator = _setup(config, raw, full_name)
            summary["uncompressed_accuracy"] = run_fedavg(
                model, full_federation.clients, full_aggregator, full_federation.test_features,
                full_federation.test_labels, config.fedavg(),
            ).final_accuracy  # fmt: skip
    return DemoReport(
        config=config,
        result=result,
        plain=plain,
        plain_fedavg_accuracy=None if plain is None else plain.final_accuracy,
        centralized_accuracy=centralized,
        centralized_model=centralized_name,
        seconds=time.perf_counter() - started,
        guarantee=str(
            getattr(
                getattr(aggregator, "inner", aggregator),
                "guarantee",
                "none: the server sees every update (plain FedAvg)",
            )
        ),
        privacy=_privacy_line(aggregator),
        noise_std_per_step=_noise_std(aggregator, federation),
        compression=summary,
    )


def _noise_std(aggregator: Aggregator, federation: Federation) -> float | None:
    """Noise std per coordinate of one step's mean clipped gradient, in units of the clip (DP only)."""
    if not isinstance(aggregator, DPAggregator):
        return None
    plan, config = aggregator.plan, aggregator.config
    denominator = public_denominator([c.num_samples for c in federation.clients], config)
    total = math.sqrt(plan.num_clients * float(plan.variance))
    return total / (plan.scale * denominator * config.l2_clip)


def _privacy_line(aggregator: Aggregator) -> str:
    """The DP guarantee and the budget spent, or "" without DP."""
    if not isinstance(aggregator, DPAggregator):
        return ""
    epsilon, delta = aggregator.spent()
    return (
        f"{aggregator.guarantee()}; spent epsilon = {epsilon:.3f} at delta = {delta:g} "
        f"in {aggregator.accountant.num_releases} released rounds"
    )


# --- presentation -------------------------------------------------------------------------

_LEGEND = (
    "accuracy, loss: the global model after the round, on the held-out test set",
    "agg s: seconds to aggregate the round's updates (the secure sum included)",
    "bytes/hosp: bytes each hospital sent in the round",
    "in/sampled: hospitals whose update is in the sum / hospitals asked",
)

_PP_LEGEND = "pp = percentage points, this run minus the comparison: negative means this run is less accurate"

_HEADER = f"{'round':>5}  {'accuracy':>8}  {'loss':>7}  {'agg s':>7}  {'bytes/hosp':>10}  {'in/sampled':>10}  notes"


def _row(record: RoundRecord) -> str:
    notes = []
    if record.clipped_fraction > 0:
        notes.append(f"clipped {record.clipped_fraction:.2%}")
    if record.dropouts:
        notes.append("dropped " + ", ".join(f"{c}@{stage.lower()}" for c, stage in record.dropouts))
    if record.skipped_reason is not None:
        notes.append("SKIPPED, model unchanged")
    included = f"{len(record.included)}/{len(record.sampled)}"
    sent = "-" if record.skipped_reason is not None else f"{record.bytes_per_client:,.0f}"
    return (
        f"{record.round:>5}  {record.accuracy:>8.2%}  {record.loss:>7.4f}  {record.aggregation_s:>7.3f}  "
        f"{sent:>10}  {included:>10}  {'; '.join(notes)}"
    ).rstrip()


def _summary(report: DemoReport) -> list[str]:
    config, rounds = report.config, report.result.rounds
    name = config.aggregation
    lines = [
        "",
        f"Summary: {config.dataset}, {config.hospitals} hospitals, {config.partition}"
        + (f" (alpha={config.alpha})" if config.partition == "dirichlet" else "")
        + f", {len(rounds)} rounds, dropout {config.dropout:g}",
        f"  {name + ' FedAvg':<34} accuracy {report.final_accuracy:7.2%}",
    ]
    if report.guarantee:
        lines.insert(2, f"  protection: {report.guarantee}")
    if report.privacy:
        lines.insert(3, f"  differential privacy: {report.privacy}")
    if report.plain_fedavg_accuracy is not None and name != "plain":
        gap = 100 * (report.final_accuracy - report.plain_fedavg_accuracy)
        lines.append(f"  {'plain FedAvg (float)':<34} accuracy {report.plain_fedavg_accuracy:7.2%}  ({gap:+.2f} pp)")
    if report.centralized_accuracy is not None:
        gap = 100 * (report.final_accuracy - report.centralized_accuracy)
        lines.append(
            f"  {'centralized, pooled data':<34} accuracy {report.centralized_accuracy:7.2%}  ({gap:+.2f} pp)"
            f"  [{report.centralized_model}]"
        )
    if any(line.endswith("pp)") or " pp)  [" in line for line in lines):
        lines.append(f"  ({_PP_LEGEND})")
    seconds = [r.aggregation_s for r in rounds]
    lines.append(f"  aggregation time: {sum(seconds):.2f} s in total, {np.mean(seconds):.3f} s per round")
    if report.plain is not None and name != "plain":
        plain_s = [r.aggregation_s for r in report.plain.rounds]
        lines.append(f"    plain FedAvg:   {sum(plain_s):.4f} s in total")
    completed = [r.bytes_per_client for r in rounds if r.skipped_reason is None]
    if completed:
        lines.append(f"  bytes sent per hospital per round: {np.mean(completed):,.0f}")
    lines.extend(compression_lines(report))
    skipped = [r.round for r in rounds if r.skipped_reason is not None]
    if skipped:
        lines.append(f"  rounds skipped (too few hospitals left): {', '.join(map(str, skipped))}")
    lines.append(f"  wall time: {report.seconds:.1f} s")
    return lines


class _Writer(logging.Handler):
    """Routes fl_core's log records (e.g. skipped rounds) through the table's writer."""

    def __init__(self, write: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self.write = write

    def emit(self, record: logging.LogRecord) -> None:
        self.write(f"       ! {record.getMessage()}")


def _on_terminal() -> bool:
    """Whether stderr is a terminal: progress bars and status lines go there, never into a log."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty is not None and isatty())


Progress = tuple[Callable[[str], None], Callable[[], None], Callable[[str], None]]


@contextmanager
def _progress(rounds: int, bar_wanted: bool) -> Iterator[Progress]:
    """``(write, advance, status)``: table lines to stdout, a step of the bar over rounds, and a
    status line on stderr. The bar (tqdm) and the status lines show only when stderr is a
    terminal, the bar only if ``bar_wanted`` too."""
    terminal = _on_terminal()
    if terminal and bar_wanted and importlib.util.find_spec("tqdm") is not None:
        tqdm = importlib.import_module("tqdm").tqdm
        bar = tqdm(total=rounds, desc="FedAvg rounds", unit="round", leave=False, file=sys.stderr)
        try:
            yield tqdm.write, (lambda: bar.update(1)), (lambda line: tqdm.write(line, file=sys.stderr))
        finally:
            bar.close()
    else:

        def status(line: str) -> None:
            if terminal:
                print(line, file=sys.stderr, flush=True)

        yield print, (lambda: None), status


def _keygen_line(config: DemoConfig) -> str:
    """What the Paillier key ceremonies are about to do, and roughly how long they take."""
    paillier = importlib.import_module("fl_core.aggregators.paillier")  # needs gmpy2: only for paillier runs
    bits = int(paillier.INSECURE_KEY_BITS if config.insecure_small_key else paillier.DEFAULT_KEY_BITS)
    seconds = 2 * KEYGEN_SECONDS.get(bits, KEYGEN_SECONDS[3072] * (bits / 3072) ** 4)
    return (
        f"generating two keys of {bits} bits for threshold Paillier (one for the feature moments, one for the "
        f"updates)... (about {seconds:.0f} s, more on a slow or busy machine)"
    )


def _from_args(args: argparse.Namespace) -> DemoConfig:
    return DemoConfig(
        aggregation=args.aggregation,
        hospitals=args.hospitals,
        rounds=args.rounds,
        dataset=args.dataset,
        partition=args.partition,
        alpha=args.alpha,
        dropout=args.dropout,
        seed=args.seed,
        insecure_small_key=args.insecure_small_key,
        dp_epsilon=getattr(args, "dp_epsilon", None),
        dp_delta=getattr(args, "dp_delta", DEFAULT_DELTA),
        dp_scaling=getattr(args, "dp_scaling", "noised-moments"),
        clipping=getattr(args, "clipping", "adaptive"),
        ring=getattr(args, "ring_bits", "word"),
        bits=getattr(args, "bits", None) or DEFAULT_BITS,
        max_samples_per_client=getattr(args, "max_samples_per_client", None) or DEFAULT_MAX_SAMPLES_PER_CLIENT,
        bytes_per_parameter=getattr(args, "bytes_per_parameter", None),
        rotate=getattr(args, "rotate", False),
    )


def main(args: argparse.Namespace) -> int:
    """The ``secagg demo`` command: run, print the table and summary, write JSON. Returns the exit code."""
    if importlib.util.find_spec("sklearn") is None:
        print(
            "secagg demo needs scikit-learn for its datasets; install the 'examples' extra: "
            f"{install_hint('examples')}",
            file=sys.stderr,
        )
        return EXIT_MISSING_EXTRA
    config = _from_args(args)
    if config.insecure_small_key:
        print("WARNING: --insecure-small-key uses a 1024-bit Paillier key. It is NOT secure; use it only to "
              "try the demo quickly.", file=sys.stderr)  # fmt: skip
    print(
        f"FedAvg on {config.dataset} across {config.hospitals} hospitals ({config.partition}), "
        f"aggregation: {config.aggregation}, seed {config.seed}"
    )
    if config.dp_epsilon is not None:
        print(
            f"differential privacy: epsilon {config.dp_epsilon:g}, delta {config.dp_delta:g} per patient over "
            f"{config.rounds} rounds; each hospital adds its share of exact discrete Gaussian noise to its "
            "encoding before the secure sum (calibrating...)"
        )
    elif config.aggregation != "plain" and config.bytes_per_parameter is None:
        print(
            f"quantization: clip {config.clip:g} ({config.clipping}), {config.bits} bits, "
            f"ring Z_(2^{config.ring_bits}), at most {config.max_samples_per_client} samples per hospital"
            + (f"; masked uploads {config.ring_bits / 8:g} bytes per parameter" if "secagg" in config.aggregation
               else "")
        )
    if config.bytes_per_parameter is not None:
        print(
            f"compression: at most {config.bytes_per_parameter:g} bytes per parameter for each hospital's protected "
            "update per round; the bits, ring, rotation and coordinates sent are chosen for it (see the summary)"
        )
    logger = logging.getLogger("fl_core")
    with _progress(config.rounds, not args.no_progress) as (write, advance, status):
        handler = _Writer(write)
        logger.addHandler(handler)

        def on_round(record: RoundRecord) -> None:
            if record.round == 1:  # after the setup, which may still refuse the configuration
                for line in _LEGEND:
                    write(line)
                write(_HEADER)
            write(_row(record))
            advance()

        if config.aggregation == "paillier":
            status(_keygen_line(config))
        try:
            report = run_demo(config, on_round=on_round, on_status=status, option="--bytes-per-parameter")
        finally:
            logger.removeHandler(handler)
    for line in _summary(report):
        print(line)
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            print(f"secagg demo: cannot write {args.json}: {exc.strerror}", file=sys.stderr)
            return EXIT_CANNOT_WRITE
        print(f"  results written to {args.json}")
    return 0


if __name__ == "__main__":
    from secagg.cli import main as _command_line

    raise SystemExit(_command_line(["demo", *sys.argv[1:]]))
