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

The digests (public values: what the server sent) live in ``context.state`` under
:data:`CONTRIBUTED_KEY`, 32 bytes per model contributed for. ``context.state`` lasts as long as
the SuperNode process and belongs to one run: a restarted node, or a new run, remembers no model.
"""

from __future__ import annotations

from flwr.app import ConfigRecord, Context

from secagg.errors import ProtocolError, ReplayError
from secagg.integrations.flower.policy import NodePolicy

__all__ = ["CONTRIBUTED_KEY", "check_model", "remember_model"]

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
            f"this node already sent a contribution for this model (arrays digest {digest.hex()[:16]}...): a second "
            "sum over one model would give the server, as the difference of the two, the update of a hospital "
            "left out of one; NodePolicy(allow_repeat_model=True) accepts it by name"
        )


def remember_model(context: Context, digest: bytes, policy: NodePolicy) -> None:
    """Record that this node's contribution for the model ``digest`` leaves (nothing to record when
    its policy allows a repeated model)."""
    if policy.allow_repeat_model:
        return
    models = _contributed(context)
    if not _known(models, digest):
        context.state[CONTRIBUTED_KEY] = ConfigRecord({"models": models + digest})
