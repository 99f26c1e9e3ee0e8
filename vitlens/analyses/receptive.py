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
gradient. ``chunk_size=1`` runs the plain loop over channels, one backward each: the
default on the CPU, where the batched backward was slower (32 channels of 16 images, one
thread: a ViT block 1.3x, a ResNet block at 16x16 1.9x the loop's time), and the most
channels that fit in ``max_memory`` on a GPU.

**Sampled channels (an estimator).** The exact field costs ``C`` backward passes per layer
(768 for a ViT-B block, per minibatch); on a student's GPU or a CPU, for a large model or
many images, that is most of the time. ``sample_channels=k`` (with ``seed``) averages over
``k`` channels drawn uniformly *without replacement* instead, once per layer before any
gradient is taken, the same channels for every image and minibatch: ``k`` backward passes
per layer instead of ``C`` (the forward passes are unchanged). The estimate is unbiased:
over the draws its mean is the exact field. :func:`sampled_receptive_field` also keeps each
sampled channel's map, averaged over the images (``k x H x W`` per layer), which gives the
estimate's uncertainty *over the channel draw* (not over images):
:attr:`SampledField.standard_error` per pixel, ``s / sqrt(k) * sqrt(1 - k / C)`` with
``s`` the standard deviation over the sampled channels (divisor ``k - 1``) and the
finite-population correction of sampling ``k`` of ``C`` (the same variance as
``sigma^2 / k * (C - k) / (C - 1)`` with ``sigma`` the divisor-``C`` spread of all ``C``
channels, which ``s`` does not estimate); :meth:`SampledField.estimate` a 95% interval
(Student's t, ``k - 1`` degrees of freedom) for a statistic of the field, such as
:func:`centre_patch_share`. ``k = C`` is the exact field, with no error. Use it for a first
look at a large model, or to choose where the exact field is worth its cost; the figures'
fields stay exact.
"""

from __future__ import annotations

import math
import numbers
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from vitlens.analyses.residual import ResidualBranch, residual_branches
from vitlens.core.stats import LEVEL, ONE_SEED, Estimate
from vitlens.models import layer_names, model_info, resolve_layers
from vitlens.streaming import (
    BatchRows,
    ImageSource,
    RunOptions,
    Taps,
    gather,
    gather_sum,
    stream,
)

__all__ = [
    "CHANNEL_REDUCTIONS",
    "SampledField",
    "SublayerFields",
    "centre_feature",
    "centre_patch_share",
    "centre_share_gain",
    "effective_receptive_field",
    "mass_area",
    "mass_area_gap",
    "sampled_field_estimate",
    "sampled_receptive_field",
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


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_sampling(sample_channels: int | None, seed: int, channels: str) -> None:
    """Refuse a bad ``sample_channels`` or ``seed`` before any work (``k <= C`` is checked
    per layer once its width is known, by :func:`_sample_channels`)."""
    if sample_channels is None:
        return
    if not _is_integer(sample_channels) or sample_channels < 1:
        raise ValueError(
            "sample_channels must be None (every channel: the exact field) or an integer "
            f">= 1, got {sample_channels!r}"
        )
    if not _is_integer(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if channels != "abs_mean":
        raise ValueError(
            "sample_channels samples the channels of the paper's reduction, "
            f"channels='abs_mean'; channels={channels!r} takes one backward per layer already"
        )


def _sample_channels(layer: str, num_channels: int, k: int, seed: int) -> torch.Tensor:
    """``(k,)`` int64 channel indices, sorted, drawn uniformly without replacement from
    ``range(num_channels)``; a function of ``(seed, layer)`` only, so a layer gets the same
    channels whichever other layers are requested and on every process."""
    if k > num_channels:
        raise ValueError(
            f"sample_channels={k} is more than layer {layer!r} has: C={num_channels} "
            f"channels; use an integer in [1, {num_channels}] for this layer (None: every "
            "channel, the exact field)"
        )
    rng = np.random.default_rng([int(seed), zlib.crc32(layer.encode())])
    return torch.from_numpy(np.sort(rng.choice(num_channels, size=int(k), replace=False))).long()


def _chunk_for(
    channels: int,
    per_channel: int,
    chunk_size: int | None,
    max_memory: int,
    name: str,
    device: torch.device,
) -> int:
    """Channels per batched backward: ``chunk_size`` (checked); by default 1 on the CPU
    (the plain loop: measured faster there, module docstring), elsewhere the most that
    fit."""
    if chunk_size is None:
        if device.type == "cpu":
            return 1
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
    index: torch.Tensor | None = None,
    per_channel: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(n, H, W)`` map of each of the batch's images (see the module's definition).

    ``index``: the ``(k,)`` channels to average over (default: all ``C``). ``per_channel``:
    a ``(k, H, W)`` tensor on the device to which each of those channels' maps, summed over
    the batch's images, is added.
    """
    if channels == "sum":
        (grad,) = torch.autograd.grad(centre.sum(), images, retain_graph=True)
        return grad.abs().sum(dim=1)
    n, width = centre.shape
    index = torch.arange(width) if index is None else index
    count = index.numel()
    # The batched backward holds, per channel, one input gradient and gradients of the
    # activations on the way (estimated as eight copies of the tapped activation).
    per_channel_bytes = images.numel() * images.element_size() + 8 * activation_bytes
    chunk = _chunk_for(count, per_channel_bytes, chunk_size, max_memory, name, images.device)
    total = images.new_zeros(images.shape[:1] + images.shape[-2:])
    for start in range(0, count, chunk):
        stop = min(start + chunk, count)
        if stop - start == 1:  # the plain loop: one backward for this channel
            channel = int(index[start])
            (grad,) = torch.autograd.grad(centre[:, channel].sum(), images, retain_graph=True)
            maps = grad.detach().abs().sum(dim=1)  # (n, H, W)
            total += maps
            if per_channel is not None:
                per_channel[start] += maps.sum(0)
            continue
        seeds = centre.new_zeros(stop - start, n, width)
        seeds[torch.arange(stop - start), :, index[start:stop].to(seeds.device)] = 1.0
        (grad,) = torch.autograd.grad(
            centre, images, grad_outputs=seeds, is_grads_batched=True, retain_graph=True
        )  # (chunk, n, colours, H, W)
        if per_channel is None:
            total += grad.detach().abs().sum(dim=(0, 2))
        else:
            maps = grad.detach().abs().sum(dim=2)  # (chunk, n, H, W)
            total += maps.sum(0)
            per_channel[start:stop] += maps.sum(1)
    return total / count


@dataclass
class _Sampled:
    """What one process saw of a sampled layer: channels, width and per-channel sums."""

    channels: torch.Tensor
    num_channels: int
    sums: torch.Tensor | None = None  # (k, H, W) float64 on the CPU, summed over images


def _receptive_fields(
    model: nn.Module,
    data: ImageSource,
    requests: list[tuple[str, str, bool]],
    run: RunOptions,
    *,
    channels: str,
    chunk_size: int | None,
    max_memory: int,
    sample_channels: int | None = None,
    seed: int = 0,
    keep_channels: bool = False,
) -> tuple[dict[str, torch.Tensor], int, dict[str, _Sampled]]:
    """Per-image ``(n, H, W)`` ERF maps for ``(key, hooked point, channels-first)``
    requests, from one stream, the number of images and, with ``sample_channels``, each
    layer's sampled channels (with ``keep_channels``, their maps summed over the images)."""
    _check_options(channels, chunk_size, max_memory)
    _check_sampling(sample_channels, seed, channels)
    points = list(dict.fromkeys(point for _, point, _ in requests))
    parts = {key: BatchRows.for_data(data) for key, _, _ in requests}
    sampled: dict[str, _Sampled] = {}

    def accumulate(images: torch.Tensor, stores: list[dict[str, torch.Tensor]]) -> None:
        store = stores[0]
        work = []
        for key, point, channels_first in requests:
            value = store[point].transpose(1, 2) if channels_first else store[point]
            centre = centre_feature(model, value, key)
            if sample_channels is not None and key not in sampled:
                # drawn at the first batch, before any backward: every layer's k <= C is
                # checked first, and every batch then uses the same channels
                sampled[key] = _Sampled(
                    _sample_channels(key, centre.shape[1], sample_channels, seed),
                    centre.shape[1],
                )
            work.append((key, centre, value.numel() * value.element_size()))
        for key, centre, activation_bytes in work:
            index = sampled[key].channels if key in sampled else None
            sums = (
                images.new_zeros((index.numel(), *images.shape[-2:]))
                if keep_channels and index is not None
                else None
            )
            field = _field_sum(
                centre,
                images,
                activation_bytes,
                channels=channels,
                chunk_size=chunk_size,
                max_memory=max_memory,
                name=key,
                index=index,
                per_channel=sums,
            )
            parts[key].add(field.double().cpu())
            if sums is not None:
                done = sampled[key].sums
                sampled[key].sums = sums.double().cpu() + (0 if done is None else done)

    seen = stream(
        Taps(model, points),
        data,
        accumulate,
        run=run,
        desc="receptive fields",
        gradients=True,
        shard=True,
    )
    maps = {key: rows.gathered() for key, rows in parts.items()}
    if sample_channels is None:
        return maps, seen, {}
    # every process drew the same channels; one that got no batch learns them from the others
    drawn = {key: (info.channels, info.num_channels) for key, info in sampled.items()}
    drawn = next(part for part in gather(drawn) if part)
    result = {}
    for key, (index, width) in drawn.items():
        mine = sampled[key].sums if key in sampled else None
        result[key] = _Sampled(index, width, gather_sum(mine) if keep_channels else None)
    return maps, seen, result


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


def _layer_requests(
    model: nn.Module, layers: Sequence[str] | None, branch: str
) -> list[tuple[str, str, bool]]:
    """``(layer, hooked point, channels-first)`` of each requested layer, checked."""
    if branch not in ("post", "pre"):
        raise ValueError(f"branch must be 'post' or 'pre', got {branch!r}")
    layers = list(layer_names(model, "blocks") if layers is None else layers)
    if not layers:
        raise ValueError("layers must name at least one layer")
    points = _hooked_points(model, layers, branch)
    resolve_layers(model, [point for point, _ in points])
    return [
        (name, point, channels_first)
        for name, (point, channels_first) in zip(layers, points, strict=True)
    ]


def effective_receptive_field(
    model: nn.Module,
    data: ImageSource,
    layers: Sequence[str] | None = None,
    *,
    branch: Literal["post", "pre"] = "post",
    run: RunOptions = RunOptions(batch_size=16),
    channels: Literal["abs_mean", "sum"] = "abs_mean",
    chunk_size: int | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
    per_image: bool = False,
    sample_channels: int | None = None,
    seed: int = 0,
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
            sum (see :func:`vitlens.models.branches.residual_branches`; ``layers`` must then be
            residual sums such as ``"blocks.3"`` or ``"blocks.3.residual1"``).
        run: batch size, device, progress (:class:`~vitlens.streaming.RunOptions`); the
            graph of one batch is kept until every layer's gradients are taken.
        channels: ``"abs_mean"`` (the paper: mean over channels of ``|d f_c / d x|``) or
            ``"sum"`` (``|d sum_c f_c / d x|``, where channels can cancel; for comparison).
        chunk_size: channels per batched backward pass (``1``: a plain loop over
            channels); ``None``: the plain loop on the CPU, elsewhere the most that fit in
            ``max_memory``.
        max_memory: rough budget, in bytes, for one chunk's batched gradients; an explicit
            ``chunk_size`` over it is refused.
        per_image: return each image's field instead of their mean (for an interval over
            images: :func:`vitlens.core.stats.field_estimate`).
        sample_channels: ``None`` (default) averages over all ``C`` channels: the exact
            field. An integer ``k`` in ``[1, C]`` (for every layer) averages over ``k``
            channels drawn uniformly without replacement, per layer, the same for every
            image: an unbiased estimate at ``k`` instead of ``C`` backward passes per layer
            (module docstring). For its uncertainty over the draw, use
            :func:`sampled_receptive_field` (same ``seed``: same channels, same map).
        seed: seeds the channel draw (a layer's channels depend on ``seed`` and its name
            only); ignored when ``sample_channels`` is ``None``.

    Returns:
        ``{layer: (H, W) float64 map}`` on the CPU, over input pixels, in ``layers`` order
        (units: input-pixel gradient magnitude, ``|feature|`` per unit of preprocessed pixel
        value, summed over colours); ``(n, H, W)``, one map per image in data order, with
        ``per_image``.

    Raises:
        ValueError: bad ``branch``, ``channels``, ``chunk_size`` or ``max_memory``; layers
            that are unknown, do not run, are not residual sums (``branch="pre"``) or are
            neither feature maps nor this model's tokens; no images; ``sample_channels``
            that is not an integer, is below 1, exceeds a layer's ``C`` (at the first
            minibatch, before any gradient) or comes with ``channels="sum"``; a negative or
            non-integer ``seed``.
    """
    requests = _layer_requests(model, layers, branch)
    options = {"channels": channels, "chunk_size": chunk_size, "max_memory": max_memory}
    maps, _, _ = _receptive_fields(
        model, data, requests, run, **options, sample_channels=sample_channels, seed=seed
    )
    return maps if per_image else {name: field.mean(0) for name, field in maps.items()}


def _t_coverage(t: float, df: int) -> float:
    """``P(|T| <= t)`` for Student's t with ``df`` degrees of freedom (Abramowitz and
    Stegun 26.7.3-4: a finite series for integer ``df``)."""
    theta = math.atan(t / math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    if df % 2:  # odd: (2 / pi) (theta + sin cos (1 + 2/3 cos^2 + 2 4 / (3 5) cos^4 ...))
        term, series = 1.0, 1.0 if df > 1 else 0.0
        for j in range(1, (df - 1) // 2):
            term *= cos2 * (2 * j) / (2 * j + 1)
            series += term
        return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * series)
    term, series = 1.0, 1.0  # even: sin (1 + 1/2 cos^2 + 1 3 / (2 4) cos^4 ...)
    for j in range(1, df // 2):
        term *= cos2 * (2 * j - 1) / (2 * j)
        series += term
    return math.sin(theta) * series


def _t_quantile(level: float, df: int) -> float:
    """``t`` with ``P(|T| <= t) = level`` for Student's t with ``df`` degrees of freedom
    (12.706 for ``df = 1``, 3.182 for 3, 2.045 for 29, 1.960 in the limit)."""
    low, high = 0.0, 1.0
    while _t_coverage(high, df) < level:
        high *= 2
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if _t_coverage(middle, df) < level else (low, middle)
    return (low + high) / 2


@dataclass
class SampledField:
    """One layer's effective receptive field estimated from ``k`` of its ``C`` channels.

    Made by :func:`sampled_receptive_field`. The channels are a uniform draw without
    replacement, so :attr:`field` is an unbiased estimate of the exact field (the mean over
    all ``C`` channels), and the spread of the sampled channels' maps estimates its error.
    The uncertainty is over the channel draw only: the images are taken as given (for
    the spread over images see :func:`vitlens.core.stats.field_estimate`).

    Attributes:
        layer: the layer's name.
        channels: ``(k,)`` int64, the sampled channel indices, ascending.
        num_channels: ``C``, the layer's width.
        per_channel: ``(k, H, W)`` float64, each sampled channel's map
            ``sum over colours |d f_c / d x|`` averaged over the images, in ``channels``
            order (units as :func:`effective_receptive_field`'s maps).
        num_images: images averaged over.
        seed: the seed of the draw.
        per_image: ``(n, H, W)`` float64, the estimate's map of each image (the mean over
            the sampled channels), in data order: its mean over images is :attr:`field`;
            ``None`` for a field assembled from per-channel maps alone.
    """

    layer: str
    channels: torch.Tensor
    num_channels: int
    per_channel: torch.Tensor
    num_images: int
    seed: int
    per_image: torch.Tensor | None = None

    @property
    def num_sampled(self) -> int:
        """``k``, the number of sampled channels."""
        return int(self.per_channel.shape[0])

    @property
    def field(self) -> torch.Tensor:
        """``(H, W)`` float64 estimate of the field: the mean of :attr:`per_channel`."""
        return self.per_channel.mean(0)

    @property
    def correction(self) -> float:
        """The finite-population correction ``1 - k / C`` of the variance: 0 at ``k = C``.

        With ``s^2`` the sample variance over the ``k`` channels (divisor ``k - 1``), an
        unbiased estimate of the channels' variance ``S^2`` (divisor ``C - 1``), the mean
        of ``k`` of ``C`` drawn without replacement has variance ``S^2 / k * (1 - k / C)``
        (equivalently ``sigma^2 / k * (C - k) / (C - 1)`` with ``sigma^2`` the divisor-``C``
        variance), estimated without bias by ``s^2 / k * (1 - k / C)``.
        """
        return 1.0 - self.num_sampled / self.num_channels

    @property
    def standard_error(self) -> torch.Tensor:
        """``(H, W)`` float64 standard error of :attr:`field`, per pixel, over the channel
        draw: ``s / sqrt(k) * sqrt(1 - k / C)`` (see :attr:`correction`); zero at ``k = C``,
        NaN at ``k = 1 < C`` (one channel has no spread)."""
        k = self.num_sampled
        if k == self.num_channels:
            return torch.zeros_like(self.field)
        if k == 1:
            return torch.full_like(self.field, float("nan"))
        return self.per_channel.std(0, correction=1) * math.sqrt(self.correction / k)

    def standard_error_of(self, statistic: Callable[[torch.Tensor], float]) -> float:
        """Standard error, over the channel draw, of ``statistic(field)``.

        The delete-one-channel jackknife, times ``sqrt(1 - k / C)``: for a statistic linear
        in the field (a pixel's value, the total mass, a weighted sum) it equals the
        per-pixel formula of :attr:`standard_error` exactly; for a smooth non-linear one (a
        ratio such as :func:`centre_patch_share`) it is the usual first-order estimate.
        Step-like statistics (:func:`mass_area`, a count of pixels over a threshold) are
        not smooth: there the jackknife is unreliable; bootstrap :attr:`per_channel`
        instead, or raise ``k``.

        Args:
            statistic: maps an ``(H, W)`` float64 field to a number.

        Returns:
            The standard error, in the statistic's units; 0 at ``k = C``.

        Raises:
            ValueError: with a single sampled channel (``k = 1 < C``): no spread to use.
        """
        k = self.num_sampled
        if k == self.num_channels:
            return 0.0
        if k == 1:
            raise ValueError(
                f"layer {self.layer!r}: one sampled channel has no spread; an error needs "
                "sample_channels >= 2"
            )
        total = self.per_channel.sum(0)
        leave_one_out = np.array(
            [float(statistic((total - one) / (k - 1))) for one in self.per_channel]
        )
        spread = ((leave_one_out - leave_one_out.mean()) ** 2).sum() * (k - 1) / k
        return float(math.sqrt(spread * self.correction))

    def estimate(self, statistic: Callable[[torch.Tensor], float] | None = None) -> Estimate:
        """``statistic(field)`` (default: the total mass ``field.sum()``) with a 95%
        interval over the channel draw: ``value +- t * SE``, ``SE`` from
        :meth:`standard_error_of` (finite-population corrected) and ``t`` the 97.5% point
        of Student's t with ``k - 1`` degrees of freedom (3.18 at ``k = 4``, 2.05 at
        ``k = 30``, the normal 1.96 as ``k`` grows).

        Student's t rather than the normal because ``SE`` itself is estimated from ``k``
        channels: with ``k = 4`` of 16 the normal ``+- 1.96 SE`` covered only 86-88% of all
        1820 possible draws on a test ViT, the t interval 94-98%. It is still an
        approximation: it assumes the statistic's spread over channels is not far from
        normal. Checked by ``tests/test_receptive.py`` for a pixel's value, the total mass and
        :func:`centre_patch_share`.

        Args:
            statistic: maps an ``(H, W)`` float64 field to a number (see
                :meth:`standard_error_of` for which ones the interval suits).

        Returns:
            :class:`vitlens.core.stats.Estimate`; a point (no error) at ``k = C``.

        Raises:
            ValueError: with ``k = 1 < C`` (no spread), or a non-finite statistic.
        """
        statistic = _total_mass if statistic is None else statistic
        value = float(statistic(self.field))
        k, width = self.num_sampled, self.num_channels
        if k == width:
            return Estimate.exact(value, f"exact: all {width} channels of {self.layer!r}")
        error = self.standard_error_of(statistic)  # refuses k = 1 first
        half = _t_quantile(LEVEL, k - 1) * error
        source = (
            f"Student-t interval over the channel draw: {k} of {width} channels of "
            f"{self.layer!r}, sampled without replacement (seed {self.seed}; "
            f"finite-population corrected); {self.num_images} images taken as given"
        )
        return Estimate(value, value - half, value + half, source)


def _total_mass(field: torch.Tensor) -> float:
    return float(field.sum())


def sampled_receptive_field(
    model: nn.Module,
    data: ImageSource,
    layers: Sequence[str] | None = None,
    *,
    sample_channels: int,
    seed: int = 0,
    branch: Literal["post", "pre"] = "post",
    run: RunOptions = RunOptions(batch_size=16),
    chunk_size: int | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
) -> dict[str, SampledField]:
    """Effective receptive fields from ``k`` sampled channels per layer, with their error.

    The estimator of the module docstring: per layer, ``k = sample_channels`` channels are
    drawn uniformly without replacement (the same for every image), and each one's map is
    averaged over the images. Costs ``k`` backward passes per layer and minibatch instead
    of ``C``, and ``k x H x W`` float64 numbers per layer of memory. ``result[layer].field``
    is the map ``effective_receptive_field(..., sample_channels=k, seed=seed)`` returns.

    Args:
        model, data, layers, branch, run, chunk_size, max_memory: as for
            :func:`effective_receptive_field` (``channels`` is the paper's ``"abs_mean"``).
        sample_channels: ``k``, an integer in ``[1, C]`` for every requested layer
            (``k = C``: every channel, the exact field with zero error; ``k >= 2`` for an
            error estimate).
        seed: seeds the draw; a layer's channels depend on ``seed`` and its name only.

    Returns:
        ``{layer: SampledField}`` in ``layers`` order.

    Raises:
        ValueError: as :func:`effective_receptive_field`; in particular ``sample_channels``
            that is not an integer, is below 1, or exceeds some layer's ``C`` (the message
            names the layer, its ``C`` and the valid range).
    """
    if sample_channels is None:
        raise ValueError(
            "sample_channels must be an integer >= 1 here; for the exact field use "
            "effective_receptive_field (or sample_channels=C)"
        )
    requests = _layer_requests(model, layers, branch)
    maps, seen, sampled = _receptive_fields(
        model,
        data,
        requests,
        run,
        channels="abs_mean",
        chunk_size=chunk_size,
        max_memory=max_memory,
        sample_channels=sample_channels,
        seed=seed,
        keep_channels=True,
    )
    return {
        name: SampledField(
            layer=name,
            channels=info.channels,
            num_channels=info.num_channels,
            per_channel=info.sums / seen,
            num_images=seen,
            seed=seed,
            per_image=maps[name],
        )
        for name, info in sampled.items()
    }


SOURCES = ("images", "channels")
"""What :func:`sampled_field_estimate` can resample: the images the fields average over,
and each field's draw of channels."""


def sampled_field_estimate(
    statistic: Callable[..., float],
    *fields: SampledField,
    over: Sequence[str] = SOURCES,
    replicates: int = 1000,
    seed: int = 0,
    note: str = ONE_SEED,
) -> Estimate:
    """``statistic(*fields)`` with a 95% interval over the images and the channel draw.

    The interval for a statistic of sampled fields (:func:`sampled_receptive_field`), e.g.
    the difference of two layers' :func:`mass_area`. Two sources of error, resampled
    separately and added:

    * **images**: the fields' ``n`` images resampled with replacement, the same images
      in every field (they were measured on the same images), as
      :func:`vitlens.core.stats.field_estimate` does with exact fields;
    * **channels**: each field's ``k`` sampled channels resampled with replacement,
      independently per field (each layer drew its own), every deviation scaled by
      ``sqrt(1 - k / C)``, the finite-population correction of drawing ``k`` of ``C``
      without replacement (:attr:`SampledField.correction`); nothing at ``k = C``.

    Replicate ``b`` is ``value + (images_b - value) + (channels_b - value)``: to first
    order the two errors are independent and their variances add. A bootstrap, not the
    channel jackknife of :meth:`SampledField.estimate`, so that step-like statistics such
    as :func:`mass_area` are covered too. A bootstrap cannot see spread it did not draw:
    with few channels its channel part is too narrow (over 200 draws of 4 of 16 channels
    of a test ViT, it covered the exact total mass in 75 % of them; see
    ``tests/test_receptive.py``), so draw a few dozen (the chapters draw 32).

    Args:
        statistic: maps one ``(H, W)`` float64 field per input (same order) to a number.
        fields: :class:`SampledField` results over the same images.
        over: the sources to resample, a non-empty subset of ``SOURCES`` (``"images"``,
            ``"channels"``): both (the default) for a verdict; one of them to show each
            source's share.
        replicates: of the bootstrap, like ``seed``.
        note: what the interval does not cover, appended to the source.

    Returns:
        :class:`vitlens.core.stats.Estimate` (percentile interval of the replicates).

    Raises:
        ValueError: no fields, fields over different numbers of images, a bad ``over``,
            or ``"images"`` in ``over`` for a field without :attr:`SampledField.per_image`.
    """
    if not fields:
        raise ValueError("sampled_field_estimate needs at least one SampledField")
    if not over or any(source not in SOURCES for source in over):
        raise ValueError(f"over must be a non-empty subset of {SOURCES}, got {over!r}")
    counts = {field.num_images for field in fields}
    if len(counts) != 1:
        raise ValueError(
            f"the fields were measured on different numbers of images {sorted(counts)}; "
            "an image bootstrap needs the same images in every field"
        )
    n = counts.pop()
    if "images" in over and any(field.per_image is None for field in fields):
        raise ValueError(
            "resampling the images needs each field's per-image maps (per_image), which "
            "sampled_receptive_field keeps; over=('channels',) needs only per_channel"
        )
    rng = np.random.default_rng(seed)
    value = float(statistic(*(field.field for field in fields)))
    replicate = np.full(replicates, value)
    sources = []
    if "images" in over:
        draws = rng.integers(0, n, size=(replicates, n))  # the same images in every field
        stacks = [field.per_image for field in fields]
        replicate += _resampled_statistic(statistic, stacks, [draws] * len(fields), value)
        sources.append(f"{n} images (the same in every field)")
    if "channels" in over:
        draws = [rng.integers(0, f.num_sampled, size=(replicates, f.num_sampled)) for f in fields]
        # each field moved by its own channel resample, shrunk by its correction
        stacks = [f.field + math.sqrt(f.correction) * (f.per_channel - f.field) for f in fields]
        replicate += _resampled_statistic(statistic, stacks, draws, value)
        drawn = ", ".join(sorted({f"{f.num_sampled} of {f.num_channels}" for f in fields}))
        sources.append(f"the channel draw ({drawn} channels, finite-population corrected)")
    source = "bootstrap over " + " and ".join(sources) + (f"; {note}" if note else "")
    return Estimate.from_replicates(value, replicate, source)


def _resampled_statistic(
    statistic: Callable[..., float],
    stacks: list[torch.Tensor],
    draws: list[np.ndarray],
    value: float,
    chunk: int = 64,
) -> np.ndarray:
    """``(R,)`` deviations ``statistic(*resampled means) - value``, one per replicate.

    ``stacks[i]`` is an ``(m, H, W)`` stack and ``draws[i]`` its ``(R, m)`` resampled
    indices; each replicate's mean of the resampled maps is one matrix product of how often
    the replicate drew each map with the flattened stack, ``chunk`` replicates at a time
    (memory: ``chunk x H x W`` numbers per stack)."""
    total = len(draws[0])
    out = np.empty(total)
    flat = [stack.reshape(len(stack), -1) for stack in stacks]
    for start in range(0, total, chunk):
        means = []
        for maps, drawn in zip(flat, draws, strict=True):
            picks = torch.from_numpy(drawn[start : start + chunk])
            counts = torch.zeros(len(picks), len(maps), dtype=maps.dtype)
            counts.scatter_add_(1, picks, torch.ones_like(picks, dtype=maps.dtype))
            means.append((counts @ maps / picks.shape[1]).reshape(-1, *stacks[0].shape[1:]))
        for b, fields in enumerate(zip(*means, strict=True)):
            out[start + b] = statistic(*fields) - value
    return out


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
        sample_channels: channels each field averages over when they were sampled
            (``None``: every channel, the exact fields).
    """

    branches: list[ResidualBranch]
    post: dict[str, torch.Tensor]
    pre: dict[str, torch.Tensor]
    channels: str
    num_images: int
    sample_channels: int | None = None

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
    run: RunOptions = RunOptions(batch_size=16),
    channels: Literal["abs_mean", "sum"] = "abs_mean",
    chunk_size: int | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
    sample_channels: int | None = None,
    seed: int = 0,
) -> SublayerFields:
    """ERFs after and before every residual addition of a model, from one stream (C.1-C.4).

    Args:
        model: a timm ViT, Mixer or ResNet (anything
            :func:`vitlens.models.branches.residual_branches` reads).
        data: ``(N, C, H, W)`` tensor, Dataset or DataLoader of preprocessed images.
        kinds: branch kinds to keep (e.g. ``["attention"]``; default: all).
        run: batch size, device, progress (:class:`~vitlens.streaming.RunOptions`).
        channels: as for :func:`effective_receptive_field`, like ``chunk_size``,
            ``max_memory``, ``sample_channels`` and ``seed`` (with ``sample_channels``,
            each field is the estimate from that many channels of its point, drawn per
            point).

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
    options = {"channels": channels, "chunk_size": chunk_size, "max_memory": max_memory}
    maps, seen, _ = _receptive_fields(
        model, data, requests, run, **options, sample_channels=sample_channels, seed=seed
    )
    return SublayerFields(
        branches=branches,
        post={b.name: maps[f"post:{b.name}"].mean(0) for b in branches},
        pre={b.name: maps[f"pre:{b.name}"].mean(0) for b in branches},
        channels=channels,
        num_images=seen,
        sample_channels=sample_channels,
    )


def _checked_field(field: torch.Tensor | np.ndarray) -> np.ndarray:
    """``field`` as a float64 ``(H, W)`` array, refused unless finite, non-negative, non-zero.

    NumPy, not torch: these statistics run once per bootstrap replicate on small maps,
    where a tensor's per-call overhead would be most of the cost."""
    field = np.asarray(field, dtype=np.float64)
    if field.ndim != 2:
        raise ValueError(f"field must be an (H, W) map, got shape {tuple(field.shape)}")
    if not np.isfinite(field).all() or (field < 0).any():
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
    cumulative = np.cumsum(np.sort(field, axis=None)[::-1])
    pixels = int(np.searchsorted(cumulative, mass * field.sum() * (1 - 1e-12))) + 1
    return pixels / field.size


def centre_share_gain(
    after: Sequence[torch.Tensor], before: Sequence[torch.Tensor], patch_size: int
) -> float:
    """Mean :func:`centre_patch_share` of the fields ``after`` a set of residual sums minus
    the mean of the fields ``before`` them (Figure C.4: the sum's skip connection puts the
    centre patch back into later representations whose branch reads the whole image).

    Args:
        after, before: ``(H, W)`` fields, one per sublayer in each (same sublayers).
        patch_size: as for :func:`centre_patch_share`.

    Raises:
        ValueError: empty or unequal lists, or fields :func:`centre_patch_share` refuses.
    """
    if not after or len(after) != len(before):
        raise ValueError(
            f"need the same sublayers after and before the sum, got {len(after)} and "
            f"{len(before)} fields"
        )
    share = [[centre_patch_share(field, patch_size) for field in side] for side in (after, before)]
    return float(np.mean(share[0]) - np.mean(share[1]))


def mass_area_gap(field: torch.Tensor, other: torch.Tensor, mass: float = 0.5) -> float:
    """``mass_area(field) - mass_area(other)``: how much more of the image ``field``
    needs to hold ``mass`` of its total than ``other`` does, as a share of the pixels
    (Figure 6's "larger"; positive when ``field`` is the wider one).

    Args:
        field, other: ``(H, W)`` non-negative maps over the same input pixels.
        mass: as for :func:`mass_area`.

    Raises:
        ValueError: as :func:`mass_area`, or maps of different shapes.
    """
    if field.shape != other.shape:
        raise ValueError(
            f"the two fields cover different inputs: {tuple(field.shape)} and {tuple(other.shape)}"
        )
    return mass_area(field, mass) - mass_area(other, mass)
