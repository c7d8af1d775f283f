"""examples/custom_model.py, the example docs/fedavg.md and README.md point a new user to, as shipped."""

from __future__ import annotations

import contextlib
import io
import re
import runpy
import warnings
from pathlib import Path

import numpy as np

from secagg.segments import ClippingWarning

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_model.py"


def test_the_custom_model_example_runs_without_clipping_and_learns_the_true_model() -> None:
    # Prepare: every warning recorded, none filtered out
    output = io.StringIO()
    # Execute: the example as a user runs it (in-process: well under a second)
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(output):
        warnings.simplefilter("always")
        runpy.run_path(str(EXAMPLE), run_name="__main__")
    # Assert: no round clipped its updates (a clipped round biases the mean toward zero) ...
    clipping = [str(w.message) for w in caught if issubclass(w.category, ClippingWarning)]
    assert clipping == []
    # ... and the learned model is the true one
    match = re.search(r"learned w=\[(.*?)\] b=\[(.*?)\]", output.getvalue())
    assert match is not None, output.getvalue()
    learned = np.array([float(v) for v in match.group(1).split()])
    assert np.allclose(learned, [1.5, -2.0, 0.5], atol=0.02) and abs(float(match.group(2)) - 0.3) < 0.02
