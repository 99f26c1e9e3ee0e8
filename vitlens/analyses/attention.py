"""Attention weights and mean attention distance (paper Figures 3, 4, 5, C.5, C.6).

The *mean attention distance* of a head is how far, in input pixels, a patch looks on
average: for each query patch, the attention weights times the Euclidean distance between
the centres of the query patch and each key patch, summed over keys; then averaged over
query patches and over images.

Class-token rule: prefix tokens (class or register tokens) have no position in the image,
so they are left out on both sides. Rows of the class token (as a query) are dropped; the
weights a patch query puts on prefix keys are dropped too and the remaining weights over
patch keys are renormalised to sum to 1, so the distance is the expected distance to the
patches a head attends to (a head attending only to the class token does not look
"local"). Without prefix tokens (global-average-pool ViTs) nothing is dropped.

timm's ``Attention`` computes ``softmax(q k^T / sqrt(d))`` inside fused
``scaled_dot_product_attention`` by default, which never materialises the weights.
:func:`unfused_attention` switches the probed modules to timm's explicit path, where the
weights pass through ``attn.attn_drop`` (an identity in eval mode), and restores the flag.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vitlens.analyses.compare import LayerGrams, lower_half_of
from vitlens.core.cka import (
    BatchBootstrap,
    MinibatchCKA,
    UCenteredGram,
    center_gram,
    grouped_centered_grams,
)
from vitlens.models import layer_names, model_info, resolve_layers
from vitlens.streaming import (
    ImageSource,
    RunOptions,
    Taps,
    gather_batches,
    gather_sum,
    process_shard,
    stream,
)

__all__ = [
    "LOCAL_THRESHOLD",
    "HeadSubsetCKA",
    "attention_distance",
    "count_local_heads",
    "head_subset_cka",
    "local_heads",
    "local_heads_px",
    "local_threshold_px",
    "lowest_mixed_block",
    "mean_attention_distance",
    "patch_distances",
    "query_attention",
    "relative_attention_distance",
    "subset_cka",
    "unfused_attention",
    "uniform_attention_distance",
]


def _vit_blocks(model: nn.Module, blocks: Sequence[int] | None) -> list[int]:
    """Validated block indices of a ViT whose blocks have timm ``Attention`` modules."""
    family = model_info(model).family
    if family != "vit":
        raise ValueError(
            f"attention analyses need a ViT; got a {family} model ({type(model).__name__}), "
            "which has no attention weights"
        )
    depth = len(model.blocks)
    chosen = list(range(depth)) if blocks is None else list(blocks)
    bad = [b for b in chosen if not (isinstance(b, int) and 0 <= b < depth)]
    if bad or not chosen:
        raise ValueError(
            f"blocks must be a non-empty list of indices in 0..{depth - 1}, got {blocks}"
        )
    for b in chosen:
        attn = model.blocks[b].attn
        if not (
            hasattr(attn, "fused_attn") and isinstance(getattr(attn, "attn_drop", None), nn.Module)
        ):
            raise ValueError(
                f"blocks.{b}.attn is a {type(attn).__name__}; vitlens reads attention weights "
                "from timm's Attention (with fused_attn and attn_drop)"
            )
    return chosen


@contextmanager
def unfused_attention(model: nn.Module, blocks: Sequence[int] | None = None) -> Iterator[list[str]]:
    """Turn off fused attention on the given ViT blocks; restore each flag on exit.

    Yields:
        The layer names (``"blocks.i.attn.attn_drop"``) whose output, in eval mode, is the
        ``(n, heads, T, T)`` softmax attention of block ``i`` (rows: queries, columns: keys).

    The flags are restored even when the body raises.
    """
    chosen = _vit_blocks(model, blocks)
    modules = [model.blocks[b].attn for b in chosen]
    flags = [m.fused_attn for m in modules]
    try:
        for m in modules:
            m.fused_attn = False
        yield [f"blocks.{b}.attn.attn_drop" for b in chosen]
    finally:
        for m, flag in zip(modules, flags, strict=True):
            m.fused_attn = flag


def patch_distances(grid: tuple[int, int], patch_size: int) -> torch.Tensor:
    """``(P, P)`` Euclidean distances in pixels between patch centres, row-major patches.

    Args:
        grid: ``(rows, cols)`` of the patch grid, ``P = rows * cols``.
        patch_size: patch side in pixels.
    """
    rows, cols = grid
    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    centres = torch.stack([r.flatten(), c.flatten()], dim=1).double() * patch_size
    return torch.cdist(centres, centres)


def attention_distance(
    weights: torch.Tensor, grid: tuple[int, int], patch_size: int, num_prefix_tokens: int = 0
) -> torch.Tensor:
    """Mean attention distance of each head on each image, in pixels.

    Args:
        weights: ``(n, heads, T, T)`` attention (rows: queries, columns: keys, rows sum to
            1) with ``T = num_prefix_tokens + rows * cols``, prefix tokens first.
        grid: patch grid ``(rows, cols)``.
        patch_size: patch side in pixels.
        num_prefix_tokens: class/register tokens (see the module's class-token rule).

    Returns:
        ``(n, heads)`` float64 distances in pixels, averaged over query patches; NaN where
        a query puts all of its weight (to float precision) on prefix tokens.
    """
    patches = grid[0] * grid[1]
    if weights.dim() != 4 or weights.shape[-1] != weights.shape[-2]:
        raise ValueError(f"weights must have shape (n, heads, T, T), got {tuple(weights.shape)}")
    if weights.shape[-1] != num_prefix_tokens + patches:
        raise ValueError(
            f"weights have {weights.shape[-1]} tokens but the grid {grid} with "
            f"{num_prefix_tokens} prefix token(s) makes {num_prefix_tokens + patches}"
        )
    on_patches = weights[..., num_prefix_tokens:, num_prefix_tokens:].double()
    distances = patch_distances(grid, patch_size).to(on_patches.device)
    weighted = (on_patches * distances).sum(-1) / on_patches.sum(-1)
    return weighted.mean(-1)


def _per_head_distance_sums(model: nn.Module):
    """The transform turning a ``(n, heads, T, T)`` attention into per-head sums over images."""
    info = model_info(model)

    def per_head_sum(weights: torch.Tensor) -> torch.Tensor:
        return attention_distance(weights, info.grid, info.patch_size, info.num_prefix_tokens).sum(
            0
        )

    return per_head_sum


def mean_attention_distance(
    model: nn.Module,
    data: ImageSource,
    *,
    blocks: Sequence[int] | None = None,
    run: RunOptions = RunOptions(),
) -> torch.Tensor:
    """Mean attention distance of every head of every block, in pixels (Figures 3, 4, C.5, C.6).

    Each attention map is reduced to per-head distances inside its hook, so memory holds
    one block's ``(n, heads, T, T)`` weights at a time.

    Args:
        model: a timm VisionTransformer (class token or global average pooling).
        data: ``(N, C, H, W)`` tensor, Dataset or DataLoader of preprocessed images.
        blocks: block indices (default: all).
        run: batch size, device, progress (:class:`~vitlens.streaming.RunOptions`).

    Returns:
        ``(blocks, heads)`` float64 tensor on the CPU: distances in pixels averaged over
        query patches, then over images (see the module's class-token rule).
    """
    totals = []

    def accumulate(_images: torch.Tensor, stores: list[dict[str, torch.Tensor]]) -> None:
        totals.append(torch.stack([stores[0][name] for name in layers]).cpu())

    with unfused_attention(model, blocks) as layers:
        taps = Taps(model, layers, _per_head_distance_sums(model))
        seen = stream(taps, data, accumulate, run=run, desc="attention distance", shard=True)
    return gather_sum(torch.stack(totals).sum(0) if totals else None) / seen


# --------------------------------------------------------------------- head subsets (Fig. 5)


@dataclass
class HeadSubsetCKA(BatchBootstrap):
    """CKA between subsets of one ViT block's heads and a second model's layers (Figure 5).

    Attributes:
        matrix: ``(subsets, layers)`` float64 minibatch CKA.
        heads: ``(subsets, k)`` head indices of each subset, from most local to most global.
        distances: ``(heads,)`` mean attention distance of every head of the block, in pixels.
        block: the ViT block the heads belong to.
        layers: the other model's layer names (columns).
        batch_size: images per minibatch (the estimator's unit; 0 if unknown).
        batch_terms: ``(cross (B, subsets, layers), self_a (B, subsets), self_b (B, layers))``
            per-batch HSIC sums, for ``bootstrap`` (from
            :class:`vitlens.core.cka.BatchBootstrap`); ``None`` if unknown.
    """

    matrix: torch.Tensor
    heads: torch.Tensor
    distances: torch.Tensor
    block: int
    layers: list[str]
    batch_size: int = 0
    batch_terms: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


def _head_grams(outputs: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``(n, T, heads * d)`` per-head attention outputs to ``(heads, n, n)`` linear Grams."""
    n, tokens, width = outputs.shape
    per_head = outputs.reshape(n, tokens, num_heads, width // num_heads).permute(2, 0, 1, 3)
    return grouped_centered_grams(per_head.reshape(num_heads, n, -1))


def subset_cka(
    head_grams: Sequence[torch.Tensor],
    other_grams: Sequence[torch.Tensor],
    head_distances: torch.Tensor,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minibatch CKA between sliding windows of ``k`` heads, ordered by distance, and layers.

    Args:
        head_grams: per batch, ``(heads, n, n)`` linear Grams of each head's output.
        other_grams: per batch, ``(layers, n, n)`` U-centred Grams of the other model.
        head_distances: ``(heads,)`` mean attention distance of each head (pixels).
        k: heads per subset.

    Returns:
        ``(subsets, matrix, batch_terms)``: ``(heads - k + 1, k)`` head indices, most local
        window first; the ``(heads - k + 1, layers)`` float64 CKA; and the per-batch HSIC
        terms (:meth:`vitlens.MinibatchCKA.stacked_batch_terms`). A subset's Gram
        is the sum of its heads' Grams (their outputs are concatenated), so all subsets come
        from one product with a 0/1 membership matrix.
    """
    num_heads = head_distances.shape[0]
    subsets = torch.argsort(head_distances).unfold(0, k, 1)  # (subsets, k), most local first
    membership = torch.zeros(subsets.shape[0], num_heads, dtype=torch.float64)
    membership.scatter_(1, subsets, 1.0)
    estimator = MinibatchCKA()
    for grams, grams_b in zip(head_grams, other_grams, strict=True):
        subset_grams = torch.einsum("sh,hij->sij", membership, grams.double())
        estimator.update_centered_grams(center_gram(subset_grams, unbiased=True), grams_b)
    return subsets, estimator.compute(), estimator.stacked_batch_terms()


def head_subset_cka(
    vit: nn.Module,
    other: nn.Module | LayerGrams,
    data: ImageSource,
    *,
    block: int = 0,
    heads_per_subset: int | None = None,
    layers: Sequence[str] | None = None,
    run: RunOptions = RunOptions(),
) -> HeadSubsetCKA:
    """CKA between windows of ``k`` heads of one ViT block, sorted by distance, and ``other``.

    The block's heads are ordered by mean attention distance (measured on the same data,
    in the same pass); subset ``j`` is the ``j``-th to ``(j + k - 1)``-th most local heads,
    represented by their attention outputs (before the output projection, the input of
    ``attn.proj``, flattened over tokens). A subset's linear Gram is the sum of its heads'
    Grams, so all subsets come from one ``(heads, n, n)`` stack. The paper (Figure 5) finds
    the most local heads of early blocks closest to a ResNet's lower layers.

    The per-batch U-centred Grams are kept until the heads can be ordered, after the last
    batch: ``batches x (heads + layers) x batch_size^2`` float64 numbers on the CPU.

    Args:
        vit: a timm VisionTransformer.
        other: the model to compare with (e.g. a ResNet), fed the same images; or its
            :class:`~vitlens.analyses.compare.LayerGrams` of ``data`` at ``run``'s batch
            size (:func:`~vitlens.layer_grams`), which spares its forward pass where several
            ViTs or blocks are compared with one model (each batch checked to be the
            Grams' own).
        data: ``(N, C, H, W)`` tensor, Dataset or DataLoader; every batch needs > 3 images.
        block: ViT block whose heads are split.
        heads_per_subset: ``k`` (default: a quarter of the heads, at least 1).
        layers: layer names of ``other`` (default: the lower half of its blocks,
            ``lower_half_of``; of Grams, every layer they hold).
        run: batch size, device, progress (:class:`~vitlens.streaming.RunOptions`).

    Returns:
        :class:`HeadSubsetCKA` with the ``(heads - k + 1, layers)`` matrix.
    """
    (block,) = _vit_blocks(vit, [block])
    num_heads = vit.blocks[block].attn.num_heads
    k = max(1, num_heads // 4) if heads_per_subset is None else heads_per_subset
    if not (isinstance(k, int) and 1 <= k <= num_heads):
        raise ValueError(f"heads_per_subset must be an integer in 1..{num_heads}, got {k!r}")
    given = isinstance(other, LayerGrams)
    if given:
        layers = list(other.layers if layers is None else layers)
        kept = other.select(layers)  # refuses layers the Grams do not hold
        if other.batch_size != run.batch_size:
            raise ValueError(
                f"the Grams were computed in batches of {other.batch_size}, this run streams "
                f"batches of {run.batch_size}; use the same batch size"
            )
    else:
        layers = list(lower_half_of(layer_names(other, "blocks")) if layers is None else layers)
        resolve_layers(other, layers)
    head_outputs = f"blocks.{block}.attn.norm"
    resolve_layers(vit, [head_outputs])
    distance_sums, head_grams, other_grams = [], [], []
    rank, world = process_shard()

    def collect(images: torch.Tensor, stores: list[dict[str, torch.Tensor]]) -> None:
        vit_store = stores[0]
        distance_sums.append(vit_store[weights_layer].cpu())
        head_grams.append(_head_grams(vit_store[head_outputs], num_heads).cpu())
        if given:  # batch i of this process is batch i * world + rank of the data
            index = (len(head_grams) - 1) * world + rank
            other.check_batch(index, images)
            other_grams.append(kept[index])
        else:
            other_grams.append(torch.stack([stores[1][name] for name in layers]).cpu())

    with unfused_attention(vit, [block]) as (weights_layer,):
        distances = _per_head_distance_sums(vit)
        taps = [Taps(vit, [weights_layer, head_outputs], {weights_layer: distances})]
        if not given:
            taps.append(Taps(other, layers, UCenteredGram()))
        seen = stream(taps, data, collect, run=run, desc="head subsets", min_batch=4, shard=True)
    batches = gather_sum(len(head_grams))
    if given and batches != len(other.grams):
        raise ValueError(f"the data has {batches} batches, the Grams {len(other.grams)}")
    head_distances = gather_sum(torch.stack(distance_sums).sum(0) if distance_sums else None) / seen
    subsets, matrix, terms = subset_cka(
        gather_batches(head_grams), gather_batches(other_grams), head_distances, k
    )
    return HeadSubsetCKA(
        matrix=matrix,
        batch_size=run.batch_size,
        batch_terms=terms,
        heads=subsets,
        distances=head_distances,
        block=block,
        layers=layers,
    )


# ------------------------------------------------------------- local heads (Section 5 study)

LOCAL_THRESHOLD = 0.5
"""A head is *local* when its mean attention distance is under this fraction of uniform
attention's (:func:`uniform_attention_distance`)."""


def uniform_attention_distance(grid: tuple[int, int], patch_size: int) -> float:
    """Mean attention distance, in pixels, of a head attending uniformly to every patch.

    The reference a distance is divided by in :func:`relative_attention_distance`: the mean
    over query patches of the mean distance to all patches (16.5 px on an 8x8 grid of 4 px
    patches).
    """
    return float(patch_distances(grid, patch_size).mean())


def local_threshold_px(model: nn.Module) -> float:
    """The distance in pixels under which a head of ``model`` is local:
    :data:`LOCAL_THRESHOLD` times :func:`uniform_attention_distance` on its patch grid."""
    info = model_info(model)
    return LOCAL_THRESHOLD * uniform_attention_distance(info.grid, info.patch_size)


def local_heads_px(distances: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Boolean ``(blocks, heads)`` mask of the local heads of ``model``, from its mean
    attention distances in pixels (:func:`mean_attention_distance`): under
    :func:`local_threshold_px`."""
    return distances < local_threshold_px(model)


def lowest_mixed_block(local: Sequence[torch.Tensor]) -> int | None:
    """The lowest block where every model has both a local and a global head, or ``None``.

    Figure 5 splits one early block's heads from most local to most global; its premise is a
    block that has both kinds. Chosen from the local-head masks alone, before any similarity
    is computed, and over every training seed at once, so one block serves all of them.

    Args:
        local: one boolean ``(blocks, heads)`` mask per model (:func:`local_heads_px`), all
            with the same number of blocks.

    Raises:
        ValueError: no masks, or masks that are not 2-D boolean with the same block count.
    """
    if not local:
        raise ValueError("lowest_mixed_block needs at least one local-head mask")
    if any(m.dim() != 2 or m.dtype != torch.bool for m in local):
        raise ValueError("local-head masks must be boolean (blocks, heads) tensors")
    if len({m.shape[0] for m in local}) != 1:
        raise ValueError(f"masks have different block counts: {[m.shape[0] for m in local]}")
    mixed = torch.stack([m.any(dim=1) & ~m.all(dim=1) for m in local]).all(dim=0)
    blocks = torch.nonzero(mixed).flatten()
    return int(blocks[0]) if len(blocks) else None


def relative_attention_distance(model: nn.Module, data: ImageSource, **kwargs) -> torch.Tensor:
    """:func:`mean_attention_distance` divided by uniform attention's distance.

    Takes the same arguments; returns a ``(blocks, heads)`` float64 tensor where 1 means
    "as far as uniform attention" and values under :data:`LOCAL_THRESHOLD` mark local heads.
    """
    info = model_info(model)
    return mean_attention_distance(model, data, **kwargs) / uniform_attention_distance(
        info.grid, info.patch_size
    )


def local_heads(relative: torch.Tensor, threshold: float = LOCAL_THRESHOLD) -> torch.Tensor:
    """Boolean ``(blocks, heads)`` mask of heads whose relative distance is under ``threshold``.

    Raises:
        ValueError: if ``relative`` is not 2-D or holds NaN (a head that attends only to
            prefix tokens has no distance; decide about it explicitly).
    """
    if relative.dim() != 2:
        raise ValueError(f"relative distances must be (blocks, heads), got {tuple(relative.shape)}")
    if torch.isnan(relative).any():
        raise ValueError("relative distances hold NaN (heads attending only to prefix tokens)")
    return relative < threshold


def count_local_heads(
    relative: torch.Tensor,
    *,
    blocks: Sequence[int] | None = None,
    threshold: float = LOCAL_THRESHOLD,
) -> int:
    """Number of local heads among ``blocks`` (rows of ``relative``; default: all rows).

    ``blocks=range(depth // 2)`` counts the lower half of a ViT, the paper's Section 5 region.
    """
    mask = local_heads(relative, threshold)
    rows = list(range(mask.shape[0])) if blocks is None else list(blocks)
    if any(not 0 <= b < mask.shape[0] for b in rows):
        raise ValueError(f"blocks {rows} out of range for {mask.shape[0]} rows")
    return int(mask[rows].sum())


def query_attention(
    model: nn.Module,
    images: torch.Tensor,
    *,
    block: int,
    query: tuple[int, int] | None = None,
    device: str | torch.device = "auto",
) -> torch.Tensor:
    """Where one query patch looks: each head's attention over the patch grid.

    Args:
        model: a timm VisionTransformer.
        images: ``(n, C, H, W)`` preprocessed images.
        block: the block whose attention is read.
        query: ``(row, col)`` of the query patch (default: the patch at the grid's centre,
            ``(rows // 2, cols // 2)``).
        device: where the forward pass runs.

    Returns:
        ``(n, heads, rows, cols)`` float64 weights on the CPU, summing to 1 over the grid:
        prefix keys are dropped and the rest renormalised (the module's class-token rule),
        so this is the map whose expected distance :func:`attention_distance` averages.
    """
    info = model_info(model)
    rows, cols = info.grid
    r, c = query if query is not None else (rows // 2, cols // 2)
    if not (0 <= r < rows and 0 <= c < cols):
        raise ValueError(f"query {(r, c)} is outside the {rows}x{cols} patch grid")
    prefix = info.num_prefix_tokens
    rows_of_query = []

    def keep(_images: torch.Tensor, stores: list[dict[str, torch.Tensor]]) -> None:
        weights = stores[0][layer]  # (n, heads, T, T)
        rows_of_query.append(weights[:, :, prefix + r * cols + c, prefix:].double().cpu())

    with unfused_attention(model, [block]) as (layer,):
        one_batch = RunOptions(batch_size=len(images), device=device, progress=False)
        stream(Taps(model, [layer]), images, keep, run=one_batch, desc="query attention")
    row = torch.cat(rows_of_query)
    row = row / row.sum(-1, keepdim=True)
    return row.reshape(len(images), -1, rows, cols)
