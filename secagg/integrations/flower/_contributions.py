"""One contribution per model: the models a node sent a contribution for (masking and Paillier mods).

A node's contribution (the masking mod's masked input, the Paillier mod's encrypted upload) is
its update for one model, the arrays digest the round binds (``RoundSetup.arrays_digest``,
``PaillierSetup.arrays_digest``). Two sums over one model whose node sets differ by one hospital
are, without DP, that hospital's update (its training is deterministic), so by default a node
sends at most one contribution per model: :func:`check_model` refuses, before the node trains,
a session over a model it already sent one for, and :func:`remember_model` records the model as
the contribution leaves. A session that aborted before this node's contribution left records
nothing, so an honest server's retry of the same model in a later round runs; one that aborted
after it is refused (the node cannot tell an honest abort from a server that completed the sum).
``NodePolicy(allow_repeat_model=True)`` turns the rule off by name.

The arrays digest covers the model's encoding too (record key, names, dtypes, shapes, order), so a
server could resend the same values widened to float64, or its arrays in another order, under a new
digest while a handler that loads by name into its own dtypes trains exactly as before. So the node
also keys the model by its values alone (:func:`model_key`: the arrays' float64 values, each array
hashed on its own, the hashes sorted) and checks that key on the training content before the handler
runs (:func:`value_guard`), recording both as the contribution leaves.

The digests (public values: what the server sent) live in ``context.state`` under
:data:`CONTRIBUTED_KEY`, 64 bytes per model contributed for (its arrays digest and its value key).
``context.state`` lasts as long as the SuperNode process and belongs to one run: a restarted node,
or a new run, remembers no model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from flwr.app import ConfigRecord, Context

from secagg.errors import ProtocolError, ReplayError
from secagg.integrations.flower.arrays import ArrayLayout
from secagg.integrations.flower.policy import NodePolicy

__all__ = ["CONTRIBUTED_KEY", "check_model", "model_key", "remember_model", "value_guard"]

CONTRIBUTED_KEY = "secagg.contributed"
"""Key of the ConfigRecord in ``context.state`` holding the model digests this node sent a contribution for."""
_DIGEST = 32


def _contributed(context: Context) -> bytes:
    """The digests of the models this node sent a contribution for, concatenated."""
    record = context.state.get(CONTRIBUTED_KEY)
    if record is None:
        return b""
    models = record.get("models") if isinstance(record, ConfigRecord) else None
    if not isinstance(models, bytes) or len(models) % _DIGEST:
        raise ProtocolError("the stored record of contributed models is malformed")
    return models


def _known(models: bytes, digest: bytes) -> bool:
    return any(models[i : i + _DIGEST] == digest for i in range(0, len(models), _DIGEST))


def check_model(context: Context, digest: bytes, policy: NodePolicy) -> None:
    """ReplayError if this node already sent a contribution for the model ``digest`` (unless its
    policy allows a repeated model by name); checked before the node trains."""
    if policy.allow_repeat_model:
        return
    if _known(_contributed(context), digest):
        raise ReplayError(
            f"this node already sent a contribution for this model (model digest {digest.hex()[:16]}...): a second "
            "sum over one model would give the server, as the difference of the two, the update of a hospital "
            "left out of one; NodePolicy(allow_repeat_model=True) accepts it by name"
        )


def model_key(base: npt.NDArray[np.float64], layout: ArrayLayout) -> bytes:
    """The model's key by its values alone: SHA-256 over the sorted SHA-256 of each array's values as
    little-endian float64, so one model re-encoded (another dtype holding the same values, other
    names, shapes, record key or order) has one key."""
    pieces, offset = [], 0
    for spec in layout.specs:
        values = np.ascontiguousarray(base[offset : offset + spec.length], dtype="<f8")
        offset += spec.length
        pieces.append(hashlib.sha256(values.tobytes()).digest())
    return hashlib.sha256(b"secagg/v1/flower-model-values" + b"".join(sorted(pieces))).digest()


def value_guard(
    context: Context, policy: NodePolicy, keys: list[bytes]
) -> Callable[[npt.NDArray[np.float64], ArrayLayout], None]:
    """A check for the training content, run before the handler: ReplayError if this node already
    sent a contribution for a model with these values (:func:`model_key`); the key is appended to
    ``keys`` for :func:`remember_model`."""

    def guard(base: npt.NDArray[np.float64], layout: ArrayLayout) -> None:
        key = model_key(base, layout)
        check_model(context, key, policy)
        keys.append(key)

    return guard


def remember_model(context: Context, digests: tuple[bytes, ...], policy: NodePolicy) -> None:
    """Record that this node's contribution for the model ``digests`` (its arrays digest and its
    :func:`model_key`) leaves (nothing to record when its policy allows a repeated model)."""
    if policy.allow_repeat_model:
        return
    models = _contributed(context)
    for digest in digests:
        if len(digest) != _DIGEST:
            raise ProtocolError("a model digest must be 32 bytes")
        if not _known(models, digest):
            models += digest
    context.state[CONTRIBUTED_KEY] = ConfigRecord({"models": models})
