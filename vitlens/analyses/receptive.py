"""Effective receptive fields (paper Figure 6 and Figures C.1-C.4).

**Definition (the paper's, Appendix C).** For a layer and one image ``x``, let ``f(x)`` be
the layer's feature vector at the *centre position*, with ``C`` channels ``f_1 .. f_C``.
The effective receptive field (ERF) is the map over input pixels ``(u, v)``::

    ERF(u, v) = mean over images x, mean over channels c, of  sum over colours k of
                |d f_c(x) / d x[k, u, v]|

i.e. the absolute value is taken per feature channel (and per colour) *before* any
averaging, so channels whose gradients have opposite signs add up instead of cancelling.
(The definition used before, Luo et al. 2016's gradient of the channel *sum*,
``|d (sum_c f_c) / d x|``, lets them cancel: it is kept as ``channels="sum"`` for
comparison.) The sum over the input's three colour channels only scales the map; every
figure normalises each map to its maximum and :func:`mass_area` is scale-free.

The *centre position* is the patch token at grid cell ``(rows // 2, cols // 2)`` for a ViT
or Mixer, counted after the prefix tokens (class or register tokens have no place in the
image and are never the centre; they still carry gradient from every patch through
attention), and the feature-map cell ``(h // 2, w // 2)`` of a convolutional layer
``(n, C, h, w)``. For even sizes that is the cell just below and right of the centre.

**Computation.** One forward pass per minibatch through :func:`vitlens.streaming.stream`
(``gradients=True``), with every requested layer tapped; then, per layer, the ``C``
channel gradients as *batched* backward passes (``torch.autograd.grad(...,
is_grads_batched=True)``, a vmap over one-hot output gradients), ``chunk_size`` channels
at a time to bound memory. Each backward covers the whole minibatch at once: images never
mix in eval mode, so the gradient of a channel summed over images is every image's own
gradient. ``chunk_size=1`` runs the plain loop over channels, one backward each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from vitlens.analyses.residual import ResidualBranch, residual_branches
from vitlens.models import layer_names, model_info, resolve_layers
from vitlens.streaming import ImageSource, Taps, gather_batches, stream

__all__ = [
    "CHANNEL_REDUCTIONS",
    "SublayerFields",
    "centre_feature",
    "centre_patch_share",
    "effective_receptive_field",
    "mass_area",
    "sublayer_receptive_fields",
]

CHANNEL_REDUCTIONS = ("abs_mean", "sum")
"""``"abs_mean"``: the paper's mean over channels of ``|d f_c / d x|``; ``"sum"``: the
gradient of the channel sum, ``|d (sum_c f_c) / d x|`` (channels can cancel)."""

DEFAULT_MAX_MEMORY = 2**28
"""Default budget, in bytes, for one chunk of batched gradients (256 MiB)."""


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


def _check_options(channels: str, chunk_size: int | None, max_memory: int) -> None:
    if channels not in CHANNEL_REDUCTIONS:
        raise ValueError(f"channels must be one of {CHANNEL_REDUCTIONS}, got {channels!r}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be None or an integer >= 1, got {chunk_size!r}")
    if not isinstance(max_memory, int) or max_memory < 1:
        raise ValueError(f"max_memory must be a positive number of bytes, got {max_memory!r}")


def _chunk_for(
    channels: int, per_channel: int, chunk_size: int | None, max_memory: int, name: str
) -> int:
    """Channels per batched backward: ``chunk_size`` (checked) or the most that fit."""
    if chunk_size is None:
        return max(1, min(channels, max_memory // per_channel))
    chunk = min(chunk_size, channels)
    if chunk * per_channel > max_memory:
        raise ValueError(
            f"chunk_size={chunk_size} for layer {name!r} needs about {chunk * per_channel:,} "
            f"bytes of batched gradients ({per_channel:,} per channel for this minibatch), over "
            f"max_memory={max_memory:,}; use chunk_size <= {max(1, max_memory // per_channel)}, "
            "chunk_size=None (the most that fit), a smaller batch_size or a larger max_memory"
        )
    return chunk


def _field_sum(
    centre: torch.Tensor,
    images: torch.Tensor,
    activation_bytes: int,
    *,
    channels: str,
    chunk_size: int | None,
    max_memory: int,
    name: str,
) -> torch.Tensor:
    """``(n, H, W)`` map of each of the batch's images (see the module's definition)."""
    if channels == "sum":
        (grad,) = torch.autograd.grad(centre.sum(), images, retain_graph=True)
        return grad.abs().sum(dim=1)
    n, width = centre.shape
    # The batched backward holds, per channel, one input gradient and gradients of the
    # activations on the way (estimated as eight copies of the tapped activation).
    per_channel = images.numel() * images.element_size() + 8 * activation_bytes
    chunk = _chunk_for(width, per_channel, chunk_size, max_memory, name)
    total = images.new_zeros(images.shape[:1] + images.shape[-2:])
    for start in range(0, width, chunk):
        stop = min(start + chunk, width)
        if stop - start == 1:  # the plain loop: one backward for this channel
            (grad,) = torch.autograd.grad(centre[:, start].sum(), images, retain_graph=True)
            total += grad.detach().abs().sum(dim=1)
            continue
        seeds = centre.new_zeros(stop - start, n, width)
        seeds[torch.arange(stop - start), :, torch.arange(start, stop)] = 1.0
        (grad,) = torch.autograd.grad(
            centre, images, grad_outputs=seeds, is_grads_batched=True, retain_graph=True
        )  # (chunk, n, colours, H, W)
        total += grad.detach().abs().sum(dim=(0, 2))
    return total / width


def _receptive_fields(
    model: nn.Module,
    data: ImageSource,
    requests: list[tuple[str, str, bool]],
    *,
    channels: str,
    chunk_size: int | None,
    max_memory: int,
    batch_size: int,
    device: str | torch.device,
    progress: bool,
) -> tuple[dict[str, torch.Tensor], int]:
    """Per-image ``(n, H, W)`` ERF maps for ``(key, hooked point, channels-first)``
    requests, from one stream, and the number of images."""
    _check_options(channels, chunk_size, max_memory)
    points = list(dict.fromkeys(point for _, point, _ in requests))
    parts: dict[str, list[torch.Tensor]] = {key: [] for key, _, _ in requests}

    def accumulate(images: torch.Tensor, stores: list[dict[str, torch.Tensor]]) -> None:
        store = stores[0]
        for key, point, channels_first in requests:
            value = store[point].transpose(1, 2) if channels_first else store[point]
            centre = centre_feature(model, value, key)
            field = _field_sum(
                centre,
                images,
                value.numel() * value.element_size(),
                channels=channels,
                chunk_size=chunk_size,
                max_memory=max_memory,
                name=key,
            )
            parts[key].append(field.double().cpu())

    seen = stream(
        Taps(model, points),
        data,
        accumulate,
        batch_size=batch_size,
        device=device,
        progress=progress,
        desc="receptive fields",
        gradients=True,
        shard=True,
    )
    return {key: torch.cat(gather_batches(chunks)) for key, chunks in parts.items()}, seen


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
    channels: Literal["abs_mean", "sum"] = "abs_mean",
    chunk_size: int | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
    per_image: bool = False,
) -> dict[str, torch.Tensor]:
    """Effective receptive field of each layer, as the paper defines it (module docstring).

    Serves Figure 6 (ViT vs. ResNet ERFs, after and before the residual connection) and
    Figures C.1-C.4 (see also :func:`sublayer_receptive_fields`).

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
        batch_size: images per forward pass (tensors and Datasets); the graph of one batch
            is kept until every layer's gradients are taken.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ...; the model is moved there.
        progress: show a progress bar.
        channels: ``"abs_mean"`` (the paper: mean over channels of ``|d f_c / d x|``) or
            ``"sum"`` (``|d sum_c f_c / d x|``, where channels can cancel; for comparison).
        chunk_size: channels per batched backward pass (``1``: a plain loop over
            channels); ``None`` takes the most that fit in ``max_memory``.
        max_memory: rough budget, in bytes, for one chunk's batched gradients; an explicit
            ``chunk_size`` over it is refused.
        per_image: return each image's field instead of their mean (for an interval over
            images: :func:`vitlens.book.verdicts.field_estimate`).

    Returns:
        ``{layer: (H, W) float64 map}`` on the CPU, over input pixels, in ``layers`` order;
        ``(n, H, W)``, one map per image in data order, with ``per_image``.

    Raises:
        ValueError: bad ``branch``, ``channels``, ``chunk_size`` or ``max_memory``; layers
            that are unknown, do not run, are not residual sums (``branch="pre"``) or are
            neither feature maps nor this model's tokens; no images.
    """
    if branch not in ("post", "pre"):
        raise ValueError(f"branch must be 'post' or 'pre', got {branch!r}")
    layers = list(layer_names(model, "blocks") if layers is None else layers)
    if not layers:
        raise ValueError("layers must name at least one layer")
    points = _hooked_points(model, layers, branch)
    resolve_layers(model, [point for point, _ in points])
    requests = [
        (name, point, channels_first)
        for name, (point, channels_first) in zip(layers, points, strict=True)
    ]
    maps, _ = _receptive_fields(
        model,
        data,
        requests,
        channels=channels,
        chunk_size=chunk_size,
        max_memory=max_memory,
        batch_size=batch_size,
        device=device,
        progress=progress,
    )
    return maps if per_image else {name: field.mean(0) for name, field in maps.items()}


@dataclass
class SublayerFields:
    """ERFs of every residual addition of a model, after and before the sum (Figs. C.1-C.4).

    Attributes:
        branches: the residual additions, in forward order (ViT: attention then MLP of each
            block; ResNet: one per block; Mixer: token then channel mixing).
        post: ``{branch.name: (H, W)}`` field of the sum ``z + f(z)`` (Figs. C.1-C.3).
        pre: ``{branch.name: (H, W)}`` field of the long branch ``f(z)`` alone (Fig. C.4).
        channels: the channel reduction (``"abs_mean"``: the paper's).
        num_images: images averaged over.
    """

    branches: list[ResidualBranch]
    post: dict[str, torch.Tensor]
    pre: dict[str, torch.Tensor]
    channels: str
    num_images: int

    def maps(self, which: Literal["post", "pre"], kind: str | None = None) -> dict:
        """``{layer: map}`` after (``"post"``) or before (``"pre"``) the residual sum,
        for branches of ``kind`` (e.g. ``"attention"``, ``"mlp"``, ``"conv"``) or all."""
        if which not in ("post", "pre"):
            raise ValueError(f"which must be 'post' or 'pre', got {which!r}")
        kinds = sorted({b.kind for b in self.branches})
        if kind is not None and kind not in kinds:
            raise ValueError(f"kind must be one of {kinds} for this model, got {kind!r}")
        fields = self.post if which == "post" else self.pre
        return {b.name: fields[b.name] for b in self.branches if kind is None or b.kind == kind}

    def areas(self, which: Literal["post", "pre"], mass: float = 0.5) -> dict[str, float]:
        """:func:`mass_area` of every field after or before the sum."""
        return {name: mass_area(field, mass) for name, field in self.maps(which).items()}


def sublayer_receptive_fields(
    model: nn.Module,
    data: ImageSource,
    *,
    kinds: Sequence[str] | None = None,
    batch_size: int = 16,
    device: str | torch.device = "auto",
    progress: bool = True,
    channels: Literal["abs_mean", "sum"] = "abs_mean",
    chunk_size: int | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
) -> SublayerFields:
    """ERFs after and before every residual addition of a model, from one stream (C.1-C.4).

    Args:
        model: a timm ViT, Mixer or ResNet (anything
            :func:`vitlens.analyses.residual.residual_branches` reads).
        data: ``(N, C, H, W)`` tensor, Dataset or DataLoader of preprocessed images.
        kinds: branch kinds to keep (e.g. ``["attention"]``; default: all).
        batch_size, device, progress, channels, chunk_size, max_memory: as for
            :func:`effective_receptive_field`.

    Returns:
        :class:`SublayerFields`.
    """
    branches = residual_branches(model)
    if kinds is not None:
        known = sorted({b.kind for b in branches})
        bad = [k for k in kinds if k not in known]
        if bad or not kinds:
            raise ValueError(f"kinds must be a non-empty subset of {known}, got {kinds}")
        branches = [b for b in branches if b.kind in kinds]
    requests = [(f"post:{b.name}", b.name, False) for b in branches] + [
        (f"pre:{b.name}", b.branch, b.branch_channels_first) for b in branches
    ]
    maps, seen = _receptive_fields(
        model,
        data,
        requests,
        channels=channels,
        chunk_size=chunk_size,
        max_memory=max_memory,
        batch_size=batch_size,
        device=device,
        progress=progress,
    )
    return SublayerFields(
        branches=branches,
        post={b.name: maps[f"post:{b.name}"].mean(0) for b in branches},
        pre={b.name: maps[f"pre:{b.name}"].mean(0) for b in branches},
        channels=channels,
        num_images=seen,
    )


def _checked_field(field: torch.Tensor) -> torch.Tensor:
    """``field`` as a float64 ``(H, W)`` tensor, refused unless finite, non-negative, non-zero."""
    field = torch.as_tensor(field, dtype=torch.float64)
    if field.ndim != 2:
        raise ValueError(f"field must be an (H, W) map, got shape {tuple(field.shape)}")
    if not torch.isfinite(field).all() or (field < 0).any():
        raise ValueError("field must be finite and non-negative")
    if field.sum() == 0:
        raise ValueError("field is zero everywhere: no receptive field to measure")
    return field


def centre_patch_share(field: torch.Tensor, patch_size: int) -> float:
    """Share of a receptive field's mass on the centre patch of the input (Figure 6).

    The centre patch is the ``patch_size`` square of grid cell ``(rows // 2, cols // 2)``,
    the input patch of the centre position the field was taken at (module docstring). A
    field spread evenly over the image gives the patch's area share, ``patch_size**2 /
    (H W)``; a field that is all on the centre token's own patch gives 1.

    Args:
        field: ``(H, W)`` non-negative map, ``H`` and ``W`` multiples of ``patch_size``.
        patch_size: side of a patch (a ViT's patch, a convolutional grid's stride) in pixels.

    Raises:
        ValueError: a map that is not 2-D, negative, non-finite or zero, or whose sides are
            not multiples of ``patch_size``.
    """
    if not (isinstance(patch_size, int) and patch_size >= 1):
        raise ValueError(f"patch_size must be a positive integer, got {patch_size!r}")
    field = _checked_field(field)
    height, width = field.shape
    if height % patch_size or width % patch_size:
        raise ValueError(f"a {height}x{width} field does not split into {patch_size}-px patches")
    row = height // patch_size // 2 * patch_size
    col = width // patch_size // 2 * patch_size
    return float(field[row : row + patch_size, col : col + patch_size].sum() / field.sum())


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
    field = _checked_field(field)
    total = field.sum()
    cumulative = field.flatten().sort(descending=True).values.cumsum(0)
    pixels = int(torch.searchsorted(cumulative, mass * total * (1 - 1e-12))) + 1
    return pixels / field.numel()
