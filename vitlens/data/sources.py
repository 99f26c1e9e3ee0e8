"""The one function that turns a dataset's name into images for a model.

The command line (``--data``) and the book's profiles (their image source and second task)
both call :func:`load_images`, so a chapter and a command given the same name analyse the
same images.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from torch import nn
from torch.utils.data import Dataset

from vitlens.data.datasets import SyntheticDataset
from vitlens.data.real import cifar10, image_folder, imagenette
from vitlens.data.sampling import evaluation_sample
from vitlens.data.shapes import ShapesConfig, ShapesDataset

__all__ = ["NAMED_DATASETS", "SYNTHETIC_SIZE", "data_root", "load_images"]

NAMED_DATASETS = ("shapes", "junctions", "cifar10", "imagenette")
"""Datasets :func:`load_images` knows by name (anything else must be an ImageFolder path)."""

SYNTHETIC_SIZE = 512
"""Images of a synthetic dataset when no number is asked for."""


def data_root() -> Path:
    """Where downloaded datasets live: ``$VITLENS_DATA``, default ``~/.cache/vitlens``."""
    return Path(os.environ.get("VITLENS_DATA", Path.home() / ".cache" / "vitlens"))


def load_images(
    spec: str | Path,
    model: nn.Module,
    *,
    split: str = "test",
    num_images: int | None = None,
    root: str | Path | None = None,
) -> Dataset:
    """Labelled images named by ``spec``, preprocessed for ``model``.

    Args:
        spec: ``"shapes"`` or ``"junctions"`` (the offline synthetic datasets, rendered at
            the model's input size: sample ``i`` is the same image whatever the number
            asked for), ``"cifar10"``, ``"imagenette"`` (downloaded into ``root`` once), or
            the path of an ImageFolder (``root/<class>/<image>``).
        model: the model whose timm data config sets size and normalisation.
        split: ``"train"`` or ``"test"`` (Imagenette's ``val``); ignored for a folder.
        num_images: keep this many images: the first ones of a synthetic dataset, a fixed
            random sample of any other (:func:`vitlens.data.sampling.evaluation_sample`,
            so a class-sorted folder keeps all its classes); ``None`` keeps all (synthetic:
            :data:`SYNTHETIC_SIZE`).
        root: download folder for named datasets (default :func:`data_root`).

    Raises:
        ValueError: an unknown name that is not a folder, a bad split or count.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if num_images is not None and (
        isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1
    ):
        raise ValueError(f"num_images must be a positive integer or None, got {num_images!r}")
    root = Path(root) if root is not None else data_root()
    spec = str(spec)
    if spec in ("shapes", "junctions"):
        size = model.pretrained_cfg["input_size"][-1]
        return _synthetic(spec, num_images or SYNTHETIC_SIZE, split, size)
    if spec == "cifar10":
        dataset = cifar10(root, model, train=split == "train")
    elif spec == "imagenette":
        dataset = imagenette(root, model, split="train" if split == "train" else "val")
    elif Path(spec).is_dir():
        dataset = image_folder(spec, model)
    else:
        raise ValueError(
            f"data {spec!r} is neither a named dataset ({', '.join(NAMED_DATASETS)}) nor an "
            "existing ImageFolder directory"
        )
    if num_images is None or num_images >= len(dataset):
        return dataset
    return evaluation_sample(dataset, num_images)


@lru_cache(maxsize=16)
def _synthetic(spec: str, count: int, split: str, size: int) -> Dataset:
    """The first ``count`` images of a synthetic dataset at ``size`` px, rendered once per
    process: every model of one input size is handed the same read-only Dataset (a chapter
    asks for the same images once per model; rendering 1,024 junctions images takes ~2 s)."""
    if spec == "shapes":
        return ShapesDataset(count, split=split, config=ShapesConfig(image_size=size))
    return SyntheticDataset(spec, count, split=split, config={"image_size": size})
