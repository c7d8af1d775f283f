"""Pairwise-masking secure aggregation: SecAgg (Bonawitz et al. 2017) and SecAgg+ (Bell et al. 2020).

The server learns the exact ring sum of the surviving clients' vectors and
nothing else, even when clients drop out at any round.

- :class:`MaskingConfig` — validated parameters (``MaskingConfig.secagg`` for the
  complete graph, ``MaskingConfig.secagg_plus`` for the sparse Harary graph).
- :func:`run_session` — the in-memory driver: every round, every message through
  the wire format, with dropouts; a session that aborts raises an error whose
  :func:`abort_report` (an :class:`AbortReport`) records who was lost and why.
- :func:`client_start` / :func:`client_step` and :func:`server_start` /
  :func:`server_step` — the pure state machines a transport (Flower, your own)
  drives message by message.
"""

from __future__ import annotations

from secagg.masking.client import ClientPhase, ClientState, client_start, client_step
from secagg.masking.config import ACTIVE, COMPLETE, HARARY, SEMI_HONEST, MaskingConfig
from secagg.masking.driver import SessionResult, Tamper, TranscriptEntry, make_identities, run_session
from secagg.masking.messages import Round
from secagg.masking.server import ServerPhase, ServerResult, ServerState, server_start, server_step
from secagg.masking.server_state import AbortReport, abort_report
from secagg.masking.session import ZERO_CONTEXT

__all__ = [
    "ACTIVE",
    "COMPLETE",
    "HARARY",
    "SEMI_HONEST",
    "ZERO_CONTEXT",
    "AbortReport",
    "ClientPhase",
    "ClientState",
    "MaskingConfig",
    "Round",
    "ServerPhase",
    "ServerResult",
    "ServerState",
    "SessionResult",
    "Tamper",
    "TranscriptEntry",
    "abort_report",
    "client_start",
    "client_step",
    "make_identities",
    "run_session",
    "server_start",
    "server_step",
]
