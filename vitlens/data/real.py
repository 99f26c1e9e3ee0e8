"""Loaders for real images (CIFAR-10, Imagenette, any ImageFolder), preprocessed with a
model's timm data config, so the ``paper`` profile feeds each pretrained model what it was
trained on."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import Dataset

IMAGENETTE_URL = "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz"
IMAGENETTE_MD5 = "3df6f0d01a2c9592104656642f5e78a3"
"""MD5 of the archive (as published with torchvision's ``Imagenette``)."""


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
    folder = Path(root) / "imagenette2-320"
    if not folder.is_dir():
        if not download:
            raise FileNotFoundError(
                f"{folder} missing; pass download=True or fetch {IMAGENETTE_URL}"
            )
        archive = download_verified(IMAGENETTE_URL, Path(root), IMAGENETTE_MD5)
        extract_atomically(archive, Path(root), folder.name)
    return image_folder(folder / split, model, transform=transform)


# ----------------------------------------------------------------------------- downloads


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_url(url: str, dest: Path) -> None:
    """Stream ``url`` into ``dest``; an OSError if fewer bytes come than announced.

    ``download_verified`` fetches through this module-level name, the one place where bytes
    come from the network (tests put a function serving bytes they made in its place).
    """
    import urllib.request

    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as f:
        announced = response.headers.get("Content-Length")
        shutil.copyfileobj(response, f, 1 << 20)
    if announced is not None and dest.stat().st_size != int(announced):
        raise OSError(f"download of {url} stopped after {dest.stat().st_size} of {announced} bytes")


def download_verified(url: str, folder: Path, md5: str) -> Path:
    """``folder/<archive name>``, downloaded unless a copy with the right MD5 is there.

    The bytes go to a ``.part`` file, are checked against ``md5`` and only then renamed to
    the archive's name, so a truncated or corrupt download is never taken for the archive.

    Raises:
        ValueError: the downloaded bytes do not have the expected MD5 (the partial file is
            removed; run again to retry).
    """
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / Path(url).name
    if archive.exists() and _md5(archive) == md5:
        return archive
    part = archive.with_name(archive.name + ".part")
    try:
        fetch_url(url, part)
        digest, size = _md5(part), part.stat().st_size
        if digest != md5:
            raise ValueError(
                f"download of {url} is incomplete or corrupt ({size} bytes, md5 {digest}, "
                f"expected {md5}); it was removed, run again to retry"
            )
        os.replace(part, archive)
    finally:
        part.unlink(missing_ok=True)
    return archive


def extract_atomically(archive: Path, folder: Path, name: str) -> Path:
    """Unpack ``archive`` (holding the top-level folder ``name``) into ``folder/name``.

    Unpacks into a temporary folder next to it and renames the result into place, so
    ``folder/name`` exists only once every file is there.

    Raises:
        ValueError: a truncated or corrupt archive, or one without ``name`` at its top.
    """
    target = folder / name
    scratch = Path(tempfile.mkdtemp(dir=folder, prefix=f".{name}.extracting."))
    try:
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(scratch, filter="data")
        except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
            raise ValueError(
                f"archive {archive} is truncated or corrupt ({type(err).__name__}: {err}); "
                "delete it and download again"
            ) from None
        if not (scratch / name).is_dir():
            raise ValueError(f"archive {archive} has no top-level folder {name!r}")
        os.replace(scratch / name, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target
