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


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tests on one torch thread, restoring the count afterwards.

    On the shared 2-core machine, two torch threads competing with other processes made
    these small forward passes 5-50x slower (measured); one thread is never much slower.
    An analysis test module asks for it with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
