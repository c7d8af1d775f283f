"""Lazy import of an optional dependency, with an error that says how to install it."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from secagg._install import install_hint
from secagg.errors import ConfigurationError

__all__ = ["require"]


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise ConfigurationError saying how to install the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
        root = missing.split(".", maxsplit=1)[0] if missing else None
        if root is not None and root != module.split(".", maxsplit=1)[0]:
            # The extra is installed, but something it imports is not (Keras's backend, e.g. torch).
            backend = " (the Keras backend KERAS_BACKEND names)" if module == "keras" else ""
            remedy = f"install {root!r} in this environment"
            if module == "keras" and root == "tensorflow" and not os.environ.get("KERAS_BACKEND"):
                # Keras's default backend is tensorflow; the keras extra installs torch instead.
                backend = " (Keras's default backend: KERAS_BACKEND is not set)"
                remedy = (
                    'set the backend the keras extra installs before Keras is first imported, '
                    'os.environ.setdefault("KERAS_BACKEND", "torch") (or KERAS_BACKEND=torch in the '
                    f"environment), or {remedy}"
                )
            raise ConfigurationError(
                f"the optional package {module!r} is installed but cannot be imported: it needs {root!r}"
                f"{backend}, which is missing ({exc}); {remedy}"
            ) from exc
        raise ConfigurationError(
            f"this secagg integration needs the optional package {module!r}: {install_hint(extra)}"
        ) from exc
