"""The shipped zoo (hashes, accuracies) and the model registry."""

from __future__ import annotations

import pytest
import torch
from timm.models.vision_transformer import Block

from vitlens.analyses.receptive import effective_receptive_field, mass_area
from vitlens.book.profiles import get_profile
from vitlens.data import VERIFY_SIZE, heldout, normalize_shapes, render_shapes
from vitlens.models import (
    PAPER_MODELS,
    RESNET_STEMS,
    ZOO_ARCHS,
    NoSkipBlock,
    build_arch,
    build_zoo_model,
    load_model,
    model_info,
    model_name,
    parameter_count,
    read_manifest,
    remove_skips,
    sha256_file,
    skipless_blocks,
    zoo_dir,
)
from vitlens.models.zoo import ZOO_PLAN, ZOO_RECIPES, split_zoo_key
from vitlens.streaming import RunOptions
from vitlens.training.loop import accuracy

MANIFEST = read_manifest()


def test_manifest_lists_only_shipped_checkpoints():
    shipped = {p.name for p in zoo_dir().glob("*.safetensors")}
    assert {e["file"] for e in MANIFEST.values()} == shipped
    assert sum(e["bytes"] for e in MANIFEST.values()) <= 80e6  # zoo v1 and v2 together


def test_every_registered_model_is_shipped_or_queued():
    """A registered model is shipped, or waits in the training plan (``vitlens zoo queue``)."""
    queued = {split_zoo_key(key)[0] for key in ZOO_PLAN if not key.startswith("sweep:")}
    untrained = sorted(set(ZOO_ARCHS) - set(MANIFEST) - queued)
    assert not untrained, f"registered but neither shipped nor queued: {untrained}"
    for key, entry in MANIFEST.items():  # every key names a model and the seed it records
        _, seed = split_zoo_key(key)
        assert entry["recipe"]["seed"] == seed and entry["file"] == f"{key}.safetensors"


@pytest.mark.parametrize("profile", ["tiny"])
def test_every_model_the_book_uses_is_shipped(profile):
    used = {name for name in get_profile(profile).models.values() if name is not None}
    assert used, "the profile names no models"
    assert not used - set(MANIFEST), f"the book uses untrained models: {used - set(MANIFEST)}"


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_zoo_model_reproduces_its_manifest_accuracy(name):
    entry = MANIFEST[name]
    assert sha256_file(zoo_dir() / entry["file"]) == entry["sha256"]
    model = load_model(name)
    sample = heldout(entry["data"], n=VERIFY_SIZE)
    _, correct = accuracy(model, sample.images, sample.labels)
    assert abs(correct - entry["verify"]["correct"]) <= 2  # thread-count rounding only
    assert sum(p.numel() for p in model.parameters()) == entry["params"]


@pytest.mark.parametrize(("name", "floor"), [("resnet-local", 0.90), ("vit-cls", 0.80)])
def test_floors(name, floor):
    assert MANIFEST[name]["heldout"]["accuracy"] >= floor


def test_every_zoo_architecture_builds_with_its_family():
    assert set(ZOO_RECIPES) == set(ZOO_ARCHS)
    x = normalize_shapes(render_shapes(range(2)).images)
    for name, arch in ZOO_ARCHS.items():
        model = load_model(name, pretrained=False)
        info = model_info(model)
        assert info.family == arch["family"]
        if info.family != "resnet":
            assert info.patch_size == 4 and info.grid == (8, 8)
        assert model(x).shape == (2, 10)
    assert model_info(build_zoo_model("vit-cls")).num_prefix_tokens == 1
    assert model_info(build_zoo_model("vit-pt-gap")).num_prefix_tokens == 0


def test_noskip_keeps_names_and_drops_the_residual():
    torch.manual_seed(0)
    plain = build_zoo_model("vit-cls")
    noskip = build_zoo_model("vit-pt-noskip-2")
    assert plain.state_dict().keys() == noskip.state_dict().keys()
    assert [n for n, _ in plain.named_modules()] == [n for n, _ in noskip.named_modules()]
    assert isinstance(noskip.blocks[2], NoSkipBlock) and type(noskip.blocks[1]) is Block
    assert skipless_blocks(noskip) == [2] and skipless_blocks(plain) == []
    assert skipless_blocks(build_zoo_model("resnet-local")) == []
    assert (
        parameter_count(noskip)
        == parameter_count(plain)
        == sum(
            tensor.numel() for tensor in plain.state_dict().values() if tensor.is_floating_point()
        )
    )
    x = torch.randn(2, 65, 128)
    block = plain.blocks[2]
    branch = block.attn(block.norm1(x))
    expected = block.mlp(block.norm2(branch))
    remove_skips(plain, [2])
    assert torch.allclose(plain.blocks[2](x), expected, atol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        remove_skips(plain, [8])
    with pytest.raises(ValueError, match="ViT"):
        remove_skips(build_zoo_model("resnet-local"), [0])


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match="vit-cls"):
        load_model("vit-nonexistent")
    with pytest.raises(ValueError, match="unknown zoo model"):
        build_zoo_model("resnet-50")


def test_missing_weights_say_how_to_get_them(monkeypatch):
    import timm

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE"):
        load_model(PAPER_MODELS[0])


def test_paper_registry_builds_a_vit_without_weights():
    model = load_model("vit_base_patch16_224.augreg_in21k", pretrained=False)
    info = model_info(model)
    assert (info.family, info.patch_size, info.grid, info.num_prefix_tokens) == (
        "vit",
        16,
        (14, 14),
        1,
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in PAPER_MODELS if "huge" not in n])
def test_paper_registry_builds_every_architecture(name):
    family = {"vit": "vit", "resnetv2": "resnet", "mixer": "mixer"}[name.split("_")[0]]
    assert model_info(load_model(name, pretrained=False)).family == family


def _local_resnet():
    torch.manual_seed(0)
    return build_arch({**ZOO_ARCHS["resnet-local"], "stem": "local"})


def test_local_stem_keeps_the_first_stage_at_full_resolution():
    model, x = _local_resnet(), torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        stem, first = model.stem(x), model.stages[0](model.stem(x))
    assert stem.shape[-2:] == first.shape[-2:] == (32, 32)
    imagenet = build_arch({**ZOO_ARCHS["resnet-local"], "stem": "imagenet"})
    with torch.inference_mode():
        assert imagenet.stages[0](imagenet.stem(x)).shape[-2:] == (8, 8)


def test_local_stem_first_block_field_is_within_five_percent_of_the_image():
    """Issue bound: the first block's ERF (after the sum) holds half its mass on <= 5 %."""
    images = torch.randn(4, 3, 32, 32)
    fields = {
        stem: effective_receptive_field(
            build_arch({**ZOO_ARCHS["resnet-local"], "stem": stem}),
            images,
            ["stages.0.blocks.0"],
            run=RunOptions(batch_size=16, progress=False),
        )["stages.0.blocks.0"]
        for stem in RESNET_STEMS
    }
    local = fields["local"]
    # stem 3x3 then the bottleneck's 3x3: most of the mass on the central 5 x 5 pixels (the
    # rest reaches every pixel through GroupNorm's image-wide statistics)
    assert local[14:19, 14:19].sum() > 2 / 3 * local.sum()
    assert mass_area(local) <= 0.05
    assert mass_area(fields["imagenet"]) > 2 * mass_area(local)


@pytest.mark.parametrize(
    ("arch", "message"),
    [
        ({"family": "cnn"}, "unknown family 'cnn'"),
        ({**ZOO_ARCHS["resnet-local"], "stem": "deep"}, "unknown ResNet stem 'deep'"),
        ({**ZOO_ARCHS["vit-cls"], "stem": "local"}, "'stem' is a ResNet option"),
        ({**ZOO_ARCHS["resnet-local"], "noskip": [1]}, "'noskip' removes ViT skip connections"),
    ],
)
def test_build_arch_refuses_options_a_family_lacks(arch, message):
    with pytest.raises(ValueError, match=message):
        build_arch(arch)


def test_model_names_come_from_timm_metadata():
    import timm

    assert model_name(load_model("vit-pt-gap", pretrained=False)) == "vit-pt-gap"
    assert model_name(timm.create_model("resnet18", pretrained=False)) == "resnet18.a1_in1k"
    assert model_name(torch.nn.Linear(2, 2)) == "Linear"
