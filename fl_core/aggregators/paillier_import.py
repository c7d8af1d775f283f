"""The Paillier aggregator's module, imported only when asked for (it pulls in gmpy2 and phe).

One loader for every path that needs it (``make_aggregator("paillier", ...)`` with ``dp=`` and
without, and the DP floor of :func:`fl_core.dp_build.supported_honest`), so each reports a build
without it, or a dependency that does not import, with the same ConfigurationError.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from secagg._install import install_hint
from secagg.errors import ConfigurationError

__all__ = ["paillier_module"]

_MODULE = "fl_core.aggregators.paillier"
_OWN = ("fl_core", "secagg")


def paillier_module() -> ModuleType:
    """``fl_core.aggregators.paillier``; ConfigurationError if this build lacks it, or if a package
    it needs (gmpy2, phe: secagg's own dependencies) is missing or does not import, naming that
    package and how to install it. An import error inside fl_core or secagg (a bug, nothing to
    install) propagates unchanged."""
    if importlib.util.find_spec(_MODULE) is None:
        raise ConfigurationError(f"aggregation 'paillier' is not available in this build ({_MODULE} is missing)")
    try:
        return importlib.import_module(_MODULE)
    except ImportError as exc:
        missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
        root = missing.split(".", maxsplit=1)[0] if missing else None
        if root is None or root in _OWN:
            raise
        raise ConfigurationError(
            f"aggregation 'paillier' needs {root!r}, which does not import ({exc}); it is one of secagg's own "
            f"dependencies (gmpy2, phe): {install_hint()}"
        ) from exc
