"""What a configuration guarantees, computed from its parameters and stated in one line.

Every protocol configuration (:attr:`secagg.masking.MaskingConfig.guarantee`,
:attr:`secagg.paillier.SessionParameters.guarantee`) answers two questions:
against how many colluding clients (besides the server) one client's input stays
hidden, and how many dropouts a session survives. Semi-honest masking protects
only against a server that follows the protocol; the line says so plainly.
"""

from __future__ import annotations

from dataclasses import dataclass

from secagg.errors import ConfigurationError

__all__ = ["Guarantee"]


@dataclass(frozen=True)
class Guarantee:
    """Private against the server plus up to ``colluders`` clients; completes with up to ``dropouts`` dropouts.

    Attributes:
        colluders: c, the colluding clients (or key-share holders) the server may
            recruit without learning any single client's input.
        dropouts: d, the clients that may drop out over the session while it
            still completes with the exact sum of the others.
        lying_server: True if c holds against a server that deviates from the
            protocol (lies about dropouts, splits messages); False if only
            against one that follows it (semi-honest).
        privacy_failure_bits: if set, the privacy statement fails with
            probability below 2^-bits (SecAgg+'s random graph); 0 if exact. The
            probability is over the graph: with ``lying_server`` the line says that
            a server grinding session contexts for a graph is not covered.
        completion_failure_bits: likewise for completion.
        trusted: a party the statement assumes does not collude with the server, if
            any (single-key Paillier's key holder, who can decrypt every upload); ""
            if none.
        insecure: why the statement does not hold at all (a key below the size
            floor, accepted only by name for tests and demos); "" if it does.
    """

    colluders: int
    dropouts: int
    lying_server: bool
    privacy_failure_bits: int = 0
    completion_failure_bits: int = 0
    trusted: str = ""
    insecure: str = ""

    def __post_init__(self) -> None:
        # A negative count would print as a guarantee ("up to -1 colluding clients") while
        # stating none: every caller computes its counts, so one below 0 is refused, not printed.
        for name in ("colluders", "dropouts", "privacy_failure_bits", "completion_failure_bits"):
            value = getattr(self, name)
            if value < 0:
                raise ConfigurationError(f"Guarantee: {name} must be >= 0, got {value}")

    def __str__(self) -> str:
        server = "a lying server" if self.lying_server else "an honest-but-curious server"
        privacy = f"private against {server} plus up to {_count(self.colluders, 'colluding client')}"
        if self.privacy_failure_bits and self.lying_server:
            # The probability is over the random graph, which a lying server could grind for by
            # trying session contexts offline (docs/threat-model.md, "The Harary permutation").
            privacy += (
                f" (except with probability < 2^-{self.privacy_failure_bits} over the random graph; not against "
                "a server that grinds session contexts to place its colluders: use the complete graph there)"
            )
        elif self.privacy_failure_bits:
            privacy += f" (except with probability < 2^-{self.privacy_failure_bits})"
        completion = f"completes with up to {_count(self.dropouts, 'dropout')}"
        if self.completion_failure_bits:
            completion += f" (except with probability < 2^-{self.completion_failure_bits})"
        line = f"{privacy}; {completion}"
        if self.trusted:
            line += f"; assumes {self.trusted} does not collude with the server"
        if not self.lying_server:
            line += "; does NOT resist a server that lies about dropouts (semi-honest mode)"
        if self.insecure:
            line = f"NOT SECURE ({self.insecure}); otherwise {line}"
        return line


def _count(number: int, noun: str) -> str:
    """``"1 dropout"``, ``"2 dropouts"``, ``"0 dropouts"``."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
