"""Lazy import of an optional dependency, with an error that says how to install it."""

from __future__ import annotations

import importlib
from types import ModuleType

from secagg._install import install_hint
from secagg.errors import ConfigurationError

__all__ = ["require"]


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise ConfigurationError saying how to install the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigurationError(
            f"this secagg integration needs the optional package {module!r}: {install_hint(extra)}"
        ) from exc
