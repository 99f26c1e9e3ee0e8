"""Run the chapters on the ``paper`` profile's architectures, offline, as a code-path check.

The paper profile needs pretrained timm weights and Imagenette, hence a network (and in
practice a GPU). This script runs every chapter with ``VITLENS_PROFILE=paper`` on this
machine all the same: the timm models are built with *random* weights
(``pretrained=False``), Imagenette is replaced by a small folder of random JPEGs in its
layout (10 WordNet-id class folders), and the profile measures a few images. Everything
else is the real code: 224/240 px preprocessing from each model's timm data config, 14x14
and 15x15 token grids, ViT-L and Mixer-B, the chapters' analyses and plots. The numbers
are meaningless; a chapter that raises is a bug in the paper profile.

usage: python scripts/paper_dry_run.py [notebooks/NN_name.ipynb ...] [--images N]
Writes the executed notebooks to ``_build/paper_dry_run/``; exits 1 if any chapter failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "_build" / "paper_dry_run"

# Runs first in each chapter's kernel: random timm weights, a fake Imagenette, few images.
SETUP = """\
import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image

import vitlens
import vitlens.data
import vitlens.models
import vitlens.profiles

_load_model = vitlens.models.load_model


def _random_weights(name, *, pretrained=True, zoo=None):
    return _load_model(name, pretrained=False, zoo=zoo)


vitlens.models.load_model = vitlens.load_model = _random_weights

_root = Path({root!r})
_rng = np.random.default_rng(0)
for _c in range(10):
    _folder = _root / "imagenette2-320" / "val" / f"n0{{_c:07d}}"
    _folder.mkdir(parents=True, exist_ok=True)
    for _i in range({per_class}):
        _pixels = _rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
        Image.fromarray(_pixels).save(_folder / f"{{_i}}.JPEG")


def _fake_imagenette(root, model=None, *, split="val", download=True, transform=None):
    return vitlens.data.image_folder(_root / "imagenette2-320" / split, model, transform=transform)


vitlens.data.imagenette = _fake_imagenette
vitlens.profiles.PROFILES["paper"] = dataclasses.replace(
    vitlens.profiles.PROFILES["paper"], num_images={images}, batch_size={batch}
)
"""


def run(notebook: Path, images: int, timeout: int) -> tuple[bool, float, str]:
    """Execute one chapter on the paper profile; ``(ok, seconds, error summary)``."""
    nb = nbformat.read(notebook, as_version=4)
    per_class = max(200, images // 5)  # chapter 5 draws 2,000 images, chapter 6 1,024
    setup = SETUP.format(
        root=str(OUT / f"imagenette_{per_class}_per_class"),
        per_class=per_class,
        images=images,
        batch=max(4, images // 4),
    )
    nb.cells.insert(0, nbformat.v4.new_code_cell(setup))
    for cell in nb.cells:  # explorers need a live frontend; skip them as the book does
        if "skip-execution" in cell.get("metadata", {}).get("tags", []):
            cell.source = ""
    os.environ["VITLENS_PROFILE"] = "paper"
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT / "notebooks")}},
    )
    start = time.perf_counter()
    error = ""
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError) as err:
        error = str(err).strip().splitlines()[-1]
    seconds = time.perf_counter() - start
    OUT.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, OUT / notebook.name)
    return not error, seconds, error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--images", type=int, default=32, help="images per analysis")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    failed = 0
    for notebook in notebooks:
        ok, seconds, error = run(notebook, args.images, args.timeout)
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {notebook.name}: {seconds:.0f} s {error}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
