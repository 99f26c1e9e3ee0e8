"""Closed-form few-shot linear probes (paper Figures 11, 13 and F.1-F.3).

Following big_vision's ``fewshot_lsr`` evaluator: features are standardised with the
training examples' mean and standard deviation, labels become ``{-1, 1}^C`` targets, and
the probe is regularised least squares, solved in closed form. For ``k``-shot and each
seed, ``k`` examples per class are drawn for fitting and another ``k`` (by default) per
class, disjoint from them, are held out to pick the L2 strength from a grid; the probe
fit on the ``k``-shot examples with that strength is then scored on the test set.

All L2 strengths come from one eigendecomposition of the (primal ``d x d`` or dual
``m x m``, whichever is smaller) Gram matrix; seeds and, for per-token probes, tokens are
batch dimensions of the same tensors.

Representations (:func:`pooled_features`): ``"first"`` (the first token: the class token
of a ViT with one), ``"mean"`` (all tokens; for a ResNet feature map, global average
pooling over locations, as the paper does for ResNets), ``"mean_no_first"`` (every token
but the first) and ``"tokens"`` (every token separately, for per-token probes; for a
ResNet feature map, every location, row by row).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset

from vitlens.core.ridge import ridge_weights
from vitlens.core.stats import Estimate, seed_and_item_difference
from vitlens.models import layer_names, model_info
from vitlens.streaming import BatchRows, ImageSource, RunOptions, Taps, layer_shapes, stream

__all__ = [
    "L2_GRID",
    "POOLINGS",
    "PROBE_MEMORY_BYTES",
    "ProbeResult",
    "check_fewshot_pool",
    "class_halves",
    "dataset_labels",
    "fewshot_linear_probe",
    "fit_and_score_halves",
    "labels_by_class_name",
    "most_shots",
    "pooled_features",
    "pooled_readings",
    "probe_by_layer",
    "probe_curve",
    "probe_difference",
    "probe_readings",
    "ridge_probe_accuracy",
    "token_lattice",
    "token_probe_maps",
    "token_probes",
]

L2_GRID: tuple[float, ...] = tuple(2.0**p for p in range(-10, 11, 2))
"""Default L2 strengths tried on the held-out examples (``2^-10 .. 2^10``)."""

PROBE_MEMORY_BYTES = 2**26
"""Default float64 working memory of the independent probes solved together (64 MiB).

Smaller chunks are also faster here: 1,024 per-location probes of 128 channels (the tiny
profile's Appendix D.4 map; 256 fitting and 256 scored images, one CPU thread) took 21 s
in one solve (4.6 GiB peak), 13 s in chunks of 1 GiB and 9 s in chunks of 16-64 MiB
(1.7 GiB peak at 1 GiB)."""

POOLINGS = ("first", "mean", "mean_no_first", "tokens")
"""Representations :func:`pooled_features` makes of a layer (see the module docstring)."""


@dataclass
class ProbeResult:
    """Few-shot probe accuracy over seeds, and which scored image each probe got right.

    Attributes:
        accuracy: ``(seeds, *positions)`` test accuracy in [0, 1] for each seed
            (``positions`` is empty for one pooled feature, ``(tokens,)`` for per-token
            features, ``(layers, ...)`` for a curve over layers).
        l2: ``(seeds, *positions)`` L2 strength picked on the held-out examples.
        shots: examples per class used for fitting.
        scores: ``(seeds, *positions, images)`` 1.0 where the probe classified a scored image
            right, 0.0 where wrong (for probes averaged by :meth:`averaged`, the share of
            them that were right); ``accuracy`` is its mean over the images.
        labels: ``(images,)`` the scored images' labels, in order.
    """

    accuracy: torch.Tensor
    l2: torch.Tensor
    shots: int
    scores: torch.Tensor
    labels: torch.Tensor

    @property
    def mean(self) -> torch.Tensor:
        """Mean accuracy over seeds, shape ``positions``."""
        return self.accuracy.mean(0)

    @property
    def std(self) -> torch.Tensor:
        """Standard deviation of the accuracy over seeds (0 for one seed), shape ``positions``."""
        return self.accuracy.std(0, correction=0)

    @property
    def num_seeds(self) -> int:
        """Draws of the few-shot examples."""
        return self.accuracy.shape[0]

    def averaged(self, dim: int = -1) -> ProbeResult:
        """The probes along position dimension ``dim`` (e.g. one per token) taken as one:
        accuracy and per-image scores averaged over it, L2 strengths their median."""
        if self.accuracy.dim() < 2:
            raise ValueError("a result without position dimensions has nothing to average")
        dim = dim % self.accuracy.dim()
        if dim == 0:
            raise ValueError("dimension 0 holds the seeds; average over a position dimension")
        return ProbeResult(
            accuracy=self.accuracy.double().mean(dim).float(),
            l2=self.l2.median(dim).values,
            shots=self.shots,
            scores=self.scores.mean(dim),
            labels=self.labels,
        )

    def seed_image_scores(self, at=()) -> np.ndarray:
        """``(seeds, images)`` scores at positions ``at`` (an index into the position
        dimensions: ``-1`` the last layer, ``slice(2, 6)`` or ``range(2, 6)`` layers 2 to 5),
        averaged over the positions selected and any left."""
        index = tuple(
            slice(i.start, i.stop) if isinstance(i, range) else i
            for i in (at if isinstance(at, tuple) else (at,))
        )
        picked = self.scores[(slice(None), *index)].double()
        if picked.dim() < 2:
            raise ValueError(f"position index {at!r} leaves no scored images")
        return picked.reshape(picked.shape[0], -1, picked.shape[-1]).mean(1).numpy()


def probe_difference(
    a: ProbeResult,
    b: ProbeResult,
    *,
    at_a=(),
    at_b=None,
    source: str,
    replicates: int = 2000,
    seed: int = 0,
) -> Estimate:
    """Accuracy of probe ``a`` at positions ``at_a`` minus ``b``'s at ``at_b`` (default
    ``at_a``), with a 95% interval over the few-shot draws and the scored images
    (:func:`~vitlens.core.stats.seed_and_item_difference`).

    The images are resampled together (paired) when ``a`` and ``b`` scored the same images
    in the same order: the same result at two positions, or two models scored on the same
    images (:func:`fit_and_score_halves` of the same draw; the check is that their labels
    agree). Otherwise each is resampled on its own.

    Args:
        a, b: probe results (:func:`probe_by_layer`, :func:`token_probes`...).
        at_a, at_b: indices into the position dimensions (see
            :meth:`ProbeResult.seed_image_scores`).
        source: what the interval does not cover, e.g. ``"one training seed per model"``.
        replicates, seed: of the bootstrap over images.
    """
    at_b = at_a if at_b is None else at_b
    paired = a is b or (a.labels.shape == b.labels.shape and bool(torch.equal(a.labels, b.labels)))
    return seed_and_item_difference(
        a.seed_image_scores(at_a),
        b.seed_image_scores(at_b),
        paired=paired,
        source=source,
        rows="probe seeds",
        items="scored images",
        replicates=replicates,
        seed=seed,
    )


def check_fewshot_pool(labels: torch.Tensor, shots: int, holdout: int | None = None) -> None:
    """Refuse a training pool that cannot give every class ``shots`` images to fit and
    ``holdout`` more to pick the L2 strength (default ``holdout = shots``, as
    :func:`fewshot_linear_probe` does), or that holds fewer than 2 classes.

    Args:
        labels: ``(N,)`` integer labels ``0..C-1`` of the pool.
        shots, holdout: images per class to fit and to hold out.

    Raises:
        ValueError: saying how many images each class needs and what the pool has.
    """
    holdout = shots if holdout is None else holdout
    labels = torch.as_tensor(labels)
    classes = int(labels.max()) + 1 if labels.numel() else 0
    counts = torch.bincount(labels, minlength=classes)
    smallest = int(counts.min()) if classes else 0
    if classes < 2 or smallest < shots + holdout:
        raise ValueError(
            f"too few labelled images for {shots}-shot probes: every class needs "
            f"{shots + holdout} ({shots} to fit, {holdout} held out to pick the L2 strength) "
            f"and there must be 2 classes; the pool has {classes} class(es), the smallest "
            f"with {smallest} image(s) (class counts {counts.tolist()})"
        )


def most_shots(labels: torch.Tensor, holdout_per_shot: int = 1) -> int:
    """The most ``k`` for ``k``-shot probes a training pool affords: every class must give
    ``k`` images to fit and ``holdout_per_shot * k`` more to pick the L2 strength
    (:func:`check_fewshot_pool`). A random sample of a dataset rarely has equal classes
    (1,024 Imagenette images: about 51 per class in a fit half, some classes 44), so a
    chapter asking for many shots takes ``min(wanted, most_shots(labels))``.

    Args:
        labels: ``(N,)`` integer labels ``0..C-1`` of the pool.
        holdout_per_shot: held-out images per fitting image (1: as many, the default of
            :func:`fewshot_linear_probe`).

    Raises:
        ValueError: fewer than 2 classes, or a class too small for even 1 shot.
    """
    labels = torch.as_tensor(labels)
    counts = torch.bincount(labels) if labels.numel() else torch.zeros(0, dtype=torch.long)
    shots = int(counts.min()) // (1 + holdout_per_shot) if len(counts) else 0
    # A pool that affords no shot, or has a single class, is refused with the message that
    # says what each class needs and what it has.
    smallest_request = max(shots, 1)
    check_fewshot_pool(labels, smallest_request, smallest_request * holdout_per_shot)
    return shots


def _fewshot_indices(
    labels: torch.Tensor, num_classes: int, shots: int, holdout: int, seeds: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(seeds, C * shots)`` fit indices and ``(seeds, C * holdout)`` held-out indices."""
    check_fewshot_pool(labels, shots, holdout)
    counts = torch.bincount(labels, minlength=num_classes)
    generator = torch.Generator().manual_seed(seed)
    keys = torch.rand(seeds, labels.numel(), generator=generator)
    # Sort by (class, random key): each class's examples come in a random order per seed.
    order = torch.argsort(labels.double() + keys * 0.5, dim=1)
    starts = torch.cumsum(counts, 0) - counts  # first sorted position of each class
    take = starts[:, None] + torch.arange(shots + holdout)  # (C, shots + holdout)
    chosen = order[:, take]  # (seeds, C, shots + holdout)
    return chosen[..., :shots].flatten(1), chosen[..., shots:].flatten(1)


def _right(
    weights: torch.Tensor,
    x: torch.Tensor,
    labels: torch.Tensor,
    offsets: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(..., R, n)`` whether ``(..., R, d, C)`` weights classify ``(..., n, d)`` inputs
    right, the ``R`` weights side by side in one matrix product (``x`` never copied ``R``
    times); ``offsets``, ``(..., R, 1, C)``, are subtracted from each weight's scores."""
    strengths = weights.shape[-3]
    scores = x @ weights.movedim(-3, -2).flatten(-2)  # (..., n, R * C)
    scores = scores.unflatten(-1, (strengths, -1))  # (..., n, R, C)
    if offsets is not None:
        scores = scores - offsets.movedim(-3, -2)
    return scores.argmax(-1).transpose(-1, -2) == labels


def _integer_labels(labels, which: str) -> torch.Tensor:
    """``(N,)`` int64 labels on the CPU; float or bool labels are refused, not truncated."""
    labels = torch.as_tensor(labels)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(
            f"{which}_labels must be integer class indices 0..C-1, got dtype {labels.dtype} "
            "(float labels would be truncated); convert them with .long() if they are whole"
        )
    if labels.dim() != 1:
        raise ValueError(f"{which}_labels must have shape (N,), got {tuple(labels.shape)}")
    return labels.long().cpu()


def _finite_features(features, which: str) -> torch.Tensor:
    """``features`` as a tensor, or a ValueError naming the rows with NaN or Inf."""
    features = torch.as_tensor(features)
    if features.dim() < 2:
        raise ValueError(
            f"{which}_features must have shape (N, *batch, d), got {tuple(features.shape)}"
        )
    finite = torch.isfinite(features).reshape(features.shape[0], -1).all(dim=1)
    if not bool(finite.all()):
        rows = torch.nonzero(~finite).flatten().tolist()
        raise ValueError(
            f"{which}_features hold NaN or Inf in {len(rows)} row(s) (first: {rows[:5]}); "
            "a probe needs finite features (check the images and the layer)"
        )
    return features


def fewshot_linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    shots: int = 10,
    seeds: int = 5,
    holdout_per_class: int | None = None,
    l2_grid: Sequence[float] = L2_GRID,
    seed: int = 0,
    memory_bytes: int = PROBE_MEMORY_BYTES,
) -> ProbeResult:
    """``k``-shot closed-form least-squares probe onto ``{-1, 1}^C`` targets, several seeds.

    Args:
        train_features: ``(N, *batch, d)`` features of the training pool; ``batch`` dims
            (e.g. tokens) are independent probes.
        train_labels: ``(N,)`` integer labels in ``0 .. C-1``.
        test_features: ``(M, *batch, d)`` test features.
        test_labels: ``(M,)`` test labels.
        shots: ``k``, fitting examples per class.
        seeds: number of random draws of the ``k``-shot set.
        holdout_per_class: held-out training examples per class that pick the L2
            strength (default ``shots``), disjoint from the fitting examples.
        l2_grid: L2 strengths to choose from.
        seed: seed of the draws.
        memory_bytes: working memory for the independent problems (``batch``) solved
            together; more of them are solved in turn, each chunk as many as fit (at least
            one). The results do not depend on it: a 224-px ResNet's 3,136 locations at
            once would need tens of GiB (:data:`PROBE_MEMORY_BYTES`).

    Returns:
        :class:`ProbeResult` (accuracy per seed; ``.mean`` and ``.std`` over seeds).

    Raises:
        TypeError: float or bool labels (they would be truncated to classes).
        ValueError: NaN/Inf features, a pool with a single class, an empty, negative or
            non-finite ``l2_grid``, labels outside the pool's classes, too few examples per
            class, or shapes that disagree.
    """
    holdout = shots if holdout_per_class is None else holdout_per_class
    for name, value, low in (
        ("shots", shots, 1),
        ("seeds", seeds, 1),
        ("holdout", holdout, 1),
        ("memory_bytes", memory_bytes, 1),
    ):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    train_labels, test_labels = (
        _integer_labels(train_labels, "train"),
        _integer_labels(test_labels, "test"),
    )
    train_features = _finite_features(train_features, "train")
    test_features = _finite_features(test_features, "test")
    grid = [float(v) for v in l2_grid] if l2_grid is not None else []
    if not grid or not all(np.isfinite(v) and v >= 0 for v in grid):
        raise ValueError(f"l2_grid must be non-empty, finite and non-negative, got {l2_grid}")
    if train_labels.numel() and int(train_labels.max()) < 1:
        raise ValueError(
            "the training pool holds a single class (label 0 only); a probe needs at least "
            "2 classes, labelled 0..C-1"
        )
    if (
        train_features.shape[0] != train_labels.numel()
        or test_features.shape[0] != test_labels.numel()
    ):
        raise ValueError(
            f"features and labels disagree: train {tuple(train_features.shape)} vs "
            f"{train_labels.numel()} labels, test {tuple(test_features.shape)} vs "
            f"{test_labels.numel()} labels"
        )
    if train_features.shape[1:] != test_features.shape[1:]:
        raise ValueError(
            f"train features {tuple(train_features.shape)} and test features "
            f"{tuple(test_features.shape)} must agree after the first dimension"
        )
    num_classes = int(train_labels.max()) + 1
    if train_labels.min() < 0 or test_labels.min() < 0 or test_labels.max() >= num_classes:
        raise ValueError(
            f"labels must be integers in 0..{num_classes - 1} (the training pool's classes); "
            f"test labels span {int(test_labels.min())}..{int(test_labels.max())}"
        )
    fit_idx, held_idx = _fewshot_indices(train_labels, num_classes, shots, holdout, seeds, seed)
    batch_shape, dim = train_features.shape[1:-1], train_features.shape[-1]
    train_flat = train_features.cpu().reshape(train_labels.numel(), -1, dim)  # (N, P, d)
    test_flat = test_features.cpu().reshape(test_labels.numel(), -1, dim)  # (M, P, d)
    problems = train_flat.shape[1]
    if problems == 0:
        raise ValueError(
            f"features of shape {tuple(train_features.shape)} hold no probe problem: their "
            "batch dimensions (between the images and the features) are empty"
        )
    each = _probe_bytes(
        seeds, fit_idx.shape[1], held_idx.shape[1], dim, num_classes, len(grid), test_labels.numel()
    )
    size = max(1, memory_bytes // each)  # independent problems solved together
    l2s = torch.tensor(grid, dtype=torch.float64)
    parts = [
        _probe_problems(
            train_flat[:, start : start + size],
            test_flat[:, start : start + size],
            (train_labels, test_labels, num_classes),
            (fit_idx, held_idx),
            l2s,
        )
        for start in range(0, problems, size)
    ]
    test_accuracy, l2, test_right = (torch.cat(p) for p in zip(*parts, strict=True))
    test_accuracy, l2 = (v.reshape(*batch_shape, seeds) for v in (test_accuracy, l2))
    test_right = test_right.reshape(*batch_shape, seeds, test_labels.numel())
    return ProbeResult(
        accuracy=torch.movedim(test_accuracy, -1, 0).float(),
        l2=torch.movedim(l2, -1, 0),
        shots=shots,
        scores=torch.movedim(test_right.float(), -2, 0),
        labels=test_labels,
    )


def _probe_bytes(
    seeds: int, fit: int, held: int, dim: int, classes: int, strengths: int, tests: int
) -> int:
    """Bytes of float64 working memory one probe problem (one token, one location) needs in
    :func:`_probe_problems`: its drawn rows and their standardised copies, the test
    features, the eigendecompositions, every strength's weights (and their rotations) and
    the held-out and test scores."""
    rank = min(fit, dim)
    values = (
        2 * seeds * (fit + held) * dim
        + tests * dim
        + 2 * seeds * rank * rank
        + 2 * seeds * rank * strengths * classes
        + 2 * seeds * strengths * dim * classes
        + seeds * held * strengths * classes
        + seeds * tests * classes
    )
    return 8 * values


def _probe_problems(
    train: torch.Tensor,
    test: torch.Tensor,
    labels: tuple[torch.Tensor, torch.Tensor, int],
    draws: tuple[torch.Tensor, torch.Tensor],
    l2s: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`fewshot_linear_probe` of ``P`` independent problems at once.

    Args:
        train: ``(N, P, d)`` training-pool features; test: ``(M, P, d)`` test features.
        labels: ``(N,)`` training and ``(M,)`` test class indices, and the class count
            ``C``.
        draws: ``(seeds, C * shots)`` fit and ``(seeds, C * holdout)`` held-out row indices.
        l2s: ``(R,)`` L2 strengths.

    Returns:
        ``(P, seeds)`` test accuracy, ``(P, seeds)`` chosen strength and ``(P, seeds, M)``
        whether each test image was classified right.
    """
    train_labels, test_labels, num_classes = labels
    fit_idx, held_idx = draws
    # (P, seeds, m, d): the problems lead; only the drawn rows become float64.
    fit, held = (train[rows].double().movedim((0, 1), (-3, -2)) for rows in (fit_idx, held_idx))
    test = torch.movedim(test.double(), 0, -2)  # (P, M, d)
    mean = fit.mean(-2, keepdim=True)
    std = fit.std(-2, keepdim=True, correction=0) + 1e-5
    targets = 2.0 * torch.nn.functional.one_hot(train_labels[fit_idx], num_classes).double() - 1
    weights = ridge_weights((fit - mean) / std, targets, l2s)  # (P, seeds, R, d, C)
    held_right = _right(weights, (held - mean) / std, train_labels[held_idx][:, None, :])
    held_accuracy = held_right.double().mean(-1)
    best = held_accuracy.argmax(-1)  # (P, seeds); ties pick the smallest strength
    index = best[..., None, None, None].expand(*best.shape, 1, *weights.shape[-2:])
    chosen = weights.gather(-3, index)  # (P, seeds, 1, d, C): only the picked strength
    # The standardisation folded into the weights, x @ (W / std) - (mean / std) @ W, so the
    # test features, shared by every seed, are not copied once per seed (a ResNet's 1,024
    # map locations times 512 test images, five times over in float64).
    chosen = chosen[..., 0, :, :]  # (P, seeds, d, C)
    test_right = _right(
        chosen / std.transpose(-1, -2), test, test_labels, offsets=(mean / std) @ chosen
    )
    return test_right.double().mean(-1), l2s[best], test_right


def class_halves(labels: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(n,)`` bool: True for every second image of each class, in order.

    The one fit/score split of :func:`ridge_probe_accuracy`: balanced over classes whatever
    order the images come in (a class-sorted folder, or labels that cycle ``i % C``).
    """
    labels = np.asarray(labels)
    rank = np.empty(len(labels), dtype=int)
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        rank[members] = np.arange(len(members))
    return rank % 2 == 1


def fit_and_score_halves(data) -> tuple[Subset, Subset]:
    """The one fit/score split of the few-shot probes: every second image of each class
    scores, the others fit (:func:`class_halves`), so both halves keep every class
    whatever order the images come in (a class-sorted folder, a random sample).

    Used by the chapters and the ``probe`` command alike.

    Args:
        data: a labelled Dataset (:func:`dataset_labels`) with at least 2 images of a class.

    Returns:
        ``(fit, score)`` Subsets of ``data``, each in the images' order.
    """
    score = class_halves(dataset_labels(data))
    if not score.any():
        raise ValueError(
            f"a fit/score split needs 2 images of some class, got {len(score)} image(s) of "
            "distinct classes"
        )
    return Subset(data, np.flatnonzero(~score).tolist()), Subset(
        data, np.flatnonzero(score).tolist()
    )


def ridge_probe_accuracy(
    features: torch.Tensor,
    labels: torch.Tensor,
    score: np.ndarray,
    *,
    l2_grid: Sequence[float] = L2_GRID,
) -> float:
    """Accuracy of a linear probe fit on every pool image, scored on the others.

    Least squares onto ``{-1, 1}^C`` targets. The features are centred on the pool and
    divided by one number (their root-mean-square norm), not per feature, so their variance
    structure is kept: a direction of little variance stays one the probe needs a large
    weight to use. The L2 strength is chosen from ``l2_grid`` on the pool alone (fit on
    one :func:`class_halves` half of it, checked on the other), then the probe is refit
    on the whole pool.

    Args:
        features: ``(n, d)`` features.
        labels: ``(n,)`` integer classes ``0 .. C-1``.
        score: ``(n,)`` bool, True for the images scored (e.g. :func:`class_halves`).

    Returns:
        Accuracy on the scored images, a fraction.

    Raises:
        ValueError: shapes that disagree, NaN/Inf features, or a pool half without some
            class of the scored images.
    """
    x = _finite_features(features, "probe").double()
    x = x.reshape(x.shape[0], -1)
    labels = _integer_labels(labels, "probe")
    score = torch.as_tensor(np.asarray(score, dtype=bool))
    if score.shape != labels.shape or x.shape[0] != labels.shape[0]:
        raise ValueError(
            f"features {tuple(x.shape)}, labels {tuple(labels.shape)} and score mask "
            f"{tuple(score.shape)} must describe the same images"
        )
    pool, pool_labels = x[~score], labels[~score]
    inner = torch.as_tensor(class_halves(pool_labels))
    missing = set(labels[score].tolist()) - set(pool_labels[~inner].tolist())
    if missing:
        raise ValueError(f"classes {sorted(missing)} have too few pool images to fit a probe")
    num_classes = int(labels.max()) + 1
    l2s = torch.tensor([float(v) for v in l2_grid], dtype=torch.float64)

    def fit(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean = pool[rows].mean(0, keepdim=True)
        scale = (pool[rows] - mean).pow(2).sum(1).mean().sqrt()
        targets = 2.0 * torch.nn.functional.one_hot(pool_labels[rows], num_classes).double() - 1
        return ridge_weights((pool[rows] - mean) / scale, targets, l2s), mean, scale

    weights, mean, scale = fit(~inner)
    inner_right = _right(weights, (pool[inner] - mean) / scale, pool_labels[inner])
    best = int(inner_right.double().mean(-1).argmax())
    weights, mean, scale = fit(torch.ones_like(inner))
    right = _right(weights[best : best + 1], (x[score] - mean) / scale, labels[score])
    return float(right.double().mean(-1)[0])


# --------------------------------------------------------------------- features from models


def _pool(value: torch.Tensor, pooling: str) -> torch.Tensor:
    """One layer's ``(n, T, C)`` tokens or ``(n, C, h, w)`` map to the pooled representation."""
    if value.dim() == 4:
        if pooling == "tokens":  # every location of the map, row by row, as a token
            return value.flatten(2).transpose(1, 2)
        if pooling != "mean":
            raise ValueError(
                f"feature maps (n, C, h, w) are pooled with 'mean' (global average pooling) "
                f"or kept per location with 'tokens'; {pooling!r} applies to token layers"
            )
        return value.mean(dim=(2, 3))
    if value.dim() != 3:
        raise ValueError(f"cannot pool a layer output of shape {tuple(value.shape)}")
    if pooling == "first":
        return value[:, 0]
    if pooling == "mean":
        return value.mean(1)
    if pooling == "mean_no_first":
        return value[:, 1:].mean(1)
    return value


def pooled_features(
    model: nn.Module,
    data: ImageSource,
    layers: Sequence[str] | None = None,
    *,
    pooling: str = "mean",
    run: RunOptions = RunOptions(),
) -> dict[str, torch.Tensor]:
    """Pooled representations of every image at ``layers``, for probing (Figures 11, 13).

    Args:
        model: a timm ViT, Mixer or ResNet (or any module with explicit ``layers``).
        data: ``(N, C, H, W)`` tensor, Dataset or DataLoader, in a fixed order (labels are
            matched by position; see :func:`dataset_labels`).
        layers: layer names (default: block outputs).
        pooling: one of ``POOLINGS`` (see the module docstring).
        run: batch size, device, progress (:class:`~vitlens.streaming.RunOptions`).

    Returns:
        ``{layer: (N, d)}`` float32 on the CPU, or ``(N, T, d)`` for ``"tokens"``.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    return pooled_readings(model, data, [pooling], layers, run=run)[pooling]


def pooled_readings(
    model: nn.Module,
    data: ImageSource,
    poolings: Sequence[str],
    layers: Sequence[str] | None = None,
    *,
    run: RunOptions = RunOptions(),
) -> dict[str, dict[str, torch.Tensor]]:
    """Several pooled readings of the same layers from one pass over the images.

    Each reading equals :func:`pooled_features` with that ``pooling``, at the cost of one
    forward pass instead of one per reading (e.g. a ViT read at its first token and at the
    mean of its tokens, Figure 11).

    Args:
        poolings: distinct names from ``POOLINGS``; ``"tokens"`` (a different shape) only
            alone.
        model, data, layers, run: as for :func:`pooled_features`.

    Returns:
        ``{pooling: {layer: (N, d)}}`` (``(N, T, d)`` for ``"tokens"``), float32 on the CPU.
    """
    poolings = list(poolings)
    unknown = [p for p in poolings if p not in POOLINGS]
    if not poolings or unknown:
        raise ValueError(f"poolings must be names from {POOLINGS}, got {poolings!r}")
    if len(set(poolings)) != len(poolings) or ("tokens" in poolings and len(poolings) > 1):
        raise ValueError(
            f"poolings must be distinct, and 'tokens' (one row per token) alone; got {poolings!r}"
        )
    layers = list(layer_names(model, "blocks") if layers is None else layers)

    def readings(value: torch.Tensor) -> torch.Tensor:  # (n, readings, ...)
        return torch.stack([_pool(value, pooling) for pooling in poolings], 1)

    stacked = _layer_readings(model, data, layers, readings, run)
    return {
        pooling: {name: value[:, index] for name, value in stacked.items()}
        for index, pooling in enumerate(poolings)
    }


def _layer_readings(
    model: nn.Module,
    data: ImageSource,
    layers: Sequence[str],
    reading: Callable[[torch.Tensor], torch.Tensor],
    run: RunOptions,
) -> dict[str, torch.Tensor]:
    """``{layer: (N, ...)}`` float32 on the CPU: ``reading`` of each layer's ``(n, ...)``
    output, taken in the hook (only what it keeps is held), for every image in order."""
    parts = {name: BatchRows.for_data(data) for name in layers}

    def collect(_images: torch.Tensor, stores: list[dict[str, torch.Tensor]]) -> None:
        for name in layers:
            parts[name].add(stores[0][name])

    def kept(value: torch.Tensor) -> torch.Tensor:
        return reading(value).float().cpu()

    stream(Taps(model, layers, kept), data, collect, run=run, desc="probe features", shard=True)
    return {name: rows.gathered() for name, rows in parts.items()}


def dataset_labels(dataset) -> torch.Tensor:
    """``(N,)`` labels of a Dataset in order: ``.targets`` (torchvision) or ``.batch.labels``
    (:class:`vitlens.data.shapes.ShapesDataset`), through (nested) :class:`torch.utils.data.Subset`
    too."""
    indices = None
    while isinstance(dataset, torch.utils.data.Subset):  # a Subset of a Subset... composes
        outer = torch.as_tensor(dataset.indices, dtype=torch.long)
        indices = outer if indices is None else outer[indices]
        dataset = dataset.dataset
    if hasattr(dataset, "targets"):
        labels = torch.as_tensor(np.asarray(dataset.targets))
    elif hasattr(dataset, "batch") and hasattr(dataset.batch, "labels"):
        labels = torch.as_tensor(dataset.batch.labels)
    else:
        raise ValueError(
            f"cannot read labels from a {type(dataset).__name__}; pass them as a tensor "
            "(datasets with .targets or a ShapesDataset are read directly)"
        )
    return labels if indices is None else labels[indices]


def _class_names(dataset) -> list[str] | None:
    """A dataset's class names by label (``.classes``, also through a Subset), or None."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    classes = getattr(dataset, "classes", None)
    return [str(c) for c in classes] if classes is not None else None


def labels_by_class_name(train, test, labels: torch.Tensor) -> torch.Tensor:
    """Test labels renumbered to the training set's classes, matched by class name.

    An ImageFolder numbers its classes by folder position, so a test folder holding only
    class ``b`` would otherwise be scored as class ``a``.

    Raises:
        ValueError: a test class the training set does not have.
    """
    train_names, test_names = _class_names(train), _class_names(test)
    if train_names is None or test_names is None or train_names == test_names:
        return labels
    index = {name: i for i, name in enumerate(train_names)}
    unknown = sorted(set(test_names[i] for i in labels.unique().tolist()) - set(index))
    if unknown:
        raise ValueError(f"test classes {unknown} are not among the training classes {train_names}")
    mapping = torch.tensor([index.get(name, -1) for name in test_names])
    return mapping[labels]


def probe_curve(
    train_features: dict[str, torch.Tensor],
    train_labels: torch.Tensor,
    test_features: dict[str, torch.Tensor],
    test_labels: torch.Tensor,
    *,
    shots: int = 10,
    seeds: int = 5,
) -> ProbeResult:
    """The few-shot probe of every layer: one curve over depth (Figures 11 and 13).

    Args:
        train_features, test_features: ``{layer: (n, ...)}`` pooled features, same layers in
            the same order (e.g. from :func:`pooled_features`).
        train_labels, test_labels: ``(n,)`` class indices.
        shots, seeds: as for :func:`fewshot_linear_probe`.

    Returns:
        a :class:`ProbeResult` whose ``accuracy`` is ``(seeds, layers, *batch)`` (its
        ``scores`` ``(seeds, layers, *batch, images)``), so ``.mean`` and ``.std`` are
        curves over the layers.
    """
    if list(train_features) != list(test_features):
        raise ValueError("train and test features must name the same layers in the same order")
    if not train_features:
        raise ValueError("no layers to probe")
    results = [
        fewshot_linear_probe(
            train_features[name],
            train_labels,
            test_features[name],
            test_labels,
            shots=shots,
            seeds=seeds,
        )
        for name in train_features
    ]
    return ProbeResult(
        accuracy=torch.stack([r.accuracy for r in results], dim=1),
        l2=torch.stack([r.l2 for r in results], dim=1),
        shots=results[0].shots,
        scores=torch.stack([r.scores for r in results], dim=1),
        labels=results[0].labels,
    )


def probe_by_layer(
    model: nn.Module,
    train_data,
    test_data,
    layers: Sequence[str] | None = None,
    *,
    pooling: str = "mean",
    shots: int = 10,
    seeds: int = 5,
    run: RunOptions = RunOptions(),
) -> ProbeResult:
    """Few-shot probe accuracy of one pooled representation at every layer (Figs. 11, 13).

    Serves Figure 11 (right): the same layers probed at the first token or at the mean of
    the tokens, e.g. a global-average-pooling ViT read at a token it was never trained to
    use. ``train_data`` and ``test_data`` are labelled Datasets (:func:`dataset_labels`).

    Args:
        layers, pooling: as for :func:`pooled_features`.
        shots, seeds: as for :func:`fewshot_linear_probe`.
        run: batch size, device, progress (:class:`~vitlens.streaming.RunOptions`).

    Returns:
        a :class:`ProbeResult` over ``(seeds, layers)``: ``.mean`` and ``.std`` over the
        seeds are ``(layers,)`` accuracies in [0, 1]; :func:`probe_difference` compares two.
    """
    return probe_readings(
        model, train_data, test_data, [pooling], layers, shots=shots, seeds=seeds, run=run
    )[pooling]


def probe_readings(
    model: nn.Module,
    train_data,
    test_data,
    poolings: Sequence[str],
    layers: Sequence[str] | None = None,
    *,
    shots: int = 10,
    seeds: int = 5,
    run: RunOptions = RunOptions(),
) -> dict[str, ProbeResult]:
    """:func:`probe_by_layer` for several readings of the same layers, one pass over the images.

    Figure 11 (right) reads each ViT at its first token and at the mean of its tokens; each
    reading's curve equals :func:`probe_by_layer` with that ``pooling``, the features of
    all readings taken in one forward pass (:func:`pooled_readings`).

    Args:
        poolings: distinct names from ``POOLINGS`` (``"tokens"`` only alone).
        layers, shots, seeds, run: as for :func:`probe_by_layer`.

    Returns:
        ``{pooling: ProbeResult}``, each over ``(seeds, layers)`` (see :func:`probe_by_layer`).
    """
    train_labels, test_labels = dataset_labels(train_data), dataset_labels(test_data)
    train = pooled_readings(model, train_data, poolings, layers, run=run)
    test = pooled_readings(model, test_data, poolings, layers, run=run)
    return {
        pooling: probe_curve(
            train[pooling], train_labels, test[pooling], test_labels, shots=shots, seeds=seeds
        )
        for pooling in poolings
    }


def token_lattice(
    grid: tuple[int, int], step: int = 2, through: tuple[int, int] = (1, 1)
) -> list[tuple[int, int]]:
    """The ``(row, col)`` cells of every ``step``-th row and column of a token grid that
    pass through cell ``through``, row by row: the single tokens chapter 5 probes (and the
    ones its explorer offers) when probing all of them would cost too much.

    Args:
        grid: ``(rows, cols)`` of the token grid (:func:`vitlens.model_info`).
        step: rows and columns between two lattice cells, >= 1.
        through: a cell of the grid the lattice contains.

    Raises:
        ValueError: a step below 1, or ``through`` outside the grid.
    """
    rows, cols = grid
    if step < 1:
        raise ValueError(f"step must be a whole number of rows and columns >= 1, got {step}")
    if not (0 <= through[0] < rows and 0 <= through[1] < cols):
        raise ValueError(f"cell {through} is outside the {rows}x{cols} grid")
    return [
        (r, c)
        for r in range(through[0] % step, rows, step)
        for c in range(through[1] % step, cols, step)
    ]


def token_probes(
    model: nn.Module,
    train_data,
    test_data,
    cells: Sequence[tuple[int, int]],
    *,
    shots: int = 10,
    seeds: int = 5,
    run: RunOptions = RunOptions(),
) -> dict[str, ProbeResult]:
    """Few-shot probes of a model's tokens at every block (Figure 11, left, and its pools).

    For a model with tokens: ``"class token"`` (if it has one), ``"GAP of spatial tokens"``
    (their mean) and ``"single spatial token"`` (one probe per token at ``cells``, their
    accuracies averaged); for a ResNet, ``"GAP"`` (its global average pool, the paper's
    reading of a ResNet). ``train_data`` and ``test_data`` are labelled Datasets
    (:func:`dataset_labels`).

    Args:
        cells: ``(row, col)`` grid cells of the spatial tokens probed one by one.
        shots, seeds: as for :func:`fewshot_linear_probe`.
        run: batch size, device, progress (:class:`~vitlens.streaming.RunOptions`).

    Returns:
        ``{probe: ProbeResult}``, each over ``(seeds, layers)``; for single tokens, the
        tokens' probes averaged (:meth:`ProbeResult.averaged`): their mean accuracy, its
        spread over the seeds.

    Raises:
        ValueError: a cell outside the model's token grid, or no cells.
    """
    info = model_info(model)
    y_train, y_test = dataset_labels(train_data), dataset_labels(test_data)

    def curve(train: dict, test: dict) -> ProbeResult:
        result = probe_curve(train, y_train, test, y_test, shots=shots, seeds=seeds)
        if result.accuracy.dim() > 2:  # one probe per token: average over the tokens
            return result.averaged(-1)
        return result

    if info.family == "resnet":
        train = pooled_features(model, train_data, pooling="mean", run=run)
        return {"GAP": curve(train, pooled_features(model, test_data, pooling="mean", run=run))}
    height, width = info.grid
    if not cells or any(not (0 <= r < height and 0 <= c < width) for r, c in cells):
        raise ValueError(f"cells must be a non-empty list inside the {height}x{width} grid")
    prefix = info.num_prefix_tokens
    tokens = torch.tensor([prefix + r * width + c for r, c in cells])
    head = 1 if prefix else 0  # the class token's column, where the model has one

    def reading(value: torch.Tensor) -> torch.Tensor:  # (n, head + 1 + cells, d)
        pooled = value[:, prefix:].mean(1, keepdim=True)
        return torch.cat([value[:, :head], pooled, value[:, tokens.to(value.device)]], 1)

    layers = layer_names(model, "blocks")
    train = _layer_readings(model, train_data, layers, reading, run)
    test = _layer_readings(model, test_data, layers, reading, run)

    def select(at) -> tuple[dict, dict]:
        return {k: v[:, at] for k, v in train.items()}, {k: v[:, at] for k, v in test.items()}

    probes = {}
    if head:
        probes["class token"] = curve(*select(0))
    probes["GAP of spatial tokens"] = curve(*select(head))
    probes["single spatial token"] = curve(*select(slice(head + 1, None)))
    return probes


def token_probe_maps(
    model: nn.Module,
    train_data,
    test_data,
    layers: Sequence[str] | None = None,
    *,
    shots: int = 10,
    seeds: int = 5,
    run: RunOptions = RunOptions(),
) -> dict[str, ProbeResult]:
    """A few-shot probe on every spatial token, as a map over the grid (Appendix D.4).

    "We train a linear probe on each individual token and plot the average accuracy over
    the test set" (Fig. D.4): one probe per patch token of a ViT or Mixer (class and
    register tokens left out) or per location of a ResNet feature map, at each of
    ``layers``. ``train_data`` and ``test_data`` are labelled Datasets
    (:func:`dataset_labels`).

    Args:
        layers: layer names (default: the first, middle and last block outputs).
        shots, seeds: as for :func:`fewshot_linear_probe`.
        run: batch size, device, progress (:class:`~vitlens.streaming.RunOptions`).

    Returns:
        ``{layer: ProbeResult}``, each over ``(seeds, rows, cols)`` on the layer's own grid
        (a ResNet's grid shrinks with depth): ``.mean`` the ``(rows, cols)`` map.
    """

    blocks = layer_names(model, "blocks")
    layers = (
        list(layers) if layers is not None else [blocks[0], blocks[len(blocks) // 2], blocks[-1]]
    )
    info = model_info(model)
    prefix = info.num_prefix_tokens
    shapes = layer_shapes(model, layers)  # each layer's grid

    def locations(value: torch.Tensor) -> torch.Tensor:  # (n, rows * cols, d)
        # A map's locations have no prefix (prefix is 0 for a ResNet).
        return _pool(value, "tokens")[:, prefix:]

    train = _layer_readings(model, train_data, layers, locations, run)
    test = _layer_readings(model, test_data, layers, locations, run)
    y_train, y_test = dataset_labels(train_data), dataset_labels(test_data)
    maps = {}
    for name in layers:
        shape = tuple(shapes[name])
        grid = shape[2:] if len(shape) == 4 else info.grid
        if grid is None:
            raise ValueError(f"layer {name!r} of shape {shape} has no spatial grid to map")
        result = probe_curve(
            {name: train[name]}, y_train, {name: test[name]}, y_test, shots=shots, seeds=seeds
        )
        draws = result.num_seeds
        maps[name] = ProbeResult(
            accuracy=result.accuracy[:, 0].reshape(draws, *grid),
            l2=result.l2[:, 0].reshape(draws, *grid),
            shots=result.shots,
            scores=result.scores[:, 0].reshape(draws, *grid, -1),
            labels=result.labels,
        )
    return maps
