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
* ResNet (timm ResNetV2/BiT and classic ResNet): ``stem``, then every residual block's
  output (``stages.s.blocks.b`` or ``layerS.b``).

``kind="blocks"`` lists block outputs only.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from vitlens.models import model_info

__all__ = [
    "LayerPoint",
    "capture",
    "captured",
    "layer_names",
    "resolve_layers",
    "run_with_cache",
]


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


def _resnet_points(model: nn.Module) -> list[LayerPoint]:
    from timm.models.resnetv2 import ResNetV2

    if isinstance(model, ResNetV2):
        points = [LayerPoint("stem", "stem")]
        for s, stage in enumerate(model.stages):
            points += [
                LayerPoint(f"stages.{s}.blocks.{b}", f"stages.{s}.blocks.{b}", block_output=True)
                for b in range(len(stage.blocks))
            ]
        return points
    points = [LayerPoint("stem", "maxpool")]
    for s in range(1, 5):
        stage = getattr(model, f"layer{s}")
        points += [
            LayerPoint(f"layer{s}.{b}", f"layer{s}.{b}", block_output=True)
            for b in range(len(stage))
        ]
    return points


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
        Names in forward order, accepted by :func:`capture`.
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


def _first_tensor(value) -> torch.Tensor:
    """A hook's output (or input tuple) reduced to its first tensor."""
    while isinstance(value, (tuple, list)):
        if not value:
            raise ValueError("a hooked module produced an empty tuple; nothing to capture")
        value = value[0]
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"a hooked module produced {type(value).__name__}, not a tensor")
    return value


@contextmanager
def capture(
    model: nn.Module,
    layers: Sequence[str],
    *,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    detach: bool = True,
) -> Iterator[dict[str, torch.Tensor]]:
    """Hook ``layers`` of ``model``; yield a dict filled with their activations on each forward.

    Args:
        model: any ``nn.Module``.
        layers: layer names (see :func:`layer_names`; any module path also works).
        transform: optional function applied to each detached activation inside the hook,
            e.g. to reduce ``(n, T, d)`` features to an ``(n, n)`` Gram at once so that the
            full activations of all layers are never held together.
        detach: detach each activation from the autograd graph (the default); ``False``
            keeps the graph, e.g. to take gradients of activations with respect to the input
            (:func:`vitlens.receptive.effective_receptive_field`).

    Yields:
        ``{name: tensor}``; each forward pass overwrites the entries. Tuple outputs are
        reduced to their first element; tensors are detached unless ``detach=False``.

    Every hook is removed on exit, also when the forward pass raises.
    """
    points = resolve_layers(model, layers)
    modules = dict(model.named_modules())
    store: dict[str, torch.Tensor] = {}
    handles = []

    def record(name: str, value) -> None:
        tensor = _first_tensor(value)
        tensor = tensor.detach() if detach else tensor
        store[name] = transform(tensor) if transform is not None else tensor

    try:
        for point in points:
            module = modules[point.module]
            if point.where == "input":
                hook = module.register_forward_pre_hook(
                    lambda _m, args, name=point.name: record(name, args)
                )
            else:
                hook = module.register_forward_hook(
                    lambda _m, _args, out, name=point.name: record(name, out)
                )
            handles.append(hook)
        yield store
    finally:
        for handle in handles:
            handle.remove()


def captured(store: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """``store[name]`` after a forward pass, or a ValueError if that layer never ran.

    A module can exist and yet be skipped by the forward pass (e.g. timm's
    ``attn.attn_drop`` under fused attention, or a layer of an unused head).
    """
    if name not in store:
        raise ValueError(
            f"layer {name!r} exists but did not run during the forward pass; choose a layer "
            f"on the forward path (captured this pass: {list(store)[:5]}...)"
        )
    return store[name]


def run_with_cache(
    model: nn.Module, images: torch.Tensor, layers: Sequence[str] | None = None
) -> dict[str, torch.Tensor]:
    """Run ``model`` on ``images`` and return every requested activation, by name, in order.

    Args:
        model: a supported model (or any module, with explicit ``layers``).
        images: ``(n, C, H, W)`` input batch on the model's device.
        layers: names to keep; default ``layer_names(model, "all")``.

    Returns:
        ``{name: activation}`` ordered as ``layers``.
    """
    layers = list(layer_names(model) if layers is None else layers)
    with torch.inference_mode(), capture(model, layers) as store:
        model(images)
    missing = [name for name in layers if name not in store]
    if missing:
        raise RuntimeError(f"layers {missing} did not run during the forward pass")
    return {name: store[name] for name in layers}
