"""Where and how analyses run: device choice, streaming image batches, evaluation mode."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

__all__ = [
    "ImageSource",
    "eval_mode",
    "image_batches",
    "num_examples",
    "resolve_device",
]

ImageSource = torch.Tensor | Dataset | DataLoader
"""Images to analyse: an ``(N, C, H, W)`` tensor, a Dataset of images or ``(image, ...)``
tuples, or a DataLoader yielding batches of those."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` means CUDA when available, else CPU; anything else goes to ``torch.device``."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _images_of(batch) -> torch.Tensor:
    """The image tensor of one batch: the batch itself, its first element, or ``batch["image"]``."""
    if isinstance(batch, dict):
        for key in ("image", "images", "pixel_values", "x"):
            if key in batch:
                return batch[key]
        raise ValueError(f"cannot find images in a dict batch with keys {sorted(batch)}")
    if isinstance(batch, (tuple, list)):
        batch = batch[0]
    if not isinstance(batch, torch.Tensor) or batch.dim() != 4:
        shape = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
        raise ValueError(f"expected an image batch of shape (n, C, H, W), got {shape}")
    return batch


def num_examples(data: ImageSource) -> int | None:
    """Number of images in ``data``, or ``None`` when it cannot be known in advance."""
    if isinstance(data, DataLoader):
        data = data.dataset
    try:
        return len(data)
    except TypeError:
        return None


def image_batches(
    data: ImageSource, batch_size: int, device: torch.device, min_batch: int = 1
) -> tuple[Iterator[torch.Tensor], int | None]:
    """Validate ``data`` now and return its ``(n, C, H, W)`` batches on ``device``.

    A tensor or Dataset is cut into batches of ``batch_size`` in order; a DataLoader keeps
    its own batching. When the number of images is known, a last batch smaller than
    ``min_batch`` is refused here, before the work of every other batch.

    Returns:
        ``(batches, count)``: an iterator of image batches and the number of batches
        (``None`` when unknown), e.g. for a progress bar.
    """
    if isinstance(data, DataLoader):
        loader = data
        try:
            count = len(data)
        except TypeError:
            count = None
    else:
        if not isinstance(batch_size, int) or batch_size < min_batch:
            raise ValueError(f"batch_size must be an integer >= {min_batch}, got {batch_size!r}")
        if isinstance(data, torch.Tensor):
            if data.dim() != 4:
                raise ValueError(f"images must have shape (N, C, H, W), got {tuple(data.shape)}")
            loader = data.split(batch_size)
        else:
            loader = DataLoader(data, batch_size=batch_size, shuffle=False)
        total = num_examples(data)
        count = None if total is None else -(-total // batch_size)
        if total is not None and 0 < total % batch_size < min_batch:
            raise ValueError(
                f"{total} images in batches of {batch_size} leave a last batch of "
                f"{total % batch_size}, but each batch needs at least {min_batch}; choose a "
                "batch size that divides the data better or drop the last images explicitly."
            )
    batches = (_images_of(batch).to(device, non_blocking=True) for batch in loader)
    return batches, count


@contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """Put models in eval mode for the duration, restoring each one's training flag."""
    flags = [m.training for m in models]
    try:
        for m in models:
            m.eval()
        yield
    finally:
        for m, flag in zip(models, flags, strict=True):
            m.train(flag)
