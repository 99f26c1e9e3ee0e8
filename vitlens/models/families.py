"""What vitlens knows about a model: its family and, for token models, its token layout.

Every analysis asks this module, never the model class directly, so that a new family is
added in one place. Families follow the paper: ``"vit"`` (timm ``VisionTransformer``),
``"resnet"`` (timm ``ResNetV2``/BiT and classic ``ResNet``) and ``"mixer"`` (timm ``MlpMixer``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

__all__ = ["Family", "ModelInfo", "model_info", "parameter_count"]

Family = Literal["vit", "resnet", "mixer"]


@dataclass(frozen=True)
class ModelInfo:
    """Layout facts about a model.

    Attributes:
        family: ``"vit"``, ``"resnet"`` or ``"mixer"``.
        patch_size: side of one input patch in pixels (``None`` for ResNets).
        grid: token grid ``(rows, cols)`` of patch tokens (``None`` for ResNets).
        num_prefix_tokens: class/register tokens before the patch tokens (0 if none).
    """

    family: Family
    patch_size: int | None = None
    grid: tuple[int, int] | None = None
    num_prefix_tokens: int = 0


def _family_of(model: nn.Module) -> Family:
    from timm.models.mlp_mixer import MlpMixer
    from timm.models.resnet import ResNet
    from timm.models.resnetv2 import ResNetV2
    from timm.models.vision_transformer import VisionTransformer

    if isinstance(model, VisionTransformer):
        return "vit"
    if isinstance(model, (ResNetV2, ResNet)):
        return "resnet"
    if isinstance(model, MlpMixer):
        return "mixer"
    raise ValueError(
        f"vitlens does not know the family of {type(model).__name__}; supported: timm "
        "VisionTransformer (vit), ResNetV2/ResNet (resnet) and MlpMixer (mixer)."
    )


def model_info(model: nn.Module) -> ModelInfo:
    """Family and token layout of ``model``.

    Raises:
        ValueError: if the model is not of a supported family.
    """
    family = _family_of(model)
    if family == "resnet":
        return ModelInfo(family="resnet")
    patch_embed = model.stem if family == "mixer" else model.patch_embed
    patch = patch_embed.patch_size
    grid = tuple(int(g) for g in patch_embed.grid_size)
    prefix = int(getattr(model, "num_prefix_tokens", 0))
    return ModelInfo(family=family, patch_size=int(patch[0]), grid=grid, num_prefix_tokens=prefix)


def parameter_count(model: nn.Module) -> int:
    """Number of parameters of ``model`` (every tensor of ``model.parameters()``, trainable
    or not): what a chapter prints as a model's size and the zoo's manifest records."""
    return sum(p.numel() for p in model.parameters())
