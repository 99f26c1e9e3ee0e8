"""The package keeps the floors ARCHITECTURE.md states: no import runs back up.

The floors are read from ARCHITECTURE.md's table, so the map and this test cannot drift apart:
a module may import from its own floor or a lower one, never a higher one; ``plotting``
imports nothing from vitlens; imports of vitlens sit at the top of each file; no module
imports the package root; and no two modules import each other, directly or through others.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "vitlens"


def stated_floors() -> dict[str, int]:
    """``{package or module: floor}`` from the floors table of ARCHITECTURE.md."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    floors = {}
    for number, cell in re.findall(r"^\| (\d+) \| ([^|]+) \|", text, flags=re.M):
        for name in re.findall(r"`([a-z_]+)`", cell):
            floors[name] = int(number)
    return floors


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def vitlens_imports(path: Path) -> list[tuple[str, int, bool]]:
    """``(imported module, line, at top level)`` for every import of a vitlens module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vitlens"):
            targets = [node.module]
            if node.module == "vitlens":  # `from vitlens import data` imports a subpackage
                targets = [f"vitlens.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names if a.name.split(".")[0] == "vitlens"]
        else:
            continue
        found += [(target, node.lineno, node.col_offset == 0) for target in targets]
    return found


def floor_key(module: str) -> str:
    """The floors table's key of a module: its subpackage or top-level module name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py")
ENTRY_POINTS = {"vitlens", "vitlens.__main__"}  # the package root re-exports, on top of all


def test_the_floors_table_names_every_part_of_the_package():
    floors = stated_floors()
    parts = {floor_key(module_name(p)) for p in MODULES if module_name(p) not in ENTRY_POINTS}
    assert parts, "no modules found"
    assert not parts - set(floors), f"ARCHITECTURE.md's floors table lacks {parts - set(floors)}"
    unknown = set(floors) - parts
    assert not unknown, f"the table names parts that do not exist: {unknown}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_import_runs_back_up(path):
    floors = stated_floors()
    module = module_name(path)
    if module in ENTRY_POINTS:
        return
    own = floors[floor_key(module)]
    for target, line, top in vitlens_imports(path):
        where = f"{path.relative_to(ROOT)}:{line} imports {target}"
        assert top, f"{where} inside a function; vitlens imports go at the top of the file"
        assert target != "vitlens", f"{where}: import the module that defines the name instead"
        if floor_key(module) == "plotting":
            raise AssertionError(f"{where}: plotting draws numbers and imports no vitlens code")
        assert floors[floor_key(target)] <= own, (
            f"{where}, floor {floors[floor_key(target)]} above its own floor {own}"
        )


def test_no_import_cycles():
    graph = {
        module_name(p): {t for t, _, _ in vitlens_imports(p) if t != module_name(p)}
        for p in MODULES
    }
    known = set(graph)

    def expand(target: str) -> set[str]:  # `from vitlens.models import x` runs models/__init__
        return {target} & known

    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(set().union(*(expand(t) for t in graph.get(node, ())))):
            if state.get(nxt) == 1:
                cycle = [*trail[trail.index(nxt) :], nxt] if nxt in trail else [node, nxt]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state and module not in ENTRY_POINTS:
            visit(module, [module])


def test_the_floor_check_catches_an_import_that_runs_back_up(tmp_path):
    """The check itself can fail: an analysis importing the book would be caught."""
    floors = stated_floors()
    assert floors["book"] > floors["analyses"] > floors["core"]
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from vitlens.book.verdicts import Estimate\n\ndef f():\n    import vitlens.data\n"
    )
    imports = vitlens_imports(bad)
    assert [(t, top) for t, _, top in imports] == [
        ("vitlens.book.verdicts", True),
        ("vitlens.data", False),
    ]
    assert floors[floor_key(imports[0][0])] > floors["analyses"]


@pytest.mark.parametrize(("preset", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_importing_vitlens_lets_openmp_threads_sleep_unless_told_otherwise(preset, expected):
    """On a CPU shared with another busy process, spinning OpenMP threads made a chapter
    six times slower; vitlens asks for passive waiting before torch loads, and a value the
    user set wins."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset is not None:
        env["OMP_WAIT_POLICY"] = preset
    code = "import os, vitlens, torch; print(os.environ['OMP_WAIT_POLICY'])"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == expected
