"""Skip-vs-branch norm ratios on a hand-built block with known norms, and on real models."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vitlens.analyses.residual import residual_norm_ratios
from vitlens.models import build_zoo_model, load_model, residual_branches
from vitlens.plotting import norm_ratio_curves
from vitlens.streaming import RunOptions

QUIET = RunOptions(progress=False)


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor, **_: object) -> torch.Tensor:
        return self.factor * x


class QuarterTurn(nn.Module):
    """``x -> 2 Q x`` with ``Q`` rotating each channel pair by 90 degrees (so ``x . Qx = 0``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pairs = x.unflatten(-1, (-1, 2))
        return 2 * torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)


def hand_built_vit() -> nn.Module:
    """A one-block ViT whose attention branch is ``z / 2`` and MLP branch is ``2 Q z``."""
    vit = build_zoo_model("vit-cls")
    vit.blocks = vit.blocks[:1]
    block = vit.blocks[0]
    block.norm1, block.attn, block.norm2, block.mlp = (
        nn.Identity(),
        Scale(0.5),
        nn.Identity(),
        QuarterTurn(),
    )
    return vit


def test_hand_built_block_has_known_ratios_and_cosines(small_images):
    result = residual_norm_ratios(
        hand_built_vit(), small_images(), run=RunOptions(batch_size=8, progress=False)
    )
    assert [b.kind for b in result.branches] == ["attention", "mlp"]
    attention_ratio, mlp_ratio = result.norm_ratio
    attention_cosine, mlp_cosine = result.cosine
    assert attention_ratio.shape == (65,)  # class token + 8 x 8 patches
    torch.testing.assert_close(attention_ratio, torch.full((65,), 2.0, dtype=torch.float64))
    torch.testing.assert_close(attention_cosine, torch.ones(65, dtype=torch.float64))
    torch.testing.assert_close(mlp_ratio, torch.full((65,), 0.5, dtype=torch.float64))
    torch.testing.assert_close(mlp_cosine, torch.full((65,), 1 / math.sqrt(5), dtype=torch.float64))
    assert result.num_examples == 16 and result.num_prefix_tokens == 1
    means = result.mean_over_positions(result.norm_ratio, prefix=True)
    torch.testing.assert_close(means, torch.tensor([2.0, 0.5], dtype=torch.float64))


def test_global_pool_vit_has_patch_tokens_only(zoo_shaped, small_images):
    result = residual_norm_ratios(zoo_shaped("vit-pt-gap"), small_images(), run=QUIET)
    assert result.num_prefix_tokens == 0 and result.norm_ratio[0].shape == (64,)
    with pytest.raises(ValueError, match="no prefix"):
        result.mean_over_positions(result.norm_ratio, prefix=True)


def test_branch_points_per_family(zoo_shaped, paper_model):
    vit_branches = residual_branches(zoo_shaped("vit-cls"))
    assert vit_branches[0].skip == "norm_pre" and vit_branches[0].branch == "blocks.0.drop_path1"
    assert vit_branches[1].skip == "blocks.0.residual1" and vit_branches[1].name == "blocks.0"
    assert vit_branches[2].skip == "blocks.0"
    mixer_branches = residual_branches(zoo_shaped("mixer-pt"))
    assert mixer_branches[0].skip == "stem" and mixer_branches[0].branch_channels_first
    resnet_branches = residual_branches(paper_model("resnetv2_50x1_bit"))
    assert len(resnet_branches) == 16
    assert resnet_branches[0].skip == "stages.0.blocks.0.downsample"
    assert resnet_branches[1].skip == "stages.0.blocks.0"
    with pytest.raises(ValueError, match="family"):
        residual_branches(nn.Linear(2, 2))


@pytest.mark.slow
def test_paper_architectures(paper_architecture, paper_model, paper_images):
    model = paper_model(paper_architecture)
    result = residual_norm_ratios(model, paper_images(2), run=QUIET)
    assert len(result.branches) == (16 if paper_architecture.startswith("resnet") else 24)
    for ratio, cosine in zip(result.norm_ratio, result.cosine, strict=True):
        assert ratio.shape == cosine.shape
        assert torch.all(ratio > 0) and torch.isfinite(ratio).all()
        assert torch.all(cosine.abs() <= 1 + 1e-9)
    if paper_architecture.startswith("resnet"):
        assert result.norm_ratio[0].shape == (56, 56)
    if result.num_prefix_tokens == 0:
        with pytest.raises(ValueError, match="no prefix"):
            result.mean_over_positions(result.cosine, prefix=True)


@pytest.mark.parametrize("name", ["vit-cls", "vit-pt-small"])
def test_trained_zoo_vits(name, small_images):
    model = load_model(name)
    result = residual_norm_ratios(model, small_images(), run=QUIET)
    assert len(result.branches) == 2 * len(model.blocks)
    assert all(torch.isfinite(ratio).all() for ratio in result.norm_ratio)


def test_plot(zoo_shaped, small_images):
    result = residual_norm_ratios(zoo_shaped("vit-cls"), small_images(), run=QUIET)
    ax = norm_ratio_curves(result)
    assert ax.get_ylabel() == "||z|| / ||f(z)||"
    assert len(ax.lines) == 4  # attention and MLP, spatial and class token
