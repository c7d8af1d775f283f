"""What ``secagg bench`` checks before any work, on the grid a suite would run.

The command line checks each number against its fixed range while parsing
(:mod:`secagg._cli_bench`). What depends on several options, or on the preset
whose axes they replace, is checked here: on the exact grid the suite would run
(its own ``PRESETS`` and grid functions) and with the library's own sizing
(:func:`secagg.masking.benchmark.sized_threshold`). A configuration the library
would refuse mid-run, after minutes of other measurements and with a message in
its own terms, is a usage error instead: one line naming the option as typed and
what it accepts there. Kept apart from the suites so the command line imports
only this module (and the suite it checks) before deciding.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from secagg._cli_bench import paillier_problem
from secagg.errors import ConfigurationError
from secagg.masking.benchmark import sized_threshold

from .common import resolve, suite_module
from .memory import memory_problem, points

__all__ = ["check", "most_dropouts"]

MAX_CLIENTS = 1 << 16  # secagg.masking.config.MAX_CLIENTS, the --clients ceiling
MAX_EPSILON = 1000.0  # --epsilon's ceiling (secagg._cli_bench)
MEMORY_CHECKED = ("masking", "scaling", "peers", "dropouts")
"""The suites whose sessions' memory is estimated before any work (``--max-memory``)."""

Point = tuple[int, str, float]
"""(n, graph, dropout rate) of one masking session the suite would run."""


def check(suite: str, given: Mapping[str, Any], mode: str) -> str | None:
    """The first problem of ``suite``'s grid with the options ``given`` (parsed, None where not
    given) on the preset ``mode``, as a usage message naming the option; None if it can run."""
    checker = _CHECKS.get(suite)
    if checker is None and suite not in MEMORY_CHECKED:
        return None
    try:
        module = suite_module(suite)
    except ConfigurationError:
        return None  # gmpy2 or phe does not import: the runner refuses the suite, naming it
    overrides = {name: given.get(name) for name in module.OPTIONS}
    problem = checker(module, overrides, mode) if checker is not None else None
    if problem is None and suite in MEMORY_CHECKED:  # the largest session fits (secagg_bench.memory)
        problem = memory_problem(points(suite, module, overrides, mode), given.get("max_memory"))
    return problem


def _feasible(n: int, graph: str, rate: float) -> tuple[int | None, bool]:
    """(t, completes): the threshold the suite sizes (None: refused), and whether the
    ``round(rate * n)`` clients the suite drops leave t to answer."""
    t = sized_threshold(n, graph, rate)
    return t, t is not None and n - round(rate * n) >= t


def most_dropouts(n: int, graph: str) -> int | None:
    """The most of ``n`` clients a session on ``graph`` can lose (at the rate c / n) and still
    complete; None if none can run (no SecAgg+ graph for n = 3). Bisection: fewer dropouts
    never need a larger threshold."""
    if not _feasible(n, graph, 0.0)[1]:
        return None
    low, high = 0, n - 1
    while low < high:
        middle = (low + high + 1) // 2
        if _feasible(n, graph, middle / n)[1]:
            low = middle
        else:
            high = middle - 1
    return low


def _session_problem(point: Point, graph_option: bool) -> str | None:
    n, graph, rate = point
    t, completes = _feasible(n, graph, rate)
    if completes:
        return None
    most = most_dropouts(n, graph)
    if most is None:
        fewest = next(m for m in range(n + 1, MAX_CLIENTS + 1) if _feasible(m, graph, 0.0)[1])
        alternative = ", or --graph complete" if graph_option else ""
        return (
            f"argument --clients: SecAgg+ (the {graph} graph) cannot be sized for {n} clients at any --dropout; "
            f"accepted: --clients {fewest} or more{alternative}"
        )
    if t is None:
        reason = "SecAgg+ cannot be sized for that many dropouts (5% corrupt clients, 2^-40 security, 2^-20 failure)"
    else:
        reason = f"it drops round({rate:g} x {n}) = {round(rate * n)} clients, and t = {t} of the {n} must answer"
    return (
        f"argument --dropout: {rate:g} at --clients {n} on the {graph} graph: {reason}; accepted there: "
        f"0 to {most / n:.4g} (at most {most} of the {n} clients drop)"
    )


def _first_problem(points: Iterable[Point], *, graph_option: bool) -> str | None:
    for point in dict.fromkeys(points):
        problem = _session_problem(point, graph_option)
        if problem is not None:
            return problem
    return None


def _masking(module: Any, overrides: Mapping[str, Any], mode: str) -> str | None:
    options = resolve(module.PRESETS, mode, {k: v for k, v in overrides.items() if k != "repeats"})
    options["repeats_override"] = overrides.get("repeats")
    points = ((n, graph, dropout) for n, _d, graph, dropout, _r, _b in module.configurations(options))
    return _first_problem(points, graph_option=True)


def _scaling(module: Any, overrides: Mapping[str, Any], mode: str) -> str | None:
    options = resolve(module.PRESETS, mode, overrides)
    clients, rate = sorted(set(options["clients"])), float(options["dropout"])
    points = [(n, "harary", rate) for n in clients]
    points += [(n, "complete", rate) for n in clients if n <= options["max_complete"]]
    return _first_problem(points, graph_option=False)


def _peers(module: Any, overrides: Mapping[str, Any], mode: str) -> str | None:
    options = resolve(module.PRESETS, mode, overrides)
    return _first_problem([(int(options["clients"]), "harary", float(options["dropout"]))], graph_option=False)


def _paillier(module: Any, overrides: Mapping[str, Any], mode: str) -> str | None:
    options = resolve(module.PRESETS, mode, overrides)
    threshold = options.get("threshold")
    if threshold is None:  # the default (parameters.default_threshold) always fits
        return None
    for point in module.configurations(options):  # in the order the suite deals the keys
        problem = paillier_problem((), (point["clients"],), threshold)
        if problem is not None:
            return problem
    return None


def _compression(module: Any, overrides: Mapping[str, Any], mode: str) -> str | None:
    options = resolve(module.PRESETS, mode, overrides)
    budgets = options.get("bytes_per_parameter") or ()
    if not budgets:
        return None
    accuracy = importlib.import_module(f"{__package__}.compression_accuracy")  # fl_core and scikit-learn
    for dataset in options["dataset"]:
        for budget in budgets:
            problem = accuracy.budget_problem(dataset, options["aggregation"], budget)
            if problem is not None:
                return f"argument --bytes-per-parameter: {problem} (--dataset {dataset})"
    return None


def _split_fails(dataset: str, hospitals: int, seed: int) -> bool:
    """True if the demo's split of ``dataset`` among ``hospitals`` at ``seed`` fails (the Dirichlet
    label skew gives up when no draw gives every hospital its rows), as fl_core.demo.run_demo splits."""
    from fl_core.data import make_federation  # noqa: PLC0415 - fl_core and scikit-learn: only for these suites
    from fl_core.demo import _SPLIT  # noqa: PLC0415
    from fl_core.demo_config import TEST_FRACTION, DemoConfig  # noqa: PLC0415

    config = DemoConfig(aggregation="plain", dataset=dataset, hospitals=hospitals, seed=seed)
    try:
        make_federation(
            dataset, hospitals, partition=config.partition, alpha=config.alpha, test_fraction=TEST_FRACTION,
            rng=np.random.default_rng([seed, _SPLIT]),
        )  # fmt: skip
    except ConfigurationError:
        return True
    return False


def _split_problem(datasets: Iterable[str], hospitals: int, seeds: range) -> str | None:
    """``--hospitals`` the demo cannot split a ``--dataset`` among at one of ``seeds``, with the
    hospitals every seed of the run takes (the split is random: above that it depends on the seed)."""
    for dataset in datasets:
        failing = next((seed for seed in seeds if _split_fails(dataset, hospitals, seed)), None)
        if failing is None:
            continue
        fewest = 3  # --hospitals' least
        most = next(h for h in range(fewest, hospitals + 1) if any(_split_fails(dataset, h, s) for s in seeds)) - 1
        return (
            f"argument --hospitals: the demo's Dirichlet label-skew split of {dataset} cannot give each of "
            f"{hospitals} hospitals its rows at seed {failing} (it gives up after 100 draws); accepted there for "
            f"every seed of this run: {fewest}..{most} (more only at some seeds), or another --dataset"
        )
    return None


def _fedavg(module: Any, overrides: Mapping[str, Any], mode: str) -> str | None:
    options = resolve(module.PRESETS, mode, overrides)
    seed = int(options["seed"])
    return _split_problem(options["dataset"], int(options["hospitals"]), range(seed, seed + 1))


def _dp_refuses(dataset: str, epsilon: float, options: Mapping[str, Any]) -> bool:
    """True if the demo refuses DP at ``epsilon`` with the suite's other options: its own setup
    (fl_core.demo._setup: the noise calibration of the moments release and of the rounds) at seed 0."""
    from fl_core.data import make_federation  # noqa: PLC0415 - fl_core and scikit-learn: only for these suites
    from fl_core.demo import _SPLIT, _setup  # noqa: PLC0415
    from fl_core.demo_config import TEST_FRACTION, DemoConfig  # noqa: PLC0415

    config = DemoConfig(
        aggregation=options["aggregation"], hospitals=options["hospitals"], rounds=options["rounds"],
        dataset=dataset, seed=0, compare=False, dp_epsilon=epsilon,
    )  # fmt: skip
    raw = make_federation(
        dataset, config.hospitals, partition=config.partition, alpha=config.alpha, test_fraction=TEST_FRACTION,
        rng=np.random.default_rng([0, _SPLIT]),
    )  # fmt: skip
    try:
        _setup(config, raw, config.aggregation)
    except ConfigurationError:
        return True
    return False


PROBE_EPSILONS = (1.0, 3.0, 0.3, 10.0, 0.1, 0.03, 0.01)
"""Budgets tried, in this order, for one the demo accepts (the edges are bisected from it)."""
LEAST_EPSILON = 1e-4


def _edge(dataset: str, accepted: float, refused: float, options: Mapping[str, Any]) -> float:
    """The accepted end of [accepted, refused] (either order) within 1%, rounded to 2 significant
    digits towards ``accepted``, so the figure printed is itself accepted."""
    while max(accepted, refused) / min(accepted, refused) > 1.01:
        middle = math.sqrt(accepted * refused)
        accepted, refused = (accepted, middle) if _dp_refuses(dataset, middle, options) else (middle, refused)
    scale = 10.0 ** (1 - math.floor(math.log10(accepted)))
    rounded = math.ceil(accepted * scale) if accepted > refused else math.floor(accepted * scale)
    return rounded / scale


def _accepted_epsilons(dataset: str, options: Mapping[str, Any]) -> tuple[float, float] | None:
    """The budgets the demo's own DP setup accepts at these options, ``(least, most)``, or None.

    Two limits bound it: below ``least`` no noise variance (up to 2^60) meets the budget; above
    ``most`` the refusal residual ((1 + e^epsilon) x 2^-64 per noised coordinate, docs/privacy.md)
    exceeds a tenth of delta. Between them every budget is accepted (more budget, less noise)."""
    probe = next((e for e in PROBE_EPSILONS if not _dp_refuses(dataset, e, options)), None)
    if probe is None:
        return None
    least = LEAST_EPSILON if not _dp_refuses(dataset, LEAST_EPSILON, options) else None
    most = MAX_EPSILON if not _dp_refuses(dataset, MAX_EPSILON, options) else None
    return (
        least if least is not None else _edge(dataset, probe, LEAST_EPSILON, options),
        most if most is not None else _edge(dataset, probe, MAX_EPSILON, options),
    )


def _dp(module: Any, overrides: Mapping[str, Any], mode: str) -> str | None:
    options = resolve(module.PRESETS, mode, overrides)
    problem = _split_problem(options["dataset"], int(options["hospitals"]), range(int(options["seeds"])))
    if problem is not None:
        return problem
    for dataset in options["dataset"]:
        refused = [e for e in sorted(set(options["epsilon"])) if _dp_refuses(dataset, e, options)]
        if not refused:
            continue
        epsilon = refused[0]
        where = (
            f"--epsilon {epsilon:g} on {dataset} through {options['aggregation']} at --rounds {options['rounds']} "
            f"--hospitals {options['hospitals']}"
        )
        accepted = _accepted_epsilons(dataset, options)
        if accepted is None:
            return f"argument --epsilon: {where}: no budget the demo tries can be met; use fewer --rounds"
        least, most = accepted
        why = (
            "no noise variance (up to 2^60) meets it"
            if epsilon < least
            else "its refusal residual, (1 + e^epsilon) x 2^-64 per noised coordinate, exceeds a tenth of delta"
        )
        return f"argument --epsilon: {where}: {why}; accepted there: {least:g} to {most:g}"
    return None


_CHECKS: dict[str, Callable[[Any, Mapping[str, Any], str], str | None]] = {
    "masking": _masking,
    "scaling": _scaling,
    "peers": _peers,
    "paillier": _paillier,
    "compression": _compression,
    "fedavg": _fedavg,
    "dp": _dp,
}
