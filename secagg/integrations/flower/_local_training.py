"""A node's local training in a secure round: the app's train handler on the strategy's content,
checked before and after (re-exported by :mod:`secagg.integrations.flower._node`)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from flwr.app import Context, Message, RecordDict
from flwr.clientapp.typing import ClientAppCallable

from secagg.dp.calibration import NoisePlan
from secagg.errors import ConfigurationError, ProtocolError, SecAggError
from secagg.integrations._foreign import foreign_reason
from secagg.integrations.flower._node_errors import (
    LOGGER,
    NODE_UPDATE,
    NODE_WEIGHT,
    LocalFailure,
    TrainingFailedError,
    error_reply,
    kept_local,
)
from secagg.integrations.flower._records import (
    check_training,
    model_arrays,
    training_parameters,
    without_stage,
)
from secagg.integrations.flower.bound_plan import check_no_bound_dp, rounding_slack, with_bound_dp
from secagg.integrations.flower.protocol import ArrayLayout, arrays_digest, flatten_arrays

__all__ = ["train_locally"]


def train_locally(
    message: Message,
    context: Context,
    call_next: ClientAppCallable,
    digest: bytes,
    parameters: bytes,
    weight_key: str,
    max_values: int,
    max_weight: int,
    dp: NoisePlan | None = None,
    before: Callable[[npt.NDArray[np.float64], ArrayLayout], None] | None = None,
) -> tuple[npt.NDArray[np.float64], ArrayLayout, int, float]:
    """Run the app's train handler on the strategy's content; ``(local - global, layout, weight,
    slack)``, ``slack`` the update's :func:`~secagg.integrations.flower.bound_plan.rounding_slack`
    in a DP round (0.0 otherwise).

    Checks first, before loading any array, that the content is within the honest size of a
    model of ``max_values`` values and of the bound configuration and holds no MetricRecord
    (unbound; :func:`~secagg.integrations.flower._records.check_training`), then that the model and the
    training configuration sent are the ones the round was set up for (``digest``, ``parameters``: both bound into
    the session); the handler sees exactly the strategy's content; its arrays
    must have the model's names and shapes and its one MetricRecord with
    ``weight_key`` gives the weight, in ``1..max_weight`` outside a DP round (a DP round's range
    is checked by :func:`~secagg.integrations.flower.dp.check_node_weight`). Raises TrainingFailedError if the handler
    fails: its own error reply, or, for a foreign exception it raises, the mod's, naming the
    exception's type only (its text, which can carry the hospital's shapes and values, is logged at
    ERROR on :data:`LOGGER`, never sent). A library error the handler raises, a refusal of its reply
    (:data:`~secagg.integrations.flower._node_errors.NODE_UPDATE`) or of its count
    (:data:`~secagg.integrations.flower._node_errors.NODE_WEIGHT`) is a
    :class:`~secagg.integrations.flower._node_errors.LocalFailure`: the server gets the code, the
    node's log the words. In a DP
    round (``dp``) the handler also sees the plan's DPConfig (:func:`~secagg.integrations.flower.bound_plan.bound_dp`);
    a content that carries that record itself is refused first. ``before``, if given, is called with
    the model's values and layout once they are checked, before the handler runs.
    """
    training = without_stage(message.content)
    check_no_bound_dp(training)
    check_training(training, max_values, len(parameters))
    base, layout = flatten_arrays(model_arrays(training))
    if arrays_digest(base, layout) != digest:
        raise ProtocolError("the model sent for training is not the one the round was set up for")
    if training_parameters(training) != parameters:
        raise ProtocolError("the training configuration sent is not the one the round was set up for")
    if before is not None:
        before(base, layout)  # the caller's check of the model sent (one sum per model), before the handler runs
    message.content = with_bound_dp(training, dp)  # the bound DP configuration, for the handler's clip
    try:
        reply = call_next(message, context)
    except SecAggError as exc:  # the library refusing the hospital's own files or values: its words stay here
        raise LocalFailure(NODE_UPDATE) from exc
    except MemoryError:
        raise  # this node's own resources: not a reason to send
    except Exception as exc:  # the hospital's training: its text (shapes, values) stays on this node
        reason = foreign_reason("the train handler", exc, logger=LOGGER, hospital=context.node_id, level=logging.ERROR)
        raise TrainingFailedError(error_reply(message, f"node {context.node_id}: {reason}")) from exc
    if reply.has_error():
        raise TrainingFailedError(reply)
    with kept_local(NODE_UPDATE):  # the handler's reply is the hospital's: its values never reach the server
        local, local_layout = flatten_arrays(model_arrays(reply.content))
        shapes = [(s.record, s.name, s.shape) for s in layout.specs]
        if [(s.record, s.name, s.shape) for s in local_layout.specs] != shapes:
            raise ConfigurationError("the train handler's arrays differ from the model's (names or shapes)")
        delta = local - base
        slack = 0.0 if dp is None else rounding_slack(local, delta, local_layout)
        weight = _weight(reply.content, weight_key)
    with kept_local(NODE_WEIGHT):  # the count travels inside the secure sum only (a DP round: check_node_weight)
        if dp is None and not 1 <= weight <= max_weight:
            raise ConfigurationError(f"the train handler reports {weight} examples, outside 1..{max_weight} "
                                     "(the round's max_weight)")
    return delta, layout, weight, slack


def _weight(content: RecordDict, key: str) -> int:
    """The integer weight under ``key`` in the handler's one MetricRecord that has it."""
    values = [record[key] for record in content.metric_records.values() if key in record]
    if len(values) != 1:
        raise ConfigurationError(f"the train handler must report {key!r} in exactly one MetricRecord")
    value = values[0]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{key!r} must be an integer count, got {value!r}")
    return value
