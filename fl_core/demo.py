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
   samples and dropouts; with DP, the ordinary demo's run without DP, its own
   step size: the gap is the whole cost of privacy) and a centralised scikit-learn model on the pooled
   data, then print a summary and optionally write it as JSON. With compression
   (``--bytes-per-parameter``, :mod:`fl_core.compression`) it also trains the
   uncompressed encoding in the clear (bit-identical to the uncompressed secure
   run), so the summary shows what the compression costs in accuracy.

:func:`run_demo` is the function API (used by the tests); :func:`main` is what
the command line calls with its parsed arguments. ``python -m fl_core.demo
[OPTIONS]`` is the same as ``secagg demo [OPTIONS]``.

This module is the driver and the command line; the rest lives one concept per module:
:mod:`fl_core.demo_config` (:class:`DemoConfig`, :class:`DemoReport`, their tables),
:mod:`fl_core.demo_dp` (the DP setup and the report's DP lines),
:mod:`fl_core.demo_compression` (the byte budget) and :mod:`fl_core.demo_output`
(the round table, summary and progress).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import logging
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from fl_core.aggregators import make_aggregator
from fl_core.aggregators.base import DEFAULT_BITS, DEFAULT_MAX_SAMPLES_PER_CLIENT, Aggregator
from fl_core.budget import BudgetChoice
from fl_core.compression import CompressionConfig
from fl_core.contribution_binding import bind_scaling
from fl_core.data import (
    FEATURE_BOUNDS,
    Federation,
    Standardiser,
    federated_standardiser,
    moments_quantization,
)
from fl_core.demo_compression import compression_summary, training_aggregator
from fl_core.demo_config import DEMO_AGGREGATIONS as DEMO_AGGREGATIONS  # noqa: PLC0414 (still importable from here)
from fl_core.demo_config import LOCAL_TRAINING as LOCAL_TRAINING  # noqa: PLC0414
from fl_core.demo_config import MIN_HOSPITALS as MIN_HOSPITALS  # noqa: PLC0414
from fl_core.demo_config import (
    MLP_HIDDEN,
    DemoConfig,
    DemoReport,
)
from fl_core.demo_dp import dp_options, dp_setup, noise_std, privacy_line
from fl_core.demo_output import HEADER, LEGEND, LogWriter, keygen_line, progress, row, summary_lines
from fl_core.demo_output import KEYGEN_SECONDS as KEYGEN_SECONDS  # noqa: PLC0414
from fl_core.demo_prepare import SPLIT, STANDARDISE, Prepared, model_for, prepare_demo, protocol_options
from fl_core.dp_presets import DEFAULT_DELTA
from fl_core.fedavg import FedAvgConfig, FedAvgResult, RoundRecord, run_fedavg
from secagg._install import install_hint
from secagg._outputs import standard_stream, write_output
from secagg.errors import ConfigurationError
from secagg.segments import ClippingWarning

__all__ = ["DemoConfig", "DemoReport", "main", "run_demo"]

EXIT_MISSING_EXTRA = 2
"""Exit code when scikit-learn (the ``examples`` extra) is not installed."""

_model, _SPLIT, _STANDARDISE = model_for, SPLIT, STANDARDISE  # their names before fl_core.demo_prepare (benchmarks)

EXIT_CANNOT_WRITE = 2
"""Exit code when the run finished but ``--json`` could not be written (a ConfigurationError)."""


def _aggregator(name: str, config: DemoConfig, **quantization: Any) -> Aggregator:
    if name == "plain":
        return make_aggregator("plain")
    return make_aggregator(name, num_clients=config.hospitals, **quantization, **protocol_options(name, config))


def _setup(
    config: DemoConfig,
    federation: Federation,
    name: str,
    choice: BudgetChoice | None = None,
    compression: CompressionConfig | None = None,
) -> tuple[Federation, Aggregator]:
    """``federation`` standardised through aggregator ``name``, and the aggregator for the updates.

    With DP, ``config.dp_scaling`` picks the noised moments release, charged to the budget
    (:mod:`fl_core.dp_moments`), or the declared public ranges
    (:func:`fl_core.public_scaling.public_scaler`, nothing released); either way nothing
    is released outside the DP guarantee."""
    if config.dp_epsilon is not None and name != "plain":
        dimension = sum(int(p.size) for p in model_for(config, federation).init(np.random.default_rng(0)))
        rng = np.random.default_rng([config.seed, STANDARDISE])
        try:
            return dp_setup(config, federation, name, _aggregator, dimension, rng)
        except ConfigurationError as exc:  # e.g. no noise variance meets the budget: name what set it
            raise ConfigurationError(f"{dp_options(config)}: {exc}") from exc
    moments = _aggregator(
        name, config,
        **moments_quantization(config.hospitals, FEATURE_BOUNDS[config.dataset], config.max_samples_per_client),
    )  # fmt: skip
    standardiser = federated_standardiser(
        federation.clients, moments, np.random.default_rng([config.seed, STANDARDISE])
    )
    updates = training_aggregator(
        lambda bits, ring_bits: _aggregator(
            name, config, clip=config.clip, bits=bits, ring_bits=ring_bits,
            max_samples_per_client=config.max_samples_per_client, clipping=config.clipping,
        ), config, choice, compression,
    )  # fmt: skip
    bind_scaling(updates, "pooled-moments", standardiser)  # every round's hospitals train at these units
    return federation.standardised(standardiser), updates


def _comparison_fedavg(config: DemoConfig) -> FedAvgConfig:
    """The FedAvg hyper-parameters of the comparisons in the clear: the ordinary demo's, what the
    hospitals would run without DP (its tuned local step, the plain server step), so that a DP run's
    gap to plain FedAvg is the whole cost of privacy, not that of the noise at the DP recipe's
    smaller step; the same rounds, seed and dropouts as the run. Without DP, the run's own."""
    learning_rate = LOCAL_TRAINING[config.dataset][0]
    return dataclasses.replace(
        config.fedavg(), learning_rate=learning_rate, server_optimizer="sgd", server_momentum=0.0
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
    prepared: Prepared | None = None,
) -> DemoReport:
    """Run the demo described by ``config`` (see the module docstring); returns its report.

    ``on_round`` gets every round's record; ``on_status`` a line before each step
    that may take a while without rounds to show (the comparison runs).
    Needs scikit-learn (the ``examples`` extra) for the datasets. ``option`` names the
    byte budget in the error a budget that cannot be met raises (before any training); given as an
    option (``--...``), every check's error names the option as typed (:func:`prepare_demo`, which
    runs first unless its result is given as ``prepared``).
    """
    started = time.perf_counter()
    prepared = prepare_demo(config, option) if prepared is None else prepared
    raw, model, choice, compression = prepared.raw, prepared.model, prepared.choice, prepared.compression
    dimension = prepared.dimension
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
                plain_federation.test_labels, _comparison_fedavg(config),
            )  # fmt: skip
        centralized, centralized_name = _centralized(config, raw)
        if summary is not None:
            if on_status is not None:
                on_status("training the same encoding uncompressed, in the clear, for the compression's cost...")
            full_name = "plain" if config.aggregation == "plain" else "plain-quantized"
            full_federation, full_aggregator = _setup(config, raw, full_name)
            summary["uncompressed_accuracy"] = run_fedavg(
                model, full_federation.clients, full_aggregator, full_federation.test_features,
                full_federation.test_labels, _comparison_fedavg(config),
            ).final_accuracy  # fmt: skip
    return DemoReport(
        config=config,
        result=result,
        plain=plain,
        plain_fedavg_accuracy=None if plain is None else plain.final_accuracy,
        centralized_accuracy=centralized,
        centralized_model=centralized_name,
        seconds=time.perf_counter() - started,
        guarantee=_protection(result, aggregator, config),
        privacy=privacy_line(aggregator),
        noise_std_per_step=noise_std(aggregator, federation),
        compression=summary,
    )


def _protection(result: FedAvgResult, aggregator: Aggregator, config: DemoConfig) -> str:
    """The report's protection line: the weakest guarantee the rounds' sessions computed, each for its
    own hospitals (:attr:`FedAvgResult.guarantee`); if no round ran a session, the aggregator's full
    round's; without a secure sum, what the server sees."""
    if result.guarantee is not None:
        return str(result.guarantee)
    return str(
        getattr(
            getattr(aggregator, "inner", aggregator),
            "guarantee",
            f"none: the server sees every update ({config.aggregation}: "
            f"{_UNPROTECTED.get(config.aggregation, 'no secure sum')})",
        )
    )


_UNPROTECTED = {
    "plain": "float updates, no secure sum",
    "plain-quantized": "the secure sums' quantization, summed in the clear",
}
"""What each aggregation without a secure sum sends, for its protection line."""


def _from_args(args: argparse.Namespace) -> DemoConfig:
    return DemoConfig(
        aggregation=args.aggregation,
        hospitals=args.hospitals,
        rounds=args.rounds,
        dataset=args.dataset,
        partition=args.partition,
        alpha=0.5 if getattr(args, "alpha", None) is None else args.alpha,
        dropout=args.dropout,
        seed=args.seed,
        insecure_small_key=args.insecure_small_key,
        dp_epsilon=getattr(args, "dp_epsilon", None),
        dp_delta=getattr(args, "dp_delta", None) or DEFAULT_DELTA,
        dp_scaling=getattr(args, "dp_scaling", None) or "noised-moments",
        clipping=getattr(args, "clipping", None) or "adaptive",
        ring=getattr(args, "ring_bits", None) or "word",
        bits=getattr(args, "bits", None) or DEFAULT_BITS,
        max_samples_per_client=getattr(args, "max_samples_per_client", None) or DEFAULT_MAX_SAMPLES_PER_CLIENT,
        bytes_per_parameter=getattr(args, "bytes_per_parameter", None),
        rotate=getattr(args, "rotate", False),
        masking_mode=getattr(args, "masking_mode", None) or "active",
        colluders=getattr(args, "colluders", None),
    )


def _usage_error(args: argparse.Namespace, message: str) -> int:
    """``message`` as argparse prints a usage error of the demo's parser; the usage exit status (2)."""
    parser: argparse.ArgumentParser | None = getattr(args, "command_parser", None)
    if parser is not None:
        parser.print_usage(sys.stderr)
    print(f"{parser.prog if parser is not None else 'secagg demo'}: error: {message}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    """The ``secagg demo`` command: run, print the table and summary, write JSON. Returns the exit code."""
    if importlib.util.find_spec("sklearn") is None:
        print(
            "secagg demo needs scikit-learn for its datasets; install the 'examples' extra: "
            f"{install_hint('examples')}",
            file=sys.stderr,
        )
        return EXIT_MISSING_EXTRA
    try:  # every value the run cannot serve, before any output or work: a usage error
        config = _from_args(args)
        prepared = prepare_demo(config, "--bytes-per-parameter")
    except ConfigurationError as exc:
        return _usage_error(args, str(exc))
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
            + (
                f"; masked uploads {config.ring_bits / 8:g} bytes per parameter"
                if "secagg" in config.aggregation
                else ""
            )
        )
    if config.bytes_per_parameter is not None:
        print(
            f"compression: at most {config.bytes_per_parameter:g} bytes per parameter for each hospital's protected "
            "update per round; the bits, ring, rotation and coordinates sent are chosen for it (see the summary)"
        )
    logger = logging.getLogger("fl_core")
    with progress(config.rounds, not args.no_progress) as (write, advance, status):
        handler = LogWriter(write)
        logger.addHandler(handler)

        def on_round(record: RoundRecord) -> None:
            if record.round == 1:  # after the setup, which may still refuse the configuration
                for line in LEGEND:
                    write(line)
                write(HEADER)
            write(row(record))
            advance()

        if config.aggregation == "paillier":
            status(keygen_line(config))
        try:
            with warnings.catch_warnings():
                # Each round's row already reports its clipped fraction (notes); the library's
                # warning would repeat it on stderr with advice meant for integrators.
                warnings.simplefilter("ignore", ClippingWarning)
                report = run_demo(
                    config, on_round=on_round, on_status=status, option="--bytes-per-parameter", prepared=prepared
                )
        finally:
            logger.removeHandler(handler)
    for line in summary_lines(report):
        print(line)
    if args.json:
        _write_json(args.json, json.dumps(report.to_json(), indent=2) + "\n")
    return 0


def _write_json(path: str, document: str) -> None:
    """Write the run's JSON to ``path`` atomically (:func:`secagg._outputs.write_output`); if that
    fails, print it on stdout instead, so that the run's results are not lost, and raise the
    ConfigurationError naming the path (``secagg`` prints it on one line, exit code 2)."""
    try:
        write_output(path, "demo's JSON results", document.encode("utf-8"))
    except ConfigurationError as exc:
        if sys.stdout is None:  # closed (`>&-`): print would drop them silently
            raise ConfigurationError(f"{exc} (nor could they be printed on stdout, which is closed: lost)") from exc
        print(document, end="")
        raise ConfigurationError(f"{exc} (the JSON results were printed on stdout instead)") from exc
    if standard_stream(path) is None:  # not /dev/stdout, /dev/stderr
        print(f"  results written to {path}")


if __name__ == "__main__":
    from secagg.cli import main as _command_line

    raise SystemExit(_command_line(["demo", *sys.argv[1:]]))
