"""The binding guards' shared loop: the listing check and the split check of every guard.

Each binding guard (tests/masking/test_binding_guard_*.py, tests/fl_core/test_fl_*binding_guard.py)
keeps a table of every value that shapes a contribution, each with a way to split it between
two clients or the reason it shapes nothing. Two checks keep the table honest, here once:

- :func:`assert_listed`: the table names exactly what is introspected (``dataclasses.fields``,
  ``inspect.signature``), so a field or option added later fails the guard until it is listed;
- :func:`assert_split_fails_the_session`: the two configs of a split differ in what the session
  binds, the client holding the other value is refused
  (:func:`~tests.masking.split_session.assert_split_fails`), and, as the control, the session
  under the base alone completes exactly.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from secagg.masking import MaskingConfig

from .split_session import SplitOutcome, assert_honest_completes, assert_split_fails, split_session

Split = Callable[[str], tuple[MaskingConfig, MaskingConfig]] | str
"""A table entry: per mode, the base config and one with another value; or why the value shapes nothing."""


def field_names(cls: type, prefix: str = "", *, without: Iterable[str] = ()) -> set[str]:
    """The names of ``cls``'s dataclass fields (but ``without``), each after ``prefix``."""
    skipped = set(without)
    return {prefix + field.name for field in dataclasses.fields(cls) if field.name not in skipped}


def parameter_names(function: Callable[..., Any], prefix: str = "") -> set[str]:
    """The names of ``function``'s parameters but ``self``, each after ``prefix``."""
    return {prefix + name for name in inspect.signature(function).parameters if name != "self"}


def assert_listed(introspected: set[str], listed: Iterable[str], what: str = "the table") -> None:
    """``listed`` names exactly the ``introspected`` values: none missing, none stale."""
    names = set(listed)
    missing, stale = sorted(introspected - names), sorted(names - introspected)
    assert not missing and not stale, f"{what}: not listed {missing}; listed but not introspected {stale}"


def split_cases(splits: Mapping[str, object]) -> list[str]:
    """The table's entries that are splits (not reasons), sorted: the parametrized cases."""
    return sorted(name for name, split in splits.items() if not isinstance(split, str))


def assert_split_fails_the_session(
    name: str, base: MaskingConfig, other: MaskingConfig, *, control: bool = True, **options: object
) -> SplitOutcome:
    """Client 1 under ``other``, the server and the other clients under ``base``: ``other`` is
    bound differently, client 1 is refused and no wrong sum is released; with ``control``, the
    session under ``base`` alone then includes everyone. ``options`` go to both sessions."""
    assert other.digest() != base.digest(), f"{name} does not reach the bound config"
    outcome = split_session(base, other, **options)
    assert_split_fails(outcome, base)
    if control:
        assert_honest_completes(base, **options)
    return outcome


def assert_table_split_fails(splits: Mapping[str, Split], name: str, mode: str, **options: object) -> None:
    """:func:`assert_split_fails_the_session` for the table entry ``name`` in ``mode``."""
    split = splits[name]
    assert callable(split), f"{name} is a reason, not a split"
    base, other = split(mode)
    assert_split_fails_the_session(name, base, other, **options)
