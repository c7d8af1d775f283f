"""The demo's terminal output: the round table, the summary, the progress bar and status lines.

Table lines go to stdout; the bar (tqdm) and status lines go to stderr, and only when it is a
terminal (:func:`progress`), so a redirected log holds the table and summary alone.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from fl_core.aggregators.paillier_import import paillier_module
from fl_core.demo_compression import compression_lines
from fl_core.demo_config import DemoConfig, DemoReport
from fl_core.fedavg import RoundRecord

__all__ = [
    "HEADER",
    "KEYGEN_SECONDS",
    "LEGEND",
    "MAX_REASON_GROUPS",
    "PP_LEGEND",
    "LogWriter",
    "Progress",
    "keygen_line",
    "on_terminal",
    "progress",
    "row",
    "summary_lines",
    "withheld_note",
]

KEYGEN_SECONDS = {1024: 0.5, 2048: 4.0, 3072: 15.0}
"""Typical seconds of one threshold Paillier key ceremony (safe primes) per key size on one
core; the demo runs two (feature moments, then updates). Only for the message it prints."""

LEGEND = (
    "accuracy, loss: the global model after the round, on the held-out test set",
    "agg s: seconds to aggregate the round's updates (the secure sum included)",
    "bytes/hosp: bytes each hospital sent in the round",
    "in/sampled: hospitals whose update is in the sum / hospitals asked",
)

PP_LEGEND = "pp = percentage points, this run minus the comparison: negative means this run is less accurate"

MAX_REASON_GROUPS = 5
"""The most withheld reasons a round's line prints (each once, with its count of hospitals); the
round's record keeps every (hospital, reason)."""

HEADER = f"{'round':>5}  {'accuracy':>8}  {'loss':>7}  {'agg s':>7}  {'bytes/hosp':>10}  {'in/sampled':>10}  notes"


def row(record: RoundRecord) -> str:
    notes = []
    if record.clipped_fraction > 0:
        notes.append(f"clipped {record.clipped_fraction:.2%}")
    if record.dropouts:
        notes.append("dropped " + ", ".join(f"{c}@{stage.lower()}" for c, stage in record.dropouts))
    if record.rejected:
        notes.append(withheld_note(record.rejected))
    if record.skipped_reason is not None:
        notes.append("SKIPPED, model unchanged")
    included = f"{len(record.included)}/{len(record.sampled)}"
    sent = "-" if record.skipped_reason is not None else f"{record.bytes_per_client:,.0f}"
    return (
        f"{record.round:>5}  {record.accuracy:>8.2%}  {record.loss:>7.4f}  {record.aggregation_s:>7.3f}  "
        f"{sent:>10}  {included:>10}  {'; '.join(notes)}"
    ).rstrip()


def withheld_note(rejected: tuple[tuple[int, str], ...]) -> str:
    """A round's withheld hospitals in a line of bounded length: each reason once with how many
    hospitals gave it (the most frequent first, ties in order of appearance; a reason of one
    hospital names it), at most :data:`MAX_REASON_GROUPS` reasons, then how many more reasons and
    hospitals. A hospital is counted once per reason, and once among the more."""
    givers: dict[str, dict[int, None]] = {}  # each reason's hospitals, once each, in order of appearance
    for client, reason in rejected:
        givers.setdefault(reason, {})[client] = None
    first = {reason: next(iter(clients)) for reason, clients in givers.items()}
    counts = {reason: len(clients) for reason, clients in givers.items()}
    groups = sorted(counts.items(), key=lambda item: -item[1])  # stable: ties in order of appearance
    shown = [
        f"hospital {first[reason]}: {reason}" if count == 1 else f"{count} hospitals: {reason}"
        for reason, count in groups[:MAX_REASON_GROUPS]
    ]
    rest = groups[MAX_REASON_GROUPS:]
    if rest:
        hospitals = len({client for reason, _ in rest for client in givers[reason]})
        shown.append(
            f"and {len(rest)} more reason{'s' if len(rest) > 1 else ''} "
            f"({hospitals} hospital{'s' if hospitals > 1 else ''})"
        )
    return "withheld " + "; ".join(shown)


def summary_lines(report: DemoReport) -> list[str]:
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
        label = "plain FedAvg (float)" if config.dp_epsilon is None else "plain FedAvg (float, no DP)"
        lines.append(f"  {label:<34} accuracy {report.plain_fedavg_accuracy:7.2%}  ({gap:+.2f} pp)")
    if report.centralized_accuracy is not None:
        gap = 100 * (report.final_accuracy - report.centralized_accuracy)
        lines.append(
            f"  {'centralized, pooled data':<34} accuracy {report.centralized_accuracy:7.2%}  ({gap:+.2f} pp)"
            f"  [{report.centralized_model}]"
        )
    if any(line.endswith("pp)") or " pp)  [" in line for line in lines):
        lines.append(f"  ({PP_LEGEND})")
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


class LogWriter(logging.Handler):
    """Routes fl_core's log records (e.g. skipped rounds) through the table's writer."""

    def __init__(self, write: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self.write = write

    def emit(self, record: logging.LogRecord) -> None:
        self.write(f"       ! {record.getMessage()}")


def on_terminal() -> bool:
    """Whether stderr is a terminal: progress bars and status lines go there, never into a log."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty is not None and isatty())


Progress = tuple[Callable[[str], None], Callable[[], None], Callable[[str], None]]


@contextmanager
def progress(rounds: int, bar_wanted: bool) -> Iterator[Progress]:
    """``(write, advance, status)``: table lines to stdout, a step of the bar over rounds, and a
    status line on stderr. The bar (tqdm) and the status lines show only when stderr is a
    terminal, the bar only if ``bar_wanted`` too."""
    terminal = on_terminal()
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


def keygen_line(config: DemoConfig) -> str:
    """What the Paillier key ceremonies are about to do, and roughly how long they take."""
    paillier = paillier_module()  # gmpy2, phe: only for Paillier (the library's error if missing)
    bits = int(paillier.INSECURE_KEY_BITS if config.insecure_small_key else paillier.DEFAULT_KEY_BITS)
    seconds = 2 * KEYGEN_SECONDS.get(bits, KEYGEN_SECONDS[3072] * (bits / 3072) ** 4)
    return (
        f"generating two keys of {bits} bits for threshold Paillier (one for the feature moments, one for the "
        f"updates)... (about {seconds:.0f} s, more on a slow or busy machine)"
    )

