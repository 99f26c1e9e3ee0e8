"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest
import timm
import torch


@pytest.fixture(scope="session")
def small_vit():
    """A randomly initialised 3-block timm ViT on 32x32 images (patch 8: a 4x4 grid)."""
    torch.manual_seed(0)
    return timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        depth=3,
        embed_dim=48,
        num_heads=3,
    )
