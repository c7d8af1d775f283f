"""Every Python block of docs/integrations.md runs as written.

Blocks that import torch, flwr or keras are skipped where those extras are missing;
a block whose first line says ``# slow`` runs with the slow tests.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "integrations.md"


def python_blocks() -> list[tuple[int, str]]:
    text = DOC.read_text()
    return [(text[: m.start()].count("\n") + 1, m.group(1)) for m in re.finditer(r"```python\n(.*?)```", text, re.S)]


def cases() -> list[object]:
    params = []
    for line, code in python_blocks():
        marks = [pytest.mark.slow] if code.startswith("# slow") else []
        params.append(pytest.param(code, id=f"line-{line}", marks=marks))
    return params


def test_the_doc_has_runnable_examples_for_every_stack() -> None:
    # Prepare / Execute
    blocks = [code for _, code in python_blocks()]
    # Assert: Flower, PyTorch, Keras and the plain numpy API each have one
    assert any("secagg.integrations.flower" in b for b in blocks)
    assert any("secagg.integrations.torch" in b for b in blocks)
    assert any("secagg.integrations.keras" in b for b in blocks)
    assert any("secagg.masking" in b and "flwr" not in b and "torch" not in b for b in blocks)


@pytest.mark.parametrize("code", cases())
def test_python_block_runs(code: str, tmp_path: Path) -> None:
    # Prepare: the extras the block needs; a fresh interpreter in the repository
    needs = [m for m in ("torch", "flwr", "keras") if re.search(rf"^\s*(from|import) {m}\b", code, re.M)]
    needs += ["ray"] if "run_simulation" in code else []
    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    env = {
        **os.environ,
        "FLWR_HOME": str(tmp_path / "flwr-home"),
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_TELEMETRY_ENABLED": "0",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "examples" / "flower"), os.environ.get("PYTHONPATH", "")]),
    }
    # Execute
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    # Assert: the block's own asserts hold
    assert result.returncode == 0, result.stderr[-3000:]
