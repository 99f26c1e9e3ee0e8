"""Localization maps: a model that passes its patches through unchanged is perfectly localized."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vitlens.analyses.localization import localization_map, localization_maps
from vitlens.models import load_model
from vitlens.plotting import localization_grid
from vitlens.streaming import RunOptions

QUIET = RunOptions(progress=False)


def test_patches_passed_through_are_perfectly_localized(small_images):
    # PixelUnshuffle(4) makes cell (i, j) exactly the pixels of input patch (i, j)
    maps = localization_map(
        nn.Sequential(nn.PixelUnshuffle(4)),
        small_images(),
        "0",
        run=RunOptions(batch_size=8, progress=False),
    )
    assert maps.shape == (64, 8, 8) and maps.dtype == torch.float64
    own = maps.flatten(1).diagonal()
    torch.testing.assert_close(own, torch.ones(64, dtype=torch.float64))
    assert torch.equal(maps.flatten(1).argmax(1), torch.arange(64))


def test_patch_embedding_tokens_peak_at_their_own_patch(zoo_shaped, small_images):
    vit = zoo_shaped("vit-pt-gap")  # patch_embed output: 64 tokens, no prefix yet
    maps = localization_map(
        vit, small_images(), "patch_embed", run=RunOptions(batch_size=8, progress=False)
    )
    assert maps.shape == (64, 8, 8)
    assert torch.equal(maps.flatten(1).argmax(1), torch.arange(64))


def test_class_token_comes_first(zoo_shaped, small_images):
    maps = localization_map(zoo_shaped("vit-cls"), small_images(), "blocks.3", run=QUIET)
    assert maps.shape == (65, 8, 8) and torch.isfinite(maps).all()


def test_bad_inputs_raise(zoo_shaped, small_images):
    images = small_images()
    with pytest.raises(ValueError, match="stride"):
        localization_map(nn.Sequential(nn.Conv2d(3, 4, 3, stride=3)), images, "0")
    with pytest.raises(ValueError, match="at least 4"):
        localization_map(zoo_shaped("vit-cls"), images[:3], "blocks.0")
    with pytest.raises(ValueError, match="unknown layer"):
        localization_map(zoo_shaped("vit-cls"), images, "blocks.42")
    with pytest.raises(ValueError, match="token layer"):
        localization_map(zoo_shaped("mixer-pt"), images, "blocks.0.mlp_tokens")
    with pytest.raises(TypeError, match="one layer name"):
        localization_map(zoo_shaped("vit-cls"), images, ["blocks.0"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, layer, shape",
    [
        ("vit_base_patch16_224", "blocks.0", (197, 14, 14)),
        ("resnetv2_50x1_bit", "stages.2.blocks.0", (196, 14, 14)),
        ("mixer_b16_224", "blocks.0", (196, 14, 14)),
    ],
)
def test_paper_architectures(name, layer, shape, paper_model, paper_images, paper_architectures):
    assert name in paper_architectures
    maps = localization_map(paper_model(name), paper_images(4), layer, run=QUIET)
    assert maps.shape == shape and torch.isfinite(maps).all()


def test_trained_zoo_resnet_is_localized_early():
    from vitlens.data import ShapesDataset

    maps = localization_map(
        load_model("resnet-local"),
        ShapesDataset(64, split="test"),
        "stages.0.blocks.0",
        run=QUIET,
    ).flatten(1)
    assert maps.shape == (1024, 1024)  # the local stem keeps the 32x32 grid in stage 0
    assert maps.diagonal().mean() > 2 * maps.mean()  # tokens resemble their own patch most


def test_plot_marks_each_token():
    maps = torch.rand(65, 8, 8)
    axes = localization_grid(maps, [0, 1, 64])
    assert axes[0].get_title() == "prefix token 0"
    assert axes[2].get_title() == "token (7, 7)"
    with pytest.raises(ValueError, match="token indices"):
        localization_grid(maps, [65])


def test_plot_of_a_small_grid_labels_whole_cells_only():
    axes = localization_grid(torch.rand(4, 2, 2), [0, 3])
    axes[0].figure.canvas.draw()
    for ax in axes:
        for ticks in (ax.get_xticks(), ax.get_yticks()):
            shown = [t for t in ticks if -0.5 <= t <= 1.5]
            assert shown and all(float(t).is_integer() for t in shown), shown


def test_several_layers_from_one_pass_equal_one_layer_at_a_time(zoo_shaped, small_images):
    resnet, images = load_model("resnet-local"), small_images(16)
    for model, layers in (
        (zoo_shaped("vit-cls"), ["blocks.0", "blocks.5", "patch_embed"]),
        (resnet, ["stages.1.blocks.0", "stem", "stages.2.blocks.2"]),  # three grids
    ):
        calls = []
        hook = model.register_forward_hook(lambda *_, seen=calls: seen.append(1))
        maps = localization_maps(model, images, layers, run=QUIET)
        hook.remove()
        assert list(maps) == layers and len(calls) == -(-len(images) // QUIET.batch_size)
        for layer in layers:
            alone = localization_map(model, images, layer, run=QUIET)
            torch.testing.assert_close(maps[layer], alone)
    with pytest.raises(TypeError, match="non-empty list of layer names"):
        localization_maps(resnet, images, [])
