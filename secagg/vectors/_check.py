"""What verifying one test means: compare outputs, or require the named error.

A checker is ``check(group, test)``; it returns if the implementation agrees with
the test and raises :class:`~secagg.vectors._format.VectorError` (or lets any
other exception escape) if not. Invalid tests name the exception class in
``secagg.errors`` that the failing step must raise, in the test's ``error`` field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from secagg import errors
from secagg.vectors._format import Json, VectorError

__all__ = ["Checker", "equal", "expect_error", "is_valid"]

T = TypeVar("T")
Checker = Callable[[Json, Json], None]


def is_valid(test: Json) -> bool:
    """Whether the test must be accepted (``valid`` or ``acceptable``)."""
    return str(test["result"]) in ("valid", "acceptable")


def equal(what: str, got: Any, expected: Any) -> None:
    """Require ``got == expected``; the failure message says which value differs."""
    if got != expected:
        raise VectorError(f"{what}: got {_short(got)}, expected {_short(expected)}")


def expect_error(test: Json, action: Callable[[], Any], step: str = "") -> None:
    """Require that ``action`` raises exactly the ``secagg.errors`` class ``test["error"]``."""
    if "error" not in test:
        raise VectorError("an invalid test needs its 'error': the name of the secagg.errors class it expects")
    expected = str(test["error"])
    if not isinstance(getattr(errors, expected, None), type):
        raise VectorError(f"unknown error class {expected!r} in the vector")
    try:
        action()
    except errors.SecAggError as exc:
        if type(exc).__name__ != expected:
            raise VectorError(f"{step or 'step'}: raised {type(exc).__name__} ({exc}), expected {expected}") from exc
        return
    raise VectorError(f"{step or 'step'}: succeeded, expected {expected}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
