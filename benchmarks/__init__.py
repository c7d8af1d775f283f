"""``secagg_bench``: the benchmark suites behind ``secagg bench`` (the ``benchmarks/`` folder, installed).

Every suite measures what it compares against in the same run, so each figure
is also a ratio: to plain aggregation, to the hardware floor (AES-128-CTR
keystream, numpy adds, gmpy2 modular exponentiation) and to a peer
implementation doing the same work.

===========  ==================================================================
suite        what it measures
===========  ==================================================================
masking      client and server time of SecAgg / SecAgg+ vs n, d, dropout rate
paillier     packed threshold Paillier: encrypt, aggregate, decrypt vs d, key
             size, n; against phe's per-value encryption and the powmod floor
fedavg       the hospital demo end to end: time per round and bytes per
             hospital for every aggregation, over plain FedAvg
scaling      n from 10 to 1000 at fixed d: per-client cost, SecAgg vs SecAgg+
peers        Flower 1.41/1.42's SecAgg+ primitives and phe, same n, d, k, same run
dropouts     sessions of the default configurations completing under the dropouts
             hospitals have (one at any round; 10% of n at each stage)
dp           accuracy against epsilon with distributed DP (breast cancer, digits;
             mean and spread over seeds) and the exact sampler's throughput
compression  bytes per parameter (protected update and total) and accuracy against
             quantization bits and shared-seed sparsity, 10 seeds, both data sets
===========  ==================================================================

``secagg bench SUITE [--quick|--full] --out DIR`` (:mod:`secagg_bench.runner`)
writes ``DIR/SUITE.json`` (checked against ``schemas/report.schema.json``),
``DIR/SUITE.csv``, ``DIR/SUITE_*.png`` and ``DIR/summary.md``.
"""

from __future__ import annotations

__all__ = ["PAILLIER_SUITES", "SUITES"]

SUITES = ("masking", "paillier", "fedavg", "scaling", "peers", "dropouts", "dp", "compression")
"""The suites, in the order ``secagg bench all`` runs them."""

PAILLIER_SUITES = ("paillier", "peers")
"""The suites that need gmpy2 and phe (secagg.paillier, phe as a peer): without one, the runner
refuses them with the library's ConfigurationError naming it
(:func:`fl_core.aggregators.paillier_import.paillier_dependency`); the others run without them.
fedavg runs its plain and masking rows without them and says in its report's notes why its
paillier rows are missing (refused, naming the package, if ``--aggregation`` asks for paillier)."""
