"""The DP configuration a node's training applies: the bound one, handed over by the mod.

In a DP round the noise is calibrated for the plan's ``l2_clip``: one patient may move a
node's update by at most that much in L2 norm. The train handler does the clipping (the
app's job), so it must clip at the **bound** value, not at one it reads from the training
config: a lying server could send every node the same config (a consistent, bound session)
with a clip 100 times the plan's, and the noise would cover a hundredth of each patient's
influence. So the mods (``secagg_mod``, ``paillier_mod``) hand the handler the plan the setup
binds:

- :func:`with_bound_dp`: before it calls the handler in a DP round, the mod writes the plan's
  :class:`~secagg.dp.DPConfig` into the content the handler sees, as the ConfigRecord
  :data:`BOUND_DP_RECORD` (``secagg.dp``: ``epsilon``, ``delta``, ``rounds``, ``l2_clip``,
  ``sampling_rate`` if the plan declares one, ``min_honest``, ``mechanism``). A message that
  already holds that record (the server's) is refused, DP round or not, secure round or not
  (a plain training message, an evaluate or a query message: the mod's pass-through);
- :func:`bound_dp`: what the handler calls: the bound DPConfig, or None outside a DP round.
  A handler clips each patient's contribution so that it moves the update by at most
  ``bound_dp(message).l2_clip`` (one step of learning rate ``lr``: clip each gradient at
  ``l2_clip / lr``), and Poisson-samples at ``sampling_rate`` if it is not None (or refuses);
- :func:`check_dp_update`: after training, the mod refuses (ConfigurationError, after the
  contribution is charged: whether it trips depends on the data) an update whose L2 norm
  exceeds ``weight * l2_clip``, more than the handler's ``weight`` patients can move it under
  the bound clip, give or take the rounding of the handler's arrays to their float dtypes
  (:func:`rounding_slack`: an honest float32 update at the bound is not refused for it). It
  catches a handler clipping at another value whenever the clip binds; it cannot prove the
  clipping (a per-patient property the mod never sees), so the handler
  must still clip at :func:`bound_dp`'s value.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from flwr.app import ConfigRecord, Message, RecordDict

from secagg.dp.calibration import NoisePlan
from secagg.dp.config import DPConfig
from secagg.errors import ConfigurationError, ProtocolError
from secagg.integrations.flower.arrays import ArrayLayout

__all__ = [
    "BOUND_DP_RECORD",
    "bound_dp",
    "check_dp_update",
    "check_no_bound_dp",
    "rounding_slack",
    "with_bound_dp",
]

BOUND_DP_RECORD = "secagg.dp"
"""The ConfigRecord the mod writes, in a DP round, into the content the train handler sees."""
_TOLERANCE = 1e-9
_ARITHMETIC_ULPS = 16
"""Rounding errors a handler's arithmetic may make on each coordinate of its update, in units
of its dtype's epsilon relative to that coordinate (the clipping, the step)."""
_T = TypeVar("_T", int, float, str)


def check_no_bound_dp(content: RecordDict) -> None:
    """ProtocolError if the server's training ``content`` holds :data:`BOUND_DP_RECORD` (only the
    node's mod writes it)."""
    if BOUND_DP_RECORD in content:
        raise ProtocolError(
            f"the training content carries a {BOUND_DP_RECORD!r} record: only this node's mod writes it "
            "(the DP configuration the round binds); refused"
        )


def with_bound_dp(content: RecordDict, plan: NoisePlan | None) -> RecordDict:
    """``content`` (refused if it holds :data:`BOUND_DP_RECORD`) with, in a DP round, the plan's
    DPConfig under :data:`BOUND_DP_RECORD`."""
    check_no_bound_dp(content)
    if plan is not None:
        config = plan.config
        values: dict[str, float | int | str] = {
            "epsilon": config.epsilon, "delta": config.delta, "rounds": config.rounds, "l2_clip": config.l2_clip,
            "min_honest": config.honest, "mechanism": config.mechanism,
        }  # fmt: skip
        if config.sampling_rate is not None:
            values["sampling_rate"] = config.sampling_rate
        content[BOUND_DP_RECORD] = ConfigRecord(values)  # type: ignore[arg-type]
    return content


def bound_dp(message: Message) -> DPConfig | None:
    """The DP configuration the round binds (the train handler's clip is its ``l2_clip``), or None
    outside a DP round. Meaningful in a handler behind ``secagg_mod`` or ``paillier_mod``, which
    write it; ConfigurationError if the record is malformed."""
    record = message.content.config_records.get(BOUND_DP_RECORD) if message.has_content() else None
    if record is None:
        return None
    rate = record.get("sampling_rate")
    try:
        return DPConfig(
            epsilon=_value(record, "epsilon", float),
            delta=_value(record, "delta", float),
            rounds=_value(record, "rounds", int),
            l2_clip=_value(record, "l2_clip", float),
            sampling_rate=None if rate is None else _value(record, "sampling_rate", float),
            min_honest=_value(record, "min_honest", int),
            mechanism=_value(record, "mechanism", str),
        )
    except ValueError as exc:
        raise ConfigurationError(f"the {BOUND_DP_RECORD!r} record is malformed: {exc}") from exc


def _value(record: ConfigRecord, key: str, kind: type[_T]) -> _T:
    value = record.get(key)
    if type(value) is not kind or not isinstance(value, kind):  # exactly kind (no bool for an int)
        raise ConfigurationError(f"the {BOUND_DP_RECORD!r} record's {key!r} is missing or not a {kind.__name__}")
    return value


def rounding_slack(local: npt.NDArray[np.float64], delta: npt.NDArray[np.float64], layout: ArrayLayout) -> float:
    """How much rounding alone can add to the L2 norm of an update ``delta`` whose trained model
    ``local`` (flattened, in ``layout``) the handler returned in its arrays' dtypes: per float
    coordinate half a unit in the last place of its value (the final rounding to the dtype) plus
    a few epsilons of the coordinate's update (the handler's arithmetic); integer and bool
    coordinates are exact. Negligible in float64; in float32 about 1e-7 of the update, so an
    honest update clipped at exactly the bound is not refused for its rounding."""
    parts = []
    offset = 0
    for spec in layout.specs:
        piece, step = local[offset : offset + spec.length], delta[offset : offset + spec.length]
        offset += spec.length
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "c":
            dtype = np.dtype(dtype.type(0).real.dtype)
        if dtype.kind == "f":
            half_ulp = np.spacing(np.abs(piece).astype(dtype)).astype(np.float64) / 2
            parts.append(half_ulp + _ARITHMETIC_ULPS * float(np.finfo(dtype).eps) * np.abs(step))
    return float(np.linalg.norm(np.concatenate(parts))) if parts else 0.0


def check_dp_update(plan: NoisePlan, delta: npt.NDArray[np.float64], weight: int, slack: float) -> None:
    """ConfigurationError if the update ``delta`` (``local - global``) has an L2 norm above
    ``weight * l2_clip`` (plus ``slack``, its :func:`rounding_slack`): more than ``weight``
    patients, each moving it by at most the bound ``l2_clip``, can reach. Called after the
    contribution is charged (data-dependent)."""
    norm = float(np.linalg.norm(delta))
    most = weight * plan.config.l2_clip
    if not (math.isfinite(norm) and math.isfinite(slack)) or norm > most * (1 + _TOLERANCE) + slack:
        raise ConfigurationError(
            f"this node's update has L2 norm {norm:.6g}, beyond what its {weight} examples can move it under the "
            f"round's bound l2_clip = {plan.config.l2_clip:g} ({most:.6g}): its training did not clip at the bound "
            "DP configuration (bound_dp); refused"
        )
