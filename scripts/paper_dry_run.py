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
from pathlib import Path

import nbformat
import numpy as np
from chapter_times import execute_timed  # this folder: run as a script
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "_build" / "paper_dry_run"

# Runs first in each chapter's kernel: random timm weights, a fake Imagenette, few images.
SETUP = """\
import dataclasses
from pathlib import Path

import vitlens
import vitlens.data
import vitlens.models
import vitlens.book.profiles

_load_model = vitlens.models.load_model


def _random_weights(name, *, pretrained=True, zoo=None):
    return _load_model(name, pretrained=False, zoo=zoo)


vitlens.models.load_model = vitlens.load_model = _random_weights

_root = Path({root!r})


def _fake_imagenette(root, model=None, *, split="val", download=True, transform=None):
    return vitlens.data.image_folder(_root / "imagenette2-320" / split, model, transform=transform)


vitlens.data.imagenette = _fake_imagenette
vitlens.book.profiles.PROFILES["paper"] = dataclasses.replace(
    vitlens.book.profiles.PROFILES["paper"], num_images={images}, batch_size={batch}
)
"""


def fake_imagenette(per_class: int) -> Path:
    """A folder of random 320x240 JPEGs in Imagenette's layout, made once per size."""
    root = OUT / f"imagenette_{per_class}_per_class"
    rng = np.random.default_rng(0)
    for c in range(10):
        folder = root / "imagenette2-320" / "val" / f"n0{c:07d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(len(list(folder.glob("*.JPEG"))), per_class):
            pixels = rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.JPEG")
    return root


def run(notebook: Path, root: Path, images: int, timeout: int) -> tuple[bool, float, str]:
    """Execute one chapter on the paper profile; ``(ok, seconds, error summary)``."""
    nb = nbformat.read(notebook, as_version=4)
    setup = SETUP.format(
        root=str(root),
        images=images,
        batch=max(4, images // 4),
    )
    nb.cells.insert(0, nbformat.v4.new_code_cell(setup))
    error, seconds, peak, _ = execute_timed(nb, timeout)
    print(f"     {notebook.name}: kernel peak memory {peak:.0f} MiB", flush=True)
    nbformat.write(nb, OUT / notebook.name)
    return not error, seconds, error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--images", type=int, default=32, help="images per analysis")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    os.environ["VITLENS_PROFILE"] = "paper"  # inherited by every chapter's kernel
    root = fake_imagenette(max(200, args.images // 5))  # ch. 5 draws 2,000 images, ch. 6 1,024
    failed = 0
    for notebook in notebooks:
        ok, seconds, error = run(notebook, root, args.images, args.timeout)
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {notebook.name}: {seconds:.0f} s {error}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
