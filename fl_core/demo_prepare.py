"""What a demo run checks before any output, aggregator, key or round: :func:`prepare_demo`.

The options whose acceptable values depend on the data or on a calibration (how many
hospitals the data set's split can serve, the largest hospital's rows against
``--max-samples-per-client``, whether a byte budget can be met for the model, whether a noise
variance meets the DP budget) are checked here, by doing the cheap part of the run (the
split, the model's size, the calibrations) first. ``secagg demo`` turns a refusal into a
usage error (exit 2, "argument --OPTION: ...") before it prints anything
(:func:`fl_core.demo.main`); :func:`fl_core.demo.run_demo` runs the same checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fl_core.budget import BudgetChoice
from fl_core.compression import CompressionConfig
from fl_core.data import Federation, make_federation
from fl_core.demo_compression import budget_choice
from fl_core.demo_config import MASKING_AGGREGATIONS, MLP_HIDDEN, SECAGG_PLUS_DROPOUT, TEST_FRACTION, DemoConfig
from fl_core.demo_dp import check_calibration, dp_options
from fl_core.models import MLP, LogisticRegression, Model
from secagg.errors import ConfigurationError

__all__ = ["SPLIT", "STANDARDISE", "Prepared", "model_for", "prepare_demo", "protocol_options"]

STANDARDISE, SPLIT = 100, 101  # seed tags for the setup steps' random streams
_DEFAULT_HOSPITALS = 5  # DemoConfig's and the command line's default


@dataclass(frozen=True)
class Prepared:
    """The checked, cheap part of a run: the split, the model, the byte budget's choice."""

    raw: Federation
    model: Model
    dimension: int
    choice: BudgetChoice | None
    compression: CompressionConfig | None


def model_for(config: DemoConfig, federation: Federation) -> Model:
    """The demo's model for ``config.dataset``: logistic regression or the MLP."""
    if config.dataset == "breast-cancer":
        return LogisticRegression(federation.num_features, federation.num_classes)
    return MLP(federation.num_features, federation.num_classes, hidden=MLP_HIDDEN)


def protocol_options(name: str, config: DemoConfig) -> dict[str, Any]:
    """The protocol options of the demo's aggregator ``name`` (key size, colluders, mode, graph sizing)."""
    options: dict[str, Any] = {}
    if name == "paillier" and config.insecure_small_key:
        options["insecure_small_key"] = True
    if name == "paillier" and config.colluders is not None:
        options["colluders"] = config.colluders
    if name in MASKING_AGGREGATIONS:
        options["mode"] = config.masking_mode
    if name == "secagg+" and config.dropout > 4 * SECAGG_PLUS_DROPOUT:
        # Size the graph for the dropout rate the simulation will apply over a round
        # (a hospital drops at one stage), when it exceeds the default assumption.
        options["dropout_fraction"] = config.dropout
    return options


def _split(config: DemoConfig, hospitals: int) -> Federation:
    return make_federation(
        config.dataset, hospitals, partition=config.partition, alpha=config.alpha,
        test_fraction=TEST_FRACTION, rng=np.random.default_rng([config.seed, SPLIT]),
    )  # fmt: skip


def _refusal(command_line: bool, option: str, message: str) -> ConfigurationError:
    return ConfigurationError(f"argument {option}: {message}" if command_line else message)


def _split_refusal(config: DemoConfig, command_line: bool, exc: ConfigurationError) -> ConfigurationError:
    """The split's refusal, naming --alpha if even the default hospital count cannot be served, else --hospitals."""
    option = "--hospitals"
    if config.partition == "dirichlet" and config.hospitals > _DEFAULT_HOSPITALS:
        try:
            _split(config, _DEFAULT_HOSPITALS)
        except ConfigurationError:
            option = "--alpha"
    elif config.partition == "dirichlet":
        option = "--alpha"
    where = f"--dataset {config.dataset}, --seed {config.seed}"
    iid = ", or --partition iid (one row a hospital at least)" if config.partition == "dirichlet" else ""
    return _refusal(command_line, option, f"{exc} ({where}){iid}")


def prepare_demo(config: DemoConfig, option: str = "bytes_per_parameter") -> Prepared:
    """Split the data, size the model, choose the byte budget and check the DP calibrations, building
    no aggregator and no key. ConfigurationError for a value the run cannot serve; ``option`` names the
    byte budget as the caller spells it (given as ``--...``, every message leads with the option,
    "argument --hospitals: ...", as the command line's usage errors do)."""
    command_line = option.startswith("--")
    try:
        raw = _split(config, config.hospitals)
    except ConfigurationError as exc:
        raise _split_refusal(config, command_line, exc) from exc
    bound = "--max-samples-per-client" if command_line else "max_samples_per_client"
    if config.aggregation != "plain":  # floats: no weight bound
        largest = max(raw.clients, key=lambda client: client.num_samples)
        if largest.num_samples > config.max_samples_per_client:
            raise _refusal(
                command_line, bound,
                f"hospital {largest.client_id} holds {largest.num_samples} training rows, more than {bound} "
                f"{config.max_samples_per_client} (the public bound on one hospital's weight"
                + (" and on its DP contribution's range" if config.dp_epsilon is not None else "")
                + f"); accepted: at least {largest.num_samples} here, or use more hospitals",
            )  # fmt: skip
    model = model_for(config, raw)
    dimension = sum(int(p.size) for p in model.init(np.random.default_rng(0)))
    try:
        choice = budget_choice(config, dimension, option)  # refuses a budget that cannot be met, now
        compression = config.compression(option)
    except ConfigurationError as exc:
        raise _refusal(command_line, "--bytes-per-parameter", str(exc)) from exc
    if config.dp_epsilon is not None and config.aggregation != "plain":
        options = protocol_options(config.aggregation, config)
        try:
            check_calibration(config, raw.num_features, dimension, config.aggregation, options)
        except ConfigurationError as exc:  # e.g. no noise variance meets the budget: name what set it
            raise _refusal(command_line, "--dp-epsilon", f"{dp_options(config)}: {exc}") from exc
    return Prepared(raw, model, dimension, choice, compression)
