"""The memory a masking suite's grid needs, estimated before any work (``secagg bench --max-memory``).

Sessions run one after another, so a grid needs what its largest session needs. A masking
session of n clients at d coordinates, on a graph of degree k, in a ring of w-byte words holds

    512 MiB + 3 * w * n * d + 2 KiB * n * (k + 1)

bytes at most: the interpreter and libraries; every client's input, masked input and packed
upload (measured: about two words per client and coordinate, peak resident size, n = 20 and 40 at
d = 10^6); and each client's keys, shares and messages for every neighbour (measured: 1.1 to 1.5
KiB per client and neighbour, complete graph at n = 100 and 200, Harary at n = 400). The masking,
scaling, peers and dropouts suites run such sessions (peers: ours; its Flower and phe comparisons
are not estimated); a grid whose largest session exceeds the limit (this machine's physical
memory, or the container's memory limit where smaller, or ``--max-memory GIB``) is a usage error
naming the option and what fits.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterable, Mapping
from typing import Any

from secagg.errors import ConfigurationError
from secagg.masking import MaskingConfig
from secagg.masking.benchmark import harary_config

from .common import resolve

__all__ = [
    "BASE_BYTES",
    "BYTES_PER_NEIGHBOUR",
    "CGROUP_LIMIT_FILES",
    "WORDS_PER_COORDINATE",
    "container_bytes",
    "machine_bytes",
    "memory_problem",
    "session_bytes",
]

BASE_BYTES = 512 << 20
"""The interpreter, numpy and the library, before a session allocates anything."""
WORDS_PER_COORDINATE = 3
"""Ring words held per client and coordinate (input, masked input, packed upload; measured about 2)."""
BYTES_PER_NEIGHBOUR = 2048
"""Bytes held per client and neighbour (keys, shares, messages; measured 1.1 to 1.5 KiB)."""
FALLBACK_BYTES = 16 << 30
"""The limit where the machine's physical memory cannot be read (not POSIX)."""

Point = tuple[int, int, str, float, int]
"""(n, d, graph, dropout rate, ring bits) of one session; graph ``default`` is the library's choice."""


def session_bytes(clients: int, dim: int, degree: int, word_bytes: int) -> int:
    """The estimated peak bytes of one session (see the module docstring)."""
    return BASE_BYTES + WORDS_PER_COORDINATE * word_bytes * clients * dim + BYTES_PER_NEIGHBOUR * clients * (degree + 1)


CGROUP_LIMIT_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
"""Where a container's memory limit is read (cgroup v2, then v1), as seen from inside it."""


def machine_bytes() -> int:
    """This machine's physical memory in bytes (:data:`FALLBACK_BYTES` if it cannot be read)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return FALLBACK_BYTES


def container_bytes() -> int | None:
    """The memory limit of the container (cgroup) this process runs in, in bytes; None if there is
    none or it cannot be read ("max", cgroup v1's near-2^63 "unlimited", no such file)."""
    for path in CGROUP_LIMIT_FILES:
        try:
            with open(path, encoding="ascii") as handle:
                text = handle.read(64).strip()
        except (OSError, ValueError):
            continue
        if text.isdigit() and 0 < int(text) < 1 << 60:
            return int(text)
    return None


@functools.lru_cache(maxsize=256)
def _shape(clients: int, graph: str, dropout: float, ring_bits: int) -> tuple[int, int] | None:
    """(degree, word bytes) of the session the suite would configure; None if it cannot be sized
    (the grid's own check says so)."""
    try:
        if graph == "complete":
            config = MaskingConfig.secagg(clients, 1, mode="semi-honest")
        elif graph == "harary":
            config = harary_config(clients, 1, dropout)
        else:
            config = MaskingConfig.secagg_plus(clients, 1, mode="semi-honest")
        config = dataclasses.replace(config, ring_bits=ring_bits)
    except ConfigurationError:
        return None
    return config.degree, config.ring.dtype.itemsize


def _gib(size: float) -> str:
    gib = size / (1 << 30)
    return f"{gib:.3g} GiB" if gib < 1000 else f"{gib:,.0f} GiB"


def points(suite: str, module: Any, overrides: Mapping[str, Any], mode: str) -> list[Point]:
    """Every session ``suite`` would run with ``overrides`` on the preset ``mode`` (none for a
    suite that runs no masking session)."""
    if suite == "masking":
        options = resolve(module.PRESETS, mode, {k: v for k, v in overrides.items() if k != "repeats"})
        options["repeats_override"] = None
        return [(n, d, graph, rate, bits) for n, d, graph, rate, _r, bits in module.configurations(options)]
    if suite == "scaling":
        options = resolve(module.PRESETS, mode, overrides)
        dim, rate = int(options["dim"]), float(options["dropout"])
        found = [(int(n), dim, "harary", rate, 32) for n in options["clients"]]
        return found + [(int(n), dim, "complete", rate, 32) for n in options["clients"] if n <= options["max_complete"]]
    if suite == "peers":
        options = resolve(module.PRESETS, mode, overrides)
        return [(int(options["clients"]), int(d), "harary", float(options["dropout"]), 32) for d in options["dim"]]
    if suite == "dropouts":
        options = resolve(module.PRESETS, mode, {"dim": overrides.get("dim")})
        sweeps = [resolve({"sweep": sweep}, "sweep", overrides) for sweep in options["sweeps"]]
        return [(int(n), int(options["dim"]), "default", 0.0, 32) for sweep in sweeps for n in sweep["clients"]]
    return []


def memory_problem(sessions: Iterable[Point], limit_gib: float | None) -> str | None:
    """The first session of ``sessions`` whose estimate exceeds the limit (``limit_gib`` GiB, or
    this machine's memory, or its container's limit where smaller), as a usage message naming the
    option to lower; None if all fit."""
    limit, source = machine_bytes(), "of this machine's memory"
    contained = container_bytes() if limit_gib is None else None
    if contained is not None and contained < limit:
        limit, source = contained, "this process's container may use (its cgroup's memory limit)"
    if limit_gib is not None:
        limit, source = int(limit_gib * (1 << 30)), "given by --max-memory"
    for clients, dim, graph, rate, bits in dict.fromkeys(sessions):
        shape = _shape(clients, graph, rate, bits)
        if shape is None:
            continue
        degree, word = shape
        need = session_bytes(clients, dim, degree, word)
        if need <= limit:
            continue
        room = limit - session_bytes(clients, 0, degree, word)
        largest = room // (WORDS_PER_COORDINATE * word * clients) if room > 0 else 0
        graph_name = "the library's default graph" if graph == "default" else f"the {graph} graph"
        what = (
            f"a session of {clients} clients at d = {dim:,} on {graph_name} (degree {degree}, {word}-byte words) "
            f"needs about {_gib(need)}, more than the {_gib(limit)} {source}"
        )
        raise_it = "; --max-memory GIB sets the limit (estimate: docs/benchmarks.md, \"Memory\")"
        if largest >= 1:
            return f"argument --dim: {what}; accepted at {clients} clients: --dim up to {largest:,}{raise_it}"
        return f"argument --clients: {what}, even at --dim 1: fewer --clients{raise_it}"
    return None
