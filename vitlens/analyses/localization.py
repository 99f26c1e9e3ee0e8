"""Localization: how much each token still looks like the input patch it came from.

Serves the paper's Figures 9, 10 and D.1-D.3. For one layer, the map of token ``p`` holds,
at every grid position ``q``, the linear CKA (over images) between token ``p``'s
representation and the raw input pixels of patch ``q``. A well-localized token peaks at
its own position.

Tokens and patches:

* ViT / Mixer token layers ``(n, T, C)``: patch ``q`` is the ``patch_size x patch_size``
  input patch of grid cell ``q`` (:func:`vitlens.model_info`); prefix tokens (the class
  token) have no position of their own and come first along the token axis (layers before
  the prefix is added, such as ``patch_embed``, have patch tokens only).
* Feature maps ``(n, C, h, w)`` (ResNets, or any convolutional layer): a "token" is the
  channel vector at one cell; cell ``(i, j)`` is mapped to the input patch of side
  ``s = H / h`` (the layer's stride) at pixels ``[i s, (i + 1) s) x [j s, (j + 1) s)``, so
  the patch grid has the feature map's shape. ``H / h`` and ``W / w`` must be equal integers.

CKA is the minibatch estimator of :class:`vitlens.MinibatchCKA` (unbiased HSIC per batch,
summed), fed all ``T`` token Grams and all ``P`` patch Grams of a batch at once, so every
(token, patch) pair comes from one matrix product.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from vitlens.core.cka import MinibatchCKA, center_gram, grouped_centered_grams
from vitlens.models import layer_names, model_info, resolve_layers
from vitlens.streaming import ImageSource, RunOptions, Taps, gather, layer_shapes, stream

__all__ = [
    "MIN_LOCALIZATION_GRID",
    "default_localization_layer",
    "localization_map",
    "localization_maps",
    "localization_stats",
    "own_patch_cka",
    "patch_token",
    "stacked_grams",
    "token_localization",
]

MIN_LOCALIZATION_GRID = 4
"""Fewest cells along each side of a feature map that a localization map is drawn on."""


def default_localization_layer(model: nn.Module) -> str:
    """The layer a localization map is drawn at when none is named: the last block output;
    for a ResNet, whose late maps shrink to a few cells, the last block output whose map
    has at least :data:`MIN_LOCALIZATION_GRID` cells per side (the first block if none has).

    Shapes are read from one blank image of the model's input size (no data needed).
    """
    blocks = layer_names(model, "blocks")
    if model_info(model).family != "resnet":
        return blocks[-1]
    shapes = layer_shapes(model, blocks)
    usable = [
        name
        for name, shape in shapes.items()
        if len(shape) == 4 and min(shape[-2:]) >= MIN_LOCALIZATION_GRID
    ]
    return usable[-1] if usable else blocks[0]


def own_patch_cka(maps: torch.Tensor) -> tuple[float, float]:
    """Mean CKA of the patch tokens with their own input patch, and with every other patch.

    Args:
        maps: ``(T, h, w)`` from :func:`localization_map` (prefix tokens first, skipped).

    Returns:
        ``(own, others)``: the mean of the ``h w`` own-patch values, and of the
        ``h w (h w - 1)`` others (NaN entries, constant patches, left out).
    """
    tokens, rows, cols = maps.shape
    patches = maps[tokens - rows * cols :].reshape(rows * cols, rows * cols).double()
    off = ~torch.eye(rows * cols, dtype=torch.bool)
    return float(patches.diagonal().nanmean()), float(patches[off].nanmean())


def stacked_grams(features: torch.Tensor) -> torch.Tensor:
    """``(G, n, d)`` features of ``G`` groups to their ``(G, n, n)`` U-centred linear Grams."""
    return center_gram(grouped_centered_grams(features), unbiased=True)


def _tokens_and_patches(
    model: nn.Module, value: torch.Tensor, images: torch.Tensor, layer: str
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """``(T, n, C)`` tokens, ``(P, n, 3 s s)`` input patches and the patch grid of one batch."""
    height, width = images.shape[-2:]
    if value.dim() == 4:
        h, w = value.shape[-2:]
        if height % h or width % w or height // h != width // w:
            raise ValueError(
                f"layer {layer!r} has a {h}x{w} feature map for {height}x{width} images; the "
                "cell-to-patch mapping needs the same integer stride H/h == W/w"
            )
        side, grid = height // h, (h, w)
        tokens = value.flatten(2).permute(2, 0, 1)
    elif value.dim() == 3:
        info = model_info(model)
        side, grid = info.patch_size, info.grid
        patches = grid[0] * grid[1]
        if value.shape[1] not in (patches, patches + info.num_prefix_tokens):
            raise ValueError(
                f"layer {layer!r} gives shape {tuple(value.shape)}; a token layer of this model "
                f"is (n, {patches + info.num_prefix_tokens}, C) ({info.num_prefix_tokens} "
                f"prefix + {grid} patches), or (n, {patches}, C) before the prefix is added"
            )
        if (height, width) != (grid[0] * side, grid[1] * side):
            raise ValueError(
                f"images are {height}x{width}, the model's patch grid needs "
                f"{grid[0] * side}x{grid[1] * side}"
            )
        tokens = value.transpose(0, 1)
    else:
        raise ValueError(
            f"layer {layer!r} gives shape {tuple(value.shape)}; localization needs (n, T, C) "
            "tokens or (n, C, h, w) feature maps"
        )
    patches = F.unfold(images, kernel_size=side, stride=side).permute(2, 0, 1)
    return tokens, patches, grid


def localization_map(
    model: nn.Module,
    data: ImageSource,
    layer: str,
    *,
    run: RunOptions = RunOptions(),
) -> torch.Tensor:
    """CKA between every token of ``layer`` and every input patch (Figures 9, 10, D.1-D.3).

    Args:
        model: a timm ViT, Mixer or ResNet, or any module whose ``layer`` outputs
            ``(n, C, h, w)`` feature maps.
        data: ``(N, C, H, W)`` tensor, Dataset or DataLoader of preprocessed images; every
            batch needs more than 3 images.
        layer: one layer name (see :func:`vitlens.layer_names`); for several layers, one
            forward pass: :func:`localization_maps`.
        run: batch size, device, progress (:class:`~vitlens.streaming.RunOptions`).

    Returns:
        ``(tokens, grid_h, grid_w)`` float64 CKA on the CPU: entry ``[p, i, j]`` compares
        token ``p`` (prefix tokens first, then patches in row-major order) with the input
        patch at grid cell ``(i, j)``. A token that is constant over the images (e.g. the
        class token before the first block) gives NaN, with a warning.
    """
    if not isinstance(layer, str):
        raise TypeError(f"layer must be one layer name, got {type(layer).__name__}")
    return localization_maps(model, data, [layer], run=run)[layer]


def localization_maps(
    model: nn.Module,
    data: ImageSource,
    layers: list[str],
    *,
    run: RunOptions = RunOptions(),
) -> dict[str, torch.Tensor]:
    """:func:`localization_map` of each of ``layers``, from one pass over the images.

    Returns:
        ``{layer: (tokens, grid_h, grid_w)}`` in ``layers`` order, each equal to
        ``localization_map(model, data, layer)``.
    """
    layers = list(layers)
    if not layers or not all(isinstance(layer, str) for layer in layers):
        raise TypeError(f"layers must be a non-empty list of layer names, got {layers!r}")
    resolve_layers(model, layers)
    estimators = {layer: MinibatchCKA() for layer in layers}
    grids: dict[str, tuple[int, int]] = {}

    def accumulate(images: torch.Tensor, stores: list[dict[str, torch.Tensor]]) -> None:
        for layer in layers:
            tokens, patches, grids[layer] = _tokens_and_patches(
                model, stores[0][layer], images, layer
            )
            estimators[layer].update_centered_grams(stacked_grams(tokens), stacked_grams(patches))

    taps = Taps(model, list(dict.fromkeys(layers)))
    stream(taps, data, accumulate, run=run, desc="localization", min_batch=4, shard=True)
    maps = {}
    for layer in layers:
        estimator = functools.reduce(MinibatchCKA.merge, gather(estimators[layer]), MinibatchCKA())
        grid = next(g for g in gather(grids.get(layer)) if g is not None)
        maps[layer] = estimator.compute().cpu().reshape(-1, *grid)
    return maps


def patch_token(maps, row: int, col: int) -> int:
    """Index of the patch token at grid cell ``(row, col)`` of ``(tokens, h, w)`` maps.

    Prefix tokens (class, registers) come first, so the patch tokens are the last ``h w``.
    """
    tokens, h, w = tuple(maps.shape)
    if not (0 <= row < h and 0 <= col < w):
        raise ValueError(f"cell ({row}, {col}) is outside the {h}x{w} grid")
    return tokens - h * w + row * w + col


def token_localization(maps) -> dict[str, np.ndarray]:
    """Per patch token of ``(tokens, h, w)`` maps: how localized it is to its own patch.

    Returns ``(h w,)`` arrays: ``"own"`` (CKA with its own input patch), ``"contrast"`` (own
    minus the mean over the other patches), ``"peak distance"`` (Chebyshev distance, in
    cells, from its own patch to its most similar patch) and ``"interior"`` (True for a
    token off the grid's border: the paper, Fig. 9, finds edge tokens also similar to other
    edge patches and makes its localization claim for interior ones); and ``"peak
    offset"``, ``(h w, 2)`` (rows, columns) from its own patch to its most similar one.
    Serves Figures 9 and 10.
    """
    maps = np.asarray(maps, dtype=float)
    if maps.ndim != 3:
        raise ValueError(f"maps must be (tokens, h, w), got shape {maps.shape}")
    h, w = maps.shape[1:]
    cells = h * w
    if maps.shape[0] < cells or cells < 2:
        raise ValueError(f"maps of shape {maps.shape} lack the {cells} patch tokens of the grid")
    square = maps[-cells:].reshape(cells, cells)  # patch token x input patch
    own = np.diag(square)
    elsewhere = (square.sum(1) - own) / (cells - 1)
    peak_row, peak_col = np.divmod(square.argmax(1), w)
    row, col = np.divmod(np.arange(cells), w)
    offset = np.stack([peak_row - row, peak_col - col], axis=1)
    distance = np.abs(offset).max(1)
    interior = (row > 0) & (row < h - 1) & (col > 0) & (col < w - 1)
    return {
        "interior": interior,
        "own": own,
        "contrast": own - elsewhere,
        "peak distance": distance,
        "peak offset": offset,
    }


def localization_stats(maps) -> dict[str, float]:
    """Summary of :func:`token_localization`: ``"own peak"`` (share of tokens peaking at their
    own patch), ``"near peak"`` (within one cell), ``"up-left peak"`` (at their own cell or
    at most one cell up and/or left of it: where a stride-2 map's cell sits when its
    receptive field is centred between input patches) and ``"contrast"`` (mean
    own-minus-other CKA).
    """
    per_token = token_localization(maps)
    offset = per_token["peak offset"]
    return {
        "own peak": float(np.mean(per_token["peak distance"] == 0)),
        "near peak": float(np.mean(per_token["peak distance"] <= 1)),
        "up-left peak": float(np.mean(((offset == 0) | (offset == -1)).all(1))),
        "contrast": float(per_token["contrast"].mean()),
    }
