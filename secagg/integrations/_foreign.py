"""How the adapters report a foreign (non-library) exception raised by one hospital's objects.

A hospital's model, its data or its loss function can raise an exception that is not the
library's (torch's ``RuntimeError``, Keras' ``ValueError``, a checkpoint loader's ``KeyError``).
That hospital is withheld with a reason, and the reason goes into the round's report, which goes
to the server and the coordinator. A foreign text can carry the hospital's tensor shapes and
values ("mat1 and mat2 shapes cannot be multiplied (20x5 and 4x3)", a loss function's "label
check failed for patient ..."), so the reason names what failed and the exception's type only;
the full text, with its traceback, is logged on the party that ran the hospital's code (the
adapter's own logger): at DEBUG where that party aggregates, at ERROR on a Flower node, whose
operator must see its own training crash. A library error (:class:`~secagg.errors.SecAggError`) is the
library's own wording and is reported as it stands, by the caller.
"""

from __future__ import annotations

import logging

__all__ = ["NOT_REPORTED", "foreign_reason"]

NOT_REPORTED = "(its message is not reported)"
"""What a reason says in place of a foreign exception's text."""


def foreign_reason(
    what: str, exc: BaseException, *, logger: logging.Logger, hospital: object, level: int = logging.DEBUG
) -> str:
    """``"{what} raised {type} (its message is not reported)"``: the reason for a hospital whose
    ``what`` (e.g. "reading it", "the per-sample gradient computation") raised the foreign ``exc``.

    The exception's text and traceback are logged at ``level`` on ``logger`` (DEBUG unless the
    caller runs on the hospital's own node, whose operator must see the crash), never returned.
    Its text is never read here: an exception whose ``__str__`` raises is named like any other
    (logging and :mod:`traceback` handle it when the level is on)."""
    name = type(exc).__name__
    logger.log(level, "hospital %s: %s raised %s", hospital, what, name, exc_info=exc)
    return f"{what} raised {name} {NOT_REPORTED}"
