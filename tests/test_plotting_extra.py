"""Per-token skip-vs-branch maps (Figures E.1, E.2) on hand-made results with known values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vitlens.analyses.residual import ResidualNorms
from vitlens.models import ResidualBranch
from vitlens.plotting import token_ratio_map


def _result(values: list[torch.Tensor], prefix: int) -> ResidualNorms:
    branches = [ResidualBranch(f"blocks.{i}", "mlp", "a", "b") for i in range(len(values))]
    cosine = [torch.full_like(v, 0.9) for v in values]
    return ResidualNorms(branches, values, cosine, num_prefix_tokens=prefix, num_examples=4)


def test_class_token_goes_on_the_colour_bar_and_patches_on_the_grid():
    ratio = torch.cat([torch.tensor([7.0]), torch.arange(1.0, 17.0)])  # class + 4x4 patches
    ax = token_ratio_map(_result([ratio], prefix=1), 0)
    drawn = ax.images[0].get_array()
    np.testing.assert_array_equal(drawn, np.arange(1.0, 17.0).reshape(4, 4))
    assert ax.get_xlabel() == "patch column" and ax.get_ylabel() == "patch row"
    assert "class token" in ax.get_title() and "7.00" in ax.get_title()
    bar_axes = ax.figure.axes[-1]
    assert bar_axes.get_ylabel() == "||z|| / ||f(z)||"
    assert [line.get_ydata()[0] for line in bar_axes.lines] == [7.0, 7.0]  # line, triangle


def test_resnet_maps_cosine_and_bad_arguments():
    result = _result([torch.ones(3, 5), 2 * torch.ones(3, 5)], prefix=0)
    ax = token_ratio_map(result, 1, statistic="cosine", title="t")
    assert ax.images[0].get_array().shape == (3, 5) and ax.get_title() == "t"
    assert ax.figure.axes[-1].get_ylabel() == "cos(z, z + f(z))"
    assert ax.get_xlabel() == "map column"
    with pytest.raises(ValueError, match="statistic"):
        token_ratio_map(result, 0, statistic="norm")
    with pytest.raises(ValueError, match="branch"):
        token_ratio_map(result, 2)
    with pytest.raises(ValueError, match="square"):
        token_ratio_map(_result([torch.ones(7)], prefix=1), 0)
    with pytest.raises(ValueError, match="grid"):
        token_ratio_map(_result([torch.ones(7)], prefix=1), 0, grid=(2, 2))
    token_ratio_map(_result([torch.ones(7)], prefix=1), 0, grid=(2, 3))


def test_token_probe_grid_draws_each_model_row_in_percent_on_its_own_scale(probe_result):
    from vitlens.plotting import token_probe_grid

    def maps(**means):  # two probe seeds with the same accuracies
        return {layer: probe_result(np.stack([m, m])) for layer, m in means.items()}

    vit = maps(
        **{"blocks.0": np.full((4, 4), 0.2), "blocks.7": np.linspace(0.3, 0.6, 16).reshape(4, 4)}
    )
    resnet = maps(**{"stem": np.full((8, 8), 0.5), "stages.3.blocks.1": np.full((1, 1), 0.9)})
    grid = token_probe_grid({"vit-cls": vit, "resnet": resnet}, chance=0.1)
    assert grid.shape == (2, 2)
    np.testing.assert_allclose(
        grid[0, 1].images[0].get_array(), 100 * vit["blocks.7"].mean.numpy(), rtol=1e-6
    )
    assert grid[0, 0].images[0].get_clim() == pytest.approx((20.0, 60.0))  # the row's range
    assert grid[1, 1].images[0].get_array().shape == (1, 1)
    assert "chance 10%" in grid[0, 0].figure._suptitle.get_text().replace("\n", " ")
    with pytest.raises(ValueError, match="same, non-zero number of layers"):
        token_probe_grid({"a": vit, "b": {"stem": resnet["stem"]}})


def test_display_names_of_the_zoo_read_as_words():
    from vitlens.plotting import display_name

    assert display_name("vit-pt-noskip-2") == "ViT, no skips in block 2"
    assert display_name("vit-pt-data100") == "ViT (pretrained), 100 images"
    assert display_name("vit-cls-data3") == "ViT, 3% of the data"
    assert display_name("resnet-local") == "ResNet (local stem)"
    assert display_name("vit_base_patch16_224.augreg_in21k") == "ViT-B/16 (augreg_in21k)"
    assert display_name("something-else") == "something-else"
