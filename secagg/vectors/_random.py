"""Random sources that record draws (generation) and replay them (verification).

A vector records every secret a party drew, so a second implementation can
inject the values without reproducing this library's call order. This
library's verifier replays them through :class:`ReplayedRandom`, which hands the
recorded byte strings back in the documented order (docs/spec.md, "Draw order")
and fails if a call asks for a different size or the draws are not all used.
"""

from __future__ import annotations

from collections.abc import Sequence

from secagg.primitives.randomness import RandomBytes
from secagg.vectors._format import VectorError

__all__ = ["RecordingRandom", "ReplayedRandom"]


class RecordingRandom:
    """Wraps a source and remembers every draw, in order."""

    def __init__(self, source: RandomBytes) -> None:
        self._source = source
        self.draws: list[bytes] = []

    def __call__(self, size: int) -> bytes:
        out = self._source(size)
        self.draws.append(out)
        return out

    def take(self) -> list[bytes]:
        """The draws so far, and forget them."""
        out, self.draws = self.draws, []
        return out


class ReplayedRandom:
    """Yields recorded draws in order; each call must ask for the recorded size."""

    def __init__(self, draws: Sequence[bytes], owner: str = "party") -> None:
        self._draws = list(draws)
        self._position = 0
        self._owner = owner

    def __call__(self, size: int) -> bytes:
        if self._position >= len(self._draws):
            raise VectorError(f"{self._owner} drew {size} more random bytes than the vector records")
        draw = self._draws[self._position]
        if len(draw) != size:
            raise VectorError(
                f"{self._owner}: draw {self._position} asks for {size} bytes, the vector records {len(draw)}"
            )
        self._position += 1
        return draw

    def extend(self, draws: Sequence[bytes]) -> None:
        """Queue more recorded draws (the next step's)."""
        self._draws.extend(draws)

    def finish(self) -> None:
        """Require that every recorded draw was used."""
        if self._position != len(self._draws):
            raise VectorError(f"{self._owner} used {self._position} of {len(self._draws)} recorded draws")
