"""An in-process Flower grid for protocol tests, and a small ClientApp that trains deterministically.

:class:`FakeGrid` delivers each message to a node's ClientApp in this process,
passing instructions, replies and the node's ``context.state`` through
Flower's own object serialisation, as a deployment does between processes.
``node_configs[node]`` adds to that node's node config (e.g. a state file); with
``dp_state_dir`` every node's config names its own ``dp-state-file`` there (a DP round's
default policy requires one), unless ``node_configs`` names another.
Fault injection: ``silent[(node, stage)]`` makes a node give no reply in that
stage (a timeout); ``failing[(node, stage)]`` makes its train handler fail.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode
from flwr.common.serde import recorddict_from_proto, recorddict_to_proto
from flwr.serverapp import Grid
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from secagg.integrations.flower import AuditRecord, NodePolicy, make_paillier_mod, make_secagg_mod
from secagg.integrations.flower._records import STAGE_RECORD
from secagg.integrations.flower.keys import write_identity_key, write_trusted_keys
from secagg.integrations.flower.node_budget import BUDGET_KEY
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.primitives.signing import SigningKey

RUN_ID = 77
SERVER_NODE_ID = 1


def set_task_identity() -> tuple[object, object, object]:
    """Give this process the ServerApp identity Flower's runtime would (messages need a run id)."""
    previous = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = RUN_ID, SERVER_NODE_ID, 0
    return previous


def restore_task_identity(previous: tuple[object, object, object]) -> None:
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = previous  # type: ignore[assignment]


def transported(message: Message) -> Message:
    """``message`` after Flower's deflate/inflate round trip (what crosses a process boundary)."""
    contents = {object_id: obj.deflate() for object_id, obj in get_all_nested_objects(message).items()}
    inflated = inflate_object_from_contents(message.object_id, contents)
    assert isinstance(inflated, Message)
    return inflated


def stage_of(message: Message) -> str:
    record = message.content.config_records.get(STAGE_RECORD) if message.has_content() else None
    return str(record["stage"]) if record is not None else message.metadata.message_type


@dataclass
class FakeGrid(Grid):
    """Nodes are ClientApps in this process; see the module docstring."""

    apps: dict[int, ClientApp]
    silent: set[tuple[int, str]] = field(default_factory=set)
    sent: list[Message] = field(default_factory=list)
    states: dict[int, RecordDict] = field(default_factory=dict)
    replies: dict[str, Message] = field(default_factory=dict)
    node_configs: dict[int, dict[str, str]] = field(default_factory=dict)
    dp_state_dir: Path | None = None

    def set_run(self, run: Run) -> None:
        """Unused: the run is fixed."""

    @property
    def run(self) -> Run:
        return Run.create_empty(RUN_ID)

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None
    ) -> Message:
        return Message(content, dst_node_id, message_type, group_id=group_id, ttl=ttl)

    def get_node_ids(self) -> Iterable[int]:
        return sorted(self.apps)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Deliver each message now; its reply waits to be pulled under the message's id."""
        ids = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = f"m{len(self.sent)}"
            ids.append(message.metadata.message_id)
            for reply in self.send_and_receive([message]):
                self.replies[message.metadata.message_id] = reply
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self.replies.pop(i) for i in list(message_ids) if i in self.replies]

    def budget_file(self, node: int) -> Path | None:
        """Node ``node``'s DP budget file under :attr:`dp_state_dir` (None without one)."""
        return None if self.dp_state_dir is None else self.dp_state_dir / f"node-{node}.dp-budget.json"

    def budget_config(self, node: int) -> dict[str, str]:
        path = self.budget_file(node)
        return {} if path is None else {"dp-state-file": str(path)}

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        replies = []
        for message in messages:
            self.sent.append(message)
            node = message.metadata.dst_node_id
            if (node, stage_of(message)) in self.silent:
                continue
            # The node's state survives between messages only as records, as in a deployment.
            state = recorddict_from_proto(recorddict_to_proto(self.states.get(node, RecordDict())))
            node_config = {"partition-id": node % 100, **self.budget_config(node), **self.node_configs.get(node, {})}
            context = Context(RUN_ID, node, node_config, state, {})
            arrived = transported(message)
            arrived.metadata.__dict__["_message_id"] = message.metadata.message_id  # the SuperLink's job
            try:
                reply = self.apps[node](arrived, context)
            except Exception as exc:
                error = Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=repr(exc))
                reply = Message(error, reply_to=arrived)
            self.states[node] = context.state
            replies.append(transported(reply))
        return replies


def budget_charged(grid: FakeGrid, node: int) -> bool:
    """Whether ``node`` charged its DP budget: its state file (node config's ``dp-state-file``)
    records a release, or, without one, its ``context.state`` holds a budget."""
    named = grid.node_configs.get(node, {}).get("dp-state-file")
    path = Path(named) if named else grid.budget_file(node)
    if path is None:
        return BUDGET_KEY in grid.states.get(node, {})
    return path.exists() and int(json.loads(path.read_text())["released"]) > 0


@dataclass
class Audit:
    """Collects every node's AuditRecord (the unmasked encodings, for checking the sum)."""

    records: list[AuditRecord] = field(default_factory=list)

    def __call__(self, record: AuditRecord) -> None:
        self.records.append(record)

    def of_round(self, server_round: int) -> dict[int, AuditRecord]:
        return {r.node_id: r for r in self.records if r.server_round == server_round}


def node_delta(node: int, shape: tuple[int, ...]) -> np.ndarray:
    """A node's deterministic model change: different per node, inside the default clip."""
    count = int(np.prod(shape))
    return (0.3 * np.sin(np.arange(count) * 0.7 + node)).reshape(shape)


def make_app(
    node: int,
    weight: int,
    audit: Audit | None = None,
    failing_rounds: Iterable[int] = (),
    *,
    paillier: bool = False,
    **mod_options: object,
) -> ClientApp:
    """A ClientApp behind the secagg mod (or the Paillier mod) whose training adds :func:`node_delta`
    to every array."""
    failing = set(failing_rounds)
    make_mod = make_paillier_mod if paillier else make_secagg_mod
    if not paillier and "identity_key_file" not in mod_options and "policy" not in mod_options:
        # A node without an identity key runs semi-honest rounds only when its policy says so, by name.
        mod_options = {"policy": NodePolicy(allow_semi_honest=True), **mod_options}
    if paillier and "identity_key_file" not in mod_options:
        # Paillier uploads are signed: every node gets its test identity and the federation's list.
        key_file, trusted_file = identity_files(node)
        mod_options = {"identity_key_file": key_file, "trusted_keys_file": trusted_file, **mod_options}
    app = ClientApp(mods=[make_mod(audit=audit, rng=np.random.default_rng(node), **mod_options)])  # type: ignore[operator]

    @app.train()
    def train(message: Message, context: Context) -> Message:
        server_round = int(message.content["config"]["server-round"])
        if server_round in failing:
            raise RuntimeError(f"node {node}: training crashed")
        arrays = message.content["arrays"]
        updated = ArrayRecord(
            {name: Array((a.numpy() + node_delta(node, a.shape)).astype(a.numpy().dtype)) for name, a in arrays.items()}
        )
        metrics = MetricRecord({"num-examples": weight, "train-loss": 1.0 / node})
        return Message(RecordDict({"arrays": updated, "metrics": metrics}), reply_to=message)

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        metrics = MetricRecord({"num-examples": weight, "accuracy": 0.5})
        return Message(RecordDict({"metrics": metrics}), reply_to=message)

    return app


def initial_arrays() -> ArrayRecord:
    """A small model of mixed dtypes: float32 weights, a float64 bias and an int buffer."""
    return ArrayRecord(
        {
            "w": Array(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)),
            "b": Array(np.zeros(4)),
            "steps": Array(np.array([5], dtype=np.int64)),
        }
    )


KNOWN_NODES = (7, 42, 99, 1000, 1_000_000_007, 2**63 + 11, 9_999_999_999, 2**64 - 1)
"""Every node id the in-process tests use; the test federation trusts the identity of each."""


def node_identity_key(node: int) -> SigningKey:
    """Node ``node``'s deterministic test identity key."""
    return SigningKey.generate(InsecureDeterministicRandom(f"node-identity-{node}".encode()))


@lru_cache(maxsize=1)
def _identity_directory() -> Path:
    directory = Path(tempfile.mkdtemp(prefix="secagg-test-identities-"))
    write_trusted_keys(directory / "trusted.keys", [node_identity_key(node).public for node in KNOWN_NODES])
    for node in KNOWN_NODES:
        write_identity_key(directory / f"node-{node}.key", node_identity_key(node))
    return directory


def known_trusted_keys() -> frozenset[bytes]:
    """The test federation's identity public keys (every known node's): the server's ``trusted_keys``."""
    return frozenset(node_identity_key(node).public for node in KNOWN_NODES)


TRUSTED_KEYS = known_trusted_keys()
"""The test federation's identity public keys (:func:`known_trusted_keys`)."""


def identity_files(node: int) -> tuple[Path, Path]:
    """(identity-key file of ``node``, the trusted-keys file of every known node), 0600, made once per process."""
    directory = _identity_directory()
    return directory / f"node-{node}.key", directory / "trusted.keys"
