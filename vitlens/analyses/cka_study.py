"""Experiments on the CKA estimator itself (the book's chapter on paper Section 3).

* :func:`independent_features_cka`: biased against unbiased CKA of independent features
  as the number of examples grows: the biased estimator reports similarity where there
  is none when features outnumber examples (Kornblith et al. 2019; Nguyen et al. 2021).
* :func:`minibatch_convergence`: how a minibatch CKA matrix settles as batches accumulate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vitlens.analyses.compare import CKAResult, cka_matrix
from vitlens.core.cka import MinibatchCKA, cka_from_grams
from vitlens.core.stats import Estimate
from vitlens.streaming import ImageSource, RunOptions

__all__ = [
    "ConvergenceResult",
    "IndependentFeaturesResult",
    "batch_size_effect",
    "independent_features_cka",
    "minibatch_convergence",
]


@dataclass
class IndependentFeaturesResult:
    """Linear CKA of independent Gaussian features, by number of examples.

    Attributes:
        sizes: ``(S,)`` numbers of examples n.
        dim: features per representation.
        biased, debiased: ``(S, repeats)`` CKA of each independent draw.
    """

    sizes: np.ndarray
    dim: int
    biased: np.ndarray
    debiased: np.ndarray


def independent_features_cka(
    sizes: Sequence[int], dim: int, *, repeats: int = 20, seed: int = 0
) -> IndependentFeaturesResult:
    """Biased and debiased linear CKA between independent ``(n, dim)`` Gaussian features.

    The population CKA is 0. Each size draws ``repeats`` independent pairs at once.

    Args:
        sizes: numbers of examples, each > 3.
        dim: features per example.
        repeats: independent draws per size.
        seed: random seed.
    """
    sizes = [int(n) for n in sizes]
    if not sizes or min(sizes) <= 3:
        raise ValueError(f"every size must be > 3 (the unbiased estimator needs it), got {sizes}")
    if dim < 1 or repeats < 1:
        raise ValueError(f"dim and repeats must be >= 1, got dim={dim}, repeats={repeats}")
    gen = torch.Generator().manual_seed(seed)
    biased, debiased = [], []
    for n in sizes:
        x = torch.randn(repeats, n, dim, generator=gen, dtype=torch.float64)
        y = torch.randn(repeats, n, dim, generator=gen, dtype=torch.float64)
        gram_x, gram_y = x @ x.transpose(1, 2), y @ y.transpose(1, 2)
        biased.append(cka_from_grams(gram_x, gram_y, debiased=False).numpy())
        debiased.append(cka_from_grams(gram_x, gram_y, debiased=True).numpy())
    return IndependentFeaturesResult(np.array(sizes), dim, np.stack(biased), np.stack(debiased))


@dataclass
class ConvergenceResult:
    """Running minibatch CKA estimates after each batch.

    Attributes:
        examples: ``(B,)`` examples seen after each batch.
        matrices: ``(B, layers, layers)`` running estimate after each batch.
        layers: layer names.
    """

    examples: np.ndarray
    matrices: np.ndarray
    layers: list[str]
    result: CKAResult | None = None

    def half_width(self, replicates: int = 500, seed: int = 0):
        """Largest 95% half-width over layer pairs of the final estimate, bootstrap over batches.

        Returns an exact :class:`vitlens.core.stats.Estimate` (the half-width is itself the
        uncertainty) whose source names the batches. How settled is the estimate?
        """
        if self.result is None:
            raise ValueError("this ConvergenceResult has no CKAResult to resample")
        reps = self.result.bootstrap(replicates, seed)
        low, high = np.nanpercentile(reps, [2.5, 97.5], axis=0)
        source = (
            f"bootstrap over {self.result.num_batches} minibatches of "
            f"{self.result.batch_size} images"
        )
        return Estimate.exact(float(np.nanmax((high - low) / 2)), source)

    @property
    def halfway(self) -> int:
        """Index of the batch after which half of the batches have been seen (chapter 1:
        how far the running estimate still is from the final one at that point)."""
        return max(0, len(self.examples) // 2 - 1)

    def deviation_from_final(self) -> np.ndarray:
        """``(B,)`` largest absolute difference of each running estimate from the last one."""
        return np.abs(self.matrices - self.matrices[-1]).max(axis=(1, 2))


def minibatch_convergence(
    model: nn.Module,
    data: ImageSource,
    *,
    layers: list[str] | None = None,
    run: RunOptions = RunOptions(),
) -> ConvergenceResult:
    """Follow a model's layer-by-layer self-CKA matrix as minibatches accumulate.

    Returns the running estimate after every batch; the last one is what
    :func:`vitlens.cka_matrix` returns for the same arguments.

    Args:
        model: the model compared with itself.
        data: ``(N, C, H, W)`` tensor, Dataset or DataLoader; every batch needs > 3 images.
        layers: layer names (default: :func:`vitlens.layer_names`, kind "all").
        run: batch size, device, progress (:class:`~vitlens.streaming.RunOptions`).
    """
    examples, matrices = [], []

    def record(estimator: MinibatchCKA) -> None:
        examples.append(estimator.num_examples)
        matrices.append(estimator.compute().cpu().numpy())

    result = cka_matrix(model, data, layers_a=layers, run=run, on_batch=record)
    return ConvergenceResult(np.array(examples), np.stack(matrices), result.layers_a, result)


def batch_size_effect(
    model: nn.Module,
    data: ImageSource,
    batch_sizes: tuple[int, int],
    *,
    layers: list[str] | None = None,
    run: RunOptions = RunOptions(),
    first: CKAResult | None = None,
) -> float:
    """Largest change of a self-CKA matrix when only the minibatch size changes.

    The paper's Appendix A checks that the minibatch size does not change its results; this
    computes the model's layer-by-layer self-CKA on the same images with each of the two
    batch sizes and returns the largest absolute difference over layer pairs.

    Args:
        model: the model compared with itself.
        data: ``(N, C, H, W)`` tensor or Dataset.
        batch_sizes: the two batch sizes compared.
        layers: layer names (default: :func:`vitlens.layer_names`, kind "all").
        run: device and progress (:class:`~vitlens.streaming.RunOptions`); its batch size
            is replaced by each of ``batch_sizes``.
        first: the self-CKA at ``batch_sizes[0]`` on ``data``, where it was computed
            already (e.g. :func:`minibatch_convergence`'s ``result``): used instead of a
            second pass over the images.

    Raises:
        ValueError: two equal batch sizes (nothing would change); a ``first`` of another
            batch size, number of images or layers.
    """
    small, large = batch_sizes
    if small == large:
        raise ValueError(f"compare two different batch sizes, got {batch_sizes}")
    second = cka_matrix(model, data, layers_a=layers, run=run.with_batch_size(large))
    if first is None:
        first = cka_matrix(model, data, layers_a=layers, run=run.with_batch_size(small))
    elif (first.batch_size, first.num_examples, first.layers_a, first.layers_b) != (
        small,
        second.num_examples,
        second.layers_a,
        second.layers_b,
    ):
        raise ValueError(
            f"first= must be the self-CKA at batch size {small} of the same "
            f"{second.num_examples} images and {len(second.layers_a)} layers; got batch size "
            f"{first.batch_size}, {first.num_examples} images, {len(first.layers_a)} x "
            f"{len(first.layers_b)} layers"
        )
    return float(np.nanmax(np.abs(first.matrix - second.matrix)))
