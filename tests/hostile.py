"""Running esr as a user runs it, for the hostile-use tests (tests/test_hostile_*.py): a subprocess, and the check
that a failure is one line (an `esr: error:` line, or the CLI's usage error naming the option), never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def esr(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "esr_cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=300)


def one_error(run, option: str | None = None) -> str:
    """The run failed with exactly one error line and no traceback; returns that line."""
    text = run.stdout + run.stderr
    assert run.returncode != 0, text
    assert "Traceback" not in text, text
    errors = [line for line in text.splitlines() if line.startswith("esr: error:") or line.startswith("Error:")
              or "Invalid value" in line or "Error" in line.split(":")[0]]
    assert len(errors) >= 1, text
    if option:
        assert option in text, text
    else:
        assert len([line for line in text.splitlines() if line.startswith("esr: error:")]) == 1, text
    return errors[0]


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
