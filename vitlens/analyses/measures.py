"""Layer-by-layer similarity under any measure, not only CKA: the paper's Figures 1 and 2
redrawn under orthogonal Procrustes, RBF CKA, (debiased) linear CKA or a CCA measure, from
the same hooks as :func:`vitlens.cka_matrix`.

Unlike minibatch CKA, these measures need every image's features at once
(:mod:`vitlens.core.similarity` says why), so :func:`layer_features` keeps each layer's
``(n, d)`` features on the CPU and :func:`similarity_matrix` compares every pair of layers
with :func:`vitlens.core.similarity.similarity`. The features of all layers must fit in
memory: the total is refused above :data:`vitlens.core.similarity.MAX_FULL_BATCH_ELEMENTS`
elements, before any image is streamed when the number of images is known.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vitlens.analyses.compare import below_diagonal, offdiagonal_mean
from vitlens.core import similarity as measures
from vitlens.core.stats import ONE_SEED, Estimate, jackknife
from vitlens.models import layer_names, model_name
from vitlens.streaming import BatchRows, ImageSource, RunOptions, Taps, layer_shapes, stream

__all__ = [
    "FiguresUnderMeasure",
    "SimilarityResult",
    "basis_free_measures",
    "figures_under_measures",
    "layer_features",
    "layers_that_fit",
    "num_images",
    "pairwise_similarity",
    "principal_features",
    "similarity_matrix",
]


@dataclass
class SimilarityResult:
    """A layer-by-layer similarity matrix under one measure, with its provenance.

    Attributes:
        matrix: ``(len(layers_a), len(layers_b))`` float64 similarities.
        layers_a, layers_b: layer names along the rows and the columns.
        name_a, name_b: model names for labels.
        measure: the measure's name (a key of
            :data:`vitlens.core.similarity.SIMILARITY_MEASURES`).
        num_examples: images the matrix is computed on.
    """

    matrix: np.ndarray
    layers_a: list[str]
    layers_b: list[str]
    name_a: str
    name_b: str
    measure: str
    num_examples: int


def _flatten(value: torch.Tensor) -> torch.Tensor:
    """``(n, ...)`` activations -> ``(n, d)`` float32 on the CPU (one row per image)."""
    return value.reshape(value.shape[0], -1).float().cpu()


def layer_features(
    model: nn.Module,
    data: ImageSource,
    layers: Sequence[str],
    *,
    run: RunOptions = RunOptions(),
) -> dict[str, torch.Tensor]:
    """Every image's flattened features at each layer: ``{layer: (n, d) float32}``, CPU.

    Args:
        model: a timm model (or any module with explicit ``layers``).
        data: ``(N, C, H, W)`` tensor, Dataset or DataLoader of preprocessed images.
        layers: layer names.
        run: batch size, device, progress (:class:`~vitlens.streaming.RunOptions`).

    Raises:
        ValueError: unknown layers, no images, or more feature elements in total than
            :data:`vitlens.core.similarity.MAX_FULL_BATCH_ELEMENTS` (checked as the batches
            arrive, so nothing larger is ever held).
    """
    parts = {name: BatchRows.for_data(data) for name in layers}
    held, seen = 0, 0

    def keep(images: torch.Tensor, stores: list[dict[str, torch.Tensor]]) -> None:
        nonlocal held, seen
        seen += images.shape[0]
        held += sum(stores[0][name].numel() for name in layers)
        if held > measures.MAX_FULL_BATCH_ELEMENTS:
            raise ValueError(
                f"the features of {len(layers)} layers exceed "
                f"{measures.MAX_FULL_BATCH_ELEMENTS:,} elements after {seen} images; compare "
                "fewer layers or fewer images (these measures need every image's features at "
                "once)"
            )
        for name in layers:
            parts[name].add(stores[0][name])

    stream(Taps(model, list(layers), _flatten), data, keep, run=run, desc="features")
    return {name: rows.gathered() for name, rows in parts.items()}


def layers_that_fit(model: nn.Module, layers: Sequence[str], num_images: int) -> list[str]:
    """The most of ``layers`` whose features :func:`layer_features` can hold for
    ``num_images`` images: all of them when they fit.

    Every image's features at once grow with the image size: a ViT-B's block holds 151,296
    features per 224-pixel image, a BiT-R50's first stage 802,816, so the 12 blocks of a
    ViT-B on 256 images exceed :data:`vitlens.core.similarity.MAX_FULL_BATCH_ELEMENTS`.
    Layers whose own features exceed it are left out (no measure can take them on that
    many images); of the others, the most that fit together, evenly spaced over them (the
    first and the last kept). Each layer's size is read from one blank image
    (:func:`vitlens.streaming.layer_shapes`).

    Returns:
        The chosen layers, in their order in ``layers``.

    Raises:
        ValueError: no layer, a number of images below 1, or no layer that fits alone.
    """
    layers = list(layers)
    if not layers or num_images < 1:
        raise ValueError(f"need layers and at least one image, got {layers} and {num_images}")
    budget = measures.MAX_FULL_BATCH_ELEMENTS
    sizes = {
        name: num_images * shape[1:].numel() for name, shape in layer_shapes(model, layers).items()
    }
    alone = [name for name in layers if sizes[name] <= budget]
    if not alone:
        raise ValueError(
            f"no layer's features fit MAX_FULL_BATCH_ELEMENTS = {budget:,} on {num_images} "
            f"images (the smallest holds {min(sizes.values()):,}); use fewer images"
        )
    for count in range(len(alone), 0, -1):
        picked = np.unique(np.round(np.linspace(0, len(alone) - 1, count)).astype(int))
        chosen = [alone[i] for i in picked]
        if sum(sizes[name] for name in chosen) <= budget:
            return chosen
    raise AssertionError("unreachable: one layer that fits alone always fits")


def basis_free_measures(names: Sequence[str]) -> list[str]:
    """``names`` as a list, checked to be measures that principal coordinates keep exact.

    Raises:
        ValueError: an empty list, an unknown name or PWCCA (its weights use each layer's
            own feature basis).
    """
    names = list(names)
    unknown = [m for m in names if m not in measures.SIMILARITY_MEASURES]
    if unknown or not names or "pwcca" in names:
        raise ValueError(
            f"measures must be a non-empty list of names from "
            f"{sorted(set(measures.SIMILARITY_MEASURES) - {'pwcca'})}, got {names} (PWCCA "
            "is not invariant to a change of feature basis, which these checks rely on)"
        )
    return names


def num_images(features: dict[str, torch.Tensor]) -> int:
    """The number of images every layer's ``(n, d)`` features describe.

    Raises:
        ValueError: no layers, or layers of different image counts.
    """
    sizes = {x.shape[0] for x in features.values()}
    if len(sizes) != 1 or not features:
        raise ValueError(f"every layer must hold the same images, got sizes {sorted(sizes)}")
    return sizes.pop()


def principal_features(features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each layer's ``(n, d)`` features as ``(n, r)`` principal coordinates, ``r <= n - 1``.

    :func:`vitlens.core.similarity.principal_coordinates` per layer: every measure but PWCCA
    gives the same values on them, on all the images or any subset, at a cost that no
    longer grows with ``d`` (the path for many layer pairs, or a jackknife).
    """
    return {name: measures.principal_coordinates(x) for name, x in features.items()}


def pairwise_similarity(
    features_a: dict[str, torch.Tensor],
    features_b: dict[str, torch.Tensor],
    measure: str,
    layers_a: Sequence[str] | None = None,
    layers_b: Sequence[str] | None = None,
    *,
    rows: torch.Tensor | np.ndarray | None = None,
) -> np.ndarray:
    """``(len(layers_a), len(layers_b))`` similarities of every pair of layers' features.

    Args:
        features_a, features_b: ``{layer: (n, d)}`` features of the same n images (e.g.
            :func:`layer_features`, or :func:`principal_features` of them).
        measure: a key of :data:`vitlens.core.similarity.SIMILARITY_MEASURES`.
        layers_a, layers_b: which layers, in order (default: every key, in order).
        rows: indices of the images to use (default all), e.g. a jackknife's subset.

    Each layer is prepared once for all its pairs
    (:func:`vitlens.core.similarity.similarity_grid`).

    Raises:
        ValueError: an unknown measure or layer, or any error of the measure.
    """
    layers_a = list(features_a if layers_a is None else layers_a)
    layers_b = list(features_b if layers_b is None else layers_b)
    missing = [n for n in layers_a if n not in features_a] + [
        n for n in layers_b if n not in features_b
    ]
    if missing:
        raise ValueError(f"no features for layers {missing}")
    if rows is not None:
        index = torch.as_tensor(rows, dtype=torch.long)
        features_a = {n: features_a[n][index] for n in layers_a}
        features_b = {n: features_b[n][index] for n in layers_b}
    return measures.similarity_grid(
        [features_a[n] for n in layers_a], [features_b[n] for n in layers_b], measure
    )


def similarity_matrix(
    model_a: nn.Module,
    data: ImageSource,
    model_b: nn.Module | None = None,
    *,
    measure: str = "procrustes",
    layers_a: Sequence[str] | None = None,
    layers_b: Sequence[str] | None = None,
    run: RunOptions = RunOptions(),
) -> SimilarityResult:
    """Similarity of every layer of ``model_a`` with every layer of ``model_b`` (or itself).

    Args:
        model_a, model_b: timm models (``model_b=None``: ``model_a`` against itself).
        data: ``(N, C, H, W)`` tensor, Dataset or DataLoader of preprocessed images.
        measure: a key of :data:`vitlens.core.similarity.SIMILARITY_MEASURES`
            (``"procrustes"``, ``"rbf_cka"``, ``"linear_cka"``, ``"linear_cka_debiased"``,
            ``"svcca"``, ``"pwcca"``); the CCA measures need more images than the
            dimensions they keep.
        layers_a, layers_b: layer names (default: the block outputs, ``layer_names(model,
            "blocks")``).
        run: batch size, device, progress (:class:`~vitlens.streaming.RunOptions`).

    Returns:
        A :class:`SimilarityResult`. Every measure but PWCCA is computed on each layer's
        principal coordinates (:func:`principal_features`: the same values, at a cost that
        does not grow with the number of features).

    Raises:
        ValueError: an unknown measure (checked before any image is streamed), unknown
            layers, or features too large to hold.
    """
    if measure not in measures.SIMILARITY_MEASURES:
        raise ValueError(
            f"unknown similarity measure {measure!r}; valid names: "
            f"{', '.join(sorted(measures.SIMILARITY_MEASURES))}"
        )
    same = model_b is None or model_b is model_a
    model_b = model_a if model_b is None else model_b
    layers_a = list(layer_names(model_a, "blocks") if layers_a is None else layers_a)
    layers_b = list(layer_names(model_b, "blocks") if layers_b is None else layers_b)
    if same:
        both = list(dict.fromkeys(layers_a + layers_b))
        features_a = layer_features(model_a, data, both, run=run)
        features_b = features_a
    else:
        features_a = layer_features(model_a, data, layers_a, run=run)
        features_b = layer_features(model_b, data, layers_b, run=run)
    if measure != "pwcca":  # PWCCA's weights use each layer's own feature basis
        features_a = principal_features(features_a)
        features_b = features_a if same else principal_features(features_b)
    matrix = pairwise_similarity(features_a, features_b, measure, layers_a, layers_b)
    return SimilarityResult(
        matrix=matrix,
        layers_a=layers_a,
        layers_b=layers_b,
        name_a=model_name(model_a),
        name_b=model_name(model_b),
        measure=measure,
        num_examples=next(iter(features_a.values())).shape[0],
    )


@dataclass
class FiguresUnderMeasure:
    """The paper's Figures 1 and 2 under one measure, and their two statements' statistics.

    Attributes:
        within_a, within_b: each model against itself (Figure 1).
        across: model A's layers (rows) against model B's (columns) (Figure 2).
        uniformity_gap: mean similarity between different layers of A minus that of B
            (Figure 1: "ViTs having highly similar representations throughout the model,
            while the ResNet models show much lower similarity between lower and higher
            layers": positive when A, the ViT, is the more uniform).
        below_diagonal: :func:`vitlens.analyses.compare.below_diagonal` of ``across``
            (Figure 2: B's lower half matches about A's lowest quarter: about 0.125; a
            depth-for-depth match: about 0).
    """

    within_a: SimilarityResult
    within_b: SimilarityResult
    across: SimilarityResult
    uniformity_gap: Estimate
    below_diagonal: Estimate


def figures_under_measures(
    features_a: dict[str, torch.Tensor],
    features_b: dict[str, torch.Tensor],
    measure_names: Sequence[str],
    *,
    names: tuple[str, str] = ("model A", "model B"),
    groups: int = 10,
    seed: int = 0,
) -> dict[str, FiguresUnderMeasure]:
    """Figures 1 and 2 under each measure, with jackknife intervals over the images.

    Args:
        features_a, features_b: ``{layer: (n, d)}`` features of the same n images from the
            two models (the ViT as A, the ResNet as B), layers in depth order, at least 2
            each.
        measure_names: keys of :data:`vitlens.core.similarity.SIMILARITY_MEASURES` other
            than PWCCA (computed on principal coordinates).
        names: the models' names, for labels.
        groups, seed: of the jackknife (:func:`vitlens.core.stats.jackknife`).

    Returns:
        ``{measure: FiguresUnderMeasure}``.

    Raises:
        ValueError: PWCCA or an unknown measure, fewer than 2 layers, or features of
            different images.
    """
    basis_free_measures(measure_names)
    if len(features_a) < 2 or len(features_b) < 2:
        raise ValueError("each model needs at least 2 layers")
    n = num_images({**features_a, **features_b})
    coords_a, coords_b = principal_features(features_a), principal_features(features_b)
    layers_a, layers_b = list(features_a), list(features_b)

    stacked = [*coords_a.values(), *coords_b.values()]
    split = len(coords_a)

    def matrices(measure: str, rows: np.ndarray | None) -> tuple[np.ndarray, ...]:
        """Within A, within B and across, from one symmetric grid of all the layers."""
        chosen = stacked if rows is None else [x[torch.as_tensor(rows)] for x in stacked]
        grid = measures.similarity_grid(chosen, None, measure)
        return grid[:split, :split], grid[split:, split:], grid[:split, split:]

    def statistics(rows: np.ndarray, measure: str) -> list[float]:
        within_a, within_b, across = matrices(measure, rows)
        gap = offdiagonal_mean(within_a) - offdiagonal_mean(within_b)
        return [gap, below_diagonal(None, across)]

    results = {}
    for measure in measure_names:
        within_a, within_b, across = matrices(measure, None)
        gap, below = jackknife(
            lambda rows, m=measure: statistics(rows, m),
            n,
            groups=groups,
            seed=seed,
            source=ONE_SEED,
        )
        results[measure] = FiguresUnderMeasure(
            within_a=SimilarityResult(within_a, layers_a, layers_a, *names[:1] * 2, measure, n),
            within_b=SimilarityResult(within_b, layers_b, layers_b, *names[1:] * 2, measure, n),
            across=SimilarityResult(across, layers_a, layers_b, *names, measure, n),
            uniformity_gap=gap,
            below_diagonal=below,
        )
    return results
