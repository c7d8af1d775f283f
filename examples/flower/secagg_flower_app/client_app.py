"""ClientApp: a hospital trains locally; ``secagg_mod`` masks what leaves the node.

Compared with a plain Flower FedAvg ClientApp the only change is the mod list:
``secagg_mod`` for masking, ``paillier_mod`` for Paillier (here chosen by the
run config's ``protocol``). Masking runs in active mode (the default) and
Paillier uploads are signed, so every node needs its identity key and the
federation's trusted list, from the project's key ceremony (``secagg keys``;
``make-keys.sh`` runs it for a federation on one machine). A node finds them
in its own node config, never in the run config (the server's word):

- ``identity-key-file`` and ``trusted-keys-file``: the two files (a hospital's
  SuperNode, as the library's mods read them);
- else ``key-dir``, or the node's environment variable ``SECAGG_FLOWER_KEY_DIR``
  (the simulation engine gives a node only its ``partition-id``): a directory
  holding ``hospital-<partition-id>.key`` and ``federation.keys``.

A node without keys takes part only in semi-honest rounds, and only if its own
node config says ``allow-semi-honest = true``: such rounds do not resist a server
that lies about dropouts, which with colluding hospitals can learn one hospital's
update. Paillier nodes also read ``key-share-file`` and
``key-share-passphrase-file``. In DP rounds a node with an identity key keeps its
own DP budget (the contributions it made under the run's plan) in
``dp-state-file`` if its node config names one, else beside its identity key
(``hospital-<partition-id>.dp-budget.json``, 0600), so a restarted node does not
forget what it spent; deleting the file starts a new budget, the hospital's
decision. The file records the node's identity public key: another node's file is refused.
A node without an identity key has no such place: it refuses DP rounds unless its
node config names ``dp-state-file`` (its budget would otherwise live in
``context.state``, which a restart or a new run forgets, letting a server collect
the budget again). Two optional node-config keys serve demonstrations and tests:

- ``audit-dir``: the node writes its own unmasked contribution of every round
  to ``<audit-dir>/round-<r>-node-<id>.json`` (a local audit log: it stays on
  the node, and lets a test check the server's aggregate against the plain sum);
- ``drop-stage`` and ``drop-round``: the node fails in that protocol stage of
  that round (fault injection, to watch the protocol recover from a dropout).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from flwr.app import ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable, Mod

from secagg.dp import DPConfig
from secagg.integrations.flower import (
    AuditRecord,
    NodePolicy,
    bound_dp,
    make_paillier_mod,
    make_secagg_mod,
)
from secagg_flower_app import task

FAULT_INJECTION_CODE = 9001
MISSING_KEYS_CODE = 9002
KEY_DIR = "key-dir"
"""Node-config key: a directory holding ``hospital-<partition-id>.key`` and ``federation.keys``."""
KEY_DIR_ENV = "SECAGG_FLOWER_KEY_DIR"
"""The node's environment variable for the key directory, when its node config names none."""
TRUSTED_KEYS_NAME = "federation.keys"
DP_STATE_FILE = "dp-state-file"
"""Node-config key of the node's DP budget state file (secagg.integrations.flower.node_budget)."""
DP_BUDGET_SUFFIX = ".dp-budget.json"
STAGE_RECORD = "secagg"
LOGGER = logging.getLogger(__name__)


def identity_key_name(partition_id: object) -> str:
    """The file name of partition ``partition_id``'s identity key in a key directory."""
    return f"hospital-{partition_id}.key"


def node_keys_mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Point the secure-aggregation mod at this node's identity key, the federation's trusted list
    and the node's DP budget file.

    The node config's own ``identity-key-file`` is used as it stands. Otherwise the key
    directory (node config ``key-dir``, else ``$SECAGG_FLOWER_KEY_DIR``; never the run
    config) gives ``<dir>/hospital-<partition-id>.key`` and ``<dir>/federation.keys``; a
    missing file, or no keys at all in a secure round of a node that does not allow
    semi-honest rounds, is refused with an error reply saying what to set. A node with an
    identity key and no ``dp-state-file`` of its own keeps its DP budget beside the key
    (:func:`budget_file`), so a restarted node still counts what it contributed.
    """
    config = context.node_config
    directory = None if config.get("identity-key-file") else config.get(KEY_DIR) or os.environ.get(KEY_DIR_ENV)
    if directory:
        folder = Path(str(directory))
        identity = folder / identity_key_name(config.get("partition-id"))
        trusted = folder / TRUSTED_KEYS_NAME
        for path, what in ((identity, "identity key"), (trusted, "trusted-keys file")):
            if not path.is_file():  # the path is this node's: in its log, never in the reply to the server
                return _refuse(message, context, f"no {what} at {path}: make the federation's keys with "
                               f"`sh examples/flower/make-keys.sh {folder} <nodes>` (or secagg keys)",
                               sent=f"no {what} in this node's key directory; the details are in this node's log")
        config.update({"identity-key-file": str(identity), "trusted-keys-file": str(trusted)})
    elif (
        not config.get("identity-key-file")
        and _in_secure_round(message)
        and not node_policy(context).allow_semi_honest
    ):
        return _refuse(
            message, context,
            "no identity key: set identity-key-file and trusted-keys-file in the node config, or key-dir "
            f"(or ${KEY_DIR_ENV}) to a directory made by examples/flower/make-keys.sh; "
            "allow-semi-honest=true takes part in semi-honest rounds only, which do not resist a lying server",
        )
    if config.get("identity-key-file") and not config.get(DP_STATE_FILE):
        # The node's own DP budget survives restarts and runs: a file beside its identity key.
        config[DP_STATE_FILE] = budget_file(str(config["identity-key-file"]))
    return call_next(message, context)


def budget_file(identity_key_file: str) -> str:
    """This node's DP budget state file, beside its identity key: ``<dir>/hospital-<i>.key`` gives
    ``<dir>/hospital-<i>.dp-budget.json`` (the accountant's format, written 0600 by the mod)."""
    return str(Path(identity_key_file).with_suffix(DP_BUDGET_SUFFIX))


def _in_secure_round(message: Message) -> bool:
    return message.has_content() and isinstance(message.content.config_records.get(STAGE_RECORD), ConfigRecord)


def _refuse(message: Message, context: Context, reason: str, *, sent: str | None = None) -> Message:
    """An error reply saying ``sent`` (``reason`` if None) to the server; ``reason`` in the node's log."""
    node = f"node {context.node_id} (partition {context.node_config.get('partition-id')})"
    LOGGER.error("%s: %s", node, reason)
    said = reason if sent is None else sent
    return Message(Error(code=MISSING_KEYS_CODE, reason=f"{node}: {said}"), reply_to=message)


def audit_writer(directory: str) -> Callable[[AuditRecord], None]:
    """An audit hook writing each round's contribution to ``directory`` as JSON."""

    def write(record: AuditRecord) -> None:
        encoded = np.asarray(record.encoded)
        path = Path(directory) / f"round-{record.server_round}-node-{record.node_id}.json"
        path.write_text(
            json.dumps(
                {
                    "node_id": record.node_id,
                    "protocol_id": record.protocol_id,
                    "weight": record.weight,
                    "encoded": [int(v) for v in encoded],
                    "ring_bits": 8 * encoded.dtype.itemsize,
                    "signed": encoded.dtype.kind == "i",
                }
            )
        )

    return write


def audited_secagg_mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """``secagg_mod`` (or ``paillier_mod`` if the run's protocol is ``paillier``), plus the local
    audit log if the node config names a directory."""
    directory = context.node_config.get("audit-dir")
    audit = audit_writer(str(directory)) if directory else None
    if context.run_config.get("protocol") == "paillier":
        mod = make_paillier_mod(audit=audit, policy=node_policy(context))
    else:
        mod = make_secagg_mod(audit=audit, policy=node_policy(context))
    return mod(message, context, call_next)


def node_policy(context: Context) -> NodePolicy:
    """What this node accepts. Semi-honest rounds do not resist a server that lies about
    dropouts (with colluding hospitals it can learn one hospital's update), so a node refuses
    them unless it opts in by name: ``allow-semi-honest = true`` in its own node config. The
    run config (the server's) cannot opt a node in. Every node refuses DP rounds unless it keeps
    its DP budget in a file (``require_dp_state_file``): beside its identity key, or, for a node
    without one, the ``dp-state-file`` its node config must then name. It refuses a round
    (masking or Paillier) whose server binds no run config (``require_run_config``); every node
    refuses one that binds another run config than its own. Since that run config is bound, a node
    holds the server to the DP it declares (:func:`declared_dp`): with ``dp-epsilon > 0`` it refuses
    a round without DP, or with a larger epsilon or delta than the run config's. A node whose policy
    requires DP also refuses evaluate and query messages (the mods' default: their replies would
    leave un-noised), so a DP run keeps ``fraction-evaluate = 0.0``."""
    allowed = context.node_config.get("allow-semi-honest")
    declared = declared_dp(context)
    # A DP round is refused unless the node's budget survives restarts and runs in a file: a node
    # with an identity key keeps it beside the key (node_keys_mod); one without names dp-state-file.
    # The server binds its run config's digest (server_app); a round binding none is refused.
    return NodePolicy(allow_semi_honest=allowed in (True, "true"),
                      require_dp=dp_required(context) or declared is not None,
                      max_dp_epsilon=None if declared is None else declared[0],
                      max_dp_delta=None if declared is None else declared[1],
                      require_dp_state_file=True, require_run_config=True)


def declared_dp(context: Context) -> tuple[float, float] | None:
    """The (epsilon, delta) the run config declares (``dp-epsilon > 0``, ``dp-delta``), or None.
    The node's run config is the one the server binds into every round (``require_run_config``),
    so a ServerApp that declares DP there and runs rounds without it, or with more epsilon or
    delta, is refused. A value that is not a number declares nothing (the ServerApp refuses it)."""
    epsilon, delta = context.run_config.get("dp-epsilon"), context.run_config.get("dp-delta")
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (epsilon, delta))
    if not numbers or not float(epsilon) > 0.0:  # type: ignore[arg-type]
        return None
    return float(epsilon), float(delta)  # type: ignore[arg-type]


def dp_required(context: Context) -> bool:
    """The node's own ``require-dp = true``: it refuses rounds without distributed DP."""
    return context.node_config.get("require-dp") in (True, "true")


def training_config(message: Message) -> ConfigRecord:
    """The message's ``config`` record: what the server's strategy sends with the model
    (``server_app.train_config``), bound into the secure round with it. The node trains with
    these values only, never with its run config's: the SuperLink serves each node its own run
    config and nothing binds it, so a lying coordinator could serve every node but one
    ``learning-rate = 0`` (their updates zero, the "aggregate" that one node's update). The DP
    step's clip and whether to take it are not among these values: they come from the DP plan
    the round binds (:func:`dp_clip`)."""
    config = message.content.config_records.get("config") if message.has_content() else None
    if not isinstance(config, ConfigRecord):
        raise ValueError("the train message carries no 'config' record (the server's train_config)")
    return config


def dp_clip(dp: DPConfig, learning_rate: float) -> float:
    """The per-patient gradient clip of a DP step of ``learning_rate`` under the bound plan ``dp``:
    ``dp.l2_clip / learning_rate``, so one patient moves the update by at most the ``l2_clip``
    the noise is calibrated for, whatever the learning rate (a value of the training config)
    and whatever clip the training config names. The example takes full-batch steps, so it
    refuses a plan that declares Poisson sampling (its amplification would not hold)."""
    if not (math.isfinite(learning_rate) and learning_rate > 0.0):
        raise ValueError(f"the DP step's learning rate must be positive and finite, got {learning_rate!r}")
    if dp.sampling_rate is not None:
        raise ValueError(f"the round's DP plan declares Poisson sampling at {dp.sampling_rate:g}; this app takes "
                         "full-batch DP steps and refuses it")
    return dp.l2_clip / learning_rate


def fault_injection_mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Fail in the node-config's ``drop-stage`` of round ``drop-round`` (demonstrations only)."""
    stage_record = message.content.config_records.get("secagg") if message.has_content() else None
    drop_stage, drop_round = context.node_config.get("drop-stage"), context.node_config.get("drop-round")
    if (
        isinstance(stage_record, ConfigRecord)
        and stage_record.get("stage") == drop_stage
        and message.metadata.group_id == str(drop_round)
    ):
        reason = f"fault injection: node {context.node_id} drops out in stage {drop_stage} of round {drop_round}"
        return Message(Error(code=FAULT_INJECTION_CODE, reason=reason), reply_to=message)
    return call_next(message, context)


def make_client_app(mods: list[Mod]) -> ClientApp:
    """The hospital's ClientApp behind ``mods``."""
    app = ClientApp(mods=mods)

    @app.train()
    def train(message: Message, context: Context) -> Message:
        """Local SGD from the global model; reports its example count as its weight."""
        data = task.local_data(int(context.node_config["partition-id"]), int(context.node_config["num-partitions"]))
        start = task.from_record(message.content["arrays"])
        config = training_config(message)  # bound into the secure round; never the run config
        dp = bound_dp(message)  # the DP plan the round binds (None: not a DP round), never the config's word
        if dp is not None:
            # One patient moves this update by at most the bound l2_clip, whatever the learning rate.
            learning_rate = float(config["dp-learning-rate"])
            params = task.dp_step(start, data, learning_rate=learning_rate, clip=dp_clip(dp, learning_rate))
        else:
            params = task.train(
                start,
                data,
                epochs=int(config["local-epochs"]),
                batch_size=int(config["batch-size"]),
                learning_rate=float(config["learning-rate"]),
            )
        loss, _ = task.evaluate(params, data.features, data.labels)
        metrics = MetricRecord({"num-examples": data.num_samples, "train-loss": loss})
        return Message(RecordDict({"arrays": task.to_record(params), "metrics": metrics}), reply_to=message)

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        """Loss and accuracy of the global model on the node's rows (metrics only)."""
        data = task.local_data(int(context.node_config["partition-id"]), int(context.node_config["num-partitions"]))
        loss, accuracy = task.evaluate(task.from_record(message.content["arrays"]), data.features, data.labels)
        metrics = MetricRecord({"num-examples": data.num_samples, "loss": loss, "accuracy": accuracy})
        return Message(RecordDict({"metrics": metrics}), reply_to=message)

    return app


# The one line that differs from a plain FedAvg ClientApp: `mods=[secagg_mod]` (here with the
# example's fault injection in front, the node's key files from its key directory and the local audit log).
app = make_client_app([fault_injection_mod, node_keys_mod, audited_secagg_mod])
