"""Shared pytest configuration: hypothesis profiles, and the ``umask`` fixture.

``default`` keeps the local run fast on a shared 2-core machine; ``ci`` runs more
examples with a fixed derivation so a CI failure is reproducible. Select one with
``HYPOTHESIS_PROFILE=ci pytest``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

settings.register_profile("default", max_examples=50, deadline=None)
settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def umask() -> Iterator[None]:
    """Restores the process's umask after a test that sets its own (file-mode tests)."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield
    os.umask(previous)
