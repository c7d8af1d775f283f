"""ClientApp: a hospital trains locally; ``secagg_mod`` masks what leaves the node.

Compared with a plain Flower FedAvg ClientApp the only change is the mod list:
``secagg_mod`` for masking, ``paillier_mod`` for Paillier (here chosen by the
run config's ``protocol``). Node config read by the mods: ``key-share-file``
and ``key-share-passphrase-file`` (Paillier), ``identity-key-file`` and
``trusted-keys-file`` (masking, active mode). Two optional node-config keys
serve demonstrations and tests:

- ``audit-dir``: the node writes its own unmasked contribution of every round
  to ``<audit-dir>/round-<r>-node-<id>.json`` (a local audit log: it stays on
  the node, and lets a test check the server's aggregate against the plain sum);
- ``drop-stage`` and ``drop-round``: the node fails in that protocol stage of
  that round (fault injection, to watch the protocol recover from a dropout).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from flwr.app import ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable, Mod

from secagg.integrations.flower import AuditRecord, NodePolicy, make_paillier_mod, make_secagg_mod, paillier_mod
from secagg_flower_app import task

FAULT_INJECTION_CODE = 9001


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
        mod = make_paillier_mod(audit=audit) if audit else paillier_mod
    else:
        mod = make_secagg_mod(audit=audit, policy=node_policy(context))
    return mod(message, context, call_next)


def node_policy(context: Context) -> NodePolicy:
    """What this node accepts. Semi-honest rounds do not resist a lying server, so a node
    refuses them unless it opts in: a hospital sets ``allow-semi-honest = true`` in its own
    node config. This demo (which has no identity keys) also follows the run config's
    ``mode = "semi-honest"`` when the node config says nothing; a real node would not."""
    allowed = context.node_config.get("allow-semi-honest")
    if allowed is None:
        allowed = context.run_config.get("mode") == "semi-honest"
    return NodePolicy(allow_semi_honest=allowed in (True, "true"))


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
        params = task.train(
            task.from_record(message.content["arrays"]),
            data,
            epochs=int(context.run_config.get("local-epochs", 5)),
            batch_size=int(context.run_config.get("batch-size", 16)),
            learning_rate=float(context.run_config.get("learning-rate", 0.1)),
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
# example's fault injection in front and the local audit log).
app = make_client_app([fault_injection_mod, audited_secagg_mod])
