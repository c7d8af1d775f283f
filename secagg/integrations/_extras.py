"""Lazy import of an optional dependency, with an error that says how to install it."""

from __future__ import annotations

import importlib
from types import ModuleType

from secagg.errors import ConfigurationError

__all__ = ["require"]


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise ConfigurationError naming the ``secagg[extra]`` install line."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigurationError(
            f"this secagg integration needs the optional package {module!r}: pip install 'secagg[{extra}]'"
        ) from exc
