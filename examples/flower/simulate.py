"""Run the example federation in Flower's simulation engine (Ray), in active mode by default.

    sh examples/flower/make-keys.sh keys 5       # the key ceremony: one identity per partition
    python examples/flower/simulate.py keys      # five virtual hospitals, three secure rounds

Each virtual node reads ``KEY_DIR/hospital-<partition-id>.key`` and
``KEY_DIR/federation.keys`` (the simulation engine gives a node only its
partition, so the key directory reaches the nodes through their environment,
``$SECAGG_FLOWER_KEY_DIR``); the ServerApp gets ``KEY_DIR/federation.keys`` (public) as its
run config's ``trusted-keys-file``, so a node whose key is on no list costs only itself.
``--semi-honest`` runs without keys instead, named on both sides: such rounds do
not resist a server that lies about dropouts, which with colluding hospitals can
learn one hospital's update. After the run it prints a summary (rounds
aggregated, skipped with the round's and each node's reason, not run) and exits
0 if every round aggregated, 1 (EXIT_ROUND_SKIPPED) if a round was skipped, 3
(EXIT_RUN_INCOMPLETE) if the simulation ended before reporting every round, 2 for a
refused command line. ``--dp-epsilon 3`` makes every round a distributed-DP
round (the run config's ``dp-epsilon``); in active mode only: a node without keys
keeps no durable DP budget (``dp-state-file``), so ``--semi-honest`` refuses it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from flwr.simulation import run_simulation
from secagg_flower_app import client_app  # importable: this script's directory is on sys.path
from secagg_flower_app.server_app import make_server_app

from secagg.integrations.flower import NodePolicy, make_secagg_mod

EXAMPLE = Path(__file__).resolve().parent
EXIT_OK = 0
"""Every round asked for produced an aggregate."""
EXIT_ROUND_SKIPPED = 1
"""A round was skipped (no aggregate): the summary gives its reason and each node's."""
EXIT_RUN_INCOMPLETE = 3
"""The simulation ended before reporting every round (Flower's log says why); takes precedence over 1."""


def summarize(rounds: list[dict[str, Any]], asked: int, report: Path) -> tuple[list[str], int]:
    """The lines printed after the run and its exit code, from the ServerApp's JSON ``rounds``."""
    skipped = [r for r in rounds if r.get("aggregate") is None]
    missing = max(0, asked - len(rounds))
    lines = [f"{asked} rounds asked: {len(rounds) - len(skipped)} aggregated, {len(skipped)} skipped, "
             f"{missing} not run; report in {report}"]
    for r in skipped:
        lines.append(f"round {r.get('round')} skipped: {r.get('skipped_reason') or 'no aggregate (no reason given)'}")
        lines.extend(f"  node {node}: {reason}" for node, reason in sorted(dict(r.get("errors") or {}).items()))
    if missing:
        lines.append(f"rounds {len(rounds) + 1}-{asked} not run: the simulation ended before reporting them "
                     "(see Flower's log above)")
    return lines, EXIT_RUN_INCOMPLETE if missing else EXIT_ROUND_SKIPPED if skipped else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("key_dir", nargs="?", help="the directory made by make-keys.sh (active mode)")
    parser.add_argument("--nodes", type=int, default=5, help="virtual hospitals (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="secure FedAvg rounds (default 3)")
    parser.add_argument("--protocol", default="secagg+", choices=["secagg+", "secagg"])
    parser.add_argument("--semi-honest", action="store_true",
                        help="no identity keys; does not resist a server that lies about dropouts")
    parser.add_argument("--dp-epsilon", type=float, default=0.0,
                        help="distributed DP: the whole run's epsilon per patient (default 0: off)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs Ray may use (default 2)")
    parser.add_argument("--result", help="where to write the JSON report of every round")
    args = parser.parse_args(argv)
    if args.semi_honest == bool(args.key_dir):
        parser.error("name a key directory (active mode; make it with make-keys.sh) or --semi-honest, not both")
    if args.semi_honest and args.dp_epsilon > 0:
        # A node without an identity key has no key directory to keep its DP budget in, and the
        # simulation gives it no dp-state-file: a budget in context.state is forgotten on a restart.
        parser.error("--semi-honest nodes have no durable DP budget file (dp-state-file): run DP in active mode")
    if args.key_dir:
        key_dir = Path(args.key_dir).resolve()
        needed = [key_dir / "federation.keys", *(key_dir / f"hospital-{i}.key" for i in range(args.nodes))]
        missing = [path for path in needed if not path.is_file()]
        if missing:
            parser.error(f"{missing[0]} does not exist: make the keys of {args.nodes} nodes first, "
                         f"`sh examples/flower/make-keys.sh NEW_DIRECTORY {args.nodes}`")
        os.environ["SECAGG_FLOWER_KEY_DIR"] = str(key_dir)  # Ray's workers inherit it
    # The example app importable in Ray's workers too.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [str(EXAMPLE), os.environ.get("PYTHONPATH", "")] if p)
    result = Path(args.result) if args.result else Path(tempfile.mkdtemp()) / "result.json"
    run_config = {"num-server-rounds": args.rounds, "protocol": args.protocol, "num-partitions": args.nodes,
                  "mode": "semi-honest" if args.semi_honest else "active", "result-path": str(result),
                  "dp-epsilon": args.dp_epsilon}
    if args.key_dir:
        # The server's copy of the federation's public list: a node whose key is not on it is left out at identify.
        run_config["trusted-keys-file"] = str(key_dir / "federation.keys")
    if args.semi_honest:
        # The nodes' own opt-in, by name (the run config cannot give it).
        policy = NodePolicy(allow_semi_honest=True, require_dp_state_file=True)  # no DP without a budget file
        app = client_app.make_client_app([make_secagg_mod(policy=policy)])
    else:
        app = client_app.app  # the example's ClientApp as deployed: keys from the key directory
    before = _version(result)  # an earlier run's report there is not this run's
    run_simulation(
        server_app=make_server_app(run_config),
        client_app=app,
        num_supernodes=args.nodes,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                        "init_args": {"num_cpus": args.cpus, "include_dashboard": False}},
    )
    written = result.is_file() and _version(result) != before
    rounds = json.loads(result.read_text())["rounds"] if written else []
    lines, code = summarize(rounds, args.rounds, result)
    print("\n".join(lines))
    return code


def _version(path: Path) -> tuple[int, int, int] | None:
    """Which file is at ``path`` (inode, modification time, size), or None: a report this run
    wrote (replaced or rewritten) differs from the one there before."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size


if __name__ == "__main__":
    sys.exit(main())
