"""Layer names and activation capture on the paper's architectures (pretrained=False)."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from vitlens import capture, layer_names, model_info, run_with_cache


@pytest.fixture(scope="module")
def paper_models(paper_model):
    names = ["vit_base_patch16_224", "resnetv2_50x1_bit", "resnet50", "mixer_b16_224"]
    return {name: paper_model(name) for name in names}


@pytest.fixture(scope="module")
def paper_caches(paper_models):
    images = torch.randn(2, 3, 224, 224)
    return {name: run_with_cache(model, images) for name, model in paper_models.items()}


@pytest.mark.slow
def test_vit_layer_names(paper_models, paper_caches):
    vit = paper_models["vit_base_patch16_224"]
    names = layer_names(vit)
    assert len(names) == 12 * 6
    assert names[:6] == [
        "blocks.0.norm1",
        "blocks.0.attn",
        "blocks.0.residual1",
        "blocks.0.norm2",
        "blocks.0.mlp.act",
        "blocks.0",
    ]
    assert names[-1] == "blocks.11"
    assert layer_names(vit, "blocks") == [f"blocks.{i}" for i in range(12)]
    cache = paper_caches["vit_base_patch16_224"]
    assert list(cache) == names
    assert cache["blocks.3.attn"].shape == (2, 197, 768)
    assert cache["blocks.3.mlp.act"].shape == (2, 197, 3072)
    assert cache["blocks.11"].shape == (2, 197, 768)


@pytest.mark.slow
def test_vit_residual_point_is_the_first_residual_sum(paper_caches):
    cache = paper_caches["vit_base_patch16_224"]
    expected = cache["blocks.4"] + cache["blocks.5.attn"]  # block 5's input + its attention
    torch.testing.assert_close(cache["blocks.5.residual1"], expected)
    expected = cache["blocks.5.residual1"]
    assert not torch.allclose(cache["blocks.5"], expected)


@pytest.mark.slow
def test_resnetv2_layer_names(paper_models, paper_caches):
    names = layer_names(paper_models["resnetv2_50x1_bit"])
    assert len(names) == 1 + 4 * (3 + 4 + 6 + 3)  # stem; per block 3 norms and the output
    first = "stages.0.blocks.0"
    assert names[:6] == [
        "stem",
        f"{first}.norm1",
        f"{first}.norm2",
        f"{first}.norm3",
        first,
        "stages.0.blocks.1.norm1",
    ]
    assert names[-1] == "stages.3.blocks.2"
    blocks = layer_names(paper_models["resnetv2_50x1_bit"], "blocks")
    assert blocks == [n for n in names[1:] if ".norm" not in n] and len(blocks) == 16
    cache = paper_caches["resnetv2_50x1_bit"]
    assert cache["stem"].shape == (2, 64, 56, 56)
    assert cache["stages.0.blocks.0"].shape == (2, 256, 56, 56)
    assert cache["stages.3.blocks.2"].shape == (2, 2048, 7, 7)


@pytest.mark.slow
def test_classic_resnet_layer_names(paper_models, paper_caches):
    names = layer_names(paper_models["resnet50"])
    assert len(names) == 1 + 3 * 16  # stem; per bottleneck act1, act2 and the output
    assert names[:4] == ["stem", "layer1.0.act1", "layer1.0.act2", "layer1.0"]
    assert names[-1] == "layer4.2"
    cache = paper_caches["resnet50"]
    assert cache["stem"].shape == (2, 64, 56, 56)  # after the max pool
    assert cache["layer4.2"].shape == (2, 2048, 7, 7)


@pytest.mark.slow
def test_mixer_layer_names(paper_models, paper_caches):
    mixer = paper_models["mixer_b16_224"]
    names = layer_names(mixer)
    assert len(names) == 12 * 6
    assert names[:6] == [
        "blocks.0.norm1",
        "blocks.0.mlp_tokens",
        "blocks.0.residual1",
        "blocks.0.norm2",
        "blocks.0.mlp_channels",
        "blocks.0",
    ]
    cache = paper_caches["mixer_b16_224"]
    assert cache["blocks.0.mlp_tokens"].shape == (2, 768, 196)  # token mixing acts on (C, T)
    assert cache["blocks.0.mlp_channels"].shape == (2, 196, 768)
    expected = cache["blocks.2"] + cache["blocks.3.mlp_tokens"].transpose(1, 2)
    torch.testing.assert_close(cache["blocks.3.residual1"], expected)


@pytest.mark.slow
def test_model_info_of_paper_models(paper_models):
    assert model_info(paper_models["vit_base_patch16_224"]) == model_info(
        paper_models["vit_base_patch16_224"]
    )
    vit = model_info(paper_models["vit_base_patch16_224"])
    assert (vit.family, vit.patch_size, vit.grid, vit.num_prefix_tokens) == ("vit", 16, (14, 14), 1)
    mixer = model_info(paper_models["mixer_b16_224"])
    assert (mixer.family, mixer.grid, mixer.num_prefix_tokens) == ("mixer", (14, 14), 0)
    assert model_info(paper_models["resnet50"]).family == "resnet"
    with pytest.raises(ValueError, match="family"):
        model_info(nn.Linear(2, 2))


@pytest.mark.slow
def test_unknown_layer_lists_closest_names(paper_models):
    vit = paper_models["vit_base_patch16_224"]
    with pytest.raises(ValueError, match=r"blocks\.0\.attn") as info:
        with capture(vit, ["blocks.0.atn"]):
            pass
    assert "unknown layer 'blocks.0.atn'" in str(info.value)
    with pytest.raises(ValueError, match="kind must be"):
        layer_names(vit, "everything")
    with pytest.raises(TypeError, match="sequence of names"):
        with capture(vit, "blocks.0"):
            pass


def all_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


class Boom(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom")


def test_hooks_are_removed_even_when_the_forward_raises():
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2
    )
    before = all_hooks(model)
    names = [name for name in layer_names(model) if name != "blocks.1.mlp.act"]
    model.blocks[1].mlp = Boom()  # the forward raises half-way through block 1
    with pytest.raises(RuntimeError, match="boom"):
        with capture(model, names) as store:
            model(torch.randn(2, 3, 32, 32))
    assert "blocks.0" in store and "blocks.1" not in store  # hooks did fire before the error
    assert all_hooks(model) == before
    with capture(model, ["blocks.1"]):
        assert all_hooks(model) == before + 1
    assert all_hooks(model) == before


class TupleOut(nn.Module):
    def forward(self, x):
        return x * 2, "aux"


def test_tuple_outputs_take_the_first_tensor_and_are_detached():
    model = nn.Sequential(nn.Linear(3, 3), TupleOut())
    x = torch.randn(4, 3, requires_grad=True)
    with capture(model, ["0", "1"]) as store:
        model(x)
    assert not store["0"].requires_grad
    torch.testing.assert_close(store["1"], store["0"] * 2)


def test_transform_runs_inside_the_hook():
    model = nn.Sequential(nn.Linear(3, 5))
    with capture(model, ["0"], transform=lambda t: t.sum(dim=1)) as store:
        out = model(torch.randn(4, 3))
    torch.testing.assert_close(store["0"], out.detach().sum(dim=1))
