"""Print sweep logs (``scripts/sweep_vit.py`` output, one JSON object per line) as a table.

python scripts/sweep_table.py vitlens/zoo/sweeps/*.jsonl

One row per log: the model and its architecture overrides, the recipe fields that differ
from :class:`vitlens.models.recipe.Recipe`'s defaults, held-out accuracy by logged step,
the last logged attention distances of blocks 0 and 1 (ViTs; each head over uniform
attention's), the CPU time and whether the run finished its schedule.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from vitlens.models import ZOO_ARCHS
from vitlens.models.recipe import Recipe


def row(path: Path) -> str:
    """One Markdown table row for the sweep log at ``path``."""
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    header, logged = lines[0], [r for r in lines if "step" in r]
    final = next((r for r in lines if "final" in r), None)
    defaults = asdict(Recipe())
    recipe = {k: v for k, v in header["recipe"].items() if defaults.get(k) != v and k != "dataset"}
    # logs from before Recipe had a dataset field name it in their data record
    dataset = header["recipe"].get("dataset") or (
        "junctions" if "junctions" in str(header.get("data")) else "shapes"
    )
    arch = {k: v for k, v in header["arch"].items() if ZOO_ARCHS[header["model"]].get(k) != v}
    by_step = ", ".join(f"{r['step']}: {r['heldout_acc']:.0%}" for r in logged)
    distances = next(
        (r["distance_over_uniform"] for r in reversed(logged) if "distance_over_uniform" in r), None
    )
    blocks = "; ".join(
        f"block {b}: {min(d):.2f}-{max(d):.2f}" for b, d in enumerate(distances or [])
    )
    cpu = (final or (logged[-1] if logged else {})).get("cpu_s", 0) / 60
    status = "finished" if final else f"stopped at step {logged[-1]['step'] if logged else 0}"
    settings = ", ".join(f"{k}={v}" for k, v in {**arch, **recipe}.items())
    return (
        f"| {path.stem} | {dataset} | `{header['model']}` {settings} | {by_step} "
        f"| {blocks or 'n/a'} | {cpu:.0f} | {status} |"
    )


def main() -> None:
    print(
        "| run | data | model and settings | held-out accuracy by step | blocks 0-1 distance "
        "| CPU min | status |"
    )
    print("|---|---|---|---|---|--:|---|")
    for name in sys.argv[1:]:
        print(row(Path(name)))


if __name__ == "__main__":
    main()
