"""Layerwise CKA between two models of one architecture."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from vitlens.analyses.training_similarity import layerwise_cka
from vitlens.models import build_zoo_model, layer_names, load_model
from vitlens.plotting import layerwise_cka_curves
from vitlens.streaming import RunOptions


def test_a_copy_is_identical_at_every_block(zoo_shaped, small_images):
    vit = zoo_shaped("vit-cls")
    result = layerwise_cka(
        vit, copy.deepcopy(vit), small_images(), run=RunOptions(batch_size=8, progress=False)
    )
    assert result.layers == [f"blocks.{i}" for i in range(8)]
    np.testing.assert_allclose(result.values, 1.0, atol=1e-6)
    assert result.num_examples == 16


def test_another_initialisation_is_less_similar(zoo_shaped, small_images):
    torch.manual_seed(5)
    other = build_zoo_model("vit-cls")
    result = layerwise_cka(
        zoo_shaped("vit-cls"), other, small_images(), run=RunOptions(batch_size=8, progress=False)
    )
    assert np.all(result.values < 0.99) and np.all(np.isfinite(result.values))


def test_different_architectures_raise(zoo_shaped, small_images):
    with pytest.raises(ValueError, match="same architecture"):
        layerwise_cka(zoo_shaped("vit-cls"), zoo_shaped("vit-pt-gap"), small_images())
    with pytest.raises(ValueError, match="same architecture"):
        layerwise_cka(zoo_shaped("vit-cls"), zoo_shaped("mixer-pt"), small_images())


def test_models_with_different_label_sets_compare_and_their_heads_are_ignored(
    zoo_shaped, small_images
):
    vit = zoo_shaped("vit-cls")
    other_labels = copy.deepcopy(vit)
    other_labels.reset_classifier(21)  # e.g. ImageNet-1k vs ImageNet-21k heads
    result = layerwise_cka(
        vit, other_labels, small_images(), run=RunOptions(batch_size=8, progress=False)
    )
    np.testing.assert_allclose(result.values, 1.0, atol=1e-6)
    deeper_body = copy.deepcopy(vit)
    deeper_body.blocks[0].mlp.fc1 = torch.nn.Linear(vit.embed_dim, 3 * vit.embed_dim)
    with pytest.raises(ValueError, match=r"blocks\.0\.mlp\.fc1"):
        layerwise_cka(vit, deeper_body, small_images())


@pytest.mark.slow
def test_paper_architectures_perturbed_from_the_middle_block(
    paper_architecture, paper_model, paper_images
):
    model = paper_model(paper_architecture)
    blocks = layer_names(model, "blocks")
    middle = len(blocks) // 2
    perturbed = copy.deepcopy(model)
    noise = torch.Generator().manual_seed(0)  # seeded: the test must not hang on RNG state
    with torch.no_grad():
        for param_name, p in perturbed.named_parameters():
            if param_name.startswith(f"{blocks[middle]}."):
                p.add_(0.5 * torch.randn(p.shape, generator=noise, dtype=p.dtype))
    result = layerwise_cka(
        model, perturbed, paper_images(4), run=RunOptions(batch_size=4, progress=False)
    )
    assert result.layers == blocks
    np.testing.assert_allclose(result.values[:middle], 1.0, atol=1e-5)  # untouched blocks
    assert result.values[middle] < 0.999 and np.all(np.isfinite(result.values))


def test_trained_zoo_models_on_a_data_fraction():
    full = load_model("vit-cls")
    fraction = load_model("vit-cls-data3")
    from vitlens.data import ShapesDataset

    result = layerwise_cka(
        fraction, full, ShapesDataset(64, split="test"), run=RunOptions(progress=False)
    )
    assert np.all(np.isfinite(result.values)) and result.values[0] > 0.5


def test_plot(zoo_shaped, small_images):
    vit = zoo_shaped("vit-cls")
    result = layerwise_cka(
        vit, copy.deepcopy(vit), small_images(), run=RunOptions(batch_size=8, progress=False)
    )
    ax = layerwise_cka_curves([result])
    assert ax.get_xlabel() == "Block" and len(ax.lines) == 1
