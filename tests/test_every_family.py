"""Every analysis on one model of every family timm builds, against a hook-free reference.

The reference calls the models' submodules by hand, in the order their ``forward`` does,
so no hook (and no in-place operation after a hook) is involved. Families: ViT, classic
ResNet (``resnet18``: BatchNorm/ReLU in place, ``x += shortcut``), ResNetV2 (BiT), MLP-Mixer;
ConvNeXt is not a supported family and is refused with a clear error.
"""

from __future__ import annotations

import functools

import pytest
import timm
import torch
from timm.layers import GroupNormAct, StdConv2d
from timm.models.resnetv2 import ResNetV2
from torch import nn

from vitlens.analyses.attention import attention_distance, mean_attention_distance
from vitlens.analyses.compare import cka_matrix
from vitlens.analyses.probes import pooled_features
from vitlens.analyses.receptive import centre_feature, effective_receptive_field
from vitlens.analyses.residual import residual_norm_ratios
from vitlens.core.cka import linear_cka
from vitlens.models import build_zoo_model, layer_names, model_info, residual_branches
from vitlens.streaming import RunOptions, run_with_cache

FAMILIES = ("vit", "resnet_classic", "resnetv2", "mixer")


@pytest.fixture(scope="module")
def family_model():
    """``family_model(family)``: a small model of each family, random weights, eval mode,
    built once per family and module."""

    @functools.cache
    def build(family: str) -> nn.Module:
        torch.manual_seed(0)
        if family == "vit":
            model = build_zoo_model("vit-pt-small")
        elif family == "resnet_classic":
            model = timm.create_model("resnet18", pretrained=False, num_classes=10)
        elif family == "resnetv2":
            # BiT's layout (standardised convs, GroupNorm, fixed stem), one block per stage
            model = ResNetV2(
                layers=[1, 1, 1, 1],
                channels=(32, 64, 128, 256),
                num_classes=10,
                stem_type="fixed",
                conv_layer=functools.partial(StdConv2d, eps=1e-8),
                norm_layer=functools.partial(GroupNormAct, num_groups=8),
            )
        else:
            model = build_zoo_model("mixer-pt")
        # random BatchNorm statistics, so that BN outputs have both signs everywhere
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
        return model.eval()

    return build


def images(n: int = 6) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))


# ------------------------------------------------------------------ hook-free reference


def _resnet_block_parts(
    block: nn.Module, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """``(skip z, branch f, inner activations by short name)`` of a residual block, by hand."""
    name = type(block).__name__
    if name == "BasicBlock":
        a1 = block.act1(block.bn1(block.conv1(x)))
        f = block.bn2(block.conv2(a1))
        z = block.downsample(x) if block.downsample is not None else x
        return z, f, {"act1": a1}
    if name == "Bottleneck":
        a1 = block.act1(block.bn1(block.conv1(x)))
        a2 = block.act2(block.bn2(block.conv2(a1.clone())))
        f = block.bn3(block.conv3(a2.clone()))
        z = block.downsample(x) if block.downsample is not None else x
        return z, f, {"act1": a1, "act2": a2}
    if name == "PreActBottleneck":
        pre = block.norm1(x)
        z = block.downsample(pre) if block.downsample is not None else x
        n2 = block.norm2(block.conv1(pre))
        n3 = block.norm3(block.conv2(n2.clone()))
        f = block.conv3(n3.clone())
        return z, f, {"norm1": pre, "norm2": n2, "norm3": n3}
    raise AssertionError(f"no reference for {name}")


def reference(model: nn.Module, x: torch.Tensor) -> tuple[dict, dict]:
    """``(activations by layer name, {residual sum: (z, f)})`` without hooks."""
    acts, parts = {}, {}
    info = model_info(model)
    if info.family == "resnet":
        if hasattr(model, "layer1"):  # classic ResNet
            h = model.maxpool(model.act1(model.bn1(model.conv1(x))))
            blocks = [
                (f"layer{s}.{b}", blk)
                for s in range(1, 5)
                for b, blk in enumerate(getattr(model, f"layer{s}"))
            ]
        else:
            h = model.stem(x)
            blocks = [
                (f"stages.{s}.blocks.{b}", blk)
                for s, stage in enumerate(model.stages)
                for b, blk in enumerate(stage.blocks)
            ]
        acts["stem"] = h.clone()
        for name, block in blocks:
            z, f, inner = _resnet_block_parts(block, h.clone())
            parts[name] = (z.clone(), f.clone())
            acts.update({f"{name}.{short}": a.clone() for short, a in inner.items()})
            h = block(h.clone())
            acts[name] = h.clone()
        return acts, parts
    if info.family == "vit":
        h = model.norm_pre(model._pos_embed(model.patch_embed(x)))
    else:
        h = model.stem(x)
    for i, block in enumerate(model.blocks):
        b = f"blocks.{i}"
        n1 = block.norm1(h)
        if info.family == "vit":
            mixed = block.attn(n1)
            f1 = block.ls1(mixed)
        else:
            mixed = block.mlp_tokens(n1.transpose(1, 2))
            f1 = mixed.transpose(1, 2)
        r1 = h + f1
        n2 = block.norm2(r1)
        if info.family == "vit":
            hidden = block.mlp.act(block.mlp.fc1(n2))
            f2 = block.ls2(block.mlp(n2))
            acts.update({f"{b}.attn": mixed, f"{b}.mlp.act": hidden})
        else:
            f2 = block.mlp_channels(n2)
            acts.update({f"{b}.mlp_tokens": mixed, f"{b}.mlp_channels": f2})
        out = r1 + f2
        acts.update({f"{b}.norm1": n1, f"{b}.residual1": r1, f"{b}.norm2": n2, b: out})
        parts[f"{b}.residual1"] = (h, f1)
        parts[b] = (r1, f2)
        h = out
    return acts, parts


def _close(actual, expected, what):
    torch.testing.assert_close(
        actual.double(), expected.double(), atol=1e-4, rtol=1e-4, msg=lambda m: f"{what}: {m}"
    )


# ------------------------------------------------------------------ the tests


@pytest.mark.parametrize("family", FAMILIES)
def test_run_with_cache_gives_the_true_activation_of_every_layer(family, family_model):
    model, x = family_model(family), images()
    with torch.no_grad():
        expected, _ = reference(model, x)
    names = layer_names(model)
    got = run_with_cache(model, x, names)
    assert set(names) <= set(expected)
    for name in names:
        _close(got[name], expected[name], name)


def test_classic_resnet_bn_output_is_not_overwritten_by_the_inplace_relu(family_model):
    """Issue item 1: ``layer1.0.bn1`` is followed by ``ReLU(inplace=True)``."""
    model, x = family_model("resnet_classic"), images()
    with torch.no_grad():
        h = model.maxpool(model.act1(model.bn1(model.conv1(x))))
        expected = model.layer1[0].bn1(model.layer1[0].conv1(h))
    got = run_with_cache(model, x, ["layer1.0.bn1", "layer1.0.bn2"])["layer1.0.bn1"]
    assert float(expected.min()) < 0
    _close(got, expected, "layer1.0.bn1")


@pytest.mark.parametrize("family", FAMILIES)
def test_residual_norm_ratios_match_the_reference(family, family_model):
    model, x = family_model(family), images()
    with torch.no_grad():
        _, parts = reference(model, x)
    result = residual_norm_ratios(
        model, x, run=RunOptions(batch_size=len(x), device="cpu", progress=False)
    )
    assert [b.name for b in result.branches] == [b.name for b in residual_branches(model)]
    for branch, ratio, cosine in zip(
        result.branches, result.norm_ratio, result.cosine, strict=True
    ):
        z, f = (p.double() for p in parts[branch.name])
        if z.dim() == 4:
            z, f = z.permute(0, 2, 3, 1), f.permute(0, 2, 3, 1)
        _close(ratio, (z.norm(dim=-1) / f.norm(dim=-1)).mean(0), f"{branch.name} ratio")
        expected_cos = nn.functional.cosine_similarity(z, z + f, dim=-1).mean(0)
        _close(cosine, expected_cos, f"{branch.name} cosine")


@pytest.mark.parametrize("family", FAMILIES)
def test_cka_matrix_and_pooled_features_match_the_reference(family, family_model):
    model, x = family_model(family), images(8)
    with torch.no_grad():
        expected, _ = reference(model, x)
    blocks = layer_names(model, "blocks")[-3:]
    result = cka_matrix(
        model, x, layers_a=blocks, run=RunOptions(batch_size=len(x), device="cpu", progress=False)
    )
    for i, a in enumerate(blocks):
        for j, b in enumerate(blocks):
            want = linear_cka(expected[a], expected[b], debiased=True)
            assert result.matrix[i, j] == pytest.approx(want, abs=1e-4), (a, b)
    pooled = pooled_features(
        model, x, blocks, run=RunOptions(batch_size=4, device="cpu", progress=False)
    )
    for name in blocks:
        value = expected[name]
        want = value.mean(dim=(2, 3)) if value.dim() == 4 else value.mean(1)
        _close(pooled[name], want, f"pooled {name}")


@pytest.mark.parametrize("family", FAMILIES)
def test_pre_branch_receptive_field_matches_the_reference(family, family_model):
    model, x = family_model(family), images(2)
    name = layer_names(model, "blocks")[0]
    got = effective_receptive_field(
        model, x, [name], branch="pre", run=RunOptions(batch_size=2, device="cpu", progress=False)
    )[name]
    x = x.clone().requires_grad_(True)
    _, parts = reference(model, x)
    f = parts[name][1]
    centre = centre_feature(model, f, name)  # (n, C): the paper's ERF, channel by channel
    per_channel = []
    for c in range(centre.shape[1]):
        (grad,) = torch.autograd.grad(centre[:, c].sum(), x, retain_graph=True)
        per_channel.append(grad.abs().sum(dim=1).mean(0))  # colours summed, images averaged
    _close(got, torch.stack(per_channel).mean(0), f"ERF pre {name}")


def test_attention_distance_matches_weights_computed_by_hand(family_model):
    model, x = family_model("vit"), images(4)
    info = model_info(model)
    got = mean_attention_distance(
        model, x, run=RunOptions(batch_size=4, device="cpu", progress=False)
    )
    with torch.no_grad():
        h = model.norm_pre(model._pos_embed(model.patch_embed(x)))
        rows = []
        for block in model.blocks:
            attn, n1 = block.attn, block.norm1(h)
            n, t, c = n1.shape
            qkv = attn.qkv(n1).reshape(n, t, 3, attn.num_heads, c // attn.num_heads)
            q, k, _ = qkv.permute(2, 0, 3, 1, 4).unbind(0)
            weights = ((attn.q_norm(q) * attn.scale) @ attn.k_norm(k).transpose(-2, -1)).softmax(-1)
            rows.append(
                attention_distance(
                    weights, info.grid, info.patch_size, info.num_prefix_tokens
                ).mean(0)
            )
            h = block(h)
    _close(got, torch.stack(rows), "attention distance")


def test_convnext_is_refused_with_a_clear_error():
    model = timm.create_model("convnext_atto", pretrained=False, num_classes=10)
    with pytest.raises(ValueError, match=r"does not know the family of ConvNeXt.*supported"):
        layer_names(model)
    with pytest.raises(ValueError, match="ConvNeXt"):
        residual_norm_ratios(model, images(4), run=RunOptions(device="cpu", progress=False))
