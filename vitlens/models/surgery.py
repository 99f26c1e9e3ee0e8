"""Model surgery: a ViT whose chosen blocks lose their skip connections (paper Fig. 8)."""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import nn

from vitlens.models.families import model_info

__all__ = ["NoSkipBlock", "remove_skips", "skipless_blocks"]


class NoSkipBlock(Block):
    """A timm ViT ``Block`` whose forward drops both residual additions (paper Fig. 8).

    Submodules (``norm1``, ``attn``, ``ls1``, ``drop_path1``, ``norm2``, ``mlp``, ...) and
    their names are those of ``Block``, so hooks and state dicts are unchanged.
    """

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
    ) -> torch.Tensor:
        """``(n, tokens, d) -> (n, tokens, d)`` without the skip connections."""
        x = self.drop_path1(
            self.ls1(self.attn(self.norm1(x), attn_mask=attn_mask, is_causal=is_causal))
        )
        return self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


def remove_skips(model: nn.Module, blocks: list[int]) -> nn.Module:
    """Remove both skip connections of the given ViT blocks, in place; returns ``model``.

    Raises:
        ValueError: if ``model`` is not a ViT or a block index is out of range.
    """
    if model_info(model).family != "vit":
        raise ValueError("remove_skips applies to ViTs only")
    depth = len(model.blocks)
    for i in blocks:
        if not 0 <= i < depth:
            raise ValueError(f"block {i} out of range; this ViT has blocks 0..{depth - 1}")
        if type(model.blocks[i]) is not Block:
            raise ValueError(f"block {i} is a {type(model.blocks[i]).__name__}, not a timm Block")
        model.blocks[i].__class__ = NoSkipBlock
    return model


def skipless_blocks(model: nn.Module) -> list[int]:
    """Indices of the blocks whose skip connections were removed (:func:`remove_skips`), in
    order; ``[]`` for an intact ViT or a model of another family (chapter 4, Fig. 8)."""
    blocks = getattr(model, "blocks", [])
    return [i for i, block in enumerate(blocks) if isinstance(block, NoSkipBlock)]
