"""What FedAvg and an aggregator exchange for one round: its inputs and its result.

FedAvg hands an aggregator one :class:`ClientUpdate` per sampled client and says
which of them drop out and when (:class:`DropoutStage`); the aggregator returns an
:class:`AggregationResult`. The interface that takes and returns them, and the
checks every aggregator runs on them, are in :mod:`fl_core.aggregators.base`,
which re-exports these names (import them from there or from
:mod:`fl_core.aggregators`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fl_core.aggregators.binding import check_model_digest
from secagg._validate import require_int
from secagg.errors import ConfigurationError
from secagg.guarantee import Guarantee
from secagg.segments import ClippingReport

__all__ = ["MAX_U32", "AggregationResult", "ClientUpdate", "DropoutStage", "FloatVector"]

FloatVector = npt.NDArray[np.float64]
"""A one-dimensional float64 numpy array (a flattened model or update)."""


class DropoutStage(enum.IntEnum):
    """When in a round a client goes silent (it sends nothing from then on).

    Stages are ordered; a client that drops at a stage sent every message of the
    stages before it. Each protocol maps them onto its own rounds:

    ========  =========================================  ===============================
    stage     meaning                                    masking round never sent
    ========  =========================================  ===============================
    JOIN      never takes part in the round               AdvertiseKeys
    SETUP     joins, then drops before its key material   ShareKeys
              reaches its peers
    UPLOAD    drops before sending its (protected)        MaskedInput
              update: its update is absent
    FINALIZE  sends its update, then drops before the     Unmasking (ConsistencyCheck in
              last step; its update still counts          active mode is not used here)
    ========  =========================================  ===============================

    Clients that drop at ``JOIN``, ``SETUP`` or ``UPLOAD`` are absent from the
    mean; clients that drop at ``FINALIZE`` are included (their update was sent),
    provided the protocol can still finish with the others.
    """

    JOIN = 0
    SETUP = 1
    UPLOAD = 2
    FINALIZE = 3


MAX_U32 = (1 << 32) - 1
"""The largest client id and sample count (both are u32 on the wire and in descriptors)."""


@dataclass(frozen=True)
class ClientUpdate:
    """One client's contribution to a round.

    Attributes:
        client_id: the client's identifier, a non-negative int unique in the round.
        vector: its update as a one-dimensional float64 array (finite values).
        num_samples: its weight in the mean, the number of local training samples
            (an int >= 1, at most the aggregator's ``max_samples_per_client``).
        model_digest: the 32-byte digest of the global model the client trained from
            (:func:`fl_core.aggregators.binding.model_digest` of the weights it received), or
            ``None`` (taken as the round's model). A client that declares another model than
            the round's is refused (:attr:`AggregationResult.refused`), and the round's is bound
            into the session.
        dp_digest: the 32-byte :meth:`secagg.dp.DPConfig.digest` of the DP configuration a DP
            contribution was clipped and sampled under (``secagg.integrations.torch_dp.dp_update``
            declares it), or ``None`` (not declared). A DP aggregator
            (:class:`fl_core.dp.DPAggregator`) refuses one declaring another configuration than its
            own (:attr:`AggregationResult.refused`), before the round is charged: the noise is
            sized for its clip and sampling rate only.
    """

    client_id: int
    vector: FloatVector
    num_samples: int
    model_digest: bytes | None = None
    dp_digest: bytes | None = None

    def __post_init__(self) -> None:
        # Client ids and sample counts are u32 wherever they are encoded or bound.
        object.__setattr__(self, "client_id", require_int("client_id", self.client_id, 0, MAX_U32))
        object.__setattr__(
            self, "num_samples", require_int(f"client {self.client_id}: num_samples", self.num_samples, 1, MAX_U32)
        )
        vector = self.vector
        if not isinstance(vector, np.ndarray) or vector.ndim != 1 or vector.shape[0] == 0:
            raise ConfigurationError(f"client {self.client_id}: update must be a non-empty one-dimensional array")
        if vector.dtype != np.float64:
            raise ConfigurationError(f"client {self.client_id}: update must be float64, got {vector.dtype}")
        if not np.all(np.isfinite(vector)):
            raise ConfigurationError(f"client {self.client_id}: update contains NaN or infinite values")
        if self.model_digest is not None:
            check_model_digest(f"client {self.client_id}: model_digest", self.model_digest)
        if self.dp_digest is not None and (not isinstance(self.dp_digest, bytes) or len(self.dp_digest) != 32):
            raise ConfigurationError(f"client {self.client_id}: dp_digest must be 32 bytes (a DPConfig.digest())")


@dataclass(frozen=True)
class AggregationResult:
    """What an aggregator returns for one round.

    Attributes:
        mean: the sample-weighted mean of the included updates (float64, same
            length as the inputs), or ``None`` when the round was skipped.
        included: ids of the clients whose updates are in ``mean`` (empty if skipped).
        bytes_per_client: bytes the clients uploaded during the round (every
            protocol message) divided by the number of included clients.
        seconds: wall-clock seconds the aggregation took (encoding, protocol, decoding).
        skipped_reason: why no mean could be computed (``None`` iff ``mean`` is set).
        clipping: the securely summed clipped counts per segment, with the
            segment table (and so each segment's clip) of the round; ``None``
            when nothing was clipped by construction (``plain``) or skipped.
        withheld: (client id, reason) of the clients whose update could not be
            encoded (more samples than ``max_samples_per_client``, an exact integer
            segment value that is fractional or beyond +-qmax, a DP contribution beyond
            its range or a hospital declaring more patients than it was sized for, a
            rotation or a residual that leaves binary64 under :mod:`fl_core.rotated` and
            :mod:`fl_core.compression`): each went
            silent at ``UPLOAD`` (its earlier stage if it dropped before), so it is
            not in ``mean``, and the round went on for the others (skipped, with
            the reason, if too few remained).
        refused: (client id, reason) of the clients the aggregator refused before the
            session (they trained from another model than the round's, or under DP another
            configuration, or sent an update of another length than the round's): each
            drops out at ``JOIN`` and costs only itself.
        errors: client -> why a message of it was dropped (a malformed or refused
            upload, a partial decryption whose proof fails): the round went on
            without it (``paillier``), or was skipped if too few remained.
        guarantee: what the round's session guarantees, computed for the n clients it ran with
            (weaker than the full roster's for some n: :mod:`fl_core.guarantees`), also if it
            aborted; ``None`` if no session ran (``plain``, a round skipped before it).
    """

    mean: FloatVector | None
    included: frozenset[int]
    bytes_per_client: float
    seconds: float
    skipped_reason: str | None = None
    clipping: ClippingReport | None = None
    withheld: tuple[tuple[int, str], ...] = ()
    refused: tuple[tuple[int, str], ...] = ()
    errors: Mapping[int, str] = field(default_factory=dict)
    guarantee: Guarantee | None = None

    def __post_init__(self) -> None:
        if (self.mean is None) == (self.skipped_reason is None):
            raise ConfigurationError("an aggregation result has either a mean or a skipped_reason, not both")
        if self.mean is not None and (not isinstance(self.mean, np.ndarray) or self.mean.ndim != 1):
            raise ConfigurationError("the aggregated mean must be a one-dimensional array")
        if self.mean is not None and not self.included:
            raise ConfigurationError("a mean needs at least one included client")
        if self.bytes_per_client < 0 or self.seconds < 0:
            raise ConfigurationError("bytes_per_client and seconds must be non-negative")
        withheld = [client for client, _ in self.withheld]
        if len(set(withheld)) != len(withheld) or not self.included.isdisjoint(withheld):
            raise ConfigurationError("a withheld client is named once and is not among the included")

    @property
    def skipped(self) -> bool:
        """True if the round produced no mean."""
        return self.mean is None

    @property
    def clipped_count(self) -> int:
        """Coordinates clipped over all included clients (0 without a clipping report)."""
        return 0 if self.clipping is None else self.clipping.clipped

    @property
    def clipped_fraction(self) -> float:
        """``clipped_count`` over the coordinates quantized (0.0 without a clipping report)."""
        return 0.0 if self.clipping is None else self.clipping.fraction
