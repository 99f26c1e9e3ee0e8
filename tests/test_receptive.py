"""Effective receptive fields: exact support of a conv stack, non-local ViT attention."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from vitlens.analyses.receptive import (
    SampledField,
    _chunk_for,
    centre_patch_share,
    centre_share_gain,
    effective_receptive_field,
    mass_area,
    mass_area_gap,
    sampled_field_estimate,
    sampled_receptive_field,
    sublayer_receptive_fields,
)
from vitlens.core.stats import field_estimate
from vitlens.models import load_model
from vitlens.models.zoo import ZOO_ARCHS, build_arch
from vitlens.plotting import erf_grid, erf_sublayer_grid
from vitlens.streaming import RunOptions

QUIET = RunOptions(batch_size=16, progress=False)
"""The receptive fields' own batch size, without progress bars."""


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


def test_conv_stack_field_is_exactly_its_receptive_field(small_images):
    maps = effective_receptive_field(
        positive_conv_stack(),
        small_images(),
        ["0", "1", "2"],
        run=RunOptions(batch_size=5, progress=False),
    )
    assert list(maps) == ["0", "1", "2"]
    for depth, field in enumerate(maps.values(), start=1):
        assert field.shape == (32, 32) and field.dtype == torch.float64
        inside = torch.zeros(32, 32, dtype=torch.bool)
        inside[16 - depth : 17 + depth, 16 - depth : 17 + depth] = True
        assert torch.all(field[inside] > 0)
        assert torch.all(field[~inside] == 0)


def test_batching_does_not_change_the_field(zoo_shaped, small_images):
    model, images = zoo_shaped("resnet-local"), small_images()[:4]
    one = effective_receptive_field(
        model, images, ["stages.1.blocks.0"], run=RunOptions(batch_size=1, progress=False)
    )
    four = effective_receptive_field(
        model, images, ["stages.1.blocks.0"], run=RunOptions(batch_size=4, progress=False)
    )
    torch.testing.assert_close(
        one["stages.1.blocks.0"], four["stages.1.blocks.0"], rtol=1e-5, atol=0
    )


def test_per_image_fields_are_each_images_own_and_average_to_the_field(zoo_shaped, small_images):
    model, images = zoo_shaped("resnet-local"), small_images()[:4]
    layer = "stages.1.blocks.0"
    mean = effective_receptive_field(
        model, images, [layer], run=RunOptions(batch_size=2, progress=False)
    )
    each = effective_receptive_field(
        model, images, [layer], run=RunOptions(batch_size=2, progress=False), per_image=True
    )[layer]
    assert each.shape == (4, *mean[layer].shape)
    torch.testing.assert_close(each.mean(0), mean[layer], rtol=1e-6, atol=0)
    alone = effective_receptive_field(model, images[2:3], [layer], run=QUIET)[layer]
    torch.testing.assert_close(each[2], alone, rtol=1e-5, atol=0)  # image 2 by itself


def _mass_outside_centre_patch(field: torch.Tensor, patch: int) -> float:
    return 1 - centre_patch_share(field, patch)


@pytest.mark.parametrize("name", ["vit-cls", "vit-pt-gap"])
def test_vit_pre_residual_attention_field_is_non_local(name, zoo_shaped, small_images):
    vit, images = zoo_shaped(name), small_images()
    pre = effective_receptive_field(vit, images, ["blocks.0.residual1"], branch="pre", run=QUIET)
    post = effective_receptive_field(vit, images, ["blocks.0.residual1"], run=QUIET)
    pre_field, post_field = pre["blocks.0.residual1"], post["blocks.0.residual1"]
    assert torch.all(pre_field > 0)  # every pixel reaches the centre token through attention
    assert _mass_outside_centre_patch(pre_field, 4) > 0.9  # 63 of 64 patches lie outside
    # the skip connection carries the centre patch itself: the post-residual field is local
    assert _mass_outside_centre_patch(post_field, 4) < _mass_outside_centre_patch(pre_field, 4)


def test_mixer_pre_branch_reads_token_mixing_output(zoo_shaped, small_images):
    maps = effective_receptive_field(
        zoo_shaped("mixer-pt"),
        small_images()[:4],
        ["blocks.0.residual1", "blocks.0"],
        branch="pre",
        run=QUIET,
    )
    assert all(torch.all(field > 0) for field in maps.values())


def test_bad_arguments_raise(zoo_shaped, small_images):
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
        effective_receptive_field(zoo_shaped("mixer-pt"), images, ["blocks.0.mlp_tokens"])
    with pytest.raises(ValueError, match="at least one"):
        effective_receptive_field(vit, images, [])


@pytest.mark.slow
def test_paper_architectures(paper_architecture, paper_model, paper_images):
    model = paper_model(paper_architecture)
    first, last = (
        ("stages.0.blocks.0", "stages.3.blocks.2")
        if paper_architecture.startswith("resnet")
        else ("blocks.0", "blocks.11")
    )
    for layer, branch in ((last, "post"), (first, "pre")):
        maps = effective_receptive_field(
            model, paper_images(2), [layer], branch=branch, run=QUIET, channels="sum"
        )  # the paper's reduction is checked on the zoo shapes; 768 channels are slow on CPU
        assert maps[layer].shape == (224, 224) and torch.isfinite(maps[layer]).all()
        assert maps[layer].sum() > 0


def test_trained_zoo_resnet_field_grows_with_depth(small_images):
    model = load_model("resnet-local")
    maps = effective_receptive_field(
        model, small_images(), ["stages.0.blocks.0", "stages.2.blocks.2"], run=QUIET
    )
    early, late = maps.values()
    # the area above 10% of the peak (the "effective" part) widens with depth
    assert (late > 0.1 * late.max()).sum() > 2 * (early > 0.1 * early.max()).sum()


def test_plot(small_images):
    maps = effective_receptive_field(
        positive_conv_stack(), small_images()[:2], ["0", "2"], run=QUIET
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


def test_paper_field_matches_a_hook_free_loop_over_channels(zoo_shaped, small_images):
    vit, images = zoo_shaped("vit-cls").eval(), small_images()[:3]
    expected = _reference_vit_field(vit, images, 1)
    for chunk in (None, 1, 7, 128):  # default (the loop on a CPU), loop, uneven, batched
        got = effective_receptive_field(
            vit,
            images,
            ["blocks.1"],
            run=RunOptions(batch_size=2, progress=False),
            chunk_size=chunk,
        )["blocks.1"]
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-9)


def test_channels_no_longer_cancel(small_images):
    """Two channels c and -c: the gradient of their sum is 0 everywhere, of each one not."""
    conv = nn.Conv2d(3, 2, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight[1] = -conv.weight[0]
    model = nn.Sequential(conv)
    images = small_images()[:4]
    old = effective_receptive_field(model, images, ["0"], channels="sum", run=QUIET)["0"]
    new = effective_receptive_field(model, images, ["0"], run=QUIET)["0"]
    assert torch.all(old == 0)
    assert new.sum() > 0 and (new > 0).sum() == 9  # the 3 x 3 kernel's support
    with pytest.raises(ValueError, match="zero everywhere"):
        mass_area(old)


def test_sublayer_fields_cover_every_residual_addition(zoo_shaped, small_images):
    vit, images = zoo_shaped("vit-cls"), small_images()[:2]
    fields = sublayer_receptive_fields(vit, images, kinds=["attention"], run=QUIET)
    depth = len(vit.blocks)
    assert [b.name for b in fields.branches] == [f"blocks.{i}.residual1" for i in range(depth)]
    assert fields.num_images == 2 and fields.channels == "abs_mean"
    for which in ("post", "pre"):
        maps = fields.maps(which)
        assert len(maps) == depth and all(m.shape == (32, 32) for m in maps.values())
        assert all(0 < a <= 1 for a in fields.areas(which).values())
    single = effective_receptive_field(vit, images, ["blocks.2.residual1"], branch="pre", run=QUIET)
    torch.testing.assert_close(fields.pre["blocks.2.residual1"], single["blocks.2.residual1"])
    # sampling every channel is the exact field; fewer channels, a different estimate
    width = vit.embed_dim
    every = sublayer_receptive_fields(
        vit, images, kinds=["attention"], run=QUIET, sample_channels=width
    )
    few = sublayer_receptive_fields(vit, images, kinds=["attention"], run=QUIET, sample_channels=3)
    assert fields.sample_channels is None and few.sample_channels == 3
    for which in ("post", "pre"):
        for name, field in fields.maps(which).items():
            torch.testing.assert_close(every.maps(which)[name], field, rtol=1e-5, atol=1e-12)
            assert not torch.allclose(few.maps(which)[name], field)
    resnet = sublayer_receptive_fields(zoo_shaped("resnet-local"), images, run=QUIET)
    assert {b.kind for b in resnet.branches} == {"conv"}
    with pytest.raises(ValueError, match="kinds must be"):
        sublayer_receptive_fields(vit, images, kinds=["conv"])
    with pytest.raises(ValueError, match="which must be"):
        fields.maps("middle")
    axes = erf_sublayer_grid(fields, "pre")
    assert len(axes) == depth


def test_too_large_chunk_and_bad_options_raise(zoo_shaped, small_images):
    vit, images = zoo_shaped("vit-cls"), small_images()[:2]
    with pytest.raises(ValueError, match="max_memory"):
        effective_receptive_field(
            vit, images, ["blocks.0"], chunk_size=128, max_memory=1_000_000, run=QUIET
        )
    for bad in ({"chunk_size": 0}, {"max_memory": 0}, {"channels": "max"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            effective_receptive_field(vit, images, ["blocks.0"], run=QUIET, **bad)


# ------------------------------------------- the channel-sampled estimator and its uncertainty

SAMPLED_LAYER = "blocks.1"
SAMPLED_C, SAMPLED_K, SAMPLED_SEEDS = 16, 4, 200


@pytest.fixture(scope="module")
def tiny_vit() -> nn.Module:
    """A 2-block zoo-shaped ViT 16 channels wide (C = 16), random weights, eval mode."""
    torch.manual_seed(0)
    return build_arch({**ZOO_ARCHS["vit-cls"], "embed_dim": 16, "depth": 2, "num_heads": 2})


@pytest.fixture(scope="module")
def sampled_runs(tiny_vit, small_images) -> tuple[torch.Tensor, SampledField, list[SampledField]]:
    """The exact field of the tiny ViT's ``blocks.1``, its k = C sampled field (every
    channel's map) and the k = 4 sampled fields of seeds 0..199 (about 5 s)."""
    vit, images = tiny_vit, small_images()[:4]
    exact = effective_receptive_field(vit, images, [SAMPLED_LAYER], run=QUIET)
    every = sampled_receptive_field(
        vit, images, [SAMPLED_LAYER], sample_channels=SAMPLED_C, run=QUIET
    )
    runs = [
        sampled_receptive_field(
            vit, images, [SAMPLED_LAYER], sample_channels=SAMPLED_K, seed=seed, run=QUIET
        )[SAMPLED_LAYER]
        for seed in range(SAMPLED_SEEDS)
    ]
    return exact[SAMPLED_LAYER], every[SAMPLED_LAYER], runs


def all_draws(every: SampledField, k: int) -> list[SampledField]:
    """The sampled field of every one of the C-choose-k possible draws, built from the
    k = C run's per-channel maps: expectations over the draw, computed exactly."""
    return [
        SampledField(
            layer=every.layer,
            channels=torch.tensor(draw),
            num_channels=every.num_channels,
            per_channel=every.per_channel[list(draw)],
            num_images=every.num_images,
            seed=-1,
        )
        for draw in itertools.combinations(range(every.num_channels), k)
    ]


def _centre_pixel(field: torch.Tensor) -> float:
    return float(field[16, 16])  # the centre patch's top-left pixel (grid cell (4, 4))


def _centre_share(field: torch.Tensor) -> float:
    return centre_patch_share(field, 4)


def test_sampling_every_channel_is_the_exact_field(small_images, tiny_vit, sampled_runs):
    exact, every, _ = sampled_runs
    assert every.channels.tolist() == list(range(SAMPLED_C)) and every.num_sampled == SAMPLED_C
    assert every.per_channel.shape == (SAMPLED_C, 32, 32) and every.num_images == 4
    torch.testing.assert_close(every.field, exact, rtol=1e-6, atol=0)
    assert torch.all(every.standard_error == 0) and every.correction == 0
    point = every.estimate(_centre_pixel)
    assert point.low == point.value == point.high == pytest.approx(float(exact[16, 16]))
    # through effective_receptive_field: the same channels in the same order, so the same
    # computation as the exact path, bit for bit
    vit, images = tiny_vit, small_images()[:4]
    for per_image in (False, True):
        kwargs = {"run": RunOptions(batch_size=3, progress=False), "per_image": per_image}
        full = effective_receptive_field(vit, images, [SAMPLED_LAYER], **kwargs)
        again = effective_receptive_field(
            vit, images, [SAMPLED_LAYER], sample_channels=SAMPLED_C, seed=5, **kwargs
        )
        assert torch.equal(full[SAMPLED_LAYER], again[SAMPLED_LAYER])


def _reference_channel_maps(
    vit: nn.Module, images: torch.Tensor, block: int, channels: list[int]
) -> torch.Tensor:
    """``(k, H, W)``: each listed channel's map, mean over images; hook-free, one
    ``torch.autograd.grad`` per image and channel."""
    from vitlens.models import model_info

    info = model_info(vit)
    rows, cols = info.grid
    centre_index = info.num_prefix_tokens + (rows // 2) * cols + cols // 2
    maps = torch.zeros(len(channels), *images.shape[-2:], dtype=torch.float64)
    for image in images:
        x = image[None].clone().requires_grad_(True)
        tokens = vit.norm_pre(vit._pos_embed(vit.patch_embed(x)))
        for b in vit.blocks[: block + 1]:
            tokens = b(tokens)
        for row, c in enumerate(channels):
            (grad,) = torch.autograd.grad(tokens[0, centre_index, c], x, retain_graph=True)
            maps[row] += grad[0].abs().sum(0).double()
    return maps / images.shape[0]


def test_sampled_channels_match_an_independent_loop_over_them(small_images, tiny_vit):
    vit, images = tiny_vit, small_images()[:5]
    expected = None
    for chunk, batch in ((None, 5), (1, 2), (3, 2), (7, 5)):  # default; loop; uneven; batched
        got = sampled_receptive_field(
            vit,
            images,
            [SAMPLED_LAYER],
            sample_channels=7,
            seed=3,
            chunk_size=chunk,
            run=RunOptions(batch_size=batch, progress=False),
        )[SAMPLED_LAYER]
        if expected is None:
            channels = got.channels.tolist()
            assert len(set(channels)) == 7 and channels == sorted(channels)
            assert all(0 <= c < SAMPLED_C for c in channels)
            expected = _reference_channel_maps(vit.eval(), images, 1, channels)
        assert got.channels.tolist() == channels and got.num_images == 5
        torch.testing.assert_close(got.per_channel, expected, rtol=1e-4, atol=1e-9)
        torch.testing.assert_close(got.field, expected.mean(0), rtol=1e-4, atol=1e-9)
    # effective_receptive_field with the same seed averages over the same channels
    estimate = effective_receptive_field(
        vit, images, [SAMPLED_LAYER], sample_channels=7, seed=3, run=QUIET
    )[SAMPLED_LAYER]
    torch.testing.assert_close(estimate, expected.mean(0), rtol=1e-4, atol=1e-9)


def test_sampled_field_and_its_variance_are_unbiased_over_every_draw(sampled_runs):
    """Exact expectations over all 1820 draws of 4 of the 16 channels (no seed noise)."""
    exact, every, _ = sampled_runs
    draws = all_draws(every, SAMPLED_K)
    assert len(draws) == math.comb(SAMPLED_C, SAMPLED_K)
    fields = torch.stack([d.field for d in draws])
    torch.testing.assert_close(fields.mean(0), exact, rtol=1e-6, atol=0)
    # E[SE^2] = Var(field): the variance estimate s^2 / k * (1 - k / C) is unbiased. Without
    # the correction it would be 4/3 too large, with (C - k) / (C - 1) in its place 16/15.
    true_variance = ((fields - fields.mean(0)) ** 2).mean(0)
    mean_se2 = torch.stack([d.standard_error**2 for d in draws]).mean(0)
    torch.testing.assert_close(mean_se2, true_variance, rtol=1e-9, atol=1e-30)
    # the jackknife error of a linear statistic is the per-pixel formula
    some = draws[123]
    assert some.standard_error_of(_centre_pixel) == pytest.approx(
        float(some.standard_error[16, 16]), rel=1e-9
    )


def test_sampled_field_mean_over_seeds_converges_to_the_exact_field(sampled_runs):
    exact, every, runs = sampled_runs
    assert all(r.channels.numel() == SAMPLED_K for r in runs)
    assert len({tuple(r.channels.tolist()) for r in runs}) > 150  # ~189 of 1820 expected
    seed_mean = torch.stack([r.field for r in runs]).mean(0)
    # The standard error of a mean of 200 independent draws, per pixel, from the exact
    # spread over all C channels: Var(one estimate) = S^2 / k * (1 - k / C), S^2 with
    # divisor C - 1. By the central limit theorem each pixel's z is about N(0, 1);
    # P(max over 1024 pixels of |z| > 5) <= 1024 * 5.7e-7 = 6e-4 (union bound).
    spread = every.per_channel.var(0, correction=1)
    se_of_mean = (spread / SAMPLED_K * (1 - SAMPLED_K / SAMPLED_C) / SAMPLED_SEEDS).sqrt()
    z = (seed_mean - exact) / se_of_mean.clamp_min(1e-300)
    assert float(z.abs().max()) < 5  # observed 2.9
    # the same in the brief's units: max error relative to the field's peak, under the
    # largest such tolerance at 5 standard errors (observed 0.023 under 0.060)
    error = float((seed_mean - exact).abs().max() / exact.max())
    assert error < float(5 * se_of_mean.max() / exact.max())


def test_sampled_interval_covers_the_exact_value_in_about_95_percent_of_seeds(sampled_runs):
    """The 95% interval (Student's t with k - 1 = 3 degrees of freedom, finite-population
    corrected) of a pixel's value and of the centre patch's share of the mass.

    Over 200 independent draws the number of intervals that cover the exact value is
    Binomial(200, p), p the interval's true coverage. For p = 0.95 (mean 190, sd 3.1),
    P(count < 176, i.e. < 88%) is 3e-5 and P(count > 198, i.e. > 99%) 4e-4: a correct
    interval passes, while one with the normal 1.96 in place of t (true coverage 0.86 and
    0.88 here, over all 1820 draws) falls below 176 with probability 0.76 and 0.45, and one
    that forgot the 1 / sqrt(k) covers every time. The seeds are fixed, so the outcome is
    too; the bounds say how unlikely a correct interval is to fail them.
    """
    exact, every, runs = sampled_runs
    for statistic in (_centre_pixel, _centre_share):
        truth = statistic(exact)
        estimates = [r.estimate(statistic) for r in runs]
        assert all(e.low < e.value < e.high for e in estimates)
        covered = sum(e.low <= truth <= e.high for e in estimates)
        assert 176 <= covered <= 198, (statistic.__name__, covered)  # observed 196, 194
    # the true coverage of the pixel's interval, over all 1820 draws (no seed noise)
    truth = _centre_pixel(exact)
    draws = all_draws(every, SAMPLED_K)
    covered = [e.low <= truth <= e.high for e in (d.estimate(_centre_pixel) for d in draws)]
    assert 0.93 <= sum(covered) / len(draws) <= 0.97  # observed 0.952


def test_sampled_field_is_deterministic_by_seed_and_layer(small_images, tiny_vit):
    vit, images = tiny_vit, small_images()[:2]
    kwargs = {"sample_channels": 5, "run": QUIET}
    one = sampled_receptive_field(vit, images, ["blocks.0", SAMPLED_LAYER], seed=7, **kwargs)
    two = sampled_receptive_field(vit, images, ["blocks.0", SAMPLED_LAYER], seed=7, **kwargs)
    alone = sampled_receptive_field(vit, images, [SAMPLED_LAYER], seed=7, **kwargs)
    other = sampled_receptive_field(vit, images, [SAMPLED_LAYER], seed=8, **kwargs)
    assert list(one) == ["blocks.0", SAMPLED_LAYER]
    for layer in one:
        assert torch.equal(one[layer].channels, two[layer].channels)
        assert torch.equal(one[layer].per_channel, two[layer].per_channel)
    # a layer's draw depends on the seed and its name only, not on the other layers asked for
    assert torch.equal(alone[SAMPLED_LAYER].channels, one[SAMPLED_LAYER].channels)
    torch.testing.assert_close(alone[SAMPLED_LAYER].per_channel, one[SAMPLED_LAYER].per_channel)
    assert not torch.equal(other[SAMPLED_LAYER].channels, one[SAMPLED_LAYER].channels)
    a = effective_receptive_field(vit, images, [SAMPLED_LAYER], seed=7, **kwargs)
    b = effective_receptive_field(vit, images, [SAMPLED_LAYER], seed=7, **kwargs)
    assert torch.equal(a[SAMPLED_LAYER], b[SAMPLED_LAYER])
    torch.testing.assert_close(a[SAMPLED_LAYER], one[SAMPLED_LAYER].field, rtol=1e-6, atol=0)


def test_bad_sample_channels_raise(small_images, tiny_vit):
    vit, images = tiny_vit, small_images()[:2]
    for bad in (0, -3, 4.0, 2.5, True, "4"):
        with pytest.raises(ValueError, match=r"sample_channels must be None .* or an integer"):
            effective_receptive_field(vit, images, ["blocks.0"], sample_channels=bad)
        with pytest.raises(ValueError, match=r"sample_channels must be None .* or an integer"):
            sampled_receptive_field(vit, images, ["blocks.0"], sample_channels=bad)
    with pytest.raises(ValueError, match=r"layer 'blocks.0' has: C=16 channels.*\[1, 16\]"):
        effective_receptive_field(vit, images, ["blocks.0"], sample_channels=17, run=QUIET)
    # layers of different widths: the error names the one that is too narrow
    stack = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1))
    with pytest.raises(ValueError, match=r"layer '1' has: C=4 channels.*\[1, 4\]"):
        sampled_receptive_field(stack, images, ["0", "1"], sample_channels=6, run=QUIET)
    fields = sampled_receptive_field(stack, images, ["0", "1"], sample_channels=4, run=QUIET)
    assert fields["1"].correction == 0 and fields["0"].correction == 0.5
    with pytest.raises(ValueError, match="seed must be"):
        effective_receptive_field(vit, images, ["blocks.0"], sample_channels=2, seed=-1)
    with pytest.raises(ValueError, match="channels='abs_mean'"):
        effective_receptive_field(vit, images, sample_channels=2, channels="sum")
    with pytest.raises(ValueError, match="for the exact field use"):
        sampled_receptive_field(vit, images, sample_channels=None)
    # one channel: an estimate, but no spread to measure its error by
    single = sampled_receptive_field(vit, images, ["blocks.0"], sample_channels=1, run=QUIET)[
        "blocks.0"
    ]
    assert single.field.shape == (32, 32) and torch.isnan(single.standard_error).all()
    with pytest.raises(ValueError, match="sample_channels >= 2"):
        single.estimate()


def test_sampled_fields_keep_each_images_map(sampled_runs):
    _, every, runs = sampled_runs
    for field in (every, runs[0]):
        assert field.per_image.shape == (field.num_images, 32, 32)
        torch.testing.assert_close(field.per_image.mean(0), field.field, rtol=1e-5, atol=1e-12)


def test_sampled_field_estimate_over_images_is_the_image_bootstrap(sampled_runs):
    _, every, runs = sampled_runs
    for statistic, fields in ((_total_mass_of, (every,)), (_difference, (runs[0], runs[1]))):
        got = sampled_field_estimate(statistic, *fields, over=("images",), seed=5)
        expected = field_estimate(statistic, *(f.per_image.numpy() for f in fields), seed=5)
        assert (got.value, got.low, got.high) == pytest.approx(
            (expected.value, expected.low, expected.high), rel=1e-6, abs=1e-12
        )
    # every channel drawn: the channel draw adds nothing
    point = sampled_field_estimate(_total_mass_of, every, over=("channels",))
    assert point.low == point.value == point.high
    both = sampled_field_estimate(_total_mass_of, every)
    alone = sampled_field_estimate(_total_mass_of, every, over=("images",))
    assert (both.low, both.high) == pytest.approx((alone.low, alone.high), rel=1e-12)


def test_sampled_field_estimate_channel_interval_covers_the_exact_value(sampled_runs):
    """The channel part alone, over 200 independent draws of k = 4 of 16 channels.

    A bootstrap over only 4 channels is too narrow (it cannot see the spread it did not
    draw; the t interval of SampledField.estimate is the one for k this small): it still
    covers the exact total mass in most draws, and adding the image part only widens it.
    """
    exact, _, runs = sampled_runs
    truth = _total_mass_of(exact)
    channel = [
        sampled_field_estimate(_total_mass_of, r, over=("channels",), replicates=300) for r in runs
    ]
    covered = sum(e.low <= truth <= e.high for e in channel) / len(runs)
    assert 0.6 <= covered <= 0.97, covered  # observed 0.75
    both = sampled_field_estimate(_total_mass_of, runs[0], replicates=300)
    assert both.high - both.low >= channel[0].high - channel[0].low
    assert "4 of 16 channels" in both.source and "images" in both.source


def test_sampled_field_estimate_refuses_bad_input(sampled_runs, small_images, tiny_vit):
    _, every, _ = sampled_runs
    with pytest.raises(ValueError, match="at least one SampledField"):
        sampled_field_estimate(_total_mass_of)
    with pytest.raises(ValueError, match="non-empty subset"):
        sampled_field_estimate(_total_mass_of, every, over=("pixels",))
    other = sampled_receptive_field(
        tiny_vit, small_images()[:2], [SAMPLED_LAYER], sample_channels=4, run=QUIET
    )[SAMPLED_LAYER]
    with pytest.raises(ValueError, match="different numbers of images"):
        sampled_field_estimate(_difference, every, other)
    assembled = all_draws(every, SAMPLED_K)[0]
    with pytest.raises(ValueError, match="per-image maps"):
        sampled_field_estimate(_total_mass_of, assembled)
    assert sampled_field_estimate(_total_mass_of, assembled, over=("channels",)).high > 0


def _total_mass_of(field: torch.Tensor) -> float:
    return float(field.sum())


def _difference(a, b) -> float:
    return float(a.sum() - b.sum())


def test_mass_area_gap_is_the_difference_of_the_areas():
    point, flat = torch.zeros(8, 8), torch.ones(8, 8)
    point[4, 4] = 1.0
    assert mass_area_gap(flat, point) == pytest.approx(mass_area(flat) - 1 / 64)
    assert mass_area_gap(point, flat, mass=1.0) == pytest.approx(1 / 64 - 1.0)
    with pytest.raises(ValueError, match="different inputs"):
        mass_area_gap(flat, torch.ones(4, 4))


def test_centre_share_gain_is_after_minus_before_on_average():
    flat, centred = torch.ones(8, 8), torch.zeros(8, 8)
    centred[4:8, 4:8] = 1.0  # every bit of mass on the centre 4-px patch
    assert centre_share_gain([centred, flat], [flat, flat], 4) == pytest.approx(
        (1.0 + 0.25) / 2 - 0.25
    )
    with pytest.raises(ValueError, match="same sublayers"):
        centre_share_gain([flat], [flat, flat], 4)


def test_the_default_chunk_is_the_plain_loop_on_a_cpu_and_the_memory_bound_elsewhere():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert _chunk_for(128, 1_000, None, 10**6, "blocks.0", cpu) == 1
    assert _chunk_for(128, 1_000, None, 10**6, "blocks.0", gpu) == 128
    assert _chunk_for(128, 100_000, None, 10**6, "blocks.0", gpu) == 10
    assert _chunk_for(128, 1_000, 16, 10**6, "blocks.0", cpu) == 16  # asked for: kept
