"""Every number a chapter glued into the book, as the last build computed it.

A refactor that must leave the book's numbers unchanged is checked by writing them before
and after and comparing::

    python scripts/glued_values.py --out before.json     # after one build
    ... change, rebuild ...
    python scripts/glued_values.py --out after.json --compare before.json

Reads the build's execution cache (``_build/.jupyter_cache``), each chapter's record whose
code matches the notebook as it is now (else the chapter's latest record); prints how many
values each chapter glued and, with ``--compare``, every value that differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))

from readers import executed_notebook, glued_values  # noqa: E402


def book_values(cache: Path) -> dict[str, dict[str, str]]:
    """``{chapter file: {glue name: text}}`` for every chapter in ``notebooks/``."""
    return {
        notebook.name: glued_values(executed_notebook(cache, notebook))
        for notebook in sorted((ROOT / "notebooks").glob("*.ipynb"))
    }


def differences(before: dict, after: dict) -> list[str]:
    """One line per glued value that is new, gone or changed."""
    lines = []
    for chapter in sorted(set(before) | set(after)):
        old, new = before.get(chapter, {}), after.get(chapter, {})
        for name in sorted(set(old) | set(new)):
            if old.get(name) != new.get(name):
                lines.append(f"{chapter} {name}: {old.get(name)!r} -> {new.get(name)!r}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=ROOT / "_build" / ".jupyter_cache")
    parser.add_argument("--out", type=Path, default=None, help="write the values as JSON")
    parser.add_argument("--compare", type=Path, default=None, help="JSON of an earlier run")
    args = parser.parse_args()
    if not (args.cache / "global.db").exists():
        parser.error(f"no build cache at {args.cache}: build the book first")
    values = book_values(args.cache)
    for chapter, glued in values.items():
        print(f"{chapter}: {len(glued)} values")
    if args.out:
        args.out.write_text(json.dumps(values, indent=1, sort_keys=True))
    if args.compare:
        changed = differences(json.loads(args.compare.read_text()), values)
        total = sum(len(v) for v in values.values())
        print(f"{total - len(changed)} of {total} values unchanged", *changed, sep="\n")
        return 1 if changed else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
