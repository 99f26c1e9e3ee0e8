"""The front door stays true: README commands are what CI runs, the code is ruff clean, and
the findings ledger lists exactly the findings the chapters record."""

from __future__ import annotations

import ast
import itertools
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
            assert not found, f"{notebook.name}: progress={found[0]}; use profile.run"


def chapter_cells(kind: str = "code"):
    """``(notebook name, cell index, hidden, source)`` of every chapter cell of ``kind``."""
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for index, cell in enumerate(json.loads(notebook.read_text())["cells"]):
            if cell["cell_type"] == kind:
                hidden = "remove-cell" in cell.get("metadata", {}).get("tags", [])
                yield notebook.name, index, hidden, "".join(cell["source"])


PAGE_COLUMN = int(
    re.search(r"^line-length = (\d+)$", (ROOT / "notebooks" / "ruff.toml").read_text(), re.M)[1]
)
"""Characters of code a cell's box shows without scrolling at every window width of the
book's layout (1,200 px the narrowest; code at 13 px, ``book/_static/vitlens.css``): the
width the chapters are formatted to (``notebooks/ruff.toml``)."""

FOLDED_COLUMN = PAGE_COLUMN - 3
"""The same inside a folded cell (a worked solution), whose frame takes a little width."""


def test_visible_chapter_code_is_what_a_student_learns_from():
    """Glue and findings (the book's bookkeeping) sit in hidden cells; every visible line
    fits the page column."""
    folded_sources = {
        "".join(cell["source"])
        for notebook in sorted((ROOT / "notebooks").glob("*.ipynb"))
        for cell in json.loads(notebook.read_text())["cells"]
        if "hide-cell" in cell.get("metadata", {}).get("tags", [])
    }
    problems = []
    for name, index, hidden, source in chapter_cells():
        if hidden:
            continue
        folded = source in folded_sources
        for line in source.splitlines():
            if re.search(r"\b(glue|finding)\(", line):
                problems.append(f"{name} cell {index}: bookkeeping in view: {line.strip()}")
            if len(line) > (FOLDED_COLUMN if folded else PAGE_COLUMN):
                problems.append(f"{name} cell {index}: {len(line)} characters: {line.strip()}")
    assert not problems, "\n".join(problems)


LIBRARY_IDIOMS = {
    r"0\.5\s*\*\s*uniform|uniform\s*\*\s*0\.5": "the local-head rule: "
    "vitlens.analyses.attention.local_heads_px / local_threshold_px",
    r"len\([^()]*\)\s*//\s*[24]\b|\.shape\[0\]\s*//\s*2|\b(depth|blocks)\s*//\s*[24]\b": (
        "halves and quarters of depth or of a sample: vitlens.analyses.compare.depth_halves, "
        "lower_half_of, upper_half_of, middle_index, lowest_quarter; "
        "vitlens.analyses.probes.fit_and_score_halves"
    ),
    r"numel\(\)\s+for\s+\w+\s+in\s+\w+\.parameters\(\)": "a model's size: "
    "vitlens.models.parameter_count",
    r"list\([^()]*\.(items|values|keys)\(\)\)\[-?\d+\]": (
        "a dict read by position (its insertion order): index it by its key"
    ),
    r"for\s+\w+\s+in\s+range\(\s*\d+\s*,\s*\w+\s*,\s*\d+\s*\)": (
        "a lattice of token cells: vitlens.analyses.probes.token_lattice"
    ),
}


def test_chapters_call_the_library_rules_instead_of_retyping_them():
    """The rules the library owns (which head is local, which layers are the lower half,
    how images split into fit and score) are called, never typed again in a cell or in a
    worked solution."""
    problems = []
    sources = [*chapter_cells("code"), *chapter_cells("markdown")]
    for name, index, _hidden, source in sources:
        for pattern, rule in LIBRARY_IDIOMS.items():
            for match in re.finditer(pattern, source):
                problems.append(f"{name} cell {index}: {match.group(0)!r}; use {rule}")
    assert not problems, "\n".join(problems)


def _is_words(node: ast.expr) -> bool:
    """A string literal or an f-string: words typed into the cell."""
    return isinstance(node, ast.JoinedStr) or (
        isinstance(node, ast.Constant) and isinstance(node.value, str)
    )


def _asks_profile_has(node: ast.AST) -> bool:
    """A call ``profile.has(...)``."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "has"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "profile"
    )


def premise_and_wording_decisions(source: str) -> list[str]:
    """What a chapter cell decides that the library owns: a word chosen by a conditional
    expression with words in a branch (``"more" if a > b else "less"``), or a premise
    decided by asking ``profile.has(...)`` (in an ``if``, a comprehension's filter or an
    ``all(...)``)."""
    lines = source.splitlines()
    code = "\n".join(  # IPython magics and shell lines are not Python: read as `pass`
        re.sub(r"^(\s*)[%!].*", r"\1pass", line) for line in lines
    )
    found = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.IfExp) and (_is_words(node.body) or _is_words(node.orelse)):
            found.append(
                f"a word chosen in the cell: {ast.unparse(node)[:70]!r}; "
                "use vitlens.book.wording (comparative, listing, by_step, steady_rise) "
                "or Premise.glue"
            )
        if _asks_profile_has(node):
            found.append(
                f"a premise decided in the cell: {ast.unparse(node)!r}; use "
                "profile.premise(*roles) (Premise.verdict, .value, .glue) or "
                "profile.present(*roles)"
            )
    return found


def test_chapters_take_premises_and_words_from_the_library():
    """Whether a claim's models are present, why not, and which word the prose reads
    ("larger" or "smaller", a list or "none") are decided in vitlens.book with a test,
    never by a conditional in a chapter cell, visible or hidden: the same premise and the
    same comparison read alike in every chapter, on every profile."""
    problems, cells = [], []
    for name, index, _hidden, source in chapter_cells():
        found = premise_and_wording_decisions(source)
        problems += [f"{name} cell {index}: {problem}" for problem in found]
        cells += [f"{name} cell {index}"] * bool(found)
    assert not problems, f"{len(cells)} cells: {', '.join(cells)}\n" + "\n".join(problems)


COMPUTING_MODULES = ("vitlens.analyses", "vitlens.core", "vitlens.book.verdicts")
"""Where a chapter's analyses, statistics and rules come from."""

DRAWING_NAMES = {"plt", "fig", "ax", "axes", "row_axes", "print"}
"""What a drawing or printing loop calls (beside the functions of vitlens.plotting)."""


def _python(source: str) -> str:
    """A cell's source with IPython magics and shell lines read as ``pass``."""
    return "\n".join(re.sub(r"^(\s*)[%!].*", r"\1pass", line) for line in source.splitlines())


def _root_name(call: ast.Call) -> str | None:
    """The name a call starts from: ``ax`` for ``ax.set_title(...)``, ``f`` for ``f(...)``."""
    node = call.func
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def computing_loops(source: str, computing: set[str], drawing: set[str]) -> list[str]:
    """The ``for`` loops and ``def``s of a cell that compute (call ``profile`` or a name in
    ``computing``) without drawing or printing anything (a call on ``DRAWING_NAMES`` or a
    name in ``drawing``)."""
    found = []
    for node in ast.walk(ast.parse(_python(source))):
        if isinstance(node, ast.For | ast.FunctionDef):
            roots = {_root_name(c) for c in ast.walk(node) if isinstance(c, ast.Call)}
            if roots & (computing | {"profile"}) and not roots & (drawing | DRAWING_NAMES):
                found.append(ast.unparse(node).splitlines()[0])
    return found


def test_visible_loops_only_draw():
    """A visible cell computes with calls and comprehensions a student can read at a
    glance; a ``for`` or ``def`` in it draws or prints what was computed. Worked solutions
    (folded) are the student's own code and may loop."""
    problems = []
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
        imported: dict[str, set[str]] = {"computing": set(), "drawing": set()}
        for node in ast.walk(ast.parse(_python("\n".join("".join(c["source"]) for c in cells)))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {alias.asname or alias.name for alias in node.names}
                if node.module.startswith(COMPUTING_MODULES):
                    imported["computing"] |= names
                elif node.module == "vitlens.plotting":
                    imported["drawing"] |= names
        for index, cell in enumerate(cells):
            tags = cell.get("metadata", {}).get("tags", [])
            if "remove-cell" in tags or "hide-cell" in tags:
                continue
            loops = computing_loops("".join(cell["source"]), **imported)
            problems += [f"{notebook.name} code cell {index}: {loop}" for loop in loops]
    assert not problems, "loops that compute instead of drawing:\n" + "\n".join(problems)


def test_the_loop_rule_tells_computing_from_drawing():
    computing, drawing = {"mean_attention_distance"}, {"attention_distance_scatter"}
    computes = "for role in roles:\n    d[role] = mean_attention_distance(profile.model(role))"
    draws = "for ax, d in zip(axes, ds):\n    attention_distance_scatter(d, ax=ax)"
    prints = "for name, m in maps.items():\n    print(name, mean_attention_distance(m))"
    assert computing_loops(computes, computing, drawing) == ["for role in roles:"]
    assert computing_loops(draws, computing, drawing) == []
    assert computing_loops(prints, computing, drawing) == []


def test_every_chapter_has_a_worked_solution_that_the_build_runs():
    """A worked solution is a folded code cell (``hide-cell``: the build executes it after
    the chapter's cells, and a solution that raises fails the build) right after the words
    "Worked solution to exercise N"; not code in a fenced block that nothing runs."""
    chapters = sorted((ROOT / "notebooks").glob("*.ipynb"))
    for notebook in chapters:
        cells = json.loads(notebook.read_text())["cells"]
        solutions = [
            number
            for before, cell in itertools.pairwise(cells)
            if cell["cell_type"] == "code"
            and "hide-cell" in cell.get("metadata", {}).get("tags", [])
            and before["cell_type"] == "markdown"
            for number in re.findall(
                r"Worked solution to exercise (\d+)", "".join(before["source"])
            )
        ]
        assert solutions, f"{notebook.name}: no worked solution the build runs"
        for cell in cells:
            if cell["cell_type"] == "markdown":
                text = "".join(cell["source"])
                assert "```python" not in text, f"{notebook.name}: code no build runs: {text[:80]}"
