"""Can the heatmap be trusted? Three sanity checks of a similarity measure, on features.

CKA is the paper's one measure. These checks ask of any measure of
:data:`vitlens.core.similarity.SIMILARITY_MEASURES` what a careful reader would (the book's
chapter "Can we trust the heatmap?"):

* :func:`seed_specificity`: does the measure find a layer's counterpart in a second
  training run of the same network (another seed)? Per layer of run A, the similarity to
  the same layer of run B minus the largest similarity to any *other* layer of run B
  (the *identification margin*): positive when the matching layer stands out.
* :func:`pc_deletion_sensitivity` (Ding, Denain & Steinhardt 2021): delete one band of a
  layer's principal components at a time; does the measure move with what the deletion
  costs a linear probe (Spearman correlation, over layers and bands, of the probe's
  accuracy drop and the measure's dissimilarity), or only with the variance removed?
* :func:`few_point_robustness` (Davari et al. 2023): translate a small share of the images'
  features far along a new direction; how far does the measure fall while a linear probe's
  accuracy does not?

All three take per-layer features (``{layer: (n, d)}``, e.g. from
:func:`vitlens.analyses.measures.layer_features`) and report each statistic as an
:class:`~vitlens.core.stats.Estimate` with a delete-a-group jackknife interval over the
images (:func:`vitlens.core.stats.jackknife`): these measures need every image at once,
so the hundreds of recomputations of a bootstrap would cost minutes per statistic. Features
are moved to principal coordinates first
(:func:`vitlens.analyses.measures.principal_features`), exact for every measure but PWCCA,
which these checks therefore do not take.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch

from vitlens.analyses.measures import (
    basis_free_measures,
    num_images,
    pairwise_similarity,
    principal_features,
)
from vitlens.analyses.probes import class_halves, ridge_probe_accuracy
from vitlens.core import similarity as measures
from vitlens.core.stats import Estimate, jackknife, rank_correlation

__all__ = [
    "DEFAULT_BANDS",
    "DeletionResult",
    "RobustnessResult",
    "SpecificityResult",
    "few_point_robustness",
    "identification_margin",
    "pc_deletion_sensitivity",
    "seed_specificity",
]

DEFAULT_BANDS = ((0, 1), (1, 2), (2, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 128))
"""Bands of principal components deleted one at a time, ``[start, stop)`` by variance rank
(0 is the largest): doubling widths, so that each band holds about as many components as
all the bands above it."""


# ------------------------------------------------------------------------------ specificity


def identification_margin(matrix: np.ndarray) -> float:
    """Mean over rows ``i`` of ``matrix[i, i] - max_{j != i} matrix[i, j]``.

    Args:
        matrix: ``(L, L)`` similarities of layer ``i`` of one run (rows) with layer ``j`` of
            another run of the same architecture (columns).
    """
    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 2:
        raise ValueError(f"need a square matrix of at least 2 layers, got {matrix.shape}")
    others = matrix.copy()
    np.fill_diagonal(others, -np.inf)
    return float((np.diag(matrix) - others.max(axis=1)).mean())


@dataclass
class SpecificityResult:
    """One measure's cross-seed heatmap and how well it identifies matching layers.

    Attributes:
        measure: the measure's name.
        layers: the layers compared (the same names in both runs).
        matrix: ``(L, L)`` similarity of run A's layer ``i`` (rows) to run B's ``j``.
        margin: :func:`identification_margin` with its jackknife interval.
        identified: layers whose own counterpart is their most similar layer.
    """

    measure: str
    layers: list[str]
    matrix: np.ndarray
    margin: Estimate
    identified: int


def seed_specificity(
    features_a: dict[str, torch.Tensor],
    features_b: dict[str, torch.Tensor],
    measure_names: Sequence[str],
    *,
    groups: int = 10,
    seed: int = 0,
) -> dict[str, SpecificityResult]:
    """Does each measure find a layer's counterpart in another training run?

    Args:
        features_a, features_b: ``{layer: (n, d)}`` features of the same n images from two
            runs of one architecture (the same layer names, in depth order).
        measure_names: keys of :data:`vitlens.core.similarity.SIMILARITY_MEASURES` (not PWCCA).
        groups, seed: of the jackknife over images.

    Returns:
        ``{measure: SpecificityResult}``.

    Raises:
        ValueError: different layer names or image counts, fewer than 2 layers, or an
            unknown measure.
    """
    names = basis_free_measures(measure_names)
    if list(features_a) != list(features_b) or len(features_a) < 2:
        raise ValueError(
            "both runs need the same (at least 2) layers in the same order, got "
            f"{list(features_a)} and {list(features_b)}"
        )
    n = num_images(features_a)
    if num_images(features_b) != n:
        raise ValueError("both runs must be measured on the same images")
    coords_a, coords_b = principal_features(features_a), principal_features(features_b)
    results = {}
    for name in names:
        full = pairwise_similarity(coords_a, coords_b, name)

        def margin(rows: np.ndarray, name: str = name) -> list[float]:
            return [identification_margin(pairwise_similarity(coords_a, coords_b, name, rows=rows))]

        (estimate,) = jackknife(
            margin, n, groups=groups, seed=seed, source="one pair of training seeds"
        )
        identified = int((full.argmax(axis=1) == np.arange(len(full))).sum())
        results[name] = SpecificityResult(name, list(features_a), full, estimate, identified)
    return results


# ------------------------------------------------------------------------ sensitivity (PCs)


@dataclass
class DeletionResult:
    """How each measure and a linear probe respond to deleting bands of components.

    Attributes:
        layers, bands: what was deleted: every band of every layer, one at a time.
        accuracy_drop: ``(layers, bands)`` probe accuracy on all components minus with
            the band deleted (accuracy as a fraction).
        dissimilarity: ``{measure: (layers, bands)}``, ``1 - similarity`` of the layer's
            features with and without the band.
        variance_share: ``(layers, bands)`` share of the layer's variance in the band.
        correlation: ``{measure: Estimate}``, Spearman correlation over all (layer, band)
            points of ``accuracy_drop`` and ``dissimilarity``, jackknife interval.
    """

    layers: list[str]
    bands: list[tuple[int, int]]
    accuracy_drop: np.ndarray
    dissimilarity: dict[str, np.ndarray]
    variance_share: np.ndarray
    correlation: dict[str, Estimate]


def pc_deletion_sensitivity(
    features: dict[str, torch.Tensor],
    labels: torch.Tensor,
    measure_names: Sequence[str],
    *,
    bands: Sequence[tuple[int, int]] = DEFAULT_BANDS,
    groups: int = 10,
    seed: int = 0,
) -> DeletionResult:
    """Ding et al.'s sensitivity test: do the measures move with what a probe loses?

    Each layer's features are put in principal coordinates (largest variance first);
    each band ``[start, stop)`` of components is deleted in turn (the others kept). For
    every (layer, band): the linear probe's accuracy drop
    (:func:`vitlens.analyses.probes.ridge_probe_accuracy`, fit and scored on the halves of
    :func:`vitlens.analyses.probes.class_halves`) and each measure's ``1 - similarity``
    between the layer with and without the band. A measure that tracks what matters for the
    task ranks the deletions as the probe does (Spearman correlation near 1); one that only
    sees variance ranks them by the variance removed.

    Args:
        features: ``{layer: (n, d)}`` features of n labelled images.
        labels: ``(n,)`` integer classes.
        measure_names: keys of :data:`vitlens.core.similarity.SIMILARITY_MEASURES` (not PWCCA).
        bands: component ranges by variance rank; each must lie within every layer's
            number of components (at most ``n - 1``).
        groups, seed: of the jackknife over images.

    Raises:
        ValueError: an unknown measure, bands that are empty, overlap or exceed a layer's
            components, or labels that do not match the images.
    """
    names = basis_free_measures(measure_names)
    n = num_images(features)
    labels = torch.as_tensor(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), one per image, got {tuple(labels.shape)}")
    coords = principal_features(features)
    bands = [(int(a), int(b)) for a, b in bands]
    smallest = min(x.shape[1] for x in coords.values())
    if any(not 0 <= a < b <= smallest for a, b in bands) or any(
        b0 > a1 for (_, b0), (a1, _) in pairwise(bands)
    ):
        raise ValueError(
            f"bands must be increasing, non-overlapping [start, stop) ranges within "
            f"[0, {smallest}] (the fewest components of any layer), got {bands}"
        )
    layers = list(coords)
    split = class_halves(labels)

    def measure_all(rows: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        drop = np.empty((len(layers), len(bands)))
        dissimilar = {m: np.empty_like(drop) for m in names}
        sub_split = split[rows]
        for i, layer in enumerate(layers):
            x = coords[layer][torch.as_tensor(rows)]
            full = ridge_probe_accuracy(x, labels[rows], sub_split)
            deleted = [torch.cat([x[:, :start], x[:, stop:]], dim=1) for start, stop in bands]
            drop[i] = [full - ridge_probe_accuracy(z, labels[rows], sub_split) for z in deleted]
            for m in names:
                dissimilar[m][i] = 1 - measures.similarity_grid([x], deleted, m)[0]
        return drop, dissimilar

    def correlations(rows: np.ndarray) -> list[float]:
        drop, dissimilar = measure_all(rows)
        return [rank_correlation(drop.ravel(), dissimilar[m].ravel()) for m in names]

    drop, dissimilar = measure_all(np.arange(n))
    estimates = jackknife(correlations, n, groups=groups, seed=seed, source="one trained model")
    variance = {k: (x**2).sum(0) for k, x in coords.items()}
    share = np.array(
        [[float(variance[k][a:b].sum() / variance[k].sum()) for a, b in bands] for k in layers]
    )
    return DeletionResult(
        layers=layers,
        bands=bands,
        accuracy_drop=drop,
        dissimilarity=dissimilar,
        variance_share=share,
        correlation=dict(zip(names, estimates, strict=True)),
    )


# ------------------------------------------------------------------------- few-point robustness


@dataclass
class RobustnessResult:
    """Each measure's similarity to a copy of a layer with a few images' features moved.

    Attributes:
        layer: the layer.
        moved: number of images whose features were translated.
        scales: the translation lengths tried, in units of the images' root-mean-square
            distance from their mean.
        similarity: ``{measure: (scales,)}`` similarity of the original and moved features.
        probe_accuracy: ``(scales,)`` the linear probe's accuracy on the moved features;
            ``baseline_accuracy`` on the original ones.
        drop: ``{measure: Estimate}`` ``1 - similarity`` at the largest scale, jackknife
            interval.
        accuracy_change: probe accuracy at the largest scale minus the baseline, jackknife
            interval (a fraction).
    """

    layer: str
    moved: int
    scales: list[float]
    similarity: dict[str, np.ndarray]
    probe_accuracy: np.ndarray
    baseline_accuracy: float
    drop: dict[str, Estimate]
    accuracy_change: Estimate


def few_point_robustness(
    features: torch.Tensor,
    labels: torch.Tensor,
    measure_names: Sequence[str],
    *,
    layer: str = "",
    share: float = 0.02,
    scales: Sequence[float] = (1.0, 3.0, 10.0, 30.0),
    groups: int = 10,
    seed: int = 0,
) -> RobustnessResult:
    """Davari et al.'s test: move a few images' features far; does the measure fall?

    ``ceil(share * n)`` images, drawn at random (seeded), are translated by ``scale`` times
    the features' root-mean-square distance from their mean, along a new direction
    orthogonal to every direction the features use (a coordinate appended to the principal
    coordinates: zero for the other images). A linear probe can ignore that direction; a
    measure that compares the two representations as a whole sees a large change in them
    that is carried by a few points.

    Args:
        features: ``(n, d)`` features of n labelled images at one layer.
        labels: ``(n,)`` integer classes.
        measure_names: keys of :data:`vitlens.core.similarity.SIMILARITY_MEASURES` (not PWCCA).
        layer: the layer's name, for the record.
        share: fraction of the images moved, in ``(0, 0.5]``.
        scales: translation lengths, each > 0, in units of the RMS distance.
        groups, seed: of the jackknife over images; ``seed`` also draws the moved images.

    Raises:
        ValueError: an unknown measure, ``share`` or ``scales`` out of range, labels that do
            not match the images.
    """
    names = basis_free_measures(measure_names)
    if not 0 < share <= 0.5:
        raise ValueError(f"share must be a fraction in (0, 0.5], got {share!r}")
    scales = [float(s) for s in scales]
    if not scales or not all(np.isfinite(s) and s > 0 for s in scales):
        raise ValueError(f"scales must be a non-empty list of positive numbers, got {scales}")
    coords = measures.principal_coordinates(features)
    n = coords.shape[0]
    labels = torch.as_tensor(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), one per image, got {tuple(labels.shape)}")
    moved = int(np.ceil(share * n))
    chosen = np.random.default_rng(seed).choice(n, size=moved, replace=False)
    rms = float(coords.pow(2).sum(1).mean().sqrt())
    split = class_halves(labels)

    def moved_copy(scale: float) -> torch.Tensor:
        offset = torch.zeros(n, 1, dtype=coords.dtype)
        offset[chosen] = scale * rms
        return torch.cat([coords, offset], dim=1)

    def measure_all(rows: np.ndarray, scale_list: list[float]) -> tuple[np.ndarray, ...]:
        index = torch.as_tensor(rows)
        x, y, sub_split = coords[index], labels[index], split[rows]
        base = ridge_probe_accuracy(x, y, sub_split)
        copies = [moved_copy(scale)[index] for scale in scale_list]
        sims = np.stack([measures.similarity_grid([x], copies, m)[0] for m in names])
        accs = np.array([ridge_probe_accuracy(z, y, sub_split) for z in copies])
        return sims, accs, base

    sims, accs, base = measure_all(np.arange(n), scales)

    def at_largest(rows: np.ndarray) -> list[float]:
        s, a, b = measure_all(rows, scales[-1:])
        return [*(1 - s[:, 0]), a[0] - b]

    *drops, change = jackknife(at_largest, n, groups=groups, seed=seed, source="one layer")
    return RobustnessResult(
        layer=layer,
        moved=moved,
        scales=scales,
        similarity={m: sims[k] for k, m in enumerate(names)},
        probe_accuracy=accs,
        baseline_accuracy=base,
        drop=dict(zip(names, drops, strict=True)),
        accuracy_change=change,
    )
