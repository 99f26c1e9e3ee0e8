"""Uncertainty maths: a statistic with its 95% interval (:class:`Estimate`) and the ways the
book gets one: bootstraps over items (images, batches, tokens, heads; paired or not), a normal
interval for two accuracies, a Student-t interval over training seeds, an interval over
both seeds and items (few-shot draws and scored images), one statistic's per-seed estimates
combined over training seeds, a bootstrap over images of
receptive-field statistics, and a delete-a-group jackknife over images for
statistics too costly to recompute hundreds of times; plus Spearman's rank correlation.

Pure numpy; the verdict rules (:mod:`vitlens.book.verdicts`) and the analyses build on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "LEVEL",
    "ONE_SEED",
    "Estimate",
    "across_seeds",
    "bootstrap",
    "bootstrap_difference",
    "bootstrap_mean",
    "field_estimate",
    "jackknife",
    "proportion_difference",
    "rank_correlation",
    "seed_and_item_difference",
    "spread_difference",
]

LEVEL = 0.95
"""Coverage of every interval the book reports."""

ONE_SEED = "one training seed per model"
"""What an interval measured on one trained copy of each model does not cover; the note
the estimators append by default, and that :func:`across_seeds` drops once the seeds are
covered."""


@dataclass(frozen=True)
class Estimate:
    """A statistic with its 95% interval and where the uncertainty comes from.

    Attributes:
        value: the point estimate (on all the data).
        low, high: the interval's ends (``low <= high``).
        source: the uncertainty in words, e.g. ``"bootstrap over 4 batches of 128
            images; one training seed per model"``.
    """

    value: float
    low: float
    high: float
    source: str

    def __post_init__(self) -> None:
        values = (self.value, self.low, self.high)
        if not all(np.isfinite(v) for v in values):
            raise ValueError(f"an estimate needs finite numbers, got {values}")
        if self.low > self.high:
            raise ValueError(f"interval [{self.low}, {self.high}] is reversed")

    @classmethod
    def from_replicates(
        cls, value: float, replicates: Sequence[float] | np.ndarray, source: str
    ) -> Estimate:
        """Point ``value`` with the percentile interval of bootstrap ``replicates``."""
        reps = np.asarray(replicates, dtype=float).ravel()
        reps = reps[np.isfinite(reps)]
        if reps.size < 2:
            raise ValueError("an interval needs at least 2 finite replicates")
        tail = 100 * (1 - LEVEL) / 2
        low, high = np.percentile(reps, [tail, 100 - tail])
        return cls(float(value), float(min(low, value)), float(max(high, value)), source)

    @classmethod
    def exact(cls, value: float, source: str = "exact: no sampling involved") -> Estimate:
        """A statistic without sampling error (e.g. a deterministic computation)."""
        return cls(float(value), float(value), float(value), source)

    @property
    def width(self) -> float:
        """``high - low``, in the statistic's units: how much the data leave open."""
        return self.high - self.low

    def text(self, fmt: str = ".2f") -> str:
        """``"0.12 [0.08, 0.15]"``, or just the value when the interval is a point."""
        if self.low == self.high == self.value:
            return format(self.value, fmt)
        return f"{self.value:{fmt}} [{self.low:{fmt}}, {self.high:{fmt}}]"


def bootstrap(
    statistic: Callable[[np.ndarray], float],
    num_items: int,
    *,
    replicates: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """``(replicates,)`` values of ``statistic(indices)`` for indices resampled with replacement.

    Args:
        statistic: maps an ``(num_items,)`` integer index array (a resample of the items:
            images, batches, tokens, heads) to a number.
        num_items: how many items there are (at least 2).
        replicates: number of bootstrap resamples.
        seed: for the resampling generator.
    """
    if num_items < 2:
        raise ValueError(f"a bootstrap needs at least 2 items, got {num_items}")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, num_items, size=(replicates, num_items))
    return np.array([float(statistic(idx)) for idx in draws])


def bootstrap_mean(
    values: np.ndarray | Sequence[float], *, source: str, replicates: int = 2000, seed: int = 0
) -> Estimate:
    """Mean of per-item ``values`` (first axis) with a bootstrap interval over the items."""
    values = np.asarray(values, dtype=float)
    if values.shape[0] < 2:
        raise ValueError(f"a bootstrap needs at least 2 items, got {values.shape[0]}")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, values.shape[0], size=(replicates, values.shape[0]))
    reps = values[draws].reshape(replicates, -1).mean(axis=1)
    return Estimate.from_replicates(values.mean(), reps, source)


def proportion_difference(p_a: float, n_a: int, p_b: float, n_b: int, *, source: str) -> Estimate:
    """``p_a - p_b`` for two accuracies on independent test sets, normal 95% interval."""
    for p, n in ((p_a, n_a), (p_b, n_b)):
        if not (0 <= p <= 1 and n > 0):
            raise ValueError(f"an accuracy in [0, 1] on n > 0 images, got {p} on {n}")
    se = float(np.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b))
    diff = p_a - p_b
    return Estimate(diff, diff - 1.96 * se, diff + 1.96 * se, source)


def bootstrap_difference(
    a,
    b,
    statistic: Callable[[np.ndarray], float] = np.mean,
    *,
    source: str,
    paired: bool = False,
    replicates: int = 2000,
    seed: int = 0,
) -> Estimate:
    """``statistic(a) - statistic(b)`` with a bootstrap interval over the items of each.

    ``paired=True`` resamples the same indices in both (items matched one to one, e.g. the
    same token in two models) and the estimate's source says so (``"paired "`` before
    ``source``); otherwise each side is resampled on its own.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if min(len(a), len(b)) < 2:
        raise ValueError("a bootstrap needs at least 2 items on each side")
    if paired and len(a) != len(b):
        raise ValueError(f"paired items must match one to one, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    reps = np.empty(replicates)
    for r in range(replicates):
        ia = rng.integers(0, len(a), len(a))
        ib = ia if paired else rng.integers(0, len(b), len(b))
        reps[r] = statistic(a[ia]) - statistic(b[ib])
    source = f"paired {source}" if paired else source
    return Estimate.from_replicates(statistic(a) - statistic(b), reps, source)


_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def _t975(df: int) -> float:
    """97.5% quantile of Student's t with ``df`` degrees of freedom (1.96 beyond 30)."""
    if df <= len(_T975):
        return _T975[df - 1]
    return 2.042 if df <= 30 else 1.96


def spread_difference(
    mean_a: float, std_a: float, mean_b: float, std_b: float, num_seeds: int, *, source: str
) -> Estimate:
    """``mean_a - mean_b`` of two quantities measured over ``num_seeds`` seeds each.

    ``std_a``, ``std_b`` are the spreads over seeds (population standard deviations, as
    :class:`vitlens.analyses.probes.ProbeResult` reports them). Student-t 95% interval.
    """
    if num_seeds < 2:
        raise ValueError("an interval over seeds needs at least 2 seeds")
    se = float(np.sqrt((std_a**2 + std_b**2) / (num_seeds - 1)))
    half = _t975(2 * (num_seeds - 1)) * se
    diff = float(mean_a - mean_b)
    return Estimate(diff, diff - half, diff + half, source)


def across_seeds(estimates: Sequence[Estimate], *, seeds: str = "training seeds") -> Estimate:
    """One statistic measured on several training seeds of the same model(s), each with its
    own interval over the images, combined: the mean over seeds, with a 95% interval over
    both the seeds and the images.

    The two sources add in quadrature, on each side of the mean:

    * seeds: Student-t on the per-seed values (``k - 1`` degrees of freedom), how far
      another training run could land;
    * images: the mean over seeds of each interval's distance from its value on that side.
      When every seed is measured on the same images their image errors move together and
      the mean's image interval is about each seed's; when the images differ it is narrower,
      so the mean is the conservative choice.

    For a difference between two models, measure it on seed pairs (seed ``i`` of one with seed
    ``i`` of the other, independent runs) and combine the per-pair differences here.

    Args:
        estimates: one :class:`Estimate` per seed, at least 2.
        seeds: what the seeds are, in words, for the source.

    Returns:
        The combined :class:`Estimate`; its source names the per-seed values and the first
        estimate's source (what the image interval covers), without its :data:`ONE_SEED` note.
    """
    if len(estimates) < 2:
        raise ValueError(
            f"an interval over seeds needs at least 2 seeds' estimates, got {len(estimates)}"
        )
    values = np.array([e.value for e in estimates])
    below = np.mean([e.value - e.low for e in estimates])
    above = np.mean([e.high - e.value for e in estimates])
    k = len(values)
    half_seeds = _t975(k - 1) * values.std(ddof=1) / np.sqrt(k)
    mean = float(values.mean())
    listed = ", ".join(f"{v:.3g}" for v in values)
    images = "; ".join(part for part in estimates[0].source.split("; ") if part != ONE_SEED)
    source = (
        f"t interval over {k} {seeds} (per seed: {listed}) and, in quadrature, the seeds' "
        f"mean interval from: {images}"
    )
    return Estimate(
        mean,
        mean - float(np.hypot(half_seeds, below)),
        mean + float(np.hypot(half_seeds, above)),
        source,
    )


def seed_and_item_difference(
    a,
    b,
    *,
    paired: bool,
    source: str,
    rows: str = "seeds",
    items: str = "items",
    replicates: int = 2000,
    seed: int = 0,
) -> Estimate:
    """``mean(a) - mean(b)`` of two ``(seeds, items)`` score arrays, with a 95% interval
    over both the seeds and the items.

    E.g. few-shot probes: a row per draw of the few-shot examples (a probe seed), a column
    per scored image. The two sources are independent (which examples fit the probe, which
    images score it), so their half-widths add in quadrature:

    * seeds: Student-t on the per-seed means, as :func:`spread_difference` (unpaired,
      ``k_a + k_b - 2`` degrees of freedom);
    * items: a bootstrap over the items of the seed-averaged scores, the same resampled
      items on both sides when ``paired`` (the same images, in the same order), half the
      width of its percentile interval.

    Args:
        a, b: ``(seeds, items)`` arrays, at least 2 seeds and 2 items each.
        paired: whether the items of ``a`` and ``b`` are the same, one to one.
        source: what the interval does not cover (e.g. ``"one training seed per model"``).
        rows, items: the seeds and the items in words, for the source.
        replicates, seed: of the bootstrap.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"need (seeds, items) arrays, got shapes {a.shape} and {b.shape}")
    if min(a.shape[0], b.shape[0]) < 2 or min(a.shape[1], b.shape[1]) < 2:
        raise ValueError(
            f"an interval over seeds and items needs at least 2 of each, got {a.shape} and "
            f"{b.shape}"
        )
    if paired and a.shape[1] != b.shape[1]:
        raise ValueError(f"paired items must match one to one, got {a.shape[1]} and {b.shape[1]}")
    (k_a, n_a), (k_b, n_b) = a.shape, b.shape
    per_seed_a, per_seed_b = a.mean(1), b.mean(1)
    se_seeds = np.sqrt(per_seed_a.var() / (k_a - 1) + per_seed_b.var() / (k_b - 1))
    half_seeds = _t975(k_a + k_b - 2) * se_seeds
    per_item_a, per_item_b = a.mean(0), b.mean(0)
    rng = np.random.default_rng(seed)
    draws_a = rng.integers(0, n_a, size=(replicates, n_a))
    draws_b = draws_a if paired else rng.integers(0, n_b, size=(replicates, n_b))
    reps = per_item_a[draws_a].mean(1) - per_item_b[draws_b].mean(1)
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(reps, [tail, 100 - tail])
    half_items = (high - low) / 2
    half = float(np.hypot(half_seeds, half_items))
    diff = float(a.mean() - b.mean())
    pairing = "paired " if paired else ""
    where = (
        f"t interval over {k_a} and {k_b} {rows} and {pairing}bootstrap over "
        f"{n_a} and {n_b} {items}"
        if (k_a, n_a) != (k_b, n_b)
        else f"t interval over {k_a} {rows} and {pairing}bootstrap over {n_a} {items}"
    )
    return Estimate(diff, diff - half, diff + half, f"{where}; {source}")


def field_estimate(
    statistic: Callable[..., float],
    *per_image,
    replicates: int = 1000,
    seed: int = 0,
    note: str = ONE_SEED,
) -> Estimate:
    """``statistic(*mean_fields)`` of effective receptive fields, with a bootstrap over images.

    Args:
        statistic: maps one mean field per input (``(H, W)`` arrays, same order) to a number.
        per_image: ``(n, H, W)`` per-image fields
            (:func:`vitlens.analyses.receptive.effective_receptive_field` with
            ``per_image=True``), all over the same ``n`` images: the same resampled images
            are used in every input.
        replicates, seed: of the bootstrap.
        note: what the interval does not cover, appended to the source.
    """
    stacks = [np.asarray(f, dtype=float) for f in per_image]
    sizes = {len(f) for f in stacks}
    if len(sizes) != 1 or any(f.ndim != 3 for f in stacks):
        raise ValueError(
            f"need (n, H, W) per-image fields over the same images, got shapes "
            f"{[f.shape for f in stacks]}"
        )
    n = sizes.pop()
    draws = np.random.default_rng(seed).integers(0, n, size=(replicates, n))
    values = [statistic(*(f[idx].mean(0) for f in stacks)) for idx in draws]
    source = f"bootstrap over {n} images" + (f"; {note}" if note else "")
    return Estimate.from_replicates(statistic(*(f.mean(0) for f in stacks)), values, source)


def jackknife(
    statistic: Callable[[np.ndarray], Sequence[float] | np.ndarray],
    num_items: int,
    *,
    source: str,
    groups: int = 10,
    seed: int = 0,
    items: str = "images",
) -> list[Estimate]:
    """Statistics of ``num_items`` items with delete-a-group jackknife 95% intervals.

    The items are split at random (seeded) into ``groups`` groups of near-equal size; each
    statistic is recomputed ``groups`` times, each time without one group. With
    ``theta_g`` the value without group ``g`` and ``theta_bar`` their mean, the standard
    error is ``sqrt((G - 1) / G * sum_g (theta_g - theta_bar)^2)`` and the interval is the
    value on all items ``+- t_{G-1, 0.975} * SE`` (no bias correction). It costs ``G + 1``
    evaluations where a bootstrap needs hundreds: the choice for statistics such as a
    full-batch similarity matrix (Efron & Tibshirani 1993, ch. 11).

    Args:
        statistic: maps a sorted ``(m,)`` array of item indices to ``k`` numbers.
        num_items: ``n``, the items (e.g. images) the statistic is computed on.
        source: the rest of the uncertainty in words (e.g. what the interval does not
            cover); ``"jackknife over G groups of the n images"`` is prepended.
        groups: ``G``, at least 2 and at most ``n``.
        seed: of the split into groups.
        items: what the items are, for the source's words.

    Returns:
        ``k`` :class:`Estimate` objects, in the statistic's order.

    Raises:
        ValueError: ``groups`` outside ``[2, num_items]``, or a statistic that is not
            finite or changes length.
    """
    if not isinstance(groups, int) or not 2 <= groups <= num_items:
        raise ValueError(
            f"groups must be an integer in [2, {num_items}] (the number of items), got {groups!r}"
        )
    membership = np.random.default_rng(seed).permutation(num_items) % groups
    everything = np.asarray(statistic(np.arange(num_items)), dtype=float).ravel()
    left_out = np.stack(
        [
            np.asarray(statistic(np.flatnonzero(membership != g)), dtype=float).ravel()
            for g in range(groups)
        ]
    )
    if left_out.shape[1] != everything.shape[0]:
        raise ValueError("the statistic must return the same number of values every time")
    if not (np.isfinite(everything).all() and np.isfinite(left_out).all()):
        raise ValueError("the statistic returned a NaN or Inf; a jackknife needs finite values")
    spread = np.sqrt((groups - 1) / groups * ((left_out - left_out.mean(0)) ** 2).sum(0))
    half = _t975(groups - 1) * spread
    words = f"jackknife over {groups} groups of the {num_items} {items}" + (
        f"; {source}" if source else ""
    )
    pairs = zip(everything, half, strict=True)
    return [Estimate(float(v), float(v - h), float(v + h), words) for v, h in pairs]


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation of two equally long sequences (average ranks for ties).

    Returns 0 when either sequence is constant (no order to correlate).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"need two 1-D sequences of equal length >= 2, got {x.shape}, {y.shape}")

    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=float)
        for value in np.unique(v):  # ties share their mean rank
            r[v == value] = r[v == value].mean()
        return r - r.mean()

    rx, ry = ranks(x), ranks(y)
    scale = np.sqrt((rx**2).sum() * (ry**2).sum())
    return 0.0 if scale == 0 else float((rx * ry).sum() / scale)
