"""Masked-patch prediction (SimMIM-like), the zoo's self-supervised first stage."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vitlens.models import model_info

MASKABLE_FAMILIES = ("vit", "mixer")
"""Families whose images enter as patch tokens, so masked-patch pretraining applies."""


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """``(n, C, H, W) -> (n, patches, patch_size**2 * C)``, patches row-major like timm's."""
    n, c, _, _ = images.shape
    p = patch_size
    x = images.unfold(2, p, p).unfold(3, p, p)  # (n, C, gh, gw, p, p)
    return x.permute(0, 2, 3, 4, 5, 1).reshape(n, -1, p * p * c)


class MaskedPatchPretrainer(nn.Module):
    """Masked-patch prediction around a timm ViT or MLP-Mixer, in the manner of SimMIM.

    A fraction of each image's patch embeddings is replaced by a learned mask token (for a
    ViT before the position embeddings; a Mixer has none: its token-mixing MLPs know each
    position); the encoder runs on all tokens (a ViT's class token included); a linear
    decoder maps each output patch token to the pixels of its patch, and the loss is the L1
    error on the masked patches' pixels, each patch normalised to zero mean and unit
    variance (MAE's normalised-pixel target). The wrapped model is trained in place; the
    mask token and decoder are discarded after pretraining.

    Args:
        encoder: a timm ``VisionTransformer`` or ``MlpMixer``.
        mask_ratio: fraction of patches masked per image (exactly ``round(ratio * P)``).
        seed: seed of the mask token's and decoder's initialisation.
    """

    def __init__(self, encoder: nn.Module, mask_ratio: float = 0.5, *, seed: int = 0) -> None:
        super().__init__()
        info = model_info(encoder)
        if info.family not in MASKABLE_FAMILIES:
            raise ValueError(
                f"masked-patch pretraining applies to {' and '.join(MASKABLE_FAMILIES)} models "
                f"(patch tokens to mask), not to a {info.family}"
            )
        if not 0 < mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.encoder, self.mask_ratio, self.family = encoder, mask_ratio, info.family
        self.patch_size, self.num_patches = info.patch_size, info.grid[0] * info.grid[1]
        self.num_prefix_tokens = info.num_prefix_tokens
        dim = encoder.embed_dim
        g = torch.Generator().manual_seed(seed)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.decoder = nn.Linear(dim, self.patch_size**2 * 3)
        with torch.no_grad():
            nn.init.trunc_normal_(self.mask_token, std=0.02, generator=g)
            nn.init.trunc_normal_(self.decoder.weight, std=0.02, generator=g)
            self.decoder.bias.zero_()

    def no_weight_decay(self) -> set[str]:
        """Parameter names AdamW leaves undecayed (the encoder's plus the mask token)."""
        inner = getattr(self.encoder, "no_weight_decay", set)()
        return {f"encoder.{name}" for name in inner} | {"mask_token"}

    def random_mask(self, n: int, generator: torch.Generator) -> Tensor:
        """Boolean ``(n, patches)``: exactly ``round(mask_ratio * patches)`` True per row."""
        k = round(self.mask_ratio * self.num_patches)
        ranks = torch.rand(n, self.num_patches, generator=generator).argsort(1).argsort(1)
        return ranks < k

    def encode(self, images: Tensor, mask: Tensor) -> Tensor:
        """Output patch tokens ``(n, P, dim)`` of ``images``, the embeddings of the patches
        that ``mask`` marks replaced by the mask token (prefix tokens dropped)."""
        model = self.encoder
        if self.family == "vit":
            x = model.patch_embed(images)
            x = torch.where(mask[..., None], self.mask_token.to(x.dtype), x)
            x = model.norm_pre(model.patch_drop(model._pos_embed(x)))
        else:
            x = model.stem(images)
            x = torch.where(mask[..., None], self.mask_token.to(x.dtype), x)
        return model.norm(model.blocks(x))[:, self.num_prefix_tokens :]

    def forward(self, images: Tensor, mask: Tensor) -> Tensor:
        """Mean L1 loss on the masked patches: ``images`` ``(n, 3, H, W)``, ``mask`` ``(n, P)``."""
        pred = self.decoder(self.encode(images, mask)).float()
        target = patchify(images.float(), self.patch_size)
        target = (target - target.mean(-1, keepdim=True)) / (
            target.var(-1, keepdim=True) + 1e-6
        ).sqrt()
        per_patch = (pred - target).abs().mean(-1)
        return (per_patch * mask).sum() / mask.sum().clamp(min=1)
