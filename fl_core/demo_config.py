"""The demo's configuration and report: :class:`DemoConfig` (one run, validated) and
:class:`DemoReport` (what :func:`fl_core.demo.run_demo` returns and ``--json`` writes),
with the tables they are checked against (aggregations, fewest hospitals, local training).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from fl_core.aggregators import CLIPPING_NAMES
from fl_core.aggregators.base import DEFAULT_BITS, DEFAULT_CLIP, DEFAULT_MAX_SAMPLES_PER_CLIENT
from fl_core.aggregators.masking import MASKING_MODES
from fl_core.aggregators.quantizer import resolve_ring_bits
from fl_core.compression import CompressionConfig
from fl_core.data import DATASETS
from fl_core.dp_moments import DEFAULT_MOMENTS_SHARE, DP_SCALINGS
from fl_core.dp_presets import DEFAULT_DELTA, DP_TRAINING
from fl_core.fedavg import FedAvgConfig, FedAvgResult
from secagg._validate import require_int
from secagg.encoding import QuantizationConfig
from secagg.errors import ConfigurationError

__all__ = [
    "DEMO_AGGREGATIONS",
    "LOCAL_TRAINING",
    "MASKING_AGGREGATIONS",
    "MIN_HOSPITALS",
    "MLP_HIDDEN",
    "SECAGG_PLUS_DROPOUT",
    "TEST_FRACTION",
    "DemoConfig",
    "DemoReport",
]

DEMO_AGGREGATIONS = ("plain", "plain-quantized", "secagg", "secagg+", "paillier")
"""The aggregations the demo offers. ``plain-quantized`` is the secure aggregations'
arithmetic in the clear: with the same seed its model is bit-identical to theirs."""

MASKING_AGGREGATIONS = ("secagg", "secagg+")
"""The aggregations that run a pairwise-masking session (and take ``masking_mode``)."""

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

MIN_HOSPITALS = {"plain": 1, "plain-quantized": 1, "secagg": 3, "secagg+": 3, "paillier": 3}
"""Fewest hospitals per aggregation: a secure sum of two would reveal each hospital's
update to the other (the command line checks the same table, secagg.cli.MIN_HOSPITALS)."""



def _check_colluders(config: DemoConfig) -> None:
    """ConfigurationError unless ``config.colluders`` is None or a Paillier run's 0..hospitals - 2."""
    if config.colluders is not None:
        if config.aggregation != "paillier":
            raise ConfigurationError("--colluders applies to --aggregation paillier only")
        require_int("colluders", config.colluders, 0, max(0, config.hospitals - 2))


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
        colluders: paillier only: the hospitals that may collude with the server (declared; at
            most ``hospitals - 2``): sizes the key's threshold (None: the aggregator's default,
            :func:`secagg.paillier.parameters.default_threshold`).
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
        sparsity: instead, the fraction of coordinates sent each round (not with DP).
        rotate: every hospital rotates its update by the round's public random rotation
            before quantizing; the server rotates the mean back (:mod:`fl_core.rotated`).
        dp_scaling: with DP, ``"noised-moments"`` (standardise from a noised moments release
            calibrated at ``dp_moments_share`` of epsilon, in one Renyi account with the
            rounds, :mod:`fl_core.dp_moments`) or
            ``"public-ranges"`` (:mod:`fl_core.public_scaling`, nothing released).
        masking_mode: ``secagg``/``secagg+``: ``"active"`` (the default: signed keys and a
            consistency round, private against a server that lies about dropouts) or
            ``"semi-honest"`` (opt-in by name: fewer bytes and, at small n, one more dropout
            survived, but it does NOT resist a lying server).
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
    masking_mode: str = MASKING_MODES[0]
    colluders: int | None = None

    def __post_init__(self) -> None:
        require_int("hospitals", self.hospitals)
        _check_colluders(self)
        require_int("rounds", self.rounds, 1)
        require_int("seed", self.seed, 0)
        if self.masking_mode not in MASKING_MODES:
            raise ConfigurationError(
                f"masking_mode must be one of {', '.join(MASKING_MODES)} (default {MASKING_MODES[0]}), "
                f"got {self.masking_mode!r}"
            )
        if self.masking_mode != MASKING_MODES[0] and self.aggregation not in MASKING_AGGREGATIONS:
            raise ConfigurationError(
                f"masking_mode {self.masking_mode!r} applies to the masking aggregations "
                f"({', '.join(MASKING_AGGREGATIONS)}), not {self.aggregation}"
            )
        if self.dp_scaling not in DP_SCALINGS:
            raise ConfigurationError(f"dp_scaling must be one of {', '.join(DP_SCALINGS)}")
        if self.clipping not in CLIPPING_NAMES:
            raise ConfigurationError(f"clipping must be one of {', '.join(CLIPPING_NAMES)}")
        if self.dp_epsilon is not None and self.aggregation == "plain":
            raise ConfigurationError("--dp-epsilon needs an integer encoding: use an aggregation other than plain")
        if self.bytes_per_parameter is not None or self.sparsity is not None:
            self.compression()  # checks the values now, not after the setup
            _check_sparsity(self)
        if self.bytes_per_parameter is not None:
            _check_budget(self)
        if self.rotate:
            _check_rotate(self)
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
                    "rejected": [{"client": c, "reason": why} for c, why in r.rejected],
                    "skipped_reason": r.skipped_reason,
                    "epsilon_spent": r.epsilon_spent,
                    "guarantee": None if r.guarantee is None else str(r.guarantee),
                }
                for r in self.result.rounds
            ],
            "configuration": self.config.as_dict(),
        }


def _check_rotate(config: DemoConfig) -> None:
    """ConfigurationError naming why ``rotate`` does not apply, as the command line's check does."""
    if config.aggregation == "plain":
        raise ConfigurationError(
            "--rotate applies to the quantized aggregations, not --aggregation plain (it sums floats)"
        )
    if config.dp_epsilon is not None:
        raise ConfigurationError(
            "--rotate: not with --dp-epsilon (a rotation would change the DP sensitivity's rounding term; "
            "docs/privacy.md)"
        )


def _check_sparsity(config: DemoConfig) -> None:
    """A fixed fraction of coordinates needs a protected update without DP (the DP setup sends them all)."""
    if config.sparsity is not None and config.dp_epsilon is not None:
        raise ConfigurationError(
            "sparsity applies without --dp-epsilon (dp_epsilon): a DP round sends every coordinate, noised "
            "(a residual would carry patient data past the accountant; docs/privacy.md)"
        )


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
