"""Augmentations of the zoo's training loop: flips and shifts, random resized crops, colour
jitter, and Mixup/CutMix (which mix labels too)."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from vitlens.data import SHAPES_MEAN, SHAPES_STD
from vitlens.models.recipe import Recipe


def augment(images: Tensor, recipe: Recipe, generator: torch.Generator) -> Tensor:
    """Random flips and shifts of a float ``(n, 3, S, S)`` batch (same shape out).

    Then, where the recipe asks, random resized crops and colour jitter (in that order).
    Mixup/CutMix mix labels too and live in :func:`mix_batch`.
    """
    n, _, s, _ = images.shape
    if recipe.flip:
        flip = torch.rand(n, generator=generator) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    if recipe.shift:
        k = recipe.shift
        padded = F.pad(images, (k, k, k, k), mode="reflect")
        dx, dy = torch.randint(0, 2 * k + 1, (2, n), generator=generator)
        rows = (dy[:, None] + torch.arange(s))[:, None, :, None].expand(n, 3, s, s + 2 * k)
        images = padded.gather(2, rows)
        cols = (dx[:, None] + torch.arange(s))[:, None, None, :].expand(n, 3, s, s)
        images = images.gather(3, cols)
    if recipe.crop_scale < 1:
        images = random_resized_crop(images, recipe.crop_scale, generator)
    if recipe.color_jitter:
        images = color_jitter(images, recipe.color_jitter, generator)
    return images


def random_resized_crop(images: Tensor, min_scale: float, generator: torch.Generator) -> Tensor:
    """Random crops of ``min_scale .. 1`` of the area (aspect 3/4 .. 4/3), resized back.

    ``(n, C, S, S) -> (n, C, S, S)``, bilinear (``grid_sample``), one crop per image.
    """
    n = images.shape[0]
    area = min_scale + (1 - min_scale) * torch.rand(n, generator=generator)
    log_ratio = math.log(3 / 4) + math.log(16 / 9) * torch.rand(n, generator=generator)
    ratio = log_ratio.exp()
    w = (area * ratio).sqrt().clamp(max=1.0)
    h = (area / ratio).sqrt().clamp(max=1.0)
    tx = (1 - w) * (2 * torch.rand(n, generator=generator) - 1)
    ty = (1 - h) * (2 * torch.rand(n, generator=generator) - 1)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w, tx, h, ty
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(
        images, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )


def color_jitter(images: Tensor, strength: float, generator: torch.Generator) -> Tensor:
    """Brightness, contrast and saturation jitter of normalised shapes images (same shape).

    Each factor is drawn per image from ``1 ± strength``; the jitter acts on [0, 1] pixels
    (undoing the shapes normalisation), clamps to [0, 1] and normalises back.
    """
    n = images.shape[0]
    mean = torch.tensor(SHAPES_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(SHAPES_STD).view(1, 3, 1, 1)
    x = images * std + mean
    b, c, s = (1 + strength * (2 * torch.rand(3, n, 1, 1, 1, generator=generator) - 1)).unbind(0)
    x = x * b
    gray = x.mean(1, keepdim=True)
    x = (x - gray.mean((2, 3), keepdim=True)) * c + gray.mean((2, 3), keepdim=True)
    gray = x.mean(1, keepdim=True)
    x = gray + (x - gray) * s
    return (x.clamp(0, 1) - mean) / std


def mix_batch(
    images: Tensor, recipe: Recipe, generator: torch.Generator
) -> tuple[Tensor, Tensor, float]:
    """Mixup or CutMix of a batch with its reverse (timm's batch mode).

    Returns:
        ``(mixed images, partner index (n,), lam)``: the loss is ``lam * CE(y) +
        (1 - lam) * CE(y[partner])``; for CutMix ``lam`` is the kept area fraction.
    """
    import numpy as np

    n, _, h, w = images.shape
    rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=generator)))
    partner = torch.arange(n - 1, -1, -1)
    use_cutmix = recipe.cutmix > 0 and (recipe.mixup <= 0 or rng.random() < 0.5)
    if not use_cutmix:
        lam = float(rng.beta(recipe.mixup, recipe.mixup))
        return lam * images + (1 - lam) * images[partner], partner, lam
    lam = float(rng.beta(recipe.cutmix, recipe.cutmix))
    cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    mixed = images.clone()
    mixed[:, :, y0:y1, x0:x1] = images[partner][:, :, y0:y1, x0:x1]
    return mixed, partner, 1 - (y1 - y0) * (x1 - x0) / (h * w)
