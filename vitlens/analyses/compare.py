"""Layer-by-layer CKA between models, streamed over a dataset (paper Figures 1, 2, B.1)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vitlens.core.cka import BatchBootstrap, MinibatchCKA, UCenteredGram
from vitlens.core.stats import ONE_SEED, Estimate
from vitlens.models import layer_names, model_name
from vitlens.streaming import ImageSource, RunOptions, Taps, gather, interleave, stream

__all__ = [
    "CKAResult",
    "LayerGrams",
    "below_diagonal",
    "best_match_depth",
    "cka_estimate",
    "cka_from_grams",
    "cka_matrix",
    "cross_block_mean",
    "cut_contrast",
    "depth_halves",
    "diagonal_half_gap",
    "diagonal_halves",
    "evenly_spaced",
    "layer_grams",
    "leading_blocks",
    "lower_half_of",
    "lowest_quarter",
    "middle_blocks",
    "middle_index",
    "middle_mean",
    "offdiagonal_mean",
    "stream_index",
    "two_block_contrast",
    "upper_half_of",
]


@dataclass
class CKAResult(BatchBootstrap):
    """A layer-by-layer CKA matrix with its provenance.

    Attributes:
        matrix: ``(len(layers_a), len(layers_b))`` float64 minibatch CKA.
        layers_a, layers_b: layer names along the rows and the columns.
        name_a, name_b: model names for labels.
        num_examples: images the estimate is based on.
        batch_size: examples per minibatch (the estimator's unit).
        batch_terms: ``(cross (B, La, Lb), self_a (B, La), self_b (B, Lb))`` per-batch
            HSIC sums (weighted as accumulated), for ``bootstrap`` (from
            :class:`vitlens.core.cka.BatchBootstrap`); ``None`` if unknown.
    """

    matrix: np.ndarray
    layers_a: list[str]
    layers_b: list[str]
    name_a: str
    name_b: str
    num_examples: int
    batch_size: int
    batch_terms: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def best_match_depth(self) -> np.ndarray:
        """For each layer of model B, the relative depth of model A's most similar layer.

        Returns:
            ``(len(layers_b),)`` values in ``[0, 1]``: ``argmax_i CKA[i, j] / (len(layers_a)
            - 1)``, so 0 is model A's first layer and 1 its last (paper Section 4: "the
            lower half of ResNet layers are most similar to the lowest quarter of ViT").
        """
        return best_match_depth(self.matrix)

    def mean_offdiagonal(self) -> float:
        """Mean CKA between different layers of a self-comparison (uniformity of Fig. 1).

        High values mean layers at different depths represent the images alike.
        """
        if self.layers_a != self.layers_b:
            raise ValueError("mean_offdiagonal needs a self-comparison (same layers on both axes)")
        size = len(self.layers_a)
        if size < 2:
            raise ValueError("mean_offdiagonal needs at least 2 layers")
        return float(
            (np.nansum(self.matrix) - np.nansum(np.diag(self.matrix))) / (size * (size - 1))
        )

    def save(self, path: str | Path) -> None:
        """Write the matrix, layer names and provenance to an ``.npz`` file."""
        np.savez(
            path,
            matrix=self.matrix,
            layers_a=np.array(self.layers_a),
            layers_b=np.array(self.layers_b),
            name_a=self.name_a,
            name_b=self.name_b,
            num_examples=self.num_examples,
            batch_size=self.batch_size,
        )


def best_match_depth(matrix: np.ndarray) -> np.ndarray:
    """For each column (a layer of model B), the relative depth of the row (model A's layer)
    most similar to it: ``argmax_i matrix[i, j] / (rows - 1)``, in ``[0, 1]``.

    Args:
        matrix: ``(layers_a, layers_b)`` similarities under any measure.
    """
    if matrix.shape[0] < 2:
        raise ValueError("relative depth needs model A to have at least 2 layers")
    return np.nanargmax(matrix, axis=0) / (matrix.shape[0] - 1)


def depth_halves(num_layers: int) -> tuple[slice, slice]:
    """The lower and upper half of ``num_layers`` layers (the middle layer goes up).

    The one split every chapter uses for "lower half" / "upper half" claims.
    """
    if num_layers < 2:
        raise ValueError(f"halves need at least 2 layers, got {num_layers}")
    half = num_layers // 2
    return slice(0, half), slice(half, num_layers)


def lower_half_of(values):
    """The entries of ``values`` (one per layer, in depth order) in the lower half of the
    layers (:func:`depth_halves`)."""
    return values[depth_halves(len(values))[0]]


def upper_half_of(values):
    """The entries of ``values`` (one per layer, in depth order) in the upper half of the
    layers, the middle layer included (:func:`depth_halves`)."""
    return values[depth_halves(len(values))[1]]


def middle_index(num_layers: int) -> int:
    """Index of the middle layer of ``num_layers``: the first of the upper half (the
    paper's "middle layer representations", Section 8)."""
    return depth_halves(num_layers)[1].start


def lowest_quarter(num_layers: int) -> slice:
    """The lowest quarter of ``num_layers`` layers, at least one (the paper, Section 4:
    "the lowest quarter of ViT layers"; Fig. 4's lowest blocks)."""
    if num_layers < 1:
        raise ValueError(f"a quarter needs at least 1 layer, got {num_layers}")
    return slice(0, max(1, num_layers // 4))


def evenly_spaced(layers, count: int) -> list:
    """``count`` of ``layers`` spread evenly over the depth, the first and the last
    included (a figure's panels, e.g. chapter 3's receptive fields): the items at
    ``i * (len(layers) - 1) // (count - 1)`` for ``i = 0 .. count - 1``.

    Raises:
        ValueError: ``count`` below 2 or above ``len(layers)`` (a layer would repeat).
    """
    if not 2 <= count <= len(layers):
        raise ValueError(
            f"count must be between 2 and the {len(layers)} layers (first and last "
            f"included, none twice), got {count}"
        )
    return [layers[i * (len(layers) - 1) // (count - 1)] for i in range(count)]


def leading_blocks(depth: int) -> int:
    """How many of ``depth`` blocks are the paper's "first four to five" of 12 (Appendix
    G: the blocks fine-tuning leaves very well preserved): ``depth * 5 // 12``, 5 of 12,
    3 of 8.

    Raises:
        ValueError: ``depth`` below 3 (no block would be leading).
    """
    if depth < 3:
        raise ValueError(f"need at least 3 blocks for a leading share, got {depth}")
    return depth * 5 // 12


def middle_blocks(depth: int) -> range:
    """The middle half of ``depth`` blocks (indices ``depth // 4 .. depth - depth // 4 - 1``).

    What the book reads as the paper's "middle blocks" (Fig. 8), beside :func:`depth_halves`:
    for 8 blocks, 2 to 5; for the paper's 12, 3 to 8.
    """
    if depth < 2:
        raise ValueError(f"need at least 2 blocks, got {depth}")
    return range(depth // 4, depth - depth // 4)


def middle_mean(values) -> float:
    """Mean of a per-block curve over its :func:`middle_blocks`: the intermediate layers."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"middle_mean needs one value per block, got shape {values.shape}")
    middle = middle_blocks(len(values))
    return float(values[middle.start : middle.stop].mean())


def diagonal_halves(matrix: np.ndarray) -> tuple[float, float]:
    """Mean of the lower half's diagonal and of the upper half's, for a square CKA matrix.

    The diagonal of a cross-model matrix pairs each block with the same block of the other
    model (Fig. 12: a model trained on less data against the full-data one).
    """
    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"the diagonal halves need a square matrix, got shape {matrix.shape}")
    lower, upper = depth_halves(len(matrix))
    values = np.diagonal(matrix)
    return float(values[lower].mean()), float(values[upper].mean())


def diagonal_half_gap(matrix: np.ndarray) -> float:
    """:func:`diagonal_halves`' lower minus upper mean: positive when the lower blocks agree
    more than the upper ones."""
    lower, upper = diagonal_halves(matrix)
    return lower - upper


def below_diagonal(result: CKAResult | None, matrix: np.ndarray | None = None) -> float:
    """How far model A's best matches sit below the diagonal, over model B's lower half.

    For each layer ``j`` in the lower half of model B (relative depth ``d_j``), model A's most
    similar layer has relative depth ``m_j``; the statistic is ``mean(d_j - m_j)``. A plain
    depth-for-depth mapping gives about 0; "B's lower half matches about A's lowest quarter"
    (paper Section 4, Fig. 2) gives about half the mean of ``d_j``, 0.125.

    Args:
        result: a cross-model :class:`CKAResult` (A rows, B columns); ``None`` when
            ``matrix`` is given.
        matrix: the matrix to use instead of ``result.matrix`` (e.g. one bootstrap
            replicate, or a matrix under another measure).
    """
    matrix = result.matrix if matrix is None else matrix
    rows, cols = matrix.shape
    if rows < 2 or cols < 2:
        raise ValueError("below_diagonal needs at least 2 layers in each model")
    matched = np.nanargmax(matrix, axis=0) / (rows - 1)
    own = np.arange(cols) / (cols - 1)
    lower, _ = depth_halves(cols)
    return float(np.mean(own[lower] - matched[lower]))


def cross_block_mean(matrix: np.ndarray, cut: int) -> float:
    """Mean CKA between the layers before ``cut`` and those from ``cut`` on (Fig. 8).

    A uniform structure keeps it high; a break at ``cut`` lowers it.
    """
    if not 0 < cut < min(matrix.shape):
        raise ValueError(f"cut must split the layers, got {cut} for shape {matrix.shape}")
    return float(np.nanmean(matrix[:cut, cut:]))


def stream_index(layers: list[str], block: int) -> int:
    """Position of block ``block``'s first point in a residual stream of layer names.

    ``layers`` as :func:`vitlens.models.branches.residual_branches` names them
    (``"blocks.3.residual1"``, ``"blocks.3"``, ...): the first name inside ``blocks.{block}``.
    """
    prefix = f"blocks.{block}"
    for i, name in enumerate(layers):
        if name == prefix or name.startswith(prefix + "."):
            return i
    raise ValueError(f"no layer of block {block} in the stream {layers}")


def offdiagonal_mean(matrix: np.ndarray) -> float:
    """Mean CKA between different layers of a square self-CKA matrix (Fig. 1 uniformity)."""
    size = matrix.shape[0]
    if size < 2 or matrix.shape != (size, size):
        raise ValueError("offdiagonal_mean needs a square matrix of at least 2 layers")
    return float((np.nansum(matrix) - np.nansum(np.diag(matrix))) / (size * (size - 1)))


def cut_contrast(matrix: np.ndarray, cut: int) -> float:
    """Mean CKA within the layers on each side of ``cut`` minus the mean CKA across it.

    For a square self-CKA matrix: layers ``[0, cut)`` and ``[cut, L)``; within-side pairs
    exclude the diagonal. Large when the cut partitions the representations into two
    dissimilar groups (Fig. 8, App. H); about 0 for a uniform matrix.
    """
    matrix = np.asarray(matrix, dtype=float)
    size = matrix.shape[0]
    if matrix.shape != (size, size) or size < 3 or not 1 <= cut <= size - 1:
        raise ValueError(
            f"cut_contrast needs a square matrix of at least 3 layers and a cut with layers "
            f"on both sides, got shape {matrix.shape} and cut {cut}"
        )
    first = np.arange(size) < cut
    same = (first[:, None] == first[None, :]) & ~np.eye(size, dtype=bool)
    across = first[:, None] != first[None, :]
    return float(np.nanmean(matrix[same]) - np.nanmean(matrix[across]))


def two_block_contrast(matrix: np.ndarray) -> tuple[int, float]:
    """Best split of a self-CKA matrix into two consecutive blocks of layers (App. H).

    Returns ``(k, contrast)``: layers ``[0, k)`` and ``[k, L)`` form the split that maximises
    :func:`cut_contrast`. A large contrast means "distinct, uncorrelated blocks"; a uniform
    matrix gives about 0.
    """
    size = np.asarray(matrix).shape[0]
    if size < 4:
        raise ValueError("two_block_contrast needs a square matrix of at least 4 layers")
    contrasts = {k: cut_contrast(matrix, k) for k in range(1, size)}
    best = max(contrasts, key=contrasts.get)
    return best, contrasts[best]


def cka_matrix(
    model_a: nn.Module,
    data: ImageSource,
    model_b: nn.Module | None = None,
    *,
    layers_a: list[str] | None = None,
    layers_b: list[str] | None = None,
    run: RunOptions = RunOptions(batch_size=256),
    name_a: str | None = None,
    name_b: str | None = None,
    on_batch: Callable[[MinibatchCKA], None] | None = None,
) -> CKAResult:
    """Minibatch linear CKA between every layer of ``model_a`` and every layer of ``model_b``.

    Streams ``data`` through the model(s) under ``torch.inference_mode``. Each hooked layer
    is reduced to its U-centred ``(n, n)`` Gram inside the forward hook, so memory holds
    ``layers x batch_size^2`` numbers, whatever the number of images or the width of the
    layers. Unbiased HSIC per batch, summed over batches, float64 (Nguyen et al. 2021).

    Args:
        model_a: first model (a timm ViT, ResNet or Mixer, or any module with explicit layers).
        data: ``(N, C, H, W)`` tensor, Dataset or DataLoader of preprocessed images.
        model_b: second model; ``None`` compares ``model_a`` with itself from one forward pass.
        layers_a, layers_b: layer names (default: :func:`vitlens.layer_names`, kind "all").
        run: batch size, device, progress (:class:`~vitlens.streaming.RunOptions`); every
            batch needs more than 3 images (the paper uses 256 or more). The models are
            moved to the device (in place) and put in eval mode, their flags restored after.
        name_a, name_b: labels for plots (default: the timm architecture name; in a
            self-comparison ``name_b`` defaults to ``name_a``).
        on_batch: called with the estimator after every batch, e.g. to follow how the
            estimate converges (:func:`vitlens.analyses.cka_study.minibatch_convergence`).
            With ``on_batch``, every process streams all the data.

    Under an initialised ``torch.distributed`` process group (e.g. launched by
    ``torchrun``), each process streams its own share of the batches and the HSIC sums are
    combined, so every rank returns the single-process answer; every rank must call it.

    Returns:
        :class:`CKAResult` with the ``(layers_a, layers_b)`` float64 matrix.
    """
    self_comparison = model_b is None or model_b is model_a
    layers_a = list(layer_names(model_a) if layers_a is None else layers_a)
    if self_comparison:
        layers_b = list(layers_a if layers_b is None else layers_b)
    else:
        layers_b = list(layer_names(model_b) if layers_b is None else layers_b)
    gram = UCenteredGram()
    if self_comparison:
        taps = [Taps(model_a, list(dict.fromkeys(layers_a + layers_b)), gram)]
    else:
        taps = [Taps(model_a, layers_a, gram), Taps(model_b, layers_b, gram)]
    estimator = MinibatchCKA()

    def accumulate(_images: torch.Tensor, stores: list[dict[str, torch.Tensor]]) -> None:
        store_a, store_b = stores[0], stores[-1]
        grams_a = torch.stack([store_a[name] for name in layers_a])
        same = self_comparison and layers_b == layers_a
        grams_b = None if same else torch.stack([store_b[name] for name in layers_b])
        estimator.update_centered_grams(grams_a, grams_b)
        if on_batch is not None:
            on_batch(estimator)

    seen = stream(taps, data, accumulate, run=run, desc="CKA", min_batch=4, shard=on_batch is None)
    if on_batch is None:  # under torch.distributed: every rank streamed its own share
        shares = gather(estimator)
        estimator = functools.reduce(MinibatchCKA.merge, shares, MinibatchCKA())
        estimator.batch_terms = interleave([share.batch_terms for share in shares])
    name_a = name_a or model_name(model_a)
    name_b = name_b or (name_a if self_comparison else model_name(model_b))
    return CKAResult(
        matrix=estimator.compute().cpu().numpy(),
        layers_a=layers_a,
        layers_b=layers_b,
        name_a=name_a,
        name_b=name_b,
        num_examples=seen,
        batch_size=run.batch_size,
        batch_terms=estimator.stacked_batch_terms(),
    )


@dataclass(frozen=True)
class LayerGrams:
    """One model's U-centred Gram of every layer, batch by batch: all minibatch CKA needs.

    Minibatch CKA (:func:`~vitlens.cka_matrix`) reads a model only through each batch's U-centred
    ``(n, n)`` Gram per layer. Computed once by :func:`~vitlens.layer_grams`, they pair with any
    other model's Grams of the same images in the same batches (:func:`~vitlens.cka_from_grams`)
    without another forward pass: a model compared with itself and with three others runs
    once, not four times.

    Attributes:
        grams: per batch, a ``(layers, n, n)`` float64 tensor of U-centred Grams.
        layers: the layer names, in the order of ``grams``' first dimension.
        name: the model's name, for labels.
        batch_size: images per minibatch, as run (the last batch may hold fewer).
        image_sums: ``(batches, 2)`` float64, each batch's sum and sum of squares of its
            pixel values: Grams of different images (or batches) are refused, not paired.
    """

    grams: list[torch.Tensor]
    layers: list[str]
    name: str
    batch_size: int
    image_sums: torch.Tensor

    @property
    def num_examples(self) -> int:
        """Images over all batches."""
        return sum(int(g.shape[-1]) for g in self.grams)

    def select(self, layers: list[str]) -> list[torch.Tensor]:
        """Per batch, the ``(len(layers), n, n)`` Grams of ``layers`` (a subset, any order)."""
        unknown = [name for name in layers if name not in self.layers]
        if unknown:
            raise ValueError(f"no Grams of layers {unknown}; these Grams hold {self.layers}")
        if layers == self.layers:
            return self.grams
        index = torch.tensor([self.layers.index(name) for name in layers])
        return [g[index] for g in self.grams]

    def check_batch(self, index: int, images: torch.Tensor) -> None:
        """Refuse ``(n, C, H, W)`` ``images`` that are not batch ``index`` of these Grams
        (compared by their pixel sums), e.g. a model streamed on other data or batches."""
        if index >= len(self.grams) or not torch.equal(pixel_sums(images), self.image_sums[index]):
            raise ValueError(
                f"batch {index} is not the images these Grams were computed on "
                f"({len(self.grams)} batches of {self.batch_size}); stream the same data "
                "with the same batch size"
            )


def pixel_sums(images: torch.Tensor) -> torch.Tensor:
    """``(2,)`` float64: the sum and the sum of squares of a batch's pixel values (what
    tells the batches of :class:`LayerGrams` apart)."""
    pixels = images.detach().double()
    return torch.stack([pixels.sum(), pixels.square().sum()]).cpu()


def layer_grams(
    model: nn.Module,
    data: ImageSource,
    layers: list[str] | None = None,
    *,
    run: RunOptions = RunOptions(batch_size=256),
    name: str | None = None,
) -> LayerGrams:
    """Each batch's U-centred Gram of every layer of ``model``, for :func:`~vitlens.cka_from_grams`.

    One forward pass over ``data`` under ``torch.inference_mode``, each layer reduced to its
    Gram inside its hook, as :func:`~vitlens.cka_matrix` does; the Grams of every batch are kept
    (``batches x layers x batch_size^2`` float64 numbers, e.g. 19 MB per 256 images for 37
    layers), where :func:`~vitlens.cka_matrix` keeps one batch at a time.

    Args:
        model: a timm ViT, ResNet or Mixer, or any module with explicit layers.
        data: ``(N, C, H, W)`` tensor, Dataset or DataLoader of preprocessed images.
        layers: layer names (default: :func:`vitlens.layer_names`, kind "all").
        run: batch size, device, progress (:class:`~vitlens.streaming.RunOptions`); every
            batch needs more than 3 images. Every process of a ``torch.distributed`` group
            streams all the data.
        name: label for plots (default: the timm architecture name).

    Returns:
        :class:`~vitlens.analyses.compare.LayerGrams`.
    """
    layers = list(layer_names(model) if layers is None else layers)
    grams, sums = [], []

    def keep(images: torch.Tensor, stores: list[dict[str, torch.Tensor]]) -> None:
        grams.append(torch.stack([stores[0][layer] for layer in layers]).cpu())
        sums.append(pixel_sums(images))

    stream(
        [Taps(model, list(dict.fromkeys(layers)), UCenteredGram())],
        data,
        keep,
        run=run,
        desc="Grams",
        min_batch=4,
    )
    return LayerGrams(
        grams=grams,
        layers=layers,
        name=name or model_name(model),
        batch_size=run.batch_size,
        image_sums=torch.stack(sums),
    )


def cka_from_grams(
    grams_a: LayerGrams,
    grams_b: LayerGrams | None = None,
    *,
    layers_a: list[str] | None = None,
    layers_b: list[str] | None = None,
) -> CKAResult:
    """:func:`~vitlens.cka_matrix` from Grams computed before (:func:`~vitlens.layer_grams`).

    No forward pass: the models were run when their Grams were computed.

    Equal to ``cka_matrix(model_a, data, model_b)`` on the images and batch size the Grams
    were computed with (the same per-batch sums, in the same order).

    Args:
        grams_a: model A's Grams.
        grams_b: model B's Grams of the same images in the same batches; ``None`` compares
            model A with itself.
        layers_a, layers_b: subsets of the Grams' layers (default: all of them).

    Raises:
        ValueError: Grams of different images, batches or batch sizes; unknown layers.
    """
    same = grams_b is None or grams_b is grams_a
    grams_b = grams_a if grams_b is None else grams_b
    if grams_b.batch_size != grams_a.batch_size or not torch.equal(
        grams_a.image_sums, grams_b.image_sums
    ):
        raise ValueError(
            "the two models' Grams must come from the same images in the same batches "
            f"(batch sizes {grams_a.batch_size} and {grams_b.batch_size}; "
            f"{len(grams_a.grams)} and {len(grams_b.grams)} batches, whose pixel sums "
            "differ); compute both with layer_grams on the same data and run options"
        )
    layers_a = list(grams_a.layers if layers_a is None else layers_a)
    if layers_b is None:
        layers_b = layers_a if same else grams_b.layers
    layers_b = list(layers_b)
    estimator = MinibatchCKA()
    selected_a = grams_a.select(layers_a)
    selected_b = None if same and layers_b == layers_a else grams_b.select(layers_b)
    for index, batch_a in enumerate(selected_a):
        estimator.update_centered_grams(batch_a, None if selected_b is None else selected_b[index])
    return CKAResult(
        matrix=estimator.compute().cpu().numpy(),
        layers_a=layers_a,
        layers_b=layers_b,
        name_a=grams_a.name,
        name_b=grams_b.name,
        num_examples=grams_a.num_examples,
        batch_size=grams_a.batch_size,
        batch_terms=estimator.stacked_batch_terms(),
    )


def cka_estimate(
    statistic: Callable[..., float],
    *results,
    replicates: int = 500,
    seed: int = 0,
    note: str = ONE_SEED,
) -> Estimate:
    """``statistic(*matrices)`` of CKA results, with a paired bootstrap over their minibatches.

    Args:
        statistic: maps one matrix per result (same order) to a number.
        results: :class:`vitlens.analyses.compare.CKAResult` objects computed on the same
            images in the same batches (so batch ``b`` is the same images in each).
        replicates, seed: of the bootstrap; the same seed resamples the same batches in
            every result.
        note: what the interval does not cover, appended to the source.
    """
    batches = {r.num_batches for r in results}
    if len(batches) != 1:
        raise ValueError(f"paired results need the same number of batches, got {batches}")
    reps = [r.bootstrap(replicates, seed) for r in results]
    values = [statistic(*(rep[i] for rep in reps)) for i in range(replicates)]
    first = results[0]
    source = f"bootstrap over {first.num_batches} minibatches of {first.batch_size} images" + (
        f"; {note}" if note else ""
    )
    point = statistic(*(np.asarray(r.matrix, dtype=float) for r in results))
    return Estimate.from_replicates(point, values, source)
