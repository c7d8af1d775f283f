"""Ctrl-C in a ``python -m`` measuring tool ends it as it ends ``secagg``: exit code 130, one line
on stderr (``PROG: interrupted``), no traceback.

Each tool runs in a real process as ``python -m`` runs it (``runpy`` with ``__main__``) and sends
itself a real SIGINT once its command line is parsed (or, for the one tool without options, at its
first line of output): the interrupt lands inside the tool's work, at a known point, without a
clock."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from secagg._outputs import EXIT_INTERRUPTED, run_tool

ROOT = Path(__file__).resolve().parents[2]

_INTERRUPTED_AT = (
    "import argparse, builtins, os, runpy, signal, sys\n"
    "signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a foreground terminal\n"
    "def after(real):\n"
    "    pressed = []\n"
    "    def call(*args, **kwargs):\n"
    "        result = real(*args, **kwargs)\n"
    "        if not pressed:  # once: the tool's own last line goes through print too\n"
    "            pressed.append(True)\n"
    "            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, delivered in the tool's own frame\n"
    "        return result\n"
    "    return call\n"
    "if {hook!r} == 'parse_args':\n"
    "    argparse.ArgumentParser.parse_args = after(argparse.ArgumentParser.parse_args)\n"
    "else:\n"
    "    builtins.print = after(builtins.print)\n"
    "sys.argv = [{module!r}]\n"
    "runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
)


@pytest.mark.parametrize(
    ("module", "hook", "prog"),
    [
        ("secagg.paillier.benchmark", "parse_args", "secagg.paillier.benchmark"),
        ("benchmarks.compression", "parse_args", "compression"),
        ("benchmarks.dp_sampler", "parse_args", "dp_sampler"),
        ("benchmarks.prg_throughput", "parse_args", "prg_throughput"),
        ("benchmarks.dp_recipe_probe", "parse_args", "dp_recipe_probe"),
        ("benchmarks.dp_optimizer_probe", "parse_args", "dp_optimizer_probe"),
        ("benchmarks.dp_release_probe", "parse_args", "dp_release_probe"),
        ("benchmarks.dp_schedule_probe", "parse_args", "dp_schedule_probe"),
        ("benchmarks.paillier_slots", "print", "paillier_slots"),
        ("benchmarks.paillier_decrypt", "parse_args", "paillier_decrypt"),
        ("secagg", "parse_args", "secagg"),  # the command line itself, as `python -m secagg` and
        ("fl_core.demo", "parse_args", "secagg"),  # `python -m fl_core.demo` run it
    ],
)
def test_ctrl_c_ends_a_python_m_tool_with_130_and_one_line(module: str, hook: str, prog: str) -> None:
    # Execute
    done = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED_AT.format(module=module, hook=hook)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )

    # Assert: what `secagg` does on Ctrl-C (stderr is no terminal here: no newline before the line)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 130, done.stderr
    assert done.stderr == f"{prog}: interrupted\n"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [False, True])
def test_on_a_terminal_the_line_starts_after_the_echoed_ctrl_c(monkeypatch: pytest.MonkeyPatch, terminal: bool) -> None:
    # Prepare: a tool interrupted in its work; stderr a terminal (the shell echoed ^C) or a log
    stderr = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)

    def main() -> int:
        raise KeyboardInterrupt

    # Execute
    code = run_tool("tool", main)

    # Assert
    assert code == EXIT_INTERRUPTED == 130
    assert stderr.getvalue() == ("\n" if terminal else "") + "tool: interrupted\n"


def test_ctrl_c_after_a_table_for_a_pipe_whose_reader_is_gone_is_still_one_line_and_130() -> None:
    # Prepare: ``tool | head -c 0``, then Ctrl-C: the tool's table waits in stdout's buffer for a pipe
    # whose reader went away, and would fail the interpreter's last flush ("Exception ignored", 120)
    program = (
        "from secagg._outputs import run_tool\n"
        "def main():\n"
        "    print('table')\n"
        "    raise KeyboardInterrupt\n"
        "raise SystemExit(run_tool('tool', main))\n"
    )
    read, write = os.pipe()
    os.close(read)
    buffered = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}

    # Execute
    try:
        done = subprocess.run(
            [sys.executable, "-c", program],
            cwd=ROOT,
            env={**buffered, "PYTHONPATH": str(ROOT)},  # stdout buffered, as for a pipe by default
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            timeout=120,
        )
    finally:
        os.close(write)

    # Assert: the interrupt's line and exit code, nothing from the interpreter's last flush
    assert done.returncode == EXIT_INTERRUPTED, done.stderr
    assert done.stderr == "tool: interrupted\n"
