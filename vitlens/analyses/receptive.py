"""Effective receptive fields (paper Figure 6 and Figures C.1-C.4).

The effective receptive field (ERF, Luo et al. 2016) of a layer is the map, over input
pixels, of ``|d centre / d input|``: the gradient of the layer's feature at the centre
position, summed over the layer's channels, with respect to the input image; its absolute
value is summed over the input's colour channels and averaged over images.

The *centre position* is the patch token at grid cell ``(rows // 2, cols // 2)`` for a ViT
or Mixer (prefix tokens are skipped) and the feature-map cell ``(h // 2, w // 2)`` for a
convolutional layer ``(n, C, h, w)``.

All requested layers come from one forward pass per minibatch, then one backward pass
per layer from its centre sum to the input (the graph is kept between them; the pass for
layer ``l`` only traverses the blocks up to ``l``). Each backward covers the whole
minibatch at once: images never mix in eval mode, so the gradient of the sum over images
is every image's own gradient. (A single vmapped backward over the ``L`` layers,
``is_grads_batched=True``, gives identical maps but measured 1.3-3x slower on CPU.)
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from typing import Literal

import torch
from torch import nn
from tqdm.auto import tqdm

from vitlens.analyses.residual import residual_branches
from vitlens.models import layer_names, model_info, resolve_layers
from vitlens.streaming import (
    ImageSource,
    capture,
    captured,
    eval_mode,
    image_batches,
    resolve_device,
)

__all__ = ["centre_feature", "effective_receptive_field", "mass_area"]


def centre_feature(model: nn.Module, value: torch.Tensor, name: str) -> torch.Tensor:
    """``(n, C)`` features at the centre position of one layer's activation ``value``.

    Args:
        model: the model the activation came from (its token grid for token layers).
        value: ``(n, C, h, w)`` feature maps or ``(n, T, C)`` tokens (prefix tokens first).
        name: layer name, for error messages.
    """
    if value.dim() == 4:
        return value[:, :, value.shape[2] // 2, value.shape[3] // 2]
    if value.dim() != 3:
        raise ValueError(
            f"layer {name!r} gives shape {tuple(value.shape)}; the receptive field needs "
            "(n, C, h, w) feature maps or (n, tokens, C) tokens"
        )
    info = model_info(model)
    rows, cols = info.grid
    tokens = info.num_prefix_tokens + rows * cols
    if value.shape[1] != tokens:
        raise ValueError(
            f"layer {name!r} gives shape {tuple(value.shape)}, but a token layer of this model "
            f"is (n, {tokens}, C) ({info.num_prefix_tokens} prefix + {rows}x{cols} patches)"
        )
    return value[:, info.num_prefix_tokens + (rows // 2) * cols + cols // 2]


def _hooked_points(model: nn.Module, layers: list[str], branch: str) -> list[tuple[str, bool]]:
    """Per layer, the point to read and whether it comes channels-first ``(n, C, T)``."""
    if branch == "post":
        return [(name, False) for name in layers]
    sums = {b.name: b for b in residual_branches(model)}
    unknown = [name for name in layers if name not in sums]
    if unknown:
        raise ValueError(
            f"branch='pre' needs layers that hold a residual sum; {unknown} do not. "
            f"Valid: {list(sums)}"
        )
    return [(sums[name].branch, sums[name].branch_channels_first) for name in layers]


def effective_receptive_field(
    model: nn.Module,
    data: ImageSource,
    layers: Sequence[str] | None = None,
    *,
    branch: Literal["post", "pre"] = "post",
    batch_size: int = 16,
    device: str | torch.device = "auto",
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """Effective receptive field of each layer: mean over images of ``|d centre / d input|``.

    Serves Figure 6 (ViT vs. ResNet ERFs, after and before the residual connection) and
    Figures C.1-C.4.

    Args:
        model: a timm ViT, Mixer or ResNet; or any module whose ``layers`` output
            ``(n, C, h, w)`` feature maps.
        data: ``(N, C, H, W)`` tensor, Dataset or DataLoader of preprocessed images.
        layers: layer names (default: the block outputs, :func:`vitlens.layer_names` kind
            ``"blocks"``).
        branch: ``"post"`` reads each layer as named (after the residual sum for a block);
            ``"pre"`` reads the long branch ``f(z)`` added at that residual sum, before the
            sum (see :func:`vitlens.analyses.residual.residual_branches`; ``layers`` must then be
            residual sums such as ``"blocks.3"`` or ``"blocks.3.residual1"``).
        batch_size: images per forward/backward pass (tensors and Datasets); the graph of
            one batch is kept until every layer's gradient is taken.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ...; the model is moved there.
        progress: show a progress bar.

    Returns:
        ``{layer: (H, W) float64 map}`` on the CPU, over input pixels, in ``layers`` order.
    """
    if branch not in ("post", "pre"):
        raise ValueError(f"branch must be 'post' or 'pre', got {branch!r}")
    layers = list(layer_names(model, "blocks") if layers is None else layers)
    if not layers:
        raise ValueError("layers must name at least one layer")
    points = _hooked_points(model, layers, branch)
    resolve_layers(model, [point for point, _ in points])
    dev = resolve_device(device)
    model.to(dev)
    batches, count = image_batches(data, batch_size, dev)
    total, seen = None, 0
    with ExitStack() as stack:
        stack.enter_context(torch.enable_grad())
        stack.enter_context(eval_mode(model))
        names = list(dict.fromkeys(point for point, _ in points))
        store = stack.enter_context(capture(model, names, detach=False))
        for images in tqdm(batches, total=count, disable=not progress, desc="receptive fields"):
            images = images.detach().requires_grad_(True)
            model(images)
            maps = []
            for name, (point, channels_first) in zip(layers, points, strict=True):
                value = captured(store, point)
                value = value.transpose(1, 2) if channels_first else value
                centre = centre_feature(model, value, name).sum()
                (grad,) = torch.autograd.grad(centre, images, retain_graph=True)
                maps.append(grad.abs().sum(dim=(0, 1)))  # (H, W): over images and colours
            maps = torch.stack(maps).double().cpu()
            total = maps if total is None else total + maps
            seen += images.shape[0]
            store.clear()
    if total is None:
        raise ValueError("data yielded no images")
    return {name: field / seen for name, field in zip(layers, total, strict=True)}


def mass_area(field: torch.Tensor, mass: float = 0.5) -> float:
    """Fraction of the input's pixels that hold ``mass`` of a receptive field's total.

    The pixels are taken from the largest value down until their sum reaches ``mass`` of
    the map's sum: 1 / (H W) for a field concentrated on one pixel, about ``mass`` for a
    uniform one. A size measure that needs no threshold on the peak.

    Args:
        field: ``(H, W)`` non-negative map (:func:`effective_receptive_field`).
        mass: share of the total, in ``(0, 1]``.

    Returns:
        The fraction, in ``(0, 1]``.

    Raises:
        ValueError: for ``mass`` outside ``(0, 1]``, a map that is not 2-D, has negative or
            non-finite values, or sums to zero.
    """
    if not 0 < mass <= 1:
        raise ValueError(f"mass must be in (0, 1], got {mass}")
    field = torch.as_tensor(field, dtype=torch.float64)
    if field.ndim != 2:
        raise ValueError(f"field must be an (H, W) map, got shape {tuple(field.shape)}")
    if not torch.isfinite(field).all() or (field < 0).any():
        raise ValueError("field must be finite and non-negative")
    total = field.sum()
    if total == 0:
        raise ValueError("field is zero everywhere: no receptive field to measure")
    cumulative = field.flatten().sort(descending=True).values.cumsum(0)
    pixels = int(torch.searchsorted(cumulative, mass * total * (1 - 1e-12))) + 1
    return pixels / field.numel()
