"""The front door stays true: README commands are what CI runs, the code is ruff clean, and
the findings ledger lists exactly the findings the chapters record."""

from __future__ import annotations

import json
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


def test_every_recorded_finding_is_in_the_ledger_and_every_ledger_row_is_recorded():
    recorded = set()
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        source = "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")
        recorded |= {(notebook.name, key) for key in re.findall(r'finding\(\s*"(\w+)"', source)}
    ledger = (ROOT / "book" / "findings.md").read_text()
    pasted = set(re.findall(r"/notebooks/([\w.]+)::(\w+)_(?:statistic|verdict):s`", ledger))
    assert recorded, "no chapter records a finding"
    assert recorded == pasted, (
        f"recorded but not in the ledger: {sorted(recorded - pasted)}; "
        f"in the ledger but not recorded: {sorted(pasted - recorded)}"
    )


def test_chapters_take_their_progress_bars_from_the_profile():
    """Bars on the paper profile's long GPU loops, none in the tiny profile's build log."""
    literal = re.compile(r"""progress["']?\s*[=:]\s*(True|False)""")  # keyword or dict key
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(notebook.read_text())["cells"]:
            found = literal.findall("".join(cell["source"]))
            assert not found, f"{notebook.name}: progress={found[0]}; use profile.progress"
