"""Progress bars (tqdm, on stderr) with a plain-print fallback.

Table rows go through :meth:`Progress.write` so they print above the bar
instead of breaking it. The bar shows only when stderr is a terminal: its
frames never land in a redirected log.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import TracebackType
from typing import Any

__all__ = ["Progress", "on_terminal"]


def on_terminal() -> bool:
    """Whether stderr is a terminal (where progress bars and status lines go)."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty is not None and isatty())


class Progress:
    """A bar over ``total`` steps labelled ``description``; plain prints when
    disabled, when stderr is not a terminal or when tqdm is not installed."""

    def __init__(self, total: int, description: str, *, enabled: bool = True) -> None:
        self._bar: Any = None
        if enabled and on_terminal() and importlib.util.find_spec("tqdm") is not None:
            tqdm = importlib.import_module("tqdm")
            self._bar = tqdm.tqdm(total=total, desc=description, unit="config", leave=False, file=sys.stderr)

    def write(self, line: str) -> None:
        """Print ``line`` on stdout above the bar."""
        if self._bar is not None:
            self._bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def begin(self, label: str) -> None:
        """Show ``label`` (the step now running) on the bar."""
        if self._bar is not None:
            self._bar.set_postfix_str(label)

    def advance(self) -> None:
        """One step done."""
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        """Remove the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
