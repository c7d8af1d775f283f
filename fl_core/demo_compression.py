"""The demo's compression: what a byte budget chose, the aggregator it builds, and the summary lines.

``secagg demo --bytes-per-parameter B`` (:attr:`fl_core.demo.DemoConfig.bytes_per_parameter`)
hands the budget to :func:`fl_core.budget.choose`, which picks the quantization bits, the ring,
the rotation and the coordinates sent per round for this model and aggregation; the demo
builds its training aggregator with them (:func:`training_aggregator`). ``sparsity`` (a
fixed fraction of coordinates) and ``rotate`` keep working on their own, without a budget.
The summary (:func:`compression_lines`) shows what was chosen, the bytes beside the
uncompressed encoding's, everything a hospital sent per round, and the accuracy against
the same encoding uncompressed, trained in the clear (bit-identical to the uncompressed
secure run).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from fl_core.aggregators.base import Aggregator
from fl_core.aggregators.paillier_import import paillier_module
from fl_core.aggregators.plain import FLOAT_SIZE
from fl_core.budget import BudgetChoice, choose, protected_bytes
from fl_core.compression import CompressionConfig, SparseAggregator, protected_update_bytes
from fl_core.rotated import RotatedAggregator

if TYPE_CHECKING:
    from fl_core.demo_config import DemoConfig, DemoReport

__all__ = ["budget_choice", "compression_lines", "compression_summary", "training_aggregator"]

ENCODING_COUNTS = 2
"""Values an encoding carries besides the coordinates: one clipped count (a flat vector) and the weight."""


def _key_bits(config: DemoConfig) -> int:
    if config.aggregation != "paillier":
        return 0
    paillier = paillier_module()  # gmpy2, phe: only for Paillier (the library's error if missing)
    return int(paillier.INSECURE_KEY_BITS if config.insecure_small_key else paillier.DEFAULT_KEY_BITS)


def budget_choice(config: DemoConfig, dimension: int, option: str) -> BudgetChoice | None:
    """What ``config.bytes_per_parameter`` chooses for a ``dimension``-parameter model (None
    without a budget); ConfigurationError, naming ``option``, for a budget that cannot be met."""
    if config.bytes_per_parameter is None:
        return None
    return choose(
        config.bytes_per_parameter, dimension, aggregation=config.aggregation, num_clients=config.hospitals,
        max_samples_per_client=config.max_samples_per_client, key_bits=_key_bits(config), option=option,
    )  # fmt: skip


def training_aggregator(
    build: Callable[[int, int], Aggregator],
    config: DemoConfig,
    choice: BudgetChoice | None,
    compression: CompressionConfig | None,
) -> Aggregator:
    """The updates' aggregator: ``build(bits, ring_bits)`` with the budget's choice around it,
    or else with ``config.rotate`` and the fixed ``compression`` (a fraction of coordinates)."""
    if choice is not None:
        return choice.wrap(build(choice.bits, choice.ring_bits))
    updates = build(config.bits, config.ring_bits)
    if config.rotate:
        updates = RotatedAggregator(updates)
    if compression is not None:
        updates = SparseAggregator(updates, compression)
    return updates


def _uncompressed_bytes(config: DemoConfig, dimension: int) -> int:
    """The protected update of the uncompressed encoding (``config.bits`` in ``config.ring_bits``)."""
    if config.aggregation == "plain":
        return FLOAT_SIZE * (dimension + 1)
    cost = protected_bytes(
        config.aggregation, config.bits, config.ring_bits, num_clients=config.hospitals,
        max_samples_per_client=config.max_samples_per_client, key_bits=_key_bits(config),
    )  # fmt: skip
    return cost(dimension + ENCODING_COUNTS)


def compression_summary(
    aggregator: Aggregator, config: DemoConfig, choice: BudgetChoice | None, dimension: int
) -> dict[str, Any] | None:
    """What the compression sends per hospital per round (before any training), or None uncompressed."""
    if choice is not None:
        count = choice.count
    elif isinstance(aggregator, SparseAggregator):
        count = aggregator.count(dimension)
    else:
        return None
    protected = protected_update_bytes(aggregator, count)
    return {
        "dimension": dimension,
        "count": count,
        "fraction": count / dimension,
        "choice": None if choice is None else choice.as_dict(),
        "protected_bytes": protected,
        "protected_bytes_per_parameter": protected / dimension,
        "uncompressed_protected_bytes": _uncompressed_bytes(config, dimension),
        "uncompressed_accuracy": None,
    }


def compression_lines(report: DemoReport) -> list[str]:
    """The compression's choice, its bytes and its cost in accuracy, for the summary."""
    c = report.compression
    if c is None:
        return []
    what = f"{c['count']:,} of {c['dimension']:,} coordinates per round ({c['fraction']:.1%})"
    if c["choice"] is not None:
        choice = c["choice"]
        rotation = f"rotated (blocks of {choice['block']:,})" if choice["rotate"] else "not rotated"
        what = (
            f"budget {choice['bytes_per_parameter']:g} bytes/parameter -> {choice['bits']} bits in "
            f"Z_(2^{choice['ring_bits']}), {rotation}, {what}"
        )
    lines = [f"  compression: {what}"]
    if c["count"] < c["dimension"]:
        lines.append("    a shared subset drawn from the round's public seed; residuals kept by each hospital")
    completed = [r.bytes_per_client for r in report.result.rounds if r.skipped_reason is None]
    total = f"; all messages: {np.mean(completed):,.0f} bytes" if completed else ""
    lines.append(
        f"    protected update per hospital per round: {c['protected_bytes']:,} bytes = "
        f"{c['protected_bytes_per_parameter']:.3f} bytes/parameter (uncompressed: "
        f"{c['uncompressed_protected_bytes']:,} bytes = {c['uncompressed_protected_bytes'] / c['dimension']:.3f})"
        + total
    )
    if c["uncompressed_accuracy"] is not None:
        gap = 100 * (report.final_accuracy - c["uncompressed_accuracy"])
        lines.append(
            f"    accuracy {report.final_accuracy:.2%} vs {c['uncompressed_accuracy']:.2%} uncompressed "
            f"({gap:+.2f} pp; the same encoding uncompressed, in the clear: bit-identical to the uncompressed "
            f"{report.config.aggregation} run)"
        )
    return lines
