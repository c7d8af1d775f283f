"""The training content a node receives is bounded before it is loaded.

The ``masked-input`` (masking) and ``encrypt`` (Paillier) messages carry the strategy's
content for the node's own train handler: the model arrays and the config record. The
round's setup binds the model (its values: the vector length, the clip table, the
compression's dimension) and the config (its encoded parameters), so a node knows the
largest honest content before it loads anything: at most the model's values, each at most
8 bytes (float64, int64, half a complex128), each array with an ``.npy`` header of at most
:data:`~secagg.integrations.flower._limits.NPY_HEADER_LIMIT` bytes, at most
:data:`~secagg.integrations.flower._limits.MAX_EMPTY_ARRAYS` empty arrays, and config
entries no larger than the bound parameters. A larger content is refused with an error reply
(that node's dropout of the stage, with the reason), and no array of it is ``np.load``ed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict

from secagg.errors import ConfigurationError, DecodeError
from secagg.integrations.flower._records import check_training, training_parameters
from secagg.integrations.flower.protocol import ENCRYPT, MASKED_INPUT

from .flower_harness import initial_arrays
from .test_integrations_flower_limits import PAD, change_downlink, paillier_round, run
from .test_integrations_flower_malformed import (
    FAULTY,
    NODES,
    PAILLIER_NODES,
    assert_exact_masking_sum,
    masking_round,
    npy,
    raw_array,
)

pytestmark = pytest.mark.usefixtures("server_identity")


def _arrays(content: RecordDict, change: Callable[[dict[str, Array]], None]) -> RecordDict:
    changed = RecordDict(dict(content.items()))
    arrays = dict(content["arrays"].items())
    change(arrays)
    changed["arrays"] = ArrayRecord(arrays)
    return changed


def _metrics(content: RecordDict, **entries: object) -> RecordDict:
    """The content with a MetricRecord for the train handler, which the setup does not bind."""
    changed = RecordDict(dict(content.items()))
    changed["metrics"] = MetricRecord(entries)  # type: ignore[arg-type]
    return changed


def _config(content: RecordDict, **extra: object) -> RecordDict:
    changed = RecordDict(dict(content.items()))
    changed["config"] = ConfigRecord({**content["config"], **extra})  # type: ignore[dict-item]
    return changed


CHANGES: dict[str, Callable[[RecordDict], RecordDict]] = {
    # 1 MiB more values than the model has, in one more array
    "huge-array": lambda c: _arrays(c, lambda a: a.__setitem__("extra", Array(np.zeros(PAD // 8)))),
    # the bias, 1 MiB wide instead of 4 values
    "widened-array": lambda c: _arrays(c, lambda a: a.__setitem__("b", Array(np.zeros(PAD // 8)))),
    # a uint8 array of 1 MiB: as many bytes as 128 Ki float64 values, 8 times as many values once converted
    "narrow-dtype": lambda c: _arrays(c, lambda a: a.__setitem__("b", Array(np.zeros(PAD, dtype=np.uint8)))),
    # one value past the model's
    "one-more-value": lambda c: _arrays(c, lambda a: a.__setitem__("extra", Array(np.zeros(1)))),
    # many empty arrays (each only a header)
    "empty-arrays": lambda c: _arrays(
        c, lambda a: a.update({f"e{i}": Array(np.zeros(0)) for i in range(2000)})
    ),
    # the bias with a .npy header padded to 60000 bytes (an honest one has at most 4096)
    "long-header": lambda c: _arrays(c, lambda a: a.__setitem__("b", raw_array(
        npy("{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }" + " " * 60000 + "\n", bytes(32))))),
    # a config entry of 1 MiB
    "huge-config": lambda c: _config(c, note="x" * PAD),
    # one small config entry more than the setup binds
    "one-more-config-entry": lambda c: _config(c, n=1),
    # a MetricRecord the setup does not bind (a handler reading it would take the server's word for it)
    "metric-record": lambda c: _metrics(c, **{"num-examples": 4096}),
    # a MetricRecord of 1 MiB of values
    "huge-metric-record": lambda c: _metrics(c, values=[0.0] * (PAD // 8)),
}
HUGE = ("huge-array", "widened-array", "narrow-dtype", "huge-config")


def _assert_refused(report: object, stage: str, change: str, loaded: list[int], included: frozenset[int]) -> None:
    assert report.skipped_reason is None, report.skipped_reason  # type: ignore[attr-defined]
    assert report.dropped == {FAULTY: stage}, (report.dropped, report.errors)  # type: ignore[attr-defined]
    reason = report.errors[FAULTY]  # type: ignore[attr-defined]
    assert reason.startswith(f"secagg: node {FAULTY}:") and "an honest" in reason, reason
    assert len(reason) < 400, reason
    assert report.included == included  # type: ignore[attr-defined]
    if change in HUGE:
        assert max(loaded) < PAD // 2, "the oversized training content was loaded"


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_node_refuses_oversized_masking_training_content_before_loading_it(change: str, loaded: list[int]) -> None:
    # Prepare: node 42's masked-input message carries the changed strategy content
    grid, secure, audit = masking_round()
    change_downlink(grid, FAULTY, MASKED_INPUT, CHANGES[change])
    # Execute
    run(secure)
    # Assert: node 42 refused with the size, nothing of it loaded; the others summed exactly
    report = secure.reports[0]
    _assert_refused(report, MASKED_INPUT, change, loaded, frozenset(NODES) - {FAULTY})
    assert_exact_masking_sum(report, audit)


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_node_refuses_oversized_paillier_training_content_before_loading_it(
    change: str, paillier_keys: tuple[Path, list[Path]], loaded: list[int]
) -> None:
    grid, secure, audit = paillier_round(paillier_keys)
    change_downlink(grid, FAULTY, ENCRYPT, CHANGES[change])
    # Execute
    run(secure)
    # Assert
    report = secure.reports[0]
    _assert_refused(report, ENCRYPT, change, loaded, frozenset(PAILLIER_NODES) - {FAULTY})
    plain = np.sum([a.encoded for n, a in audit.of_round(1).items() if n in report.included], axis=0)
    assert report.aggregate is not None and np.array_equal(report.aggregate, plain)


def test_check_training_at_the_bound_and_one_past_it() -> None:
    # Prepare: the harness's model (17 values: 12 float32, 4 float64, 1 int64) and its config
    content = RecordDict({"arrays": initial_arrays(), "config": ConfigRecord({"server-round": 1})})
    bound = len(training_parameters(content))
    # Execute / Assert: exactly its values and its encoded config pass; one less of either is refused
    check_training(content, 17, bound)
    with pytest.raises(DecodeError, match="an honest one of 16 values"):
        check_training(content, 16, bound)
    with pytest.raises(DecodeError, match=f"more than the {bound - 1} bytes an honest"):
        check_training(content, 17, bound - 1)


def test_check_training_refuses_a_long_header_before_parsing_it() -> None:
    # Prepare: room for 100000 values, one array whose .npy header claims 60000 bytes
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }" + " " * 60000 + "\n"
    content = RecordDict({"arrays": ArrayRecord({"b": raw_array(npy(header, bytes(32)))})})
    # Execute / Assert
    with pytest.raises(DecodeError, match=r"a \.npy header of 60068 bytes exceeds the 4096"):
        check_training(content, 100_000, 0)


@pytest.mark.parametrize("protocol", ["masking", "paillier"])
def test_a_strategy_message_with_a_metric_record_is_refused_before_anything_is_sent(
    protocol: str, paillier_keys: tuple[Path, list[Path]]
) -> None:
    # Prepare: training messages whose content holds a MetricRecord beside the arrays and config
    grid, secure = masking_round()[:2] if protocol == "masking" else paillier_round(paillier_keys)[:2]
    content = RecordDict({"arrays": initial_arrays(), "config": ConfigRecord({"server-round": 1}),
                          "hints": MetricRecord({"learning-rate": 0.1})})
    nodes = NODES if protocol == "masking" else PAILLIER_NODES
    messages = [Message(content, dst_node_id=node, message_type=MessageType.TRAIN) for node in nodes]
    # Execute / Assert: refused, naming the record; nothing sent
    with pytest.raises(ConfigurationError, match=r"1 MetricRecord \('hints'\)"):
        secure.send_and_receive(messages)  # type: ignore[attr-defined]
    assert grid.sent == []


def test_check_training_refuses_any_metric_record_unread() -> None:
    # Prepare: the harness's model and config, and one MetricRecord of one entry
    content = RecordDict({"arrays": initial_arrays(), "config": ConfigRecord({"server-round": 1})})
    bound = len(training_parameters(content))
    check_training(content, 17, bound)
    content["m"] = MetricRecord({"x": 1})
    # Execute / Assert
    with pytest.raises(DecodeError, match="1 MetricRecord"):
        check_training(content, 17, bound)


def test_two_config_entries_that_bind_under_one_name_are_refused() -> None:
    # Bound as "record/key": {"config": {"a/b": ...}} and {"config/a": {"b": ...}} are both
    # "config/a/b", so one content could hold both (the later one's value bound, the handler
    # reading the other) and match a setup binding one entry; no such content is bindable
    content = RecordDict({"config": ConfigRecord({"a/b": 1.0}), "config/a": ConfigRecord({"b": 0.0})})
    with pytest.raises(ConfigurationError, match="config/a/b"):
        training_parameters(content)
