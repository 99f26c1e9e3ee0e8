"""Execute chapters and report where their time goes: each cell's seconds, the peak memory.

The build's cache records one run time per chapter; this says which cells make it up, so a
slow figure can be found and a cell near the build's timeout seen before it fails.

usage: python scripts/chapter_times.py [notebooks/NN_name.ipynb ...] [--top N] [--json PATH]
       python scripts/chapter_times.py --from-build [--top N]
Runs on whatever profile ``VITLENS_PROFILE`` names (``tiny`` by default); prints each
chapter's total and its slowest cells; ``--json`` writes every cell's time. With
``--from-build`` nothing runs: the times are those of the last book build, read from its
execution cache (chapters the build executed side by side record each cell's times).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import nbformat
from jupyter_cache import get_cache
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))

from parallel_execution import cell_seconds  # noqa: E402

# Appended to each chapter: the kernel's peak resident memory, in MiB (Linux reports KiB).
PEAK_MEMORY = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"


def execute_timed(
    nb: nbformat.NotebookNode, timeout: int
) -> tuple[str, float, float, list[tuple[int, float, str]]]:
    """Run ``nb`` in place; ``(error, seconds, peak MiB, [(cell index, seconds, first line)])``.

    Cells tagged ``skip-execution`` (the explorers, which need a live frontend) are emptied,
    as the book's build skips them. ``error`` is ``""`` when every cell ran.
    """
    for cell in nb.cells:
        if "skip-execution" in cell.get("metadata", {}).get("tags", []):
            cell.source = ""
    nb.cells.append(nbformat.v4.new_code_cell(PEAK_MEMORY))
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        record_timing=True,
        resources={"metadata": {"path": str(ROOT / "notebooks")}},
    )
    start = time.perf_counter()
    error = ""
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError) as err:
        error = str(err).strip().splitlines()[-1]
    seconds = time.perf_counter() - start
    memory_cell = nb.cells.pop()
    outputs = [o for o in memory_cell.get("outputs", []) if o.get("name") == "stdout"]
    peak = float(outputs[0]["text"]) if outputs else float("nan")
    cells = [
        (i, cell_seconds(cell), (cell.source.strip().splitlines() or [""])[0][:70])
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
    ]
    return error, seconds, peak, cells


def print_build_times(notebooks: list[Path], top: int) -> int:
    """Each chapter's cell times as the last build recorded them; 1 if one has none."""
    cache, missing = get_cache(str(ROOT / "_build" / ".jupyter_cache")), 0
    for notebook in notebooks:
        nb = nbformat.read(notebook, as_version=4)
        try:
            seconds = cache.match_cache_notebook(nb).data.get("cell_seconds")
        except KeyError:
            seconds = None
        if not seconds:
            missing += 1
            print(f"{notebook.name}: no cell times (not built as it is now, or not side by side)")
            continue
        cells = [
            (i, seconds[i], (cell.source.strip().splitlines() or [""])[0][:70])
            for i, cell in enumerate(nb.cells)
            if cell.cell_type == "code"
        ]
        print(f"{notebook.name}: {sum(seconds):.0f} s in its cells")
        for index, cell_time, first_line in sorted(cells, key=lambda c: -c[1])[:top]:
            print(f"       cell {index:3d} {cell_time:6.1f} s  {first_line}")
    return 1 if missing else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--top", type=int, default=5, help="slowest cells shown per chapter")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per cell")
    parser.add_argument("--json", type=Path, help="write every cell's seconds here")
    parser.add_argument(
        "--from-build", action="store_true", help="read the last build's times, run nothing"
    )
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]*.ipynb"))
    if args.from_build:
        return print_build_times(notebooks, args.top)
    record, failed, total = {}, 0, 0.0
    for notebook in notebooks:
        nb = nbformat.read(notebook, as_version=4)
        error, seconds, peak, cells = execute_timed(nb, args.timeout)
        failed += bool(error)
        total += seconds
        status = "ok  " if not error else "FAIL"
        print(f"{status} {notebook.name}: {seconds:.0f} s, peak {peak:.0f} MiB {error}", flush=True)
        for index, cell_time, first_line in sorted(cells, key=lambda c: -c[1])[: args.top]:
            print(f"       cell {index:3d} {cell_time:6.1f} s  {first_line}", flush=True)
        record[notebook.name] = {
            "seconds": seconds,
            "peak_mib": peak,
            "error": error,
            "cells": cells,
        }
    print(f"total {total:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(record, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
