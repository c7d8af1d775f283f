"""ServerApp: Flower's FedAvg, every training round through secure aggregation.

Compared with a plain Flower FedAvg ServerApp the only change is the grid the
strategy drives: ``SecAggGrid(grid, options)`` (pairwise masking, run config
``protocol = "secagg+"`` or ``"secagg"``, ``mode = "active"``, the default, or
``"semi-honest"``, which a lying server can break) or ``PaillierGrid(grid, options)`` (``protocol = "paillier"``,
with the federation's public key from ``public-key-file``) instead of ``grid``. Active
masking and Paillier rounds also give the server the federation's identity public keys,
the ceremony's ``federation.keys`` (public): run config ``trusted-keys-file``, else
``$SECAGG_FLOWER_KEY_DIR/federation.keys``. With them a node whose key is on no list is
left out at ``identify`` and the round goes on; without them such a run refuses to start
(every node would refuse every round that node is sampled in). Every value that shapes a
node's update (the local SGD's epochs, batch size and learning rate; in DP runs the DP step's
learning rate) goes to the nodes in the strategy's ``train_config``
(:func:`train_config`), which the secure round binds: a node served other values by a lying
coordinator is in another session. The nodes never take them from their run config, which
the SuperLink serves each node on its own. The server binds its own run config's digest into
every round (``run_config=context.run_config``), so a node served another run config refuses
the round. The DP step's clip is not sent at all: each node clips at the DP plan's bound
``l2_clip`` (over the learning rate). The server
evaluates the global model on the held-out test set after each round and, if
the run config names a ``result-path``, writes a JSON report of every round
(which nodes were aggregated or dropped, the unmasked ring sum, the weight
total, the guarantee computed for the round's nodes, the model) there. Paillier
rounds take the library's default threshold: the ceremony deals a
``default_threshold(l)``-of-l key (4 hospitals: 3-of-4), and ``PaillierOptions``
refuses a key dealt below it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from secagg.dp import DPConfig
from secagg.errors import ConfigurationError
from secagg.integrations.flower import PaillierGrid, PaillierOptions, SecAggGrid, SecAggOptions
from secagg.integrations.flower.keys import read_public_key, read_trusted_keys
from secagg_flower_app import task
from secagg_flower_app.client_app import KEY_DIR_ENV, TRUSTED_KEYS_NAME

DEFAULTS: dict[str, Any] = {
    "num-server-rounds": 3,
    "protocol": "secagg+",
    "mode": "active",
    "public-key-file": "",
    "trusted-keys-file": "",
    "stage-timeout": 60.0,
    "min-nodes": 3,
    "num-partitions": 5,
    "fraction-evaluate": 0.0,
    "local-epochs": 5,
    "batch-size": 16,
    "learning-rate": 0.1,
    "result-path": "",
    "dp-epsilon": 0.0,
    "dp-delta": 1e-5,
    "dp-clip": 1.0,
    "dp-learning-rate": 0.02,
    "dp-state-file": "",
}


def make_server_app(overrides: Mapping[str, Any] | None = None) -> ServerApp:
    """The ServerApp; ``overrides`` stand in for a run config (the simulation engine passes none)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        settings = {**DEFAULTS, **(overrides or {}), **context.run_config}
        min_nodes = int(settings["min-nodes"])
        strategy = FedAvg(
            fraction_evaluate=float(settings["fraction-evaluate"]),
            min_train_nodes=min_nodes,
            min_evaluate_nodes=min_nodes,
            min_available_nodes=min_nodes,
        )
        protocol, timeout = str(settings["protocol"]), float(settings["stage-timeout"])
        dp, dp_state_file = dp_settings(settings)
        # The one line that makes FedAvg secure:
        secure: SecAggGrid | PaillierGrid
        mode = str(settings["mode"])
        # The federation's identity public keys (a stray node is then left out at identify):
        trusted = federation_keys(settings) if protocol == "paillier" or mode == "active" else None
        if protocol == "paillier":
            public_key = read_public_key(str(settings["public-key-file"]))  # the server holds nothing secret
            secure = PaillierGrid(grid, PaillierOptions(public_key=public_key, trusted_keys=trusted,
                                                        stage_timeout=timeout, dp=dp, dp_state_file=dp_state_file,
                                                        run_config=context.run_config))
        else:
            options = SecAggOptions(protocol=protocol, mode=mode, trusted_keys=trusted, stage_timeout=timeout, dp=dp,
                                    dp_state_file=dp_state_file, run_config=context.run_config)
            secure = SecAggGrid(grid, options)
        report = _Report(secure, protocol, str(settings["result-path"]), int(settings["num-partitions"]))
        initial = task.to_record(task.initial_params())
        report.start(initial)
        strategy.start(
            grid=secure,
            initial_arrays=initial,
            num_rounds=int(settings["num-server-rounds"]),
            train_config=train_config(settings),
            evaluate_fn=report.after_round,
        )

    return app


def train_config(settings: Mapping[str, Any]) -> ConfigRecord:
    """What every node trains with this run, sent with the model in
    the message's ``config`` record and bound into every secure round with it: the local SGD's
    ``local-epochs``, ``batch-size`` and ``learning-rate``, and the DP step's ``dp-learning-rate``.
    Neither the DP clip nor whether a round is DP is among them: a node takes both from the DP
    plan the round binds (``bound_dp``), clipping each patient's gradient at
    ``l2_clip / dp-learning-rate`` (the ``l2_clip`` of :func:`dp_settings`)."""
    return ConfigRecord({
        "local-epochs": int(settings["local-epochs"]),
        "batch-size": int(settings["batch-size"]),
        "learning-rate": float(settings["learning-rate"]),
        "dp-learning-rate": float(settings["dp-learning-rate"]),
    })


def federation_keys(settings: Mapping[str, Any]) -> frozenset[bytes]:
    """The federation's identity public keys as the server knows them: the run config's
    ``trusted-keys-file``, else ``federation.keys`` in ``$SECAGG_FLOWER_KEY_DIR`` (the directory
    make-keys.sh made; a simulation SuperLink or simulate.py sets it). The list is public."""
    path = str(settings["trusted-keys-file"])
    if not path and os.environ.get(KEY_DIR_ENV):
        path = str(Path(os.environ[KEY_DIR_ENV]) / TRUSTED_KEYS_NAME)
    if not path:
        raise ConfigurationError(
            "active masking and Paillier rounds need the federation's trusted-keys file on the server too: "
            "set trusted-keys-file in the run config (flwr run ... --run-config 'trusted-keys-file=\"/path/to/"
            f"federation.keys\"'), or ${KEY_DIR_ENV} to the directory made by examples/flower/make-keys.sh "
            "(its federation.keys, from `secagg keys trust`). It is public; without it one node whose key is on no "
            "list would make every round it is sampled in fail"
        )
    return read_trusted_keys(path)


def dp_settings(settings: Mapping[str, Any]) -> tuple[DPConfig | None, str | None]:
    """The run's DP budget if ``dp-epsilon > 0``: (epsilon, delta) per patient over all the rounds,
    ``l2_clip`` = what one patient can move a node's DP step (``dp-learning-rate * dp-clip``); and
    the accountant's state file (``dp-state-file``; in memory if empty)."""
    epsilon = float(settings["dp-epsilon"])
    if epsilon == 0.0:
        return None, None
    dp = DPConfig(
        epsilon=epsilon,
        delta=float(settings["dp-delta"]),
        rounds=int(settings["num-server-rounds"]),
        l2_clip=float(settings["dp-learning-rate"]) * float(settings["dp-clip"]),
    )
    return dp, str(settings["dp-state-file"]) or None


class _Report:
    """Central evaluation after each round, and the JSON report of the secure rounds."""

    def __init__(self, secure: SecAggGrid | PaillierGrid, protocol: str, path: str, num_partitions: int) -> None:
        self.secure = secure
        self.protocol = protocol
        self.path = Path(path) if path else None
        self.features, self.labels = task.held_out_set(num_partitions)
        self.rounds: list[dict[str, Any]] = []
        self.initial: dict[str, Any] = {}

    def start(self, arrays: ArrayRecord) -> None:
        self.initial = _arrays_json(arrays)

    def after_round(self, server_round: int, arrays: ArrayRecord) -> MetricRecord:
        loss, accuracy = task.evaluate(task.from_record(arrays), self.features, self.labels)
        if server_round > 0:
            secure_round = self.secure.reports[-1]
            self.rounds.append(
                {
                    "round": server_round,
                    "protocol": self.protocol,
                    "node_ids": list(secure_round.node_ids),
                    "included": sorted(secure_round.included),
                    "dropped": {str(node): stage for node, stage in secure_round.dropped.items()},
                    "errors": {str(node): reason for node, reason in secure_round.errors.items()},
                    "aggregate": None if secure_round.aggregate is None else [int(v) for v in secure_round.aggregate],
                    "weight_total": secure_round.weight_total,
                    # masking rounds: the round's clip per array (segment table) and the clipped fraction
                    "segments": None if secure_round.clipping is None else secure_round.clipping.table.describe().hex(),
                    "clipped_fraction": secure_round.clipped_fraction,
                    "seconds": secure_round.seconds,
                    "skipped_reason": secure_round.skipped_reason,
                    "epsilon_spent": secure_round.epsilon_spent,
                    # computed for the round's own nodes (they may join or leave between rounds)
                    "guarantee": None if secure_round.guarantee is None else str(secure_round.guarantee),
                    "arrays": _arrays_json(arrays),
                    "accuracy": accuracy,
                    "loss": loss,
                }
            )
            spent = secure_round.epsilon_spent
            print(
                f"round {server_round}: {len(secure_round.included)} nodes aggregated, test accuracy {accuracy:.3f}, "
                + (f"{secure_round.clipped_fraction:.2%} of the coordinates clipped" if spent is None
                   else f"epsilon spent {spent:.3f}")
            )
            if secure_round.guarantee is not None:
                print(f"round {server_round}: {secure_round.guarantee}")
            if secure_round.skipped_reason is not None:
                # e.g. nodes without identity keys in an active round: each says what it lacks
                print(f"round {server_round} skipped: {secure_round.skipped_reason}")
                for node, reason in sorted(secure_round.errors.items()):
                    print(f"  node {node}: {reason}")
            else:
                # e.g. a node whose identity key is on no list (left out at identify), or a hospital whose
                # own trusted list lacks another node's key (it refuses the setup, naming that node)
                for node, stage in sorted(secure_round.dropped.items()):
                    reason = secure_round.errors.get(node, "no reply")
                    print(f"  node {node} left out in {stage}: {reason}")
        if self.path is not None:
            self.path.write_text(json.dumps({"initial": self.initial, "rounds": self.rounds}))
        return MetricRecord({"accuracy": accuracy, "loss": loss})


def _arrays_json(arrays: ArrayRecord) -> dict[str, Any]:
    """Arrays with their exact bytes (hex), dtype and shape."""
    out = {}
    for name, array in arrays.items():
        values = np.ascontiguousarray(array.numpy())
        out[name] = {"dtype": str(values.dtype), "shape": list(values.shape), "hex": values.tobytes().hex()}
    return out


app = make_server_app()
