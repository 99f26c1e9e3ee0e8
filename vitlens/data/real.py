"""Loaders for real images (CIFAR-10, Imagenette, any ImageFolder), preprocessed with a
model's timm data config, so the ``paper`` profile feeds each pretrained model what it was
trained on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import Dataset

IMAGENETTE_URL = "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz"


def model_transform(model: torch.nn.Module, *, train: bool = False) -> Callable:
    """The torchvision transform a timm model expects (resize, crop, normalise).

    Uses timm's data config of the model (``pretrained_cfg``): input size, interpolation,
    crop, mean and std.
    """
    from timm.data import create_transform, resolve_data_config

    cfg = resolve_data_config(model=model)
    return create_transform(**cfg, is_training=train)


def image_folder(
    root: str | Path, model: torch.nn.Module | None = None, *, transform: Callable | None = None
) -> Dataset:
    """Any ``root/<class>/<image>`` folder as a dataset, preprocessed for ``model``.

    Pass ``model`` (its timm data config is used) or an explicit ``transform``.
    """
    from torchvision.datasets import ImageFolder

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    if transform is None:
        if model is None:
            raise ValueError("pass a model (for its timm data config) or a transform")
        transform = model_transform(model)
    return ImageFolder(str(root), transform=transform)


def cifar10(
    root: str | Path,
    model: torch.nn.Module | None = None,
    *,
    train: bool = False,
    download: bool = True,
    transform: Callable | None = None,
) -> Dataset:
    """CIFAR-10 (torchvision), downloaded into ``root`` if missing, preprocessed for ``model``."""
    from torchvision.datasets import CIFAR10

    if transform is None:
        if model is None:
            raise ValueError("pass a model (for its timm data config) or a transform")
        transform = model_transform(model)
    return CIFAR10(str(root), train=train, download=download, transform=transform)


def imagenette(
    root: str | Path,
    model: torch.nn.Module | None = None,
    *,
    split: str = "val",
    download: bool = True,
    transform: Callable | None = None,
) -> Dataset:
    """Imagenette (10 ImageNet classes, 320 px), downloaded into ``root`` if missing.

    The class folders are WordNet ids (``n01440764`` ...), in ImageNet order.
    """
    from torchvision.datasets.utils import download_and_extract_archive

    folder = Path(root) / "imagenette2-320"
    if not folder.is_dir():
        if not download:
            raise FileNotFoundError(
                f"{folder} missing; pass download=True or fetch {IMAGENETTE_URL}"
            )
        download_and_extract_archive(IMAGENETTE_URL, str(root))
    return image_folder(folder / split, model, transform=transform)
