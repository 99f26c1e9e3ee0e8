"""Similarity heatmaps under measures beside CKA: equal to each measure applied by hand to
hook-free features, symmetric where the measure is, and clear errors before any work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vitlens.analyses.measures import layer_features, layers_that_fit, similarity_matrix
from vitlens.core import similarity as measures
from vitlens.core.cka import linear_cka
from vitlens.streaming import RunOptions

LAYERS = ["blocks.0", "blocks.2"]


@pytest.fixture(scope="module")
def images():
    return torch.randn(24, 3, 32, 32, generator=torch.Generator().manual_seed(5))


def reference_features(model, images, layers):
    """Block outputs of a timm ViT, computed block by block without hooks."""
    model.eval()
    with torch.inference_mode():
        x = model.norm_pre(model._pos_embed(model.patch_embed(images)))
        outputs = {}
        for i, block in enumerate(model.blocks):
            x = outputs[f"blocks.{i}"] = block(x)
    return {name: outputs[name].reshape(len(images), -1).float() for name in layers}


def test_features_are_every_image_flattened(small_vit, images):
    features = layer_features(
        small_vit, images, LAYERS, run=RunOptions(batch_size=10, progress=False)
    )
    reference = reference_features(small_vit, images, LAYERS)
    for name in LAYERS:
        assert features[name].shape == (24, 17 * 48)  # class token + 4x4 patches, width 48
        torch.testing.assert_close(features[name], reference[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("measure", ["procrustes", "linear_cka", "rbf_cka"])
def test_every_cell_is_the_measure_of_two_layers(small_vit, images, measure):
    result = similarity_matrix(
        small_vit,
        images,
        measure=measure,
        layers_a=LAYERS,
        layers_b=LAYERS,
        run=RunOptions(progress=False),
    )
    reference = reference_features(small_vit, images, LAYERS)
    expected = np.array(
        [[measures.similarity(reference[a], reference[b], measure) for b in LAYERS] for a in LAYERS]
    )
    np.testing.assert_allclose(result.matrix, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.diag(result.matrix), 1.0, atol=1e-6)
    np.testing.assert_allclose(result.matrix, result.matrix.T)
    assert (result.measure, result.num_examples) == (measure, 24)


def test_two_models_and_the_cka_entry_agree_with_linear_cka(small_vit, images):
    torch.manual_seed(1)
    other = type(small_vit)(
        img_size=32, patch_size=8, depth=3, embed_dim=48, num_heads=3, num_classes=10
    )
    result = similarity_matrix(
        small_vit,
        images,
        other,
        measure="linear_cka",
        layers_a=LAYERS,
        layers_b=["blocks.1"],
        run=RunOptions(progress=False),
    )
    a = reference_features(small_vit, images, LAYERS)
    b = reference_features(other, images, ["blocks.1"])["blocks.1"]
    assert result.matrix.shape == (2, 1)
    for i, name in enumerate(LAYERS):
        assert result.matrix[i, 0] == pytest.approx(linear_cka(a[name], b), rel=1e-5)


def test_an_unknown_measure_is_refused_before_any_work(small_vit):
    with pytest.raises(ValueError, match=r"unknown similarity measure 'cca'.*procrustes"):
        similarity_matrix(small_vit, torch.full((4, 3, 32, 32), float("nan")), measure="cca")


def test_features_too_large_to_hold_are_refused(small_vit, images, monkeypatch):
    monkeypatch.setattr(measures, "MAX_FULL_BATCH_ELEMENTS", 1000)
    with pytest.raises(ValueError, match="exceed 1,000 elements"):
        layer_features(small_vit, images, LAYERS, run=RunOptions(batch_size=8, progress=False))


def test_layers_that_fit_keep_every_layer_when_they_fit(zoo_shaped):
    vit = zoo_shaped("vit-cls")
    layers = [f"blocks.{i}" for i in range(len(vit.blocks))]
    assert layers_that_fit(vit, layers, 24) == layers


def test_layers_that_fit_are_evenly_spaced_and_within_the_budget(zoo_shaped, monkeypatch):
    vit = zoo_shaped("vit-cls")
    layers = [f"blocks.{i}" for i in range(len(vit.blocks))]  # 8 blocks
    per_layer = 24 * 65 * 128  # class token + 8x8 patches, width 128
    monkeypatch.setattr(measures, "MAX_FULL_BATCH_ELEMENTS", 3 * per_layer)
    assert layers_that_fit(vit, layers, 24) == ["blocks.0", "blocks.4", "blocks.7"]
    monkeypatch.setattr(measures, "MAX_FULL_BATCH_ELEMENTS", 2 * per_layer)
    assert layers_that_fit(vit, layers, 24) == ["blocks.0", "blocks.7"]
    monkeypatch.setattr(measures, "MAX_FULL_BATCH_ELEMENTS", per_layer)
    assert layers_that_fit(vit, layers, 24) == ["blocks.0"]
    monkeypatch.setattr(measures, "MAX_FULL_BATCH_ELEMENTS", per_layer - 1)
    with pytest.raises(ValueError, match="no layer's features fit"):
        layers_that_fit(vit, layers, 24)


def test_layers_too_large_alone_are_left_out(zoo_shaped, monkeypatch):
    """Only the layers that fit alone are candidates: here the patch embedding (64
    tokens) fits where a block (65 tokens, the class token too) does not."""
    vit = zoo_shaped("vit-cls")
    layers = ["patch_embed", "blocks.0", "blocks.1"]
    monkeypatch.setattr(measures, "MAX_FULL_BATCH_ELEMENTS", 24 * 64 * 128)
    assert layers_that_fit(vit, layers, 24) == ["patch_embed"]
