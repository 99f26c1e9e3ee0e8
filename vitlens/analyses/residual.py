"""Skip connections: where each residual sum ``z + f(z)`` lives, and how much each side weighs.

Serves the paper's Figure 7 and Figures E.1, E.2: the ratio ``||z|| / ||f(z)||`` of the
representation carried by the skip connection to the long branch added to it, per token
(ViT, Mixer) or per feature-map location (ResNet), and the cosine similarity between
``z`` and ``z + f(z)``. A large ratio means the block mostly passes its input through.

Where the two sides are read is :func:`vitlens.models.branches.residual_branches`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vitlens.models import ResidualBranch, model_info, residual_branches
from vitlens.streaming import ImageSource, RunOptions, Taps, gather_sum, stream

__all__ = [
    "ResidualNorms",
    "residual_norm_ratios",
    "skip_statistics",
]


@dataclass
class ResidualNorms:
    """Skip-vs-branch statistics per residual addition, averaged over images.

    Attributes:
        branches: the residual additions, in forward order.
        norm_ratio: per branch, ``||z|| / ||f(z)||`` (channel L2 norms) averaged over images,
            shape ``(tokens,)`` for ViT/Mixer (prefix tokens first) or ``(h, w)`` for ResNets.
            ``inf`` where ``f(z)`` was exactly zero.
        cosine: per branch, cosine similarity between ``z`` and ``z + f(z)``, same shapes.
        num_prefix_tokens: class/register tokens at the start of the token axis (0 for
            ResNets and Mixers).
        num_examples: images averaged over.
    """

    branches: list[ResidualBranch]
    norm_ratio: list[torch.Tensor]
    cosine: list[torch.Tensor]
    num_prefix_tokens: int
    num_examples: int

    def mean_over_positions(self, values: list[torch.Tensor], *, prefix: bool) -> torch.Tensor:
        """``(branches,)`` mean of ``values`` (``norm_ratio`` or ``cosine``) over positions.

        Args:
            values: one of this result's per-branch lists.
            prefix: ``True`` averages the prefix (class) tokens only, ``False`` every other
                position (patch tokens, or all locations of a ResNet map).
        """
        if prefix and self.num_prefix_tokens == 0:
            raise ValueError("this model has no prefix (class) tokens")
        k = self.num_prefix_tokens
        return torch.stack(
            [(v.flatten()[:k] if prefix else v.flatten()[k:]).mean() for v in values]
        )


def _sum_batches(per_batch: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """Per-batch lists of per-branch sums to one list of per-branch sums."""
    return [sum(sums) for sums in zip(*per_batch, strict=True)]


def skip_statistics(
    branches: list[ResidualBranch], store: dict[str, torch.Tensor]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per image and position, ``||z|| / ||f(z)||`` and cosine(z, z + f(z)) of each branch.

    Args:
        branches: residual additions (:func:`~vitlens.models.branches.residual_branches`).
        store: captured activations holding every branch's ``skip`` and ``branch`` point.

    Returns:
        ``(ratios, cosines)``: one float64 tensor per branch, ``(n, tokens)`` or
        ``(n, h, w)``; norms over channels. A ratio is ``inf`` where ``f(z)`` is exactly 0.
    """
    ratios, cosines = [], []
    for branch in branches:
        z = store[branch.skip]
        f = branch.branch_output(store[branch.branch])
        channels = 1 if z.dim() == 4 else -1  # (n, C, h, w) maps or (n, tokens, C) tokens
        # three sums over channels (float32, as the activations), combined in float64:
        # ||z||^2, ||f||^2 and z . f
        zz, ff, zf = ((a * b).sum(channels).double() for a, b in ((z, z), (f, f), (z, f)))
        ratios.append((zz / ff).sqrt())
        # cos(z, z + f) = (z . z + z . f) / (||z|| ||z + f||), zero for a zero vector as in
        # torch.nn.functional.cosine_similarity
        norms = (zz * (zz + 2 * zf + ff)).sqrt().clamp_min(1e-8)
        cosines.append((zz + zf) / norms)
    return ratios, cosines


def residual_norm_ratios(
    model: nn.Module,
    data: ImageSource,
    *,
    run: RunOptions = RunOptions(),
) -> ResidualNorms:
    """Norm ratio ``||z|| / ||f(z)||`` and cosine(z, z + f(z)) of every residual addition.

    Serves Figure 7 (ratio per block, class token vs. the rest) and Figures E.1, E.2.
    For each image and each token (or feature-map location) the L2 norms are taken over
    channels; the ratio and the cosine are then averaged over images.

    Args:
        model: a timm ViT, MlpMixer or ResNetV2/ResNet (see
            :func:`~vitlens.models.branches.residual_branches`).
        data: ``(N, C, H, W)`` tensor, Dataset or DataLoader of preprocessed images.
        run: batch size, device, progress (:class:`~vitlens.streaming.RunOptions`).

    Returns:
        :class:`ResidualNorms`.
    """
    branches = residual_branches(model)
    prefix = model_info(model).num_prefix_tokens
    points = list(dict.fromkeys(p for b in branches for p in (b.skip, b.branch)))
    ratio_sums, cosine_sums = [], []

    def accumulate(_images: torch.Tensor, stores: list[dict[str, torch.Tensor]]) -> None:
        ratios, cosines = skip_statistics(branches, stores[0])
        ratio_sums.append([r.sum(0).cpu() for r in ratios])
        cosine_sums.append([c.sum(0).cpu() for c in cosines])

    seen = stream(Taps(model, points), data, accumulate, run=run, desc="skip norms", shard=True)
    ratio_totals, cosine_totals = gather_sum(
        [_sum_batches(ratio_sums), _sum_batches(cosine_sums)] if ratio_sums else None
    )
    return ResidualNorms(
        branches=branches,
        norm_ratio=[total / seen for total in ratio_totals],
        cosine=[total / seen for total in cosine_totals],
        num_prefix_tokens=prefix,
        num_examples=seen,
    )
