"""What binds an fl_core round to one run and one global model.

- :func:`model_digest`: the 32-byte digest of a model's weights (a list of numpy arrays, or
  one flat vector), the one the Flower adapter binds (:func:`secagg.integrations.flower.arrays.arrays_digest`
  of the arrays named ``fl_core/0``, ``fl_core/1``, ...): values, shapes and dtypes. A hospital
  declares the digest of the global model it trained from in its
  :class:`~fl_core.aggregators.base.ClientUpdate`.
- :func:`check_models`: the round's model digest (the one the server gives, else the one more
  than half of the declaring hospitals declare) and the hospitals refused because they
  declare another: each drops out at ``JOIN`` with a reason in the round's result
  (:attr:`~fl_core.aggregators.base.AggregationResult.refused`), as a hospital whose session
  descriptor holds another model is refused at the session's first step; the others go on.
- :func:`new_run_id` / :func:`check_run_id`: the run id every secure aggregator binds into
  each round's session descriptor (and Paillier's round context), drawn from ``secrets`` per
  aggregator instance unless the caller names the run, so two runs (or two aggregators)
  never share a session.
- :func:`refuse_other_dp`: a DP round also refuses the hospitals that declare another DP
  configuration (:attr:`~fl_core.aggregators.base.ClientUpdate.dp_digest`) than the round's,
  as it refuses another model.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from secagg._validate import require_int
from secagg.errors import ConfigurationError
from secagg.integrations.flower.arrays import arrays_digest, flatten_arrays

if TYPE_CHECKING:
    from fl_core.aggregators.base import ClientUpdate, DropoutStage

__all__ = [
    "MODEL_DIGEST_SIZE",
    "NO_MODEL",
    "RUN_ID_LIMIT",
    "ModelCheck",
    "check_model_digest",
    "check_models",
    "check_run_id",
    "model_digest",
    "new_run_id",
    "refuse_other_dp",
]

MODEL_DIGEST_SIZE = 32
NO_MODEL = bytes(MODEL_DIGEST_SIZE)
"""The model digest bound when no digest is known (no hospital declares one, the server gives none)."""

RUN_ID_LIMIT = 1 << 64
"""Run ids are u64 in the session descriptor."""

_RECORD = "fl_core"


def model_digest(weights: Sequence[np.ndarray[Any, Any]] | np.ndarray[Any, Any]) -> bytes:
    """SHA-256 of the arrays' layout (names ``fl_core/i``, dtypes, shapes) and values, as the
    Flower adapter's ``arrays_digest``; a single array counts as a list of one.
    ConfigurationError for anything that is not numeric numpy arrays."""
    arrays = [weights] if isinstance(weights, np.ndarray) else weights
    if isinstance(arrays, str | bytes) or not isinstance(arrays, Sequence):
        raise ConfigurationError("model weights must be a numpy array or a sequence of numpy arrays")
    if not all(isinstance(array, np.ndarray) for array in arrays):
        raise ConfigurationError("model weights must be numpy arrays")
    vector, layout = flatten_arrays([(_RECORD, str(index), array) for index, array in enumerate(arrays)])
    return arrays_digest(vector, layout)


def check_model_digest(name: str, digest: object) -> bytes:
    """``digest`` if it is 32 bytes; ConfigurationError naming ``name`` otherwise."""
    if not isinstance(digest, bytes) or len(digest) != MODEL_DIGEST_SIZE:
        raise ConfigurationError(f"{name} must be {MODEL_DIGEST_SIZE} bytes (see fl_core.aggregators.model_digest)")
    return digest


def new_run_id() -> int:
    """A fresh run id: 64 bits from ``secrets``."""
    return secrets.randbits(64)


def check_run_id(run_id: int | None) -> int:
    """``run_id`` checked (an int in 0..2^64-1), or a fresh one for None."""
    if run_id is None:
        return new_run_id()
    return require_int("run_id", run_id, 0, RUN_ID_LIMIT - 1)


@dataclass(frozen=True)
class ModelCheck:
    """The round's model digest, the hospitals refused for declaring another, or why none is the round's.

    Attributes:
        digest: what the session binds as its model digest (:data:`NO_MODEL` if unknown).
        refused: (client id, reason) of the hospitals that declare another model, by id.
        skipped_reason: set when no reference was given and no model is declared by more
            than half of the declaring hospitals: the round cannot tell which is its model.
    """

    digest: bytes
    refused: tuple[tuple[int, str], ...] = ()
    skipped_reason: str | None = None

    def stages(self, stages: Mapping[int, DropoutStage]) -> dict[int, DropoutStage]:
        """``stages`` with every refused hospital dropping at ``JOIN`` (it never joins the session)."""
        from fl_core.aggregators.base import DropoutStage  # noqa: PLC0415 (base imports this module)

        merged = dict(stages)
        for client, _ in self.refused:
            merged[client] = DropoutStage.JOIN
        return merged


def check_models(updates: Sequence[ClientUpdate], reference: bytes | None) -> ModelCheck:
    """The round's model digest and the hospitals refused for another (see :class:`ModelCheck`).

    ``reference``: the digest of the model the server sent this round (``run_fedavg`` gives it),
    or None: then the model declared by more than half of the hospitals that declare one is the
    round's. A hospital that declares no digest is taken as trained from the round's model."""
    claims = {u.client_id: u.model_digest for u in updates if u.model_digest is not None}
    if reference is not None:
        digest = check_model_digest("model_digest", reference)
    elif not claims:
        return ModelCheck(NO_MODEL)
    else:
        (digest, count), *_ = Counter(claims.values()).most_common(1)
        if 2 * count <= len(claims):
            return ModelCheck(
                NO_MODEL,
                skipped_reason=(
                    f"the round's {len(claims)} declaring hospitals name {len(set(claims.values()))} different "
                    "models and none is declared by more than half: pass aggregate(model_digest=...) with the "
                    "digest of the model the server sent"
                ),
            )
    refused = tuple(
        (client, f"trained from another model (digest {claim.hex()[:16]}..., the round's is {digest.hex()[:16]}...)")
        for client, claim in sorted(claims.items())
        if claim != digest
    )
    return ModelCheck(digest, refused)


def refuse_other_dp(updates: Sequence[ClientUpdate], models: ModelCheck, digest: bytes) -> ModelCheck:
    """``models`` with every hospital that declares another DP configuration than ``digest`` (the
    round's :meth:`secagg.dp.DPConfig.digest`) refused too, with the reason: its clip or sampling
    rate is not the one the noise is sized for. A hospital that declares none is taken as
    computed under the round's."""
    reasons = dict(models.refused)
    for update in updates:
        if update.dp_digest is not None and update.dp_digest != digest:
            why = (
                f"computed under another DP configuration (digest {update.dp_digest.hex()[:16]}..., the round's "
                f"is {digest.hex()[:16]}...): its clip or sampling rate is not the one the noise is sized for"
            )
            reasons[update.client_id] = f"{reasons[update.client_id]}; {why}" if update.client_id in reasons else why
    return dataclasses.replace(models, refused=tuple(sorted(reasons.items())))
