"""check_share_delivery refuses exactly what the masked-input step would refuse for want of a good delivery.

A transport runs it before it computes the input (over Flower: before training and the DP
charge), so it must raise the step's own error for every delivery the step refuses, and pass
every delivery the step accepts (one with some refused boxes included).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from secagg import wire
from secagg.errors import ProtocolError, ReplayError, SecAggError, ThresholdError
from secagg.masking import ClientPhase, MaskingConfig
from secagg.masking.client import check_share_delivery, client_step
from secagg.masking.messages import SealedBox, ShareDelivery

from .harness import StepRun

SEMI = MaskingConfig(num_clients=5, threshold=3, vector_length=4, mode="semi-honest")
Lie = Callable[[ShareDelivery], ShareDelivery]


def _boxes(delivery: ShareDelivery, boxes: list[SealedBox]) -> ShareDelivery:
    return dataclasses.replace(delivery, boxes=tuple(sorted(boxes, key=lambda box: box.peer)))


BAD: dict[str, tuple[Lie, type[SecAggError]]] = {
    "one box": (lambda d: _boxes(d, list(d.boxes[:1])), ThresholdError),
    "no box opens": (lambda d: _boxes(d, [SealedBox(b.peer, bytes(60)) for b in d.boxes]), ThresholdError),
    "a box from itself": (lambda d: _boxes(d, [*d.boxes[1:], SealedBox(1, bytes(60))]), ProtocolError),
    "another recipient": (lambda d: dataclasses.replace(d, recipient=2), ProtocolError),
    "another session": (lambda d: dataclasses.replace(d, session_id=bytes(32)), ProtocolError),
}
GOOD: dict[str, Lie] = {
    "honest": lambda d: d,
    "one box does not open": lambda d: _boxes(d, [SealedBox(2, bytes(60)), *(b for b in d.boxes if b.peer != 2)]),
}


def _delivery() -> tuple[StepRun, ShareDelivery]:
    run = StepRun(SEMI, seed=1)
    run.run_until(ClientPhase.AWAIT_SHARES)
    return run, wire.decode(run.pending[1], ShareDelivery)


@pytest.mark.parametrize("lie", list(BAD))
def test_a_delivery_the_step_refuses_is_refused_with_the_steps_error(lie: str) -> None:
    # Prepare
    run, delivery = _delivery()
    change, error = BAD[lie]
    data = wire.encode(change(delivery))
    # Execute / Assert: the same error class as the step itself, which is refused too
    with pytest.raises(SecAggError) as checked:
        check_share_delivery(run.states[1], data)
    with pytest.raises(SecAggError) as stepped:
        client_step(run.states[1], data, input_vector=run.inputs[1])
    assert type(checked.value) is type(stepped.value) is error


@pytest.mark.parametrize("lie", list(GOOD))
def test_a_delivery_the_step_accepts_passes(lie: str) -> None:
    run, delivery = _delivery()
    data = wire.encode(GOOD[lie](delivery))
    state = run.states[1]
    check_share_delivery(state, data)
    assert run.states[1] is state and state.phase == ClientPhase.AWAIT_SHARES
    assert client_step(state, data, input_vector=run.inputs[1])[0].phase == ClientPhase.AWAIT_UNMASK


def test_a_delivery_after_the_step_is_a_replay() -> None:
    run, delivery = _delivery()
    data = wire.encode(delivery)
    after, _ = client_step(run.states[1], data, input_vector=run.inputs[1])
    with pytest.raises(ReplayError):
        check_share_delivery(after, data)
