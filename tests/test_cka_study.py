"""Experiments on the estimator: bias on independent features, minibatch convergence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vitlens import cka_matrix, layer_names, linear_cka
from vitlens.analyses.cka_study import (
    batch_size_effect,
    independent_features_cka,
    minibatch_convergence,
)
from vitlens.plotting import convergence_plot, estimator_bias_plot
from vitlens.streaming import RunOptions


def test_independent_features_biased_is_large_debiased_is_near_zero():
    result = independent_features_cka([8, 32, 128], dim=512, repeats=12, seed=1)
    assert result.biased.shape == result.debiased.shape == (3, 12)
    assert np.all(result.biased.mean(axis=1) > 0.5)  # features outnumber examples
    standard_error = result.debiased.std(axis=1) / np.sqrt(12)
    assert np.all(np.abs(result.debiased.mean(axis=1)) < 4 * standard_error)  # unbiased: mean 0
    assert np.all(4 * standard_error < 0.5)  # ... and the test could fail for the biased one
    assert result.biased.mean(axis=1)[0] > result.biased.mean(axis=1)[-1]  # bias shrinks with n


def test_independent_features_match_the_full_batch_functions():
    result = independent_features_cka([16], dim=20, repeats=1, seed=3)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 16, 20, generator=gen, dtype=torch.float64)[0]
    y = torch.randn(1, 16, 20, generator=gen, dtype=torch.float64)[0]
    assert result.biased[0, 0] == pytest.approx(linear_cka(x, y), rel=1e-10)
    assert result.debiased[0, 0] == pytest.approx(linear_cka(x, y, debiased=True), rel=1e-10)


@pytest.mark.parametrize("sizes", [[], [3, 10]])
def test_independent_features_refuse_too_few_examples(sizes):
    with pytest.raises(ValueError, match="> 3"):
        independent_features_cka(sizes, dim=4)


def test_minibatch_convergence_ends_at_the_full_estimate(small_vit):
    vit = small_vit
    images = torch.randn(48, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    layers = layer_names(vit, "blocks")
    result = minibatch_convergence(
        vit, images, layers=layers, run=RunOptions(batch_size=12, progress=False)
    )
    assert list(result.examples) == [12, 24, 36, 48]
    assert result.matrices.shape == (4, 3, 3) and result.layers == layers
    full = cka_matrix(
        vit, images, layers_a=layers, run=RunOptions(batch_size=12, progress=False)
    ).matrix
    np.testing.assert_allclose(result.matrices[-1], full, rtol=1e-12)
    deviation = result.deviation_from_final()
    assert deviation[-1] == 0 and deviation[0] > 0
    ax = convergence_plot(result)
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "examples seen"
    ax = estimator_bias_plot(independent_features_cka([8, 16], dim=8, repeats=2))
    assert len(ax.get_legend().get_texts()) == 2


def test_batch_size_effect_is_small_but_real(small_vit):
    images = torch.randn(48, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    layers = layer_names(small_vit, "blocks")[:3]
    effect = batch_size_effect(
        small_vit, images, (12, 24), layers=layers, run=RunOptions(progress=False)
    )
    assert 0 < effect < 0.2  # the unbiased estimator averages per-batch terms: not identical
    # the first batch size's matrix, computed before (here by the convergence study), is reused
    run = RunOptions(batch_size=12, progress=False)
    known = minibatch_convergence(small_vit, images, layers=layers, run=run).result
    assert batch_size_effect(
        small_vit, images, (12, 24), layers=layers, run=run, first=known
    ) == pytest.approx(effect, abs=1e-12)
    with pytest.raises(ValueError, match="batch size 24 of the same 48 images"):
        batch_size_effect(small_vit, images, (24, 12), layers=layers, run=run, first=known)
    with pytest.raises(
        ValueError, match="same 24 images and 3 layers; got batch size 12, 48 images"
    ):
        batch_size_effect(small_vit, images[:24], (12, 24), layers=layers, run=run, first=known)
    with pytest.raises(ValueError, match="two different batch sizes"):
        batch_size_effect(small_vit, images, (12, 12), run=RunOptions(progress=False))
