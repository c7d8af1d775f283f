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
- :func:`bind_entries`: bind named values that shape every hospital's contribution (the feature
  scaling, :mod:`fl_core.contribution_binding`; the local training, :func:`fl_core.fedavg.run_fedavg`)
  into the session descriptor of every later round of an aggregator, on every layer that holds its
  quantizer.
- :func:`check_lengths`: the round's update length, decided by authority (a configured
  dimension, the server's segment table, the hospitals that declare the round's model), never
  by a refused hospital or by which update comes first; a hospital of another length is refused
  as one of another model is (it built its update for another model).
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
from secagg.descriptor import Parameter
from secagg.errors import ConfigurationError
from secagg.integrations.flower.arrays import arrays_digest, flatten_arrays
from secagg.segments import SegmentTable

if TYPE_CHECKING:
    from fl_core.aggregators.base import ClientUpdate, DropoutStage

__all__ = [
    "MODEL_DIGEST_SIZE",
    "NO_MODEL",
    "RUN_ID_LIMIT",
    "ModelCheck",
    "bind_entries",
    "check_lengths",
    "check_model_digest",
    "check_models",
    "check_run_id",
    "model_digest",
    "new_run_id",
    "refuse_other_dp",
    "segments_authority",
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


def bind_entries(aggregator: object, prefix: str, entries: Mapping[str, Parameter]) -> None:
    """Bind ``entries`` into every round ``aggregator`` runs from now on: its quantizer's entries
    under ``prefix`` are replaced by them (every name must start with ``prefix``), in place, on every
    layer that holds that quantizer (a DP aggregator and the protocol under it, a wrapper and the
    aggregator it wraps), so they stay one quantizer. Nothing is bound without a quantizer (``plain``:
    there is no session). Call it before the rounds (the quantizer is replaced)."""
    if any(not name.startswith(prefix) for name in entries):
        raise ConfigurationError(f"every bound entry's name must start with {prefix!r}, got {sorted(entries)}")
    quantizer = getattr(aggregator, "quantizer", None)
    if quantizer is None:
        return
    kept = tuple((name, value) for name, value in quantizer.parameters if not name.startswith(prefix))
    bound = dataclasses.replace(quantizer, parameters=kept + tuple(sorted(entries.items())))
    layer: object = aggregator
    while layer is not None:
        if getattr(layer, "quantizer", None) is quantizer:
            setattr(layer, "quantizer", bound)  # noqa: B010 (any layer: a DP aggregator, a wrapper, the protocol)
        layer = getattr(layer, "inner", None)


def segments_authority(segments: SegmentTable | None) -> tuple[int, str] | None:
    """The length the server's segment table gives a round (what :func:`check_lengths` takes as
    ``authority``), None without a table."""
    if segments is None:
        return None
    return segments.size, f"the segments cover {segments.size} coordinates"


def _lengths(updates: Sequence[ClientUpdate]) -> str:
    """``8 values: clients 1, 2; 11 values: client 3`` (by length, then client id)."""
    by_length: dict[int, list[int]] = {}
    for update in updates:
        by_length.setdefault(update.vector.shape[0], []).append(update.client_id)
    return "; ".join(
        f"{length} values: client{'s' if len(ids) > 1 else ''} {', '.join(map(str, sorted(ids)))}"
        for length, ids in sorted(by_length.items())
    )


def check_lengths(
    updates: Sequence[ClientUpdate], models: ModelCheck, authority: tuple[int, str] | None = None
) -> tuple[int, ModelCheck, list[ClientUpdate]]:
    """The round's update length, ``models`` with every hospital of another length refused too,
    and ``updates`` with a stand-in for every refused hospital (zeros of that length, one sample, its
    declared digests kept): it never joins, so the stand-in keeps the round's shape, is never encoded
    for a sum nor sent, and what the hospital would have sent is never a second reason (withheld).

    A hospital ``models`` refuses already (another model, another DP configuration) keeps its own
    reason whatever its length, and its length decides nothing. The round's length is, first found:
    ``authority`` (a length and what says so: a DP aggregator's configured dimension, the server's
    segment table, :func:`segments_authority`); the length more than half of the hospitals that declare
    the round's model (:attr:`ClientUpdate.model_digest`) send, if no more of the hospitals left send
    another (a declaration is a hospital's own word: one hospital declaring the round's digest with
    another length is refused, and a lone declarer cannot get the others refused); the one length of
    the hospitals left. A hospital of another length is refused with the reason (it built its update
    for another model). Raises ConfigurationError, for the round, when nothing decides (the lengths
    disagree and none of these says which is right; or no hospital left has the authority's length):
    naming every length and its hospitals, blaming none."""
    already = dict(models.refused)
    rest = [u for u in updates if u.client_id not in already]
    declaring = [u for u in rest if models.skipped_reason is None and u.model_digest == models.digest]
    length: int | None = None
    said = ""
    if authority is not None:
        length, said = authority
        if rest and all(u.vector.shape[0] != length for u in rest):
            raise ConfigurationError(f"{said}, but no hospital's update has that length ({_lengths(rest)})")
    else:
        for group, whose in ((declaring, "the hospitals that declare the round's model"), (rest, "the hospitals")):
            if not group:
                continue
            # A declaration is the hospital's own word (the digest is no secret): the declaring hospitals'
            # length decides only when more than half of them send it and no more of the hospitals left send
            # another (a lone declarer cannot outvote the others); without declarations, only when all agree.
            length, count = Counter(u.vector.shape[0] for u in group).most_common(1)[0]
            others = sum(u.vector.shape[0] != length for u in rest)
            split = 2 * count <= len(group) if group is declaring else others > 0
            if split or others > len(rest) - others:
                raise ConfigurationError(
                    f"{whose if split else 'the hospitals'} send updates of different lengths "
                    f"({_lengths(group if split else rest)}) and nothing says which is the model's: have every "
                    "hospital declare the model it trained from (ClientUpdate.model_digest) and pass "
                    "aggregate(model_digest=...), or give the round's segment table"
                )
            said = (
                f"the round's model has {length} (as the hospitals that declare it send)"
                if group is declaring
                else f"the round's updates have {length}"
            )
            break
    if length is None:  # every hospital is refused already: the first one's length shapes the stand-ins
        length = updates[0].vector.shape[0]
    reasons = dict(already)
    for update in rest:
        if update.vector.shape[0] != length:
            reasons[update.client_id] = f"its update has {update.vector.shape[0]} values, but {said}"
    refused = dataclasses.replace(models, refused=tuple(sorted(reasons.items())))
    # A refused hospital never joins: its stand-in (zeros, one sample, its declarations kept) is what the
    # round encodes for it, so what it would have sent (its samples beyond the bound) is never a second reason.
    shaped = [
        dataclasses.replace(u, vector=np.zeros(length), num_samples=1) if u.client_id in reasons else u
        for u in updates
    ]
    return length, refused, shaped
