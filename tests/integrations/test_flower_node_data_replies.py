"""What a node's error reply tells the server about its training: never a value of its own.

A refusal computed from what the node's train handler returned (its example count, a weight that
is no integer, its update's values) or raised (a library error of the hospital's own code, whose
words name its files or values) is sent as a stable code; the words, with the count or the path,
go to the node's log (``secagg.flower``, ERROR). docs/integrations.md: "The handler's arrays, its
example count and its other metrics never leave in the clear".
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

pytest.importorskip("flwr")

from flwr.app import Context, Message, MessageType, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import FedAvg

from secagg.dp.encoding import noise_room
from secagg.errors import ConfigurationError
from secagg.integrations.flower import AuditRecord, SecAggGrid, SecAggOptions, make_paillier_mod
from secagg.integrations.flower import _node_errors as errors
from secagg.integrations.flower._masking_options import DEFAULT_MAX_WEIGHT
from secagg.integrations.flower._node_errors import AUDIT_HOOK, NODE_UPDATE, NODE_WEIGHT
from secagg.integrations.flower._records import stage_content
from secagg.integrations.flower.protocol import ENCRYPT

from . import test_integrations_flower_clipping_dp as clipping_dp
from . import test_integrations_flower_paillier as paillier
from .flower_harness import Audit, FakeGrid, identity_files, initial_arrays, make_app
from .paillier_keys import PASSPHRASE, key_files, material
from .test_integrations_flower_active import NODES

pytestmark = pytest.mark.usefixtures("server_identity")

COUNT = DEFAULT_MAX_WEIGHT + 777
"""A distinctive example count beyond the default ``max_weight`` (4873)."""


@pytest.fixture
def shares(tmp_path: Path) -> list[Path]:
    return key_files(tmp_path / "ceremony", 4, 3)[1]


def _paillier_app(shares: list[Path], weight: object, audit: Audit | None = None) -> ClientApp:
    """Node NODES[0]'s Paillier app, whose training returns the model as it came with ``weight``."""
    key_file, trusted = identity_files(paillier.NODES[0])
    app = ClientApp(mods=[make_paillier_mod(key_share_file=shares[0], passphrase=PASSPHRASE, audit=audit,
                                            identity_key_file=key_file, trusted_keys_file=trusted)])  # fmt: skip

    @app.train()
    def train(message: Message, context: Context) -> Message:
        metrics = MetricRecord({"num-examples": weight})  # type: ignore[dict-item]
        return Message(RecordDict({"arrays": message.content["arrays"], "metrics": metrics}), reply_to=message)

    return app


def _paillier_reply(app: object, caplog: pytest.LogCaptureFixture) -> str:
    node = paillier.NODES[0]
    content = RecordDict({"arrays": initial_arrays()})  # the setup binds no training configuration
    setup = paillier.setup_for(material(4, 3).public)
    message = Message(stage_content(ENCRYPT, setup, content), dst_node_id=node, message_type=MessageType.TRAIN)
    with caplog.at_level(logging.ERROR, logger="secagg.flower"):
        reply = app(message, Context(77, node, {}, RecordDict(), {}))  # type: ignore[operator]
    assert reply.has_error()
    return str(reply.error.reason)


def test_a_masking_nodes_count_beyond_max_weight_is_not_sent(caplog: pytest.LogCaptureFixture) -> None:
    # Prepare: five semi-honest nodes, the first one reporting more examples than max_weight
    apps = {node: make_app(node, COUNT if node == NODES[0] else 10) for node in NODES}
    secure = SecAggGrid(FakeGrid(apps), SecAggOptions(mode="semi-honest", protocol="secagg"))
    # Execute
    with caplog.at_level(logging.ERROR, logger="secagg.flower"):
        FedAvg(fraction_evaluate=0.0, min_available_nodes=5).start(
            grid=secure, initial_arrays=initial_arrays(), num_rounds=1
        )
    # Assert: the server learns the class (raise max_weight), not the count; the log has the count
    sent = secure.reports[0].errors[NODES[0]]
    assert NODE_WEIGHT in sent and str(COUNT) not in sent, sent
    assert str(COUNT) in caplog.text


def test_a_paillier_nodes_count_beyond_max_weight_is_not_sent(
    shares: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    sent = _paillier_reply(_paillier_app(shares, COUNT), caplog)
    assert NODE_WEIGHT in sent and str(COUNT) not in sent, sent
    assert str(COUNT) in caplog.text


def test_a_weight_that_is_no_integer_is_not_quoted_to_the_server(
    shares: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: the handler reports a fractional example count (a value of the hospital's)
    sent = _paillier_reply(_paillier_app(shares, 12.375), caplog)
    assert NODE_UPDATE in sent and "12.375" not in sent, sent
    assert "12.375" in caplog.text


def test_a_library_error_of_the_train_handler_is_not_quoted_to_the_server(
    shares: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: the hospital's handler uses the library on its own files, which refuses naming one
    secret = "/srv/hospital-secret/cohort-7.csv"
    key_file, trusted = identity_files(paillier.NODES[0])
    app = ClientApp(mods=[make_paillier_mod(key_share_file=shares[0], passphrase=PASSPHRASE,
                                            identity_key_file=key_file, trusted_keys_file=trusted)])  # fmt: skip

    @app.train()
    def train(message: Message, context: Context) -> Message:
        raise ConfigurationError(f"cannot read {secret}: 3 patients without consent")

    sent = _paillier_reply(app, caplog)
    assert "hospital-secret" not in sent and "patients" not in sent, sent
    assert NODE_UPDATE in sent, sent
    assert secret in caplog.text


def test_a_dp_nodes_count_beyond_the_range_is_not_sent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Prepare: a range sized for 12 examples a node (max_weight); some nodes report more
    pytest.importorskip("dp_accounting")
    grid, _ = clipping_dp.dp_grid(tmp_path)
    secure = SecAggGrid(grid, clipping_dp.options(dp=clipping_dp.DP, max_weight=12))
    # Execute
    with caplog.at_level(logging.ERROR, logger="secagg.flower"):
        clipping_dp.run(secure)
    # Assert: every node over the range is refused with the class; its count is in its log only
    assert secure.dp is not None and secure.dp.plan is not None
    plan = secure.dp.plan
    quantization = secure.options.quantization(len(clipping_dp.NODES))
    most = (quantization.qmax - noise_room(plan)) // (plan.config.l2_clip * plan.scale)
    over = [node for node in clipping_dp.NODES if clipping_dp.WEIGHTS[node] > most]
    assert over, (most, clipping_dp.WEIGHTS)
    for node in over:
        sent = secure.reports[0].errors[node]
        count = clipping_dp.WEIGHTS[node]
        assert NODE_WEIGHT in sent and f"{count} examples" not in sent, sent
        assert f"reports {count} examples" in caplog.text


def test_docs_integrations_lists_every_code_a_node_sends() -> None:
    # Prepare: every code of _node_errors, as a reply carries it
    codes = [getattr(errors, name) for name in errors.__all__ if name.isupper() and name != "LOGGER"]
    codes += [code for _, code in (*errors._LOCAL_CODES, *errors._REFUSAL_CODES)]
    # Execute: the guide's text, its line breaks as spaces
    guide = " ".join((Path(__file__).parents[2] / "docs" / "integrations.md").read_text().split())
    # Assert
    missing = [code for code in codes if f"`{code}" not in guide]
    assert not missing, missing


def test_a_library_error_of_the_audit_hook_is_not_quoted_to_the_server(
    shares: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: the hospital's audit hook refuses with the library's error naming its own folder
    def audit(record: AuditRecord) -> None:
        raise ConfigurationError(f"refusing to overwrite /srv/hospital-secret/audit/round-1-{record.weight}.json")

    # Execute
    sent = _paillier_reply(_paillier_app(shares, 10, audit), caplog)
    # Assert
    assert AUDIT_HOOK in sent and "hospital-secret" not in sent, sent
    assert "hospital-secret" in caplog.text

