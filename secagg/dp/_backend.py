"""Lazy access to Google's ``dp-accounting`` (the optional ``dp`` extra).

secagg's core imports without it; only calibration and accounting need it, and
they import it here, at call time, with an error that says how to install it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from secagg._install import install_hint
from secagg.errors import ConfigurationError

__all__ = ["dp_accounting"]


def dp_accounting() -> ModuleType:
    """The ``dp_accounting`` module, or ConfigurationError with the install hint."""
    try:
        return importlib.import_module("dp_accounting")
    except ImportError as exc:
        raise ConfigurationError(
            f"differential-privacy calibration and accounting need the optional package 'dp_accounting' "
            f"(dp-accounting): {install_hint('dp')}"
        ) from exc
