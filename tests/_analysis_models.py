"""Models and images shared by the analysis tests (built once per test session)."""

from __future__ import annotations

import functools

import timm
import torch
from torch import nn

from vitlens.models import build_zoo_model

PAPER_ARCHITECTURES = ("vit_base_patch16_224", "resnetv2_50x1_bit", "mixer_b16_224")


@functools.cache
def paper_model(name: str) -> nn.Module:
    """A paper architecture with random weights (``pretrained=False``), in eval mode."""
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False).eval()


@functools.cache
def paper_images(n: int = 4) -> torch.Tensor:
    """``(n, 3, 224, 224)`` random images."""
    return torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(1))


@functools.cache
def zoo_shaped(name: str) -> nn.Module:
    """A zoo architecture with fresh random weights (seeded)."""
    torch.manual_seed(0)
    return build_zoo_model(name)


@functools.cache
def small_images(n: int = 16) -> torch.Tensor:
    """``(n, 3, 32, 32)`` random images for zoo-shaped models."""
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(2))
