"""Mean attention distance on hand-made maps with known answers, and on real ViTs."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch

from vitlens.analyses.attention import (
    attention_distance,
    count_local_heads,
    head_subset_cka,
    local_heads,
    mean_attention_distance,
    patch_distances,
    relative_attention_distance,
    unfused_attention,
    uniform_attention_distance,
)
from vitlens.models import layer_names, load_model
from vitlens.plotting import attention_distance_scatter, head_subset_curves
from vitlens.streaming import RunOptions, capture

QUIET = RunOptions(progress=False)

GRID, PATCH = (3, 4), 5


def _with_prefix(patch_weights: torch.Tensor, prefix: int, prefix_mass: float) -> torch.Tensor:
    """Embed ``(n, h, P, P)`` patch attention in ``(n, h, T, T)``, moving mass to prefix keys."""
    n, heads, p, _ = patch_weights.shape
    full = torch.full((n, heads, prefix + p, prefix + p), 1.0 / (prefix + p))
    if prefix:
        full[..., prefix:, :prefix] = prefix_mass / prefix
    full[..., prefix:, prefix:] = patch_weights * (1 - prefix_mass)
    return full


@pytest.mark.parametrize("prefix, prefix_mass", [(0, 0.0), (1, 0.0), (1, 0.5), (2, 0.9)])
def test_self_attention_is_at_distance_zero(prefix, prefix_mass):
    weights = _with_prefix(torch.eye(12).expand(2, 3, 12, 12), prefix, prefix_mass)
    distance = attention_distance(weights, GRID, PATCH, prefix)
    assert distance.shape == (2, 3)
    assert torch.all(distance == 0)


@pytest.mark.parametrize("prefix, prefix_mass", [(0, 0.0), (1, 0.3)])
def test_uniform_attention_gives_mean_pairwise_distance(prefix, prefix_mass):
    centres = [(r * PATCH, c * PATCH) for r in range(GRID[0]) for c in range(GRID[1])]
    pairs = list(itertools.product(centres, centres))
    expected = sum(math.dist(a, b) for a, b in pairs) / len(pairs)
    weights = _with_prefix(torch.full((1, 2, 12, 12), 1 / 12), prefix, prefix_mass)
    distance = attention_distance(weights, GRID, PATCH, prefix)
    torch.testing.assert_close(distance, torch.full((1, 2), expected, dtype=torch.float64))


def test_half_self_half_neighbour_is_half_a_patch():
    rows, cols = GRID
    weights = torch.zeros(12, 12)
    for r, c in itertools.product(range(rows), range(cols)):
        q = r * cols + c
        neighbour = q + 1 if c < cols - 1 else q - 1
        weights[q, q] = weights[q, neighbour] = 0.5
    distance = attention_distance(_with_prefix(weights[None, None], 1, 0.2), GRID, PATCH, 1)
    torch.testing.assert_close(distance, torch.full((1, 1), PATCH / 2, dtype=torch.float64))


def test_patch_distances_are_pixels_between_centres():
    d = patch_distances((2, 2), 16)
    assert d[0, 3] == pytest.approx(16 * math.sqrt(2))
    assert d[0, 1] == 16 and torch.all(d.diagonal() == 0)


@pytest.mark.parametrize(
    "shape, prefix",
    [((1, 2, 12, 11), 0), ((1, 2, 13, 13), 0), ((2, 12, 12), 0), ((1, 1, 12, 12), 1)],
)
def test_bad_weight_shapes_raise(shape, prefix):
    with pytest.raises(ValueError, match=r"tokens|shape"):
        attention_distance(torch.ones(shape), GRID, PATCH, prefix)


def test_captured_weights_are_the_softmax_and_flags_are_restored(zoo_shaped, small_images):
    vit = zoo_shaped("vit-cls")
    images = small_images()[:4]
    attn = vit.blocks[1].attn
    assert attn.fused_attn
    inputs = {}
    with unfused_attention(vit, [1]) as layers, torch.inference_mode():
        assert not attn.fused_attn and vit.blocks[0].attn.fused_attn
        with capture(vit, [*layers, "blocks.1.norm1"]) as store:
            vit(images)
            inputs = dict(store)
    assert attn.fused_attn
    x = inputs["blocks.1.norm1"]
    with torch.inference_mode():
        q, k, _ = attn.qkv(x).reshape(4, 65, 3, 4, 32).permute(2, 0, 3, 1, 4)
        expected = (q @ k.transpose(-2, -1) * attn.scale).softmax(-1)
    torch.testing.assert_close(inputs["blocks.1.attn.attn_drop"], expected)


def test_flags_restored_when_the_body_raises(zoo_shaped):
    vit = zoo_shaped("vit-cls")
    with pytest.raises(RuntimeError, match="boom"), unfused_attention(vit):
        raise RuntimeError("boom")
    assert all(block.attn.fused_attn for block in vit.blocks)


def test_mean_attention_distance_on_zoo_shaped_vits(zoo_shaped, small_images):
    images = small_images()
    for name in ("vit-cls", "vit-pt-gap"):
        vit = zoo_shaped(name)
        distance = mean_attention_distance(
            vit, images, run=RunOptions(batch_size=8, progress=False)
        )
        assert distance.shape == (8, 4) and distance.dtype == torch.float64
        max_distance = patch_distances((8, 8), 4).max()
        assert torch.all((distance > 0) & (distance < max_distance))
        assert all(block.attn.fused_attn for block in vit.blocks)
    chosen = mean_attention_distance(zoo_shaped("vit-cls"), images, blocks=[0, 7], run=QUIET)
    torch.testing.assert_close(chosen, distance[[0, 7]], rtol=0.05, atol=2.0)


@pytest.mark.parametrize("blocks", [[8], [-1], []])
def test_bad_blocks_raise(blocks, zoo_shaped, small_images):
    with pytest.raises(ValueError, match="blocks must be"):
        mean_attention_distance(zoo_shaped("vit-cls"), small_images(), blocks=blocks)


@pytest.mark.parametrize("name", ["resnet-local", "mixer-pt"])
def test_models_without_attention_raise(name, zoo_shaped, small_images):
    with pytest.raises(ValueError, match="need a ViT"):
        mean_attention_distance(zoo_shaped(name), small_images())


@pytest.mark.slow
def test_paper_vit_and_head_subsets(paper_model, paper_images):
    vit = paper_model("vit_base_patch16_224")
    distance = mean_attention_distance(vit, paper_images(2), run=QUIET)
    assert distance.shape == (12, 12) and torch.isfinite(distance).all()
    result = head_subset_cka(
        vit, paper_model("resnetv2_50x1_bit"), paper_images(4), heads_per_subset=4, run=QUIET
    )
    assert result.matrix.shape == (9, 8) and result.heads.shape == (9, 4)
    assert torch.isfinite(result.matrix).all()
    ordered = result.distances[result.heads[:, 0]]
    assert torch.all(ordered[1:] >= ordered[:-1])  # windows run from local to global


def test_head_subsets_of_all_heads_equal_the_block_attention_output(zoo_shaped, small_images):
    from vitlens.analyses.compare import cka_matrix

    vit, resnet, images = zoo_shaped("vit-cls"), zoo_shaped("resnet-local"), small_images()
    whole = head_subset_cka(
        vit, resnet, images, heads_per_subset=4, run=RunOptions(batch_size=8, progress=False)
    )
    reference = cka_matrix(
        vit,
        images,
        resnet,
        layers_a=["blocks.0.attn.norm"],
        layers_b=whole.layers,
        run=RunOptions(batch_size=8, progress=False),
    )
    torch.testing.assert_close(whole.matrix, torch.from_numpy(reference.matrix))
    with pytest.raises(ValueError, match="heads_per_subset"):
        head_subset_cka(vit, resnet, images, heads_per_subset=5)


def test_head_subsets_against_the_other_models_grams_equal_those_against_the_model(
    zoo_shaped, small_images
):
    from vitlens.analyses.compare import layer_grams

    vit, resnet, images = zoo_shaped("vit-cls"), zoo_shaped("resnet-local"), small_images()
    run = RunOptions(batch_size=8, progress=False)
    direct = head_subset_cka(vit, resnet, images, block=1, heads_per_subset=2, run=run)
    grams = layer_grams(resnet, images, layer_names(resnet, "blocks"), run=run)
    reused = head_subset_cka(
        vit, grams, images, block=1, heads_per_subset=2, layers=direct.layers, run=run
    )
    torch.testing.assert_close(reused.matrix, direct.matrix, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(reused.distances, direct.distances)
    assert torch.equal(reused.heads, direct.heads)
    # Grams of other images, another batch size or an unknown layer are refused
    with pytest.raises(ValueError, match="batch 0 is not the images"):
        head_subset_cka(vit, grams, images.flip(0), block=1, layers=direct.layers, run=run)
    with pytest.raises(ValueError, match="batches of 8, this run streams batches of 4"):
        head_subset_cka(vit, grams, images, run=run.with_batch_size(4))
    with pytest.raises(ValueError, match="no Grams of layers"):
        head_subset_cka(vit, grams, images, layers=["stem"], run=run)
    with pytest.raises(ValueError, match="the data has 1 batches, the Grams"):
        head_subset_cka(vit, grams, images[:8], layers=direct.layers, run=run)


@pytest.mark.parametrize("name", ["vit-cls", "vit-pt-small"])
def test_trained_zoo_vits(name):
    from vitlens.data import ShapesDataset

    vit = load_model(name)
    distance = mean_attention_distance(vit, ShapesDataset(64, split="test"), run=QUIET)
    assert distance.shape == (len(vit.blocks), vit.blocks[0].attn.num_heads)
    assert torch.all((distance > 0) & (distance < patch_distances((8, 8), 4).max()))


def test_scatter_plot():
    ax = attention_distance_scatter(torch.rand(3, 4) * 10, label="model")
    assert ax.get_ylabel() == "Mean attention distance (pixels)"
    with pytest.raises(ValueError, match="blocks, heads"):
        attention_distance_scatter(torch.rand(3))


def test_head_subset_curves_draw_one_line_per_subset():
    from vitlens.analyses.attention import HeadSubsetCKA

    result = HeadSubsetCKA(
        matrix=torch.rand(3, 5),
        heads=torch.tensor([[1, 0], [0, 2], [2, 3]]),
        distances=torch.tensor([4.0, 2.0, 6.0, 9.0]),
        block=0,
        layers=[f"layer{i}" for i in range(5)],
    )
    ax = head_subset_curves(result)
    assert len(ax.lines) == 3 and ax.get_xticklabels()[4].get_text() == "layer4"
    colours = [line.get_color() for line in ax.lines]
    assert colours[0] != colours[2]  # most local and most global subsets differ in colour
    with pytest.raises(ValueError, match="no per-batch terms"):  # drawn, but not resampled
        result.bootstrap()
    with pytest.raises(ValueError, match="matrix must be \\(subsets, layers\\)"):
        head_subset_curves(
            HeadSubsetCKA(torch.rand(2, 5), result.heads, result.distances, 0, result.layers)
        )


# ------------------------------------------------------------------------------ local heads


def _uniform_attention_vit(shared: torch.nn.Module) -> torch.nn.Module:
    """A copy of a zoo-shaped ViT whose queries and keys are zero, so every head attends
    uniformly."""
    vit = copy.deepcopy(shared)  # zoo_shaped models are shared by the session
    with torch.no_grad():
        for block in vit.blocks:
            dim = block.attn.qkv.in_features
            block.attn.qkv.weight[: 2 * dim] = 0
            if block.attn.qkv.bias is not None:
                block.attn.qkv.bias[: 2 * dim] = 0
    return vit


def test_uniform_attention_distance_is_the_mean_pairwise_distance():
    assert uniform_attention_distance((8, 8), 4) == pytest.approx(
        float(patch_distances((8, 8), 4).mean())
    )
    weights = torch.full((1, 1, 12, 12), 1 / 12)
    assert float(attention_distance(weights, GRID, PATCH)) == pytest.approx(
        uniform_attention_distance(GRID, PATCH)
    )


@pytest.mark.parametrize("name", ["vit-cls", "vit-pt-gap"])
def test_relative_distance_is_one_under_uniform_attention(name, zoo_shaped, small_images):
    rel = relative_attention_distance(
        _uniform_attention_vit(zoo_shaped(name)), small_images(), run=QUIET
    )
    assert rel.shape == (8, 4)
    torch.testing.assert_close(rel, torch.ones_like(rel), rtol=1e-5, atol=1e-5)
    assert count_local_heads(rel) == 0
    # queries equal to keys at a large scale: each patch attends to itself, every head local
    vit = copy.deepcopy(zoo_shaped(name))  # zoo_shaped models are shared by the session
    with torch.no_grad():
        for block in vit.blocks:
            dim = block.attn.qkv.in_features
            block.attn.qkv.weight[:dim] = 30 * torch.eye(dim)
            block.attn.qkv.weight[dim : 2 * dim] = 30 * torch.eye(dim)
    selfish = relative_attention_distance(vit, small_images(), blocks=[0, 1], run=QUIET)
    assert torch.all(selfish < 0.1)
    assert count_local_heads(selfish) == 8


def test_count_local_heads_counts_below_the_threshold_in_the_given_blocks():
    rel = torch.tensor([[0.2, 0.9, 0.49], [0.5, 0.1, 1.0], [0.3, 0.3, 0.3]], dtype=torch.float64)
    assert local_heads(rel).tolist() == [[True, False, True], [False, True, False], [True] * 3]
    assert count_local_heads(rel) == 6
    assert count_local_heads(rel, blocks=range(2)) == 3
    assert count_local_heads(rel, blocks=[1]) == 1
    assert count_local_heads(rel, threshold=0.25) == 2
    with pytest.raises(ValueError, match="out of range"):
        count_local_heads(rel, blocks=[3])
    with pytest.raises(ValueError, match="NaN"):
        count_local_heads(torch.tensor([[float("nan"), 0.2]]))
    with pytest.raises(ValueError, match="blocks, heads"):
        local_heads(torch.ones(3))


def test_lowest_mixed_block_needs_both_kinds_of_head_in_every_model():
    from vitlens.analyses.attention import lowest_mixed_block

    def mask(rows):
        return torch.tensor(rows, dtype=torch.bool)

    first = mask([[0, 0], [1, 0], [1, 1], [1, 0]])  # block 1: mixed; block 2: all local
    second = mask([[1, 0], [0, 0], [1, 1], [0, 1]])  # block 1: all global
    assert lowest_mixed_block([first]) == 1
    assert lowest_mixed_block([first, second]) == 3
    assert lowest_mixed_block([first, mask([[0, 0]] * 4)]) is None
    with pytest.raises(ValueError, match="at least one"):
        lowest_mixed_block([])
    with pytest.raises(ValueError, match="different block counts"):
        lowest_mixed_block([first, mask([[1, 0]] * 3)])
    with pytest.raises(ValueError, match="boolean"):
        lowest_mixed_block([first.float()])
