"""Effective receptive fields: exact support of a conv stack, non-local ViT attention."""

from __future__ import annotations

import matplotlib
import pytest
import torch
from _analysis_models import (
    PAPER_ARCHITECTURES,
    paper_images,
    paper_model,
    small_images,
    zoo_shaped,
)
from torch import nn

from vitlens.analyses.receptive import (
    centre_patch_share,
    effective_receptive_field,
    mass_area,
    sublayer_receptive_fields,
)
from vitlens.models import load_model
from vitlens.plotting import erf_grid, erf_sublayer_grid

matplotlib.use("Agg")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def positive_conv_stack() -> nn.Module:
    """Three 3x3 convolutions (stride 1) with positive weights: receptive field 7 x 7."""
    torch.manual_seed(0)
    layers = [
        nn.Conv2d(3, 4, 3, padding=1),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.Conv2d(4, 4, 3, padding=1),
    ]
    for conv in layers:
        nn.init.uniform_(conv.weight, 0.1, 1.0)
    return nn.Sequential(*layers)


def test_conv_stack_field_is_exactly_its_receptive_field():
    maps = effective_receptive_field(
        positive_conv_stack(), small_images(), ["0", "1", "2"], batch_size=5, progress=False
    )
    assert list(maps) == ["0", "1", "2"]
    for depth, field in enumerate(maps.values(), start=1):
        assert field.shape == (32, 32) and field.dtype == torch.float64
        inside = torch.zeros(32, 32, dtype=torch.bool)
        inside[16 - depth : 17 + depth, 16 - depth : 17 + depth] = True
        assert torch.all(field[inside] > 0)
        assert torch.all(field[~inside] == 0)


def test_batching_does_not_change_the_field():
    model, images = zoo_shaped("resnet"), small_images()[:4]
    one = effective_receptive_field(
        model, images, ["stages.1.blocks.0"], batch_size=1, progress=False
    )
    four = effective_receptive_field(
        model, images, ["stages.1.blocks.0"], batch_size=4, progress=False
    )
    torch.testing.assert_close(
        one["stages.1.blocks.0"], four["stages.1.blocks.0"], rtol=1e-5, atol=0
    )


def test_per_image_fields_are_each_images_own_and_average_to_the_field():
    model, images = zoo_shaped("resnet"), small_images()[:4]
    layer = "stages.1.blocks.0"
    mean = effective_receptive_field(model, images, [layer], batch_size=2, progress=False)
    each = effective_receptive_field(
        model, images, [layer], batch_size=2, progress=False, per_image=True
    )[layer]
    assert each.shape == (4, *mean[layer].shape)
    torch.testing.assert_close(each.mean(0), mean[layer], rtol=1e-6, atol=0)
    alone = effective_receptive_field(model, images[2:3], [layer], progress=False)[layer]
    torch.testing.assert_close(each[2], alone, rtol=1e-5, atol=0)  # image 2 by itself


def _mass_outside_centre_patch(field: torch.Tensor, patch: int) -> float:
    return 1 - centre_patch_share(field, patch)


@pytest.mark.parametrize("name", ["vit-cls", "vit-gap"])
def test_vit_pre_residual_attention_field_is_non_local(name):
    vit, images = zoo_shaped(name), small_images()
    pre = effective_receptive_field(
        vit, images, ["blocks.0.residual1"], branch="pre", progress=False
    )
    post = effective_receptive_field(vit, images, ["blocks.0.residual1"], progress=False)
    pre_field, post_field = pre["blocks.0.residual1"], post["blocks.0.residual1"]
    assert torch.all(pre_field > 0)  # every pixel reaches the centre token through attention
    assert _mass_outside_centre_patch(pre_field, 4) > 0.9  # 63 of 64 patches lie outside
    # the skip connection carries the centre patch itself: the post-residual field is local
    assert _mass_outside_centre_patch(post_field, 4) < _mass_outside_centre_patch(pre_field, 4)


def test_mixer_pre_branch_reads_token_mixing_output():
    maps = effective_receptive_field(
        zoo_shaped("mixer"),
        small_images()[:4],
        ["blocks.0.residual1", "blocks.0"],
        branch="pre",
        progress=False,
    )
    assert all(torch.all(field > 0) for field in maps.values())


def test_bad_arguments_raise():
    vit, images = zoo_shaped("vit-cls"), small_images()[:2]
    with pytest.raises(ValueError, match="residual sum"):
        effective_receptive_field(vit, images, ["blocks.0.attn.qkv"], branch="pre")
    with pytest.raises(ValueError, match="branch must be"):
        effective_receptive_field(vit, images, branch="middle")
    with pytest.raises(ValueError, match="unknown layer"):
        effective_receptive_field(vit, images, ["blocks.99"])
    with pytest.raises(ValueError, match="did not run"):  # fused attention skips attn_drop
        effective_receptive_field(vit, images, ["blocks.0.attn.attn_drop"])
    with pytest.raises(ValueError, match="token layer of this model"):  # (n, C, T) layout
        effective_receptive_field(zoo_shaped("mixer"), images, ["blocks.0.mlp_tokens"])
    with pytest.raises(ValueError, match="at least one"):
        effective_receptive_field(vit, images, [])


@pytest.mark.parametrize("name", PAPER_ARCHITECTURES)
def test_paper_architectures(name):
    model = paper_model(name)
    first, last = (
        ("stages.0.blocks.0", "stages.3.blocks.2")
        if name.startswith("resnet")
        else ("blocks.0", "blocks.11")
    )
    for layer, branch in ((last, "post"), (first, "pre")):
        maps = effective_receptive_field(
            model, paper_images(2), [layer], branch=branch, progress=False, channels="sum"
        )  # the paper's reduction is checked on the zoo shapes; 768 channels are slow on CPU
        assert maps[layer].shape == (224, 224) and torch.isfinite(maps[layer]).all()
        assert maps[layer].sum() > 0


def test_trained_zoo_resnet_field_grows_with_depth():
    model = load_model("resnet")
    maps = effective_receptive_field(
        model, small_images(), ["stages.0.blocks.0", "stages.2.blocks.2"], progress=False
    )
    early, late = maps.values()
    # the area above 10% of the peak (the "effective" part) widens with depth
    assert (late > 0.1 * late.max()).sum() > 2 * (early > 0.1 * early.max()).sum()


def test_plot():
    maps = effective_receptive_field(
        positive_conv_stack(), small_images()[:2], ["0", "2"], progress=False
    )
    axes = erf_grid(maps, ncols=2)
    assert len(axes) == 2 and axes[1].get_title() == "2"
    with pytest.raises(ValueError, match="empty"):
        erf_grid({})


def test_mass_area_of_a_point_a_uniform_field_and_a_square():
    point = torch.zeros(10, 10)
    point[4, 4] = 3.0
    assert mass_area(point) == pytest.approx(0.01)
    assert mass_area(torch.ones(10, 10), mass=0.5) == pytest.approx(0.5)
    assert mass_area(torch.ones(10, 10), mass=1.0) == pytest.approx(1.0)
    square = torch.zeros(10, 10)
    square[2:6, 2:6] = 1.0  # 16 equal pixels: 8 of them hold half the mass
    assert mass_area(square) == pytest.approx(0.08)


@pytest.mark.parametrize(
    ("field", "mass", "message"),
    [
        (torch.ones(4, 4), 0.0, "mass must be in"),
        (torch.ones(4, 4), 1.5, "mass must be in"),
        (torch.ones(4), 0.5, "must be an \\(H, W\\) map"),
        (-torch.ones(4, 4), 0.5, "non-negative"),
        (torch.full((4, 4), float("nan")), 0.5, "finite"),
        (torch.zeros(4, 4), 0.5, "zero everywhere"),
    ],
)
def test_mass_area_refuses_bad_input(field, mass, message):
    with pytest.raises(ValueError, match=message):
        mass_area(field, mass)


def test_centre_patch_share_of_a_flat_a_centred_and_an_off_centre_field():
    assert centre_patch_share(torch.ones(32, 32), 4) == pytest.approx(16 / 1024)
    centred = torch.zeros(32, 32)
    centred[16:20, 16:20] = 1.0  # grid cell (4, 4) of the 8x8 grid: the centre token's patch
    centred[0, 0] = 1.0
    assert centre_patch_share(centred, 4) == pytest.approx(16 / 17)
    shifted = torch.zeros(32, 32)
    shifted[12:16, 12:16] = 1.0  # cell (3, 3): not the centre position
    shifted[0, 0] = 1.0
    assert centre_patch_share(shifted, 4) == 0.0
    with pytest.raises(ValueError, match="does not split into 5-px patches"):
        centre_patch_share(torch.ones(32, 32), 5)
    with pytest.raises(ValueError, match="zero everywhere"):
        centre_patch_share(torch.zeros(32, 32), 4)
    with pytest.raises(ValueError, match="finite and non-negative"):
        centre_patch_share(-torch.ones(32, 32), 4)


# ------------------------------------------------------- the paper's definition (Appendix C)


def _reference_vit_field(vit: nn.Module, images: torch.Tensor, block: int) -> torch.Tensor:
    """Hook-free, slow: run the ViT by hand to block ``block`` and loop over channels."""
    from vitlens.models import model_info

    info = model_info(vit)
    rows, cols = info.grid
    centre_index = info.num_prefix_tokens + (rows // 2) * cols + cols // 2
    total = torch.zeros(images.shape[-2:], dtype=torch.float64)
    for image in images:
        x = image[None].clone().requires_grad_(True)
        tokens = vit.norm_pre(vit._pos_embed(vit.patch_embed(x)))
        for b in vit.blocks[: block + 1]:
            tokens = b(tokens)
        centre = tokens[0, centre_index]
        per_channel = []
        for c in range(centre.numel()):
            (grad,) = torch.autograd.grad(centre[c], x, retain_graph=True)
            per_channel.append(grad[0].abs().sum(0).double())
        total += torch.stack(per_channel).mean(0)
    return total / images.shape[0]


def test_paper_field_matches_a_hook_free_loop_over_channels():
    vit, images = zoo_shaped("vit-cls").eval(), small_images()[:3]
    expected = _reference_vit_field(vit, images, 1)
    for chunk in (None, 1, 7):  # batched, plain loop, uneven chunks
        got = effective_receptive_field(
            vit, images, ["blocks.1"], batch_size=2, chunk_size=chunk, progress=False
        )["blocks.1"]
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-9)


def test_channels_no_longer_cancel():
    """Two channels c and -c: the gradient of their sum is 0 everywhere, of each one not."""
    conv = nn.Conv2d(3, 2, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight[1] = -conv.weight[0]
    model = nn.Sequential(conv)
    images = small_images()[:4]
    old = effective_receptive_field(model, images, ["0"], channels="sum", progress=False)["0"]
    new = effective_receptive_field(model, images, ["0"], progress=False)["0"]
    assert torch.all(old == 0)
    assert new.sum() > 0 and (new > 0).sum() == 9  # the 3 x 3 kernel's support
    with pytest.raises(ValueError, match="zero everywhere"):
        mass_area(old)


def test_sublayer_fields_cover_every_residual_addition():
    vit, images = zoo_shaped("vit-cls"), small_images()[:2]
    fields = sublayer_receptive_fields(vit, images, kinds=["attention"], progress=False)
    depth = len(vit.blocks)
    assert [b.name for b in fields.branches] == [f"blocks.{i}.residual1" for i in range(depth)]
    assert fields.num_images == 2 and fields.channels == "abs_mean"
    for which in ("post", "pre"):
        maps = fields.maps(which)
        assert len(maps) == depth and all(m.shape == (32, 32) for m in maps.values())
        assert all(0 < a <= 1 for a in fields.areas(which).values())
    single = effective_receptive_field(
        vit, images, ["blocks.2.residual1"], branch="pre", progress=False
    )
    torch.testing.assert_close(fields.pre["blocks.2.residual1"], single["blocks.2.residual1"])
    resnet = sublayer_receptive_fields(zoo_shaped("resnet"), images, progress=False)
    assert {b.kind for b in resnet.branches} == {"conv"}
    with pytest.raises(ValueError, match="kinds must be"):
        sublayer_receptive_fields(vit, images, kinds=["conv"])
    with pytest.raises(ValueError, match="which must be"):
        fields.maps("middle")
    axes = erf_sublayer_grid(fields, "pre")
    assert len(axes) == depth


def test_too_large_chunk_and_bad_options_raise():
    vit, images = zoo_shaped("vit-cls"), small_images()[:2]
    with pytest.raises(ValueError, match="max_memory"):
        effective_receptive_field(
            vit, images, ["blocks.0"], chunk_size=128, max_memory=1_000_000, progress=False
        )
    for bad in ({"chunk_size": 0}, {"max_memory": 0}, {"channels": "max"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            effective_receptive_field(vit, images, ["blocks.0"], progress=False, **bad)
