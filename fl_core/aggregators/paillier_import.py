"""The Paillier aggregator's module, imported only when asked for (it pulls in gmpy2 and phe).

One loader for every path that needs it (``make_aggregator("paillier", ...)`` with ``dp=`` and
without, the DP floor of :func:`fl_core.dp_build.supported_honest`, the byte budget of
:mod:`fl_core.budget` and the demo's Paillier lines), so each reports a build
without it, or a dependency that does not import, with the same ConfigurationError.
:func:`paillier_dependency` is that loader for any module that needs gmpy2 or phe (the Paillier
benchmark suites, the powmod floor of ``secagg bench``), with its own subject in the error.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from secagg._install import install_hint
from secagg.errors import ConfigurationError

__all__ = ["paillier_dependency", "paillier_module"]

_MODULE = "fl_core.aggregators.paillier"
_OWN = ("fl_core", "secagg", "secagg_bench")
_DEPENDENCIES = ("gmpy2", "phe")


def paillier_module() -> ModuleType:
    """``fl_core.aggregators.paillier``; ConfigurationError if this build lacks it, or if a package
    it needs (gmpy2, phe: secagg's own dependencies, or a module they import) is missing or does not
    import (a damaged compiled gmpy2 is an ImportError naming it, not a ModuleNotFoundError), naming
    that package, the loader's own words and how to install it. An import error inside fl_core or
    secagg (a bug, nothing to install), or one naming no module, propagates unchanged."""
    if importlib.util.find_spec(_MODULE) is None:
        raise ConfigurationError(f"aggregation 'paillier' is not available in this build ({_MODULE} is missing)")
    return paillier_dependency(_MODULE, "aggregation 'paillier'")


def paillier_dependency(module: str, what: str) -> ModuleType:
    """``module`` (gmpy2 or phe, or a module that imports them), imported for ``what`` (the subject
    of the error: ``"aggregation 'paillier'"``, ``"secagg bench paillier"``); ConfigurationError, as
    :func:`paillier_module` says, if a package it needs is missing or does not import. An import
    error inside fl_core, secagg or secagg_bench, or one naming no module, propagates unchanged."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        # The module that failed: missing (ModuleNotFoundError) or there but not loading (a damaged
        # compiled gmpy2, its libgmp gone, a phe without a name it needs: ImportError naming it).
        root = exc.name.split(".", maxsplit=1)[0] if exc.name else None
        if root is None or root in _OWN:
            raise
        kind = "it is one of" if root in _DEPENDENCIES else "needed in importing"
        raise ConfigurationError(
            f"{what} needs {root!r}, which does not import ({exc}); {kind} secagg's own "
            f"dependencies (gmpy2, phe): {install_hint()}"
        ) from exc
