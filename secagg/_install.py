"""How to install secagg's optional extras (secagg is not on the package index)."""

from __future__ import annotations

__all__ = ["install_hint"]


def install_hint(extra: str | None = None) -> str:
    """How to install one of secagg's extras (None: secagg with its own dependencies only, such as
    gmpy2 and phe), for error messages.

    secagg is not on the package index: it is installed from a clone of its
    repository (or from a wheel built there with ``python -m pip wheel . -w dist``).
    """
    target = "." if extra is None else f"'.[{extra}]'"
    return f"pip install -e {target} from the root of a secagg clone (secagg is not on the package index)"

