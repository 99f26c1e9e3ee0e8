"""The front door stays true: README commands are what CI runs, and the code is ruff clean."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return [
        line.strip()
        for block in blocks
        for line in block.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_ci_runs_the_readme_commands_verbatim():
    commands = readme_commands()
    assert any("pytest" in c for c in commands), "the README must say how to run the tests"
    ci_lines = {line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()}
    missing = [c for c in commands if c not in ci_lines]
    assert not missing, f".ci/run does not run these README commands: {missing}"


def test_ruff_is_clean():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]' installs it)")
    result = subprocess.run([ruff, "check", str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
