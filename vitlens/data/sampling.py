"""The one rule for picking evaluation images, shared by the book's profiles and the CLI."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, Subset

__all__ = ["evaluation_sample"]


def evaluation_sample(dataset: Dataset, num_images: int, seed: int = 0) -> Subset:
    """``num_images`` distinct items of ``dataset`` in a fixed random order.

    The same ``seed`` always gives the same sample, so every chapter and every model sees
    the same images; the order is shuffled, so a class-sorted folder is sampled across all
    its classes and a minibatch mixes classes.
    """
    if not 0 < num_images <= len(dataset):
        raise ValueError(
            f"num_images must be in 1..{len(dataset)} (the dataset's size), got {num_images}"
        )
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(dataset), generator=generator)[:num_images]
    return Subset(dataset, order.tolist())
