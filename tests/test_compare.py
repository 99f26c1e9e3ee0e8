"""cka_matrix: streaming layer-by-layer CKA between models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from vitlens import (
    MinibatchCKA,
    cka_from_grams,
    cka_matrix,
    layer_grams,
    layer_names,
    run_with_cache,
)
from vitlens.models import model_name
from vitlens.plotting import plot_cka
from vitlens.streaming import RunOptions


@pytest.fixture(scope="module")
def small_resnet():
    torch.manual_seed(1)
    from timm.models.resnetv2 import ResNetV2

    return ResNetV2(
        layers=(1, 1, 1, 1),
        channels=(128, 128, 256, 256),
        stem_chs=32,
        stem_type="fixed",
    )


@pytest.fixture(scope="module")
def images():
    return torch.randn(40, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def reference_from_captured_features(model_a, model_b, images, batch_size):
    """The same estimate through MinibatchCKA.update on plainly captured features."""
    cka = MinibatchCKA()
    for batch in images.split(batch_size):
        feats_a = list(run_with_cache(model_a, batch).values())
        feats_b = list(run_with_cache(model_b, batch).values())
        cka.update(feats_a, feats_b)
    return cka.compute().numpy()


def test_vit_against_resnet_matches_update_path(small_vit, small_resnet, images):
    result = cka_matrix(
        small_vit, images, small_resnet, run=RunOptions(batch_size=10, progress=False)
    )
    assert result.matrix.shape == (18, 1 + 4 * 4)  # stem; 4 blocks: 3 inner points + output
    assert result.layers_a == layer_names(small_vit) and result.layers_b == layer_names(
        small_resnet
    )
    assert result.num_examples == 40 and result.batch_size == 10
    expected = reference_from_captured_features(small_vit, small_resnet, images, 10)
    np.testing.assert_allclose(result.matrix, expected, rtol=1e-9, atol=1e-12)


def test_self_comparison_is_symmetric_with_unit_diagonal(small_vit, images):
    result = cka_matrix(small_vit, images, run=RunOptions(batch_size=20, progress=False))
    np.testing.assert_allclose(np.diag(result.matrix), 1.0, rtol=1e-12)
    np.testing.assert_allclose(result.matrix, result.matrix.T, rtol=1e-12)
    assert result.name_a == result.name_b == model_name(small_vit)  # timm name and tag
    assert result.name_a.startswith("vit_tiny_patch16_224.")


def test_self_comparison_with_other_layers_uses_one_forward(small_vit, images):
    blocks = layer_names(small_vit, "blocks")
    result = cka_matrix(
        small_vit, images, layers_b=blocks, run=RunOptions(batch_size=20, progress=False)
    )
    full = cka_matrix(small_vit, images, run=RunOptions(batch_size=20, progress=False))
    columns = [full.layers_b.index(name) for name in blocks]
    np.testing.assert_allclose(result.matrix, full.matrix[:, columns], rtol=1e-12)


def test_tensor_dataset_and_dataloader_agree(small_vit, images):
    labels = torch.zeros(len(images), dtype=torch.long)
    from_tensor = cka_matrix(small_vit, images, run=RunOptions(batch_size=8, progress=False)).matrix
    from_dataset = cka_matrix(
        small_vit, TensorDataset(images, labels), run=RunOptions(batch_size=8, progress=False)
    ).matrix
    loader = DataLoader(TensorDataset(images, labels), batch_size=8)
    from_loader = cka_matrix(small_vit, loader, run=RunOptions(progress=False)).matrix
    np.testing.assert_allclose(from_dataset, from_tensor, rtol=1e-12)
    np.testing.assert_allclose(from_loader, from_tensor, rtol=1e-12)


def test_training_flag_is_restored(small_vit, images):
    small_vit.train()
    cka_matrix(small_vit, images[:8], run=RunOptions(batch_size=8, progress=False))
    assert small_vit.training
    small_vit.eval()


def test_a_too_small_last_batch_is_refused_before_any_work(small_vit, images):
    with pytest.raises(ValueError, match="last batch of 2"):
        cka_matrix(small_vit, images[:22], run=RunOptions(batch_size=10, progress=False))
    with pytest.raises(ValueError, match="batch_size"):
        cka_matrix(small_vit, images, run=RunOptions(batch_size=0, progress=False))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        cka_matrix(small_vit, images[0], run=RunOptions(progress=False))


def test_unknown_layer_is_refused(small_vit, images):
    with pytest.raises(ValueError, match="Closest valid names"):
        cka_matrix(small_vit, images, layers_a=["blocks.9"], run=RunOptions(progress=False))


def test_result_plots_and_saves(small_vit, images, tmp_path):
    result = cka_matrix(small_vit, images, run=RunOptions(batch_size=20, progress=False))
    ax = plot_cka(result, title="ViT against itself")
    assert ax.get_title() == "ViT against itself"
    assert ax.get_xlabel() == "Layers of ViT-Ti/16 (augreg_in21k_ft_in1k)"
    assert len(ax.figure.axes) == 2  # the heatmap and its colour bar
    cut = plot_cka(result, cuts=[2])
    lines = {tuple(line.get_xdata()) + tuple(line.get_ydata()) for line in cut.lines}
    assert lines == {(0, 1, 1.5, 1.5), (1.5, 1.5, 0, 1)}  # between layers 1 and 2, both axes
    with pytest.raises(ValueError, match="between two layers"):
        plot_cka(result, cuts=[0])
    result.save(tmp_path / "cka.npz")
    saved = np.load(tmp_path / "cka.npz")
    np.testing.assert_array_equal(saved["matrix"], result.matrix)
    assert list(saved["layers_a"]) == result.layers_a


def test_best_match_depth_and_mean_offdiagonal():
    from vitlens import CKAResult

    matrix = np.array([[1.0, 0.2, 0.1], [0.5, 1.0, 0.3], [0.1, 0.9, 1.0]])
    result = CKAResult(matrix, ["a", "b", "c"], ["a", "b", "c"], "m", "m", 10, 5)
    np.testing.assert_allclose(result.best_match_depth(), [0.0, 0.5, 1.0])
    assert result.mean_offdiagonal() == pytest.approx((0.2 + 0.1 + 0.5 + 0.3 + 0.1 + 0.9) / 6)
    cross = CKAResult(matrix[:, :2], ["a", "b", "c"], ["x", "y"], "m", "n", 10, 5)
    np.testing.assert_allclose(cross.best_match_depth(), [0.0, 0.5])
    with pytest.raises(ValueError, match="self-comparison"):
        cross.mean_offdiagonal()


def test_self_comparison_labels_both_axes_with_the_given_name(small_vit, images):
    result = cka_matrix(
        small_vit, images[:8], layers_a=["blocks.0"], name_a="ViT", run=RunOptions(progress=False)
    )
    assert result.name_a == result.name_b == "ViT"


def test_cka_from_grams_equals_cka_matrix_without_another_forward(small_vit, small_resnet, images):
    run = RunOptions(batch_size=20, progress=False)
    vit_grams = layer_grams(small_vit, images, run=run)
    resnet_grams = layer_grams(small_resnet, images, run=run)
    assert len(vit_grams.grams) == 2 and vit_grams.num_examples == 40
    across = cka_from_grams(vit_grams, resnet_grams)
    expected = cka_matrix(small_vit, images, small_resnet, run=run)
    np.testing.assert_allclose(across.matrix, expected.matrix, rtol=1e-12)
    assert (across.layers_a, across.layers_b) == (expected.layers_a, expected.layers_b)
    for got, want in zip(across.batch_terms, expected.batch_terms, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)  # the bootstrap's batches too
    within = cka_from_grams(vit_grams)
    np.testing.assert_allclose(within.matrix, cka_matrix(small_vit, images, run=run).matrix)
    some = vit_grams.layers[::3]
    subset = cka_from_grams(vit_grams, resnet_grams, layers_a=some)
    np.testing.assert_allclose(subset.matrix, expected.matrix[::3])


def test_grams_of_other_images_or_batches_are_refused(small_vit, images):
    run = RunOptions(batch_size=20, progress=False)
    grams = layer_grams(small_vit, images, run=run)
    with pytest.raises(ValueError, match="same images in the same batches"):
        cka_from_grams(grams, layer_grams(small_vit, images.flip(0), run=run))
    with pytest.raises(ValueError, match="same images in the same batches"):
        cka_from_grams(grams, layer_grams(small_vit, images, run=run.with_batch_size(10)))
    with pytest.raises(ValueError, match=r"no Grams of layers \['nope'\]"):
        cka_from_grams(grams, layers_a=["nope"])
