"""Shared pytest configuration: hypothesis profiles.

``default`` keeps the local run fast on a shared 2-core machine; ``ci`` runs more
examples with a fixed derivation so a CI failure is reproducible. Select one with
``HYPOTHESIS_PROFILE=ci pytest``.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("default", max_examples=50, deadline=None)
settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
