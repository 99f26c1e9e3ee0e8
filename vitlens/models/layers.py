"""Capturing intermediate activations with forward hooks, and layer names in the paper's sense.

A *layer name* is either a module path of the model (``"blocks.3.attn"``: that module's
output) or one of the family's named points that no module outputs by itself, such as
``"blocks.3.residual1"``, the sum ``x + attn(norm1(x))`` after the first skip connection
of a transformer block, captured as the input of ``blocks.3.norm2``.

Per block, :func:`layer_names` with ``kind="all"`` lists, in forward order:

* ViT: ``norm1``, ``attn`` (attention output), ``residual1`` (first residual sum),
  ``norm2``, ``mlp.act`` (MLP hidden activation), and the block output (``blocks.i``).
* MLP-Mixer: ``norm1``, ``mlp_tokens`` (token-mixing MLP output, shape ``(n, C, T)``),
  ``residual1``, ``norm2``, ``mlp_channels`` (channel-mixing MLP output), block output.
* ResNet (timm ResNetV2/BiT and classic ResNet): ``stem``, then per residual block its
  inner activations, as the paper's ResNet heatmaps (Fig. 1) include the layers inside
  the blocks, and its output (``stages.s.blocks.b`` or ``layerS.b``). Inner activations:
  a pre-activation block's ``norm1``, ``norm2``, ``norm3`` (group norm and ReLU, each
  feeding the next convolution; ``norm1`` is the block's pre-activated input); a classic
  block's ReLUs before the residual sum (``act1``, ``act2`` of a bottleneck).

``kind="blocks"`` lists block outputs only.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from torch import nn

from vitlens.models.families import model_info

__all__ = ["LayerPoint", "layer_names", "resolve_layers"]


@dataclass(frozen=True)
class LayerPoint:
    """Where a layer's representation is read: a module's output, or its first input."""

    name: str
    module: str
    where: Literal["output", "input"] = "output"
    block_output: bool = False


# ---------------------------------------------------------------- per-family layer points


def _token_block_points(model: nn.Module, mixing: str, hidden: str) -> list[LayerPoint]:
    points = []
    for i in range(len(model.blocks)):
        b = f"blocks.{i}"
        points += [
            LayerPoint(f"{b}.norm1", f"{b}.norm1"),
            LayerPoint(f"{b}.{mixing}", f"{b}.{mixing}"),
            LayerPoint(f"{b}.residual1", f"{b}.norm2", "input"),
            LayerPoint(f"{b}.norm2", f"{b}.norm2"),
            LayerPoint(f"{b}.{hidden}", f"{b}.{hidden}"),
            LayerPoint(b, b, block_output=True),
        ]
    return points


def _block_points(path: str, block: nn.Module, inner: Sequence[str]) -> list[LayerPoint]:
    """A residual block's inner activations that exist (in forward order), then its output."""
    points = [LayerPoint(f"{path}.{n}", f"{path}.{n}") for n in inner if hasattr(block, n)]
    return [*points, LayerPoint(path, path, block_output=True)]


def _resnet_points(model: nn.Module) -> list[LayerPoint]:
    from timm.models.resnetv2 import ResNetV2

    if isinstance(model, ResNetV2):
        points = [LayerPoint("stem", "stem")]
        for s, stage in enumerate(model.stages):
            for b, block in enumerate(stage.blocks):
                # pre-activation blocks: each norm (with its ReLU) feeds the next conv
                points += _block_points(f"stages.{s}.blocks.{b}", block, _PREACT_INNER)
        return points
    points = [LayerPoint("stem", "maxpool")]
    for s in range(1, 5):
        for b, block in enumerate(getattr(model, f"layer{s}")):
            acts = [n for n in _CLASSIC_ACTS if hasattr(block, n)]
            points += _block_points(f"layer{s}.{b}", block, acts[:-1])  # last: after the sum
    return points


_PREACT_INNER = ("norm1", "norm2", "norm3")
_CLASSIC_ACTS = ("act1", "act2", "act3")


def _family_points(model: nn.Module) -> list[LayerPoint]:
    family = model_info(model).family
    if family == "vit":
        return _token_block_points(model, "attn", "mlp.act")
    if family == "mixer":
        return _token_block_points(model, "mlp_tokens", "mlp_channels")
    return _resnet_points(model)


def layer_names(model: nn.Module, kind: Literal["all", "blocks"] = "all") -> list[str]:
    """Ordered layer names of a ViT, ResNet or MLP-Mixer in the paper's sense.

    Args:
        model: a timm VisionTransformer, ResNetV2/ResNet or MlpMixer.
        kind: ``"all"`` for every sublayer the paper's CKA figures use (see module
            docstring); ``"blocks"`` for block outputs only.

    Returns:
        Names in forward order, accepted by :func:`vitlens.capture`.
    """
    if kind not in ("all", "blocks"):
        raise ValueError(f"kind must be 'all' or 'blocks', got {kind!r}")
    points = _family_points(model)
    if kind == "blocks":
        points = [p for p in points if p.block_output]
    return [p.name for p in points]


def resolve_layers(model: nn.Module, layers: Sequence[str]) -> list[LayerPoint]:
    """Map layer names to hook points; unknown names raise with the closest valid ones.

    Valid names are the family's named points (:func:`layer_names`) and any module path
    of ``model`` (``dict(model.named_modules())``).
    """
    if isinstance(layers, str):
        raise TypeError(f"layers must be a sequence of names, not the string {layers!r}")
    try:
        named = {p.name: p for p in _family_points(model)}
    except ValueError:  # not a known family: module paths only
        named = {}
    modules = {name for name, _ in model.named_modules() if name}
    points = []
    for name in layers:
        if name in named and named[name].module in modules:
            points.append(named[name])
        elif name in modules:
            points.append(LayerPoint(name, name))
        else:
            valid = list(named) + sorted(modules - set(named))
            close = difflib.get_close_matches(name, valid, n=5, cutoff=0.5) or valid[:5]
            raise ValueError(
                f"unknown layer {name!r} for {type(model).__name__}. Closest valid names: "
                f"{close}. See vitlens.layer_names(model) or model.named_modules()."
            )
    return points
