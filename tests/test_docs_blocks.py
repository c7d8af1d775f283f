"""Every Python and shell block of README.md, docs/*.md and examples/flower/README.md runs as written.

Each ```python, ```sh or ```bash block runs in a fresh subprocess whose working
directory is a new temporary directory that mirrors the repository root (a
symlink to each top-level entry), so relative paths such as ``examples/flower``
resolve as from the root and whatever a block writes stays in the temporary
directory. ``secagg`` on the PATH is this checkout's command line
(``python -m secagg.cli``), and ``python``/``python3`` are the interpreter that
runs the tests. Shell blocks run under ``bash -e -o pipefail``.

- A block opts out only with ``<!-- docs-test: skip (reason) -->`` on the last
  non-blank line before it; an empty or missing reason fails the test. Only
  genuinely long runs (or what cannot run here) opt out.
- A long run that has a quick form runs in that form instead: ``<!-- docs-test:
  reduce (OLD => NEW; OLD => NEW) -->`` on the same line replaces each OLD text
  of the block by NEW before running it (e.g. ``--full => --quick``, ``--seeds 10
  => --seeds 1``, ``/tmp/out => out``); an OLD missing from the block fails the
  test, so the block and its reduction cannot drift apart.
- A block whose first line starts with ``# slow`` runs with the slow tests
  (``-m slow``).
- A block that installs packages or makes a venv (``pip install``, ``-m venv``)
  must opt out: it fails here instead of running (and ``pip`` on the PATH is a
  stub that refuses), so no docs test changes an environment.
- Blocks that need an optional extra (torch, flwr, Ray) or an external command
  (openssl) are skipped where it is missing.
- Fences other than python, sh, bash (json, toml, an unlabelled output sample)
  are not code to run; a fence in any other language fails the test, so that a
  runnable block cannot slip past it under another name, and so does a command
  line (``secagg ...``, ``python -m ...``) in a text or unlabelled fence.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "examples" / "flower" / "README.md"]
RUNNABLE = {"python": "python", "sh": "sh", "bash": "sh"}
NOT_CODE = {"", "json", "toml", "text"}
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)
DIRECTIVE = re.compile(r"<!--\s*docs-test:(.*?)-->", re.S)
SKIP = re.compile(r"^\s*skip\s*(?:\((.*)\))?\s*$", re.S)
REDUCE = re.compile(r"^\s*reduce\s*\((.*)\)\s*$", re.S)
TIMEOUT_S = {False: 300, True: 1800}
COMMAND = re.compile(r"^\s*(?:PYTHONPATH=\S+ )?(?:secagg (?:demo|bench|vectors|keys)\b|python3? -m \w)", re.M)
"""A command line: it belongs in a sh block (which runs), not in a text or unlabelled fence."""
INSTALLS = re.compile(r"\bpip3? (install|uninstall|wheel)\b|-m (pip|venv)\b|\bvirtualenv\b")
"""What changes an environment: such a block must opt out (they are run by .ci/run in a fresh venv)."""


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    language: str
    code: str
    directive: str | None  # the text of a docs-test comment right before the block

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def slow(self) -> bool:
        return self.code.startswith("# slow")

    @property
    def skip_reason(self) -> str | None:
        """None when the block runs; the stated reason ('' if none) when it opts out."""
        if self.directive is None:
            return None
        match = SKIP.match(self.directive)
        return (match.group(1) or "").strip() if match else None

    @property
    def reductions(self) -> list[tuple[str, str]] | None:
        """None when the block runs as written; the (old, new) replacements of a 'reduce' directive."""
        match = REDUCE.match(self.directive) if self.directive is not None else None
        if match is None:
            return None
        pairs = [part.split("=>") for part in match.group(1).split(";") if part.strip()]
        return [(pair[0].strip(), pair[1].strip()) if len(pair) == 2 else ("", "") for pair in pairs]

    def reduced_code(self) -> str:
        """The code to run: the block with its reductions applied (each must match)."""
        code = self.code
        for old, new in self.reductions or []:
            assert old and old in code, f"{self.name}: reduction {old!r} => {new!r} does not match the block"
            code = code.replace(old, new)
        return code


def blocks() -> list[Block]:
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            before = text[: match.start()].rstrip().splitlines()
            previous = before[-1].strip() if before else ""
            directive = DIRECTIVE.fullmatch(previous)
            found.append(
                Block(
                    path=path,
                    line=text[: match.start()].count("\n") + 1,
                    language=match.group(1).strip().lower(),
                    code=match.group(2),
                    directive=directive.group(1).strip() if directive else None,
                )
            )
    return found


def runnable() -> list[Block]:
    return [block for block in blocks() if block.language in RUNNABLE]


def cases() -> list[object]:
    params = []
    for block in runnable():
        marks = [pytest.mark.slow] if block.slow else []
        params.append(pytest.param(block, id=block.name, marks=marks))
    return params


def test_every_fence_is_known_and_every_opt_out_states_a_reason() -> None:
    # Prepare / Execute
    all_blocks = blocks()
    unknown = [f"{b.name} ({b.language})" for b in all_blocks if b.language not in set(RUNNABLE) | NOT_CODE]
    no_reason = [b.name for b in runnable() if b.skip_reason == ""]
    misplaced = [
        b.name for b in all_blocks if b.directive is not None and b.skip_reason is None and b.reductions is None
    ]
    bad_reductions = [b.name for b in all_blocks if b.reductions is not None and not b.reductions]
    bad_reductions += [b.name for b in all_blocks if any(not old for old, _ in b.reductions or [])]
    misplaced += [b.name for b in all_blocks if b.directive is not None and b.language not in RUNNABLE]
    installs = [b.name for b in runnable() if INSTALLS.search(b.code) and b.skip_reason is None]
    hidden = [b.name for b in all_blocks if b.language in NOT_CODE and COMMAND.search(b.code)]
    # Assert
    assert len(runnable()) >= 20, "the docs lost their examples (or the fence pattern broke)"
    assert not unknown, f"fences in a language this test does not know: {unknown}"
    assert not no_reason, f"'docs-test: skip' needs a reason in parentheses: {no_reason}"
    assert not misplaced, f"a docs-test comment that is not a skip or reduce before a runnable block: {misplaced}"
    assert not bad_reductions, f"'docs-test: reduce' needs 'OLD => NEW' pairs separated by ';': {bad_reductions}"
    assert not installs, f"blocks that install packages must opt out with a reason, or they reinstall: {installs}"
    assert not hidden, f"command lines in a text or unlabelled fence (make it a sh block): {hidden}"


def test_every_docs_test_comment_sits_right_before_a_block() -> None:
    # Prepare
    claimed = sum(1 for b in blocks() if b.directive is not None)
    # Execute
    written = sum(len(DIRECTIVE.findall(path.read_text(encoding="utf-8"))) for path in DOCS)
    # Assert: none is stranded in prose, where it would silently do nothing
    assert written == claimed


def test_the_integration_guide_has_runnable_examples_for_every_stack() -> None:
    # Prepare / Execute
    guide = [b.code for b in runnable() if b.path.name == "integrations.md" and b.language == "python"]
    # Assert: Flower, PyTorch and the plain numpy API each have one
    assert any("secagg.integrations.flower" in b for b in guide)
    assert any("secagg.integrations.torch" in b for b in guide)
    assert any("secagg.integrations.keras" in b for b in guide)
    assert any("secagg.masking" in b and "flwr" not in b and "torch" not in b for b in guide)


def _missing_requirements(block: Block) -> list[str]:
    code = block.code
    if block.language == "python":
        modules = [m for m in ("torch", "flwr", "keras") if re.search(rf"^\s*(from|import) {m}\b", code, re.M)]
    else:
        modules = ["flwr"] if re.search(r"^\s*(flwr|flower-\w+) ", code, re.M) else []
    modules += ["ray"] if "run_simulation" in code else []
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    commands = ["openssl"] if re.search(r"^\s*openssl ", code, re.M) else []
    return missing + [c for c in commands if shutil.which(c) is None]


def _workspace(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A working directory that looks like the repository root, and the environment."""
    work = tmp_path / "work"
    work.mkdir()
    for entry in ROOT.iterdir():
        if entry.name != ".git":
            (work / entry.name).symlink_to(entry)
    shims = tmp_path / "bin"
    shims.mkdir()
    for name, command in {
        "secagg": f'exec "{sys.executable}" -m secagg.cli "$@"',
        "python": f'exec "{sys.executable}" "$@"',
        "python3": f'exec "{sys.executable}" "$@"',
        # Never install from a docs block (it would change the interpreter's environment).
        "pip": 'echo "docs-test: pip is disabled in docs blocks" >&2; exit 1',
        "pip3": 'echo "docs-test: pip is disabled in docs blocks" >&2; exit 1',
    }.items():
        shim = shims / name
        shim.write_text(f"#!/bin/sh\n{command}\n")
        shim.chmod(0o755)
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(shims), os.environ.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p),
        "FLWR_HOME": str(tmp_path / "flwr-home"),
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_TELEMETRY_ENABLED": "0",
        "HOME": str(tmp_path / "home"),
    }
    return work, env


@pytest.mark.parametrize("block", cases())
def test_block_runs(block: Block, tmp_path: Path) -> None:
    # Prepare: skip what opts out (with its reason) or needs what is not installed
    if block.skip_reason is not None:
        pytest.skip(f"docs-test: skip ({block.skip_reason})")
    assert not INSTALLS.search(block.code), f"{block.name} installs packages: mark it docs-test: skip (reason)"
    missing = _missing_requirements(block)
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    work, env = _workspace(tmp_path)
    code = block.reduced_code()
    if block.language == "python":
        command = [sys.executable, "-c", code]
    else:
        command = ["bash", "-e", "-o", "pipefail", "-c", code]
    # Execute
    result = subprocess.run(
        command, cwd=work, env=env, capture_output=True, text=True, timeout=TIMEOUT_S[block.slow], check=False
    )
    # Assert: the block's commands succeed and its own asserts hold
    assert result.returncode == 0, f"{block.name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
