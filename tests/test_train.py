"""The training loop, checkpoints and manifest entries."""

from __future__ import annotations

import importlib
import itertools
import json
import math
from dataclasses import replace

import pytest
import torch
from torch import Tensor

from vitlens.cli import main
from vitlens.data import normalize_shapes, render_shapes
from vitlens.models import (
    CorruptCheckpointError,
    build_zoo_model,
    load_model,
    model_name,
    read_manifest,
    zoo_seeds,
)
from vitlens.models.recipe import Recipe
from vitlens.training.augment import augment, color_jitter, mix_batch, random_resized_crop
from vitlens.training.checkpoints import save_checkpoint, write_manifest_entry
from vitlens.training.loop import fit, layer_decay_groups, lr_factor
from vitlens.training.masked import MaskedPatchPretrainer, patchify
from vitlens.training.zoo import train_zoo_model

TINY = Recipe(steps=40, batch_size=32, lr=3e-3, warmup_steps=5, n_train=256, shift=0, flip=False)


@pytest.fixture(scope="module")
def data():
    return render_shapes(range(TINY.n_train))


def test_schedule_warms_up_then_decays():
    r = Recipe(steps=100, warmup_steps=10, min_lr_ratio=0.1)
    factors = [lr_factor(s, r) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[9:]))
    assert factors[-1] == pytest.approx(0.1, abs=0.01)


def test_augment_keeps_shape_and_is_seeded():
    x = torch.randn(6, 3, 32, 32)
    r = Recipe(shift=2, flip=True)
    a = augment(x, r, torch.Generator().manual_seed(0))
    assert a.shape == x.shape
    assert torch.equal(a, augment(x, r, torch.Generator().manual_seed(0)))
    off = replace(r, shift=0, flip=False)
    assert torch.equal(augment(x, off, torch.Generator()), x)


def test_a_few_steps_lower_the_loss(data):
    torch.manual_seed(0)
    model = build_zoo_model("vit-cls")
    recipe = replace(TINY, steps=30, lr=1e-3, label_smoothing=0.0)
    images, labels = data.images[:32], data.labels[:32]  # one batch, seen every step
    history = fit(model, images, labels, recipe, progress=False, log_every=10)
    assert len(history) == 3
    assert history[-1]["loss"] < history[0]["loss"] - 0.3


def test_fit_is_deterministic(data):
    r = replace(TINY, steps=3, shift=2, flip=True)
    states = []
    for _ in range(2):
        torch.manual_seed(1)
        model = build_zoo_model("vit-cls")
        fit(model, data.images, data.labels, r, progress=False)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_checkpoint_round_trip_and_corruption(tmp_path):
    torch.manual_seed(0)
    model = build_zoo_model("vit-cls")
    sha = save_checkpoint(model, tmp_path / "vit-cls.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["vit-cls.safetensors"]  # no temp left
    write_manifest_entry(tmp_path, "vit-cls", {"file": "vit-cls.safetensors", "sha256": sha})
    loaded = load_model("vit-cls", zoo=tmp_path)
    for k, v in model.state_dict().items():
        assert torch.allclose(loaded.state_dict()[k], v.half().float())
    raw = bytearray((tmp_path / "vit-cls.safetensors").read_bytes())
    raw[-10] ^= 0xFF
    (tmp_path / "vit-cls.safetensors").write_bytes(bytes(raw))
    with pytest.raises(CorruptCheckpointError, match="corrupted"):
        load_model("vit-cls", zoo=tmp_path)


def test_seeds_are_stored_beside_the_recipe_seed_and_loaded_by_name_or_argument(tmp_path):
    recipe = replace(TINY, steps=1, n_train=32, dataset="junctions")
    first = train_zoo_model("vit-cls", directory=tmp_path, recipe=recipe, progress=False)
    other = train_zoo_model("vit-cls", directory=tmp_path, recipe=recipe, progress=False, seed=1)
    assert set(read_manifest(tmp_path)) == {"vit-cls", "vit-cls.seed1"}
    assert (first["recipe"]["seed"], other["recipe"]["seed"]) == (0, 1)
    assert other["file"] == "vit-cls.seed1.safetensors"
    assert first["data"] == other["data"] and other["data"]["dataset"] == "junctions"
    assert zoo_seeds("vit-cls", read_manifest(tmp_path)) == [0, 1]
    by_tag = load_model("vit-cls.seed1", zoo=tmp_path).state_dict()
    by_seed = load_model("vit-cls", seed=1, zoo=tmp_path).state_dict()
    seed0 = load_model("vit-cls", seed=0, zoo=tmp_path).state_dict()
    assert all(torch.equal(by_tag[k], by_seed[k]) for k in by_tag)
    assert model_name(load_model("vit-cls", seed=1, zoo=tmp_path)) == "vit-cls.seed1"
    assert model_name(load_model("vit-cls", zoo=tmp_path)) == "vit-cls"
    assert not all(torch.equal(by_tag[k], seed0[k]) for k in by_tag)  # another initialisation
    with pytest.raises(FileNotFoundError, match=r"seeds of 'vit-cls' trained: \[0, 1\]"):
        load_model("vit-cls", seed=2, zoo=tmp_path)
    with pytest.raises(ValueError, match="names seed 1 but seed=0"):
        load_model("vit-cls.seed1", seed=0, zoo=tmp_path)
    with pytest.raises(ValueError, match="malformed seed tag"):
        load_model("vit-cls.seedx", zoo=tmp_path)
    with pytest.raises(ValueError, match="not a zoo model"):
        load_model("resnet18", seed=1)
    # verify re-renders each model's held-out images from its manifest record (junctions here)
    assert main(["zoo", "--zoo", str(tmp_path), "verify"]) == 0


def test_a_fine_tuned_zoo_model_starts_from_its_verified_source_with_a_fresh_head(tmp_path):
    recipe = replace(TINY, steps=1, n_train=32)
    with pytest.raises(FileNotFoundError, match="vitlens zoo train"):  # source not trained yet
        train_zoo_model("vit-pt-ft-junctions", directory=tmp_path, recipe=recipe, progress=False)
    first_stage = replace(recipe, objective="masked")
    source = train_zoo_model(
        "vit-pt", directory=tmp_path, recipe=recipe, pretrain=first_stage, progress=False
    )
    frozen = replace(recipe, dataset="junctions", lr=0.0)  # no update: only the copy shows
    entry = train_zoo_model(
        "vit-pt-ft-junctions", directory=tmp_path, recipe=frozen, progress=False
    )
    assert entry["init_from"] == {"name": "vit-pt", "sha256": source["sha256"]}
    assert entry["data"]["dataset"] == "junctions"
    before = load_model("vit-pt", zoo=tmp_path).state_dict()
    after = load_model("vit-pt-ft-junctions", zoo=tmp_path).state_dict()
    copied = [k for k in before if not k.startswith("head.")]
    assert copied and all(torch.equal(before[k], after[k]) for k in copied)
    assert not torch.equal(before["head.weight"], after["head.weight"])  # a fresh classifier


def test_zoo_train_command_takes_seeds(tmp_path, monkeypatch):
    command = importlib.import_module("vitlens.cli.main")  # the module, not its main()

    calls = []
    monkeypatch.setattr(
        command,
        "train_zoo_model",
        lambda name, **kw: (
            calls.append((name, kw["seed"]))
            or {"heldout": {"accuracy": 0.5}, "train_time_s": 1.0, "sha256": "0" * 64}
        ),
    )
    assert (
        main(["zoo", "--zoo", str(tmp_path), "train", "vit-cls", "--seed", "1", "--seed", "2"]) == 0
    )
    assert calls == [("vit-cls", 1), ("vit-cls", 2)]


def test_untrained_zoo_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="vitlens zoo train"):
        load_model("vit-mim", zoo=tmp_path)


def test_train_zoo_model_writes_checkpoint_and_manifest(tmp_path, capsys):
    recipe = replace(TINY, steps=2, n_train=64)
    entry = train_zoo_model("vit-cls", directory=tmp_path, recipe=recipe, progress=False)
    assert read_manifest(tmp_path)["vit-cls"] == entry
    assert entry["data"]["n_train"] == 64 and entry["recipe"]["steps"] == 2
    assert 0 <= entry["heldout"]["accuracy"] <= 1 and entry["params"] > 0
    for key in ("sha256", "train_time_s", "device", "arch", "verify"):
        assert key in entry
    json.loads((tmp_path / "manifest.json").read_text())  # valid JSON on disk
    assert load_model("vit-cls", zoo=tmp_path) is not None
    # the command line sees the same zoo: list it, verify it, then catch a corruption
    assert main(["zoo", "--zoo", str(tmp_path), "list"]) == 0
    assert main(["zoo", "--zoo", str(tmp_path), "verify"]) == 0
    assert "ok   vit-cls" in capsys.readouterr().out
    (tmp_path / "vit-cls.safetensors").write_bytes(b"not a checkpoint")
    assert main(["zoo", "--zoo", str(tmp_path), "verify", "vit-cls"]) == 1
    assert "corrupted" in capsys.readouterr().out


def test_zoo_list_keeps_its_columns_apart_for_the_longest_name(capsys):
    from vitlens.models.zoo import read_manifest

    assert main(["zoo", "list"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["name", "family", "params", "held-out", "train", "s", "MB"]
    names = [row.split()[0] for row in rows]
    assert set(read_manifest()) <= set(names)  # no name runs into its family
    assert all(len(row.split()) == 6 for row in rows if "not trained" not in row)


# ------------------------------------------- masked-patch pretraining, strong augmentation


def test_patchify_follows_timm_patch_order():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    patches = patchify(x, 4)
    assert patches.shape == (2, 4, 4 * 4 * 3)
    # patch 1 is the top-right 4x4 block; features are (row, col, channel)
    torch.testing.assert_close(patches[1, 1].view(4, 4, 3), x[1, :, :4, 4:].permute(1, 2, 0))
    # same order as timm's patch embedding: a conv with one weight per pixel of the patch
    model = build_zoo_model("vit-cls")
    conv = model.patch_embed.proj
    x32 = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        embedded = model.patch_embed(x32)[0]
        flat = patchify(x32, 4)[0] @ conv.weight.permute(0, 2, 3, 1).reshape(len(conv.weight), -1).T
    torch.testing.assert_close(embedded, flat + conv.bias, rtol=1e-4, atol=1e-4)


def test_random_mask_masks_exactly_the_ratio():
    torch.manual_seed(0)
    pre = MaskedPatchPretrainer(build_zoo_model("vit-cls"), 0.75)
    mask = pre.random_mask(5, torch.Generator().manual_seed(0))
    assert mask.shape == (5, 64) and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [48] * 5
    assert not torch.equal(mask[0], mask[1])
    with pytest.raises(ValueError, match="mask_ratio"):
        MaskedPatchPretrainer(build_zoo_model("vit-cls"), 1.0)
    with pytest.raises(ValueError, match=r"vit and mixer models .* not to a resnet"):
        MaskedPatchPretrainer(build_zoo_model("resnet-local"))


@pytest.mark.parametrize("name", ["vit-cls", "mixer-pt"])
def test_masked_loss_only_counts_masked_patches(name):
    torch.manual_seed(0)
    pre = MaskedPatchPretrainer(build_zoo_model(name), 0.5).eval()
    x = torch.randn(2, 3, 32, 32)
    mask = pre.random_mask(2, torch.Generator().manual_seed(1))
    with torch.no_grad():
        loss = pre(x, mask)
        # change only the target pixels of one visible patch: the loss cannot change... except
        # through the input, so compare against a decoder that ignores its input instead
        pre.decoder.weight.zero_()
        target = patchify(x, 4)
        target = (target - target.mean(-1, keepdim=True)) / (
            target.var(-1, keepdim=True) + 1e-6
        ).sqrt()
        expected = target.abs().mean(-1)[mask].mean()
        torch.testing.assert_close(pre(x, mask), expected)
    assert loss > 0


def test_masked_input_changes_only_through_the_masked_patches():
    """A Mixer has no position embeddings: the mask token must enter at the masked patches'
    token positions, and a visible patch's pixels must still reach the encoder."""
    torch.manual_seed(0)
    pre = MaskedPatchPretrainer(build_zoo_model("mixer-pt"), 0.5).eval()
    x = torch.randn(1, 3, 32, 32)
    mask = pre.random_mask(1, torch.Generator().manual_seed(0))
    masked_patch, visible_patch = int(mask[0].nonzero()[0]), int((~mask[0]).nonzero()[0])
    grid = pre.encoder.stem.grid_size[1]

    def with_patch_changed(index: int) -> Tensor:
        y = x.clone()
        r, c = divmod(index, grid)
        y[..., 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] += 1.0
        return y

    with torch.no_grad():
        base = pre.encode(x, mask)
        assert base.shape == (1, 64, 128)
        torch.testing.assert_close(pre.encode(with_patch_changed(masked_patch), mask), base)
        assert not torch.allclose(pre.encode(with_patch_changed(visible_patch), mask), base)


@pytest.mark.parametrize(
    ("name", "block_weight"),
    [
        ("vit-cls", "blocks.0.attn.qkv.weight"),
        ("mixer-pt", "blocks.0.mlp_tokens.fc1.weight"),
    ],
)
def test_masked_pretraining_trains_the_encoder_not_the_head(data, name, block_weight):
    torch.manual_seed(0)
    model = build_zoo_model(name)
    named = dict(model.named_parameters())
    head, block = model.head.weight.clone(), named[block_weight].detach().clone()
    recipe = replace(TINY, steps=30, lr=1e-3, objective="masked", mask_ratio=0.5)
    history = fit(model, data.images[:32], data.labels[:32], recipe, progress=False, log_every=10)
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["train_acc"] is None
    assert torch.equal(model.head.weight, head)
    assert not torch.equal(named[block_weight], block)
    with pytest.raises(ValueError, match="objective"):
        fit(model, data.images, data.labels, replace(TINY, objective="contrastive"))


def test_layer_decay_scales_the_learning_rate_by_depth():
    model = build_zoo_model("vit-cls")
    groups = layer_decay_groups(model, 0.05, 1e-3, 0.5)
    by_param = {id(p): g for g in groups for p in g["params"]}
    assert len(by_param) == sum(1 for _ in model.parameters())  # each parameter once
    depth = len(model.blocks)
    named = dict(model.named_parameters())
    assert by_param[id(named["head.weight"])]["lr"] == pytest.approx(1e-3)
    assert by_param[id(named["blocks.0.attn.qkv.weight"])]["lr"] == pytest.approx(1e-3 * 0.5**depth)
    assert by_param[id(named["pos_embed"])]["lr"] == pytest.approx(1e-3 * 0.5 ** (depth + 1))
    assert by_param[id(named["pos_embed"])]["weight_decay"] == 0.0
    assert by_param[id(named["blocks.3.mlp.fc1.weight"])]["weight_decay"] == 0.05
    with pytest.raises(ValueError, match=r"vit and mixer models .* not to a resnet"):
        layer_decay_groups(build_zoo_model("resnet-local"), 0.05, 1e-3, 0.5)


def test_layer_decay_of_a_mixer_counts_its_stem_as_the_embedding():
    model = build_zoo_model("mixer-pt")
    groups = layer_decay_groups(model, 0.05, 1e-3, 0.5)
    by_param = {id(p): g for g in groups for p in g["params"]}
    assert len(by_param) == sum(1 for _ in model.parameters())
    depth = len(model.blocks)
    named = dict(model.named_parameters())
    assert by_param[id(named["stem.proj.weight"])]["lr"] == pytest.approx(1e-3 * 0.5 ** (depth + 1))
    assert by_param[id(named["blocks.7.mlp_channels.fc1.weight"])]["lr"] == pytest.approx(
        1e-3 * 0.5
    )
    assert by_param[id(named["norm.weight"])]["lr"] == pytest.approx(1e-3)


def test_layer_decay_slows_the_lower_blocks(data):
    moved = {}
    for decay in (1.0, 0.3):
        torch.manual_seed(0)
        model = build_zoo_model("vit-cls")
        start = model.blocks[0].attn.qkv.weight.clone()
        fit(
            model,
            data.images,
            data.labels,
            replace(TINY, steps=5, layer_decay=decay),
            progress=False,
        )
        moved[decay] = float((model.blocks[0].attn.qkv.weight.detach() - start).abs().mean())
    assert moved[0.3] < moved[1.0] / 5


def test_strong_augmentation_is_seeded_and_changes_images():
    x = normalize_shapes(render_shapes(range(8)).images)
    r = Recipe(shift=0, flip=False, crop_scale=0.3, color_jitter=0.4)
    a = augment(x, r, torch.Generator().manual_seed(0))
    assert a.shape == x.shape
    assert torch.equal(a, augment(x, r, torch.Generator().manual_seed(0)))
    assert not torch.allclose(a, x, atol=0.05)
    assert a.min() >= -1 - 1e-5 and a.max() <= 1 + 1e-5  # jitter clamps to valid pixels
    cropped = random_resized_crop(x, 0.3, torch.Generator().manual_seed(0))
    # bilinear resampling never leaves the input's range
    assert cropped.min() >= x.min() - 1e-5 and cropped.max() <= x.max() + 1e-5
    torch.testing.assert_close(color_jitter(x, 0.0, torch.Generator()), x, atol=1e-5, rtol=0)


def test_mixup_and_cutmix_mix_images_and_report_lam():
    x = torch.randn(6, 3, 32, 32)
    mixup = Recipe(mixup=0.8)
    mixed, partner, lam = mix_batch(x, mixup, torch.Generator().manual_seed(0))
    assert 0 <= lam <= 1 and partner.tolist() == [5, 4, 3, 2, 1, 0]
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[partner])
    cutmix = Recipe(cutmix=1.0)
    for seed in range(5):
        mixed, partner, lam = mix_batch(x, cutmix, torch.Generator().manual_seed(seed))
        kept = (mixed == x).all(1).float().mean(dim=(1, 2))  # per image, pixels from itself
        torch.testing.assert_close(kept, torch.full((6,), lam))


def test_fit_with_strong_augmentation_is_deterministic(data):
    r = replace(TINY, steps=3, crop_scale=0.35, color_jitter=0.4, mixup=0.8, cutmix=1.0)
    states = []
    for _ in range(2):
        torch.manual_seed(1)
        model = build_zoo_model("vit-cls")
        history = fit(model, data.images, data.labels, r, progress=False)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert math.isfinite(history[-1]["loss"])


def test_two_stage_zoo_training_records_both_stages(tmp_path):
    pre = replace(TINY, steps=2, n_train=64, objective="masked")
    tune = replace(TINY, steps=2, n_train=64, layer_decay=0.75)
    entry = train_zoo_model(
        "vit-cls", directory=tmp_path, recipe=tune, pretrain=pre, progress=False, log_every=1
    )
    assert entry["pretrain"]["recipe"]["objective"] == "masked"
    assert entry["recipe"]["layer_decay"] == 0.75
    assert len(entry["pretrain"]["history"]) == 2 and len(entry["history"]) == 2
    assert "local_heads_lower_half" in entry["history"][-1]
    assert entry["train_cpu_s"] >= entry["pretrain"]["train_cpu_s"] > 0
    rel = entry["attention"]["relative_distance"]
    assert len(rel) == 8 and len(rel[0]) == 4  # vit-cls: 8 blocks x 4 heads
    assert entry["attention"]["local_heads"] == sum(v < 0.5 for row in rel for v in row)
    assert read_manifest(tmp_path)["vit-cls"] == entry


def test_recipe_fields_are_command_line_options():
    import argparse

    from vitlens.models.recipe import add_recipe_arguments, recipe_from_arguments

    parser = argparse.ArgumentParser()
    add_recipe_arguments(parser)
    args = parser.parse_args(["--lr", "3e-4", "--flip", "false", "--dataset", "junctions"])
    recipe = recipe_from_arguments(args, TINY)
    assert (recipe.lr, recipe.flip, recipe.dataset) == (3e-4, False, "junctions")
    assert recipe.steps == TINY.steps  # not given: the base's
    with pytest.raises(SystemExit):  # "no" and "false" are false; anything else is an error
        parser.parse_args(["--flip", "maybe"])


# ------------------------------------------- retraining never leaves the zoo unloadable (issue #16)


@pytest.fixture
def quick_training(monkeypatch):
    """train_zoo_model on 16 images, measured on 32 held-out ones (seconds, not minutes)."""
    from vitlens.training import zoo as training

    full_heldout = training.heldout

    def small_heldout(data=None, *, n=32):
        return full_heldout(data, n=min(n, 32))

    monkeypatch.setattr(training, "heldout", small_heldout)

    def train(directory, seed: int):
        recipe = Recipe(steps=1, batch_size=8, warmup_steps=1, n_train=16, seed=seed)
        return training.train_zoo_model(
            "vit-cls", directory=directory, recipe=recipe, progress=False
        )

    return train


class Killed(BaseException):
    """Stands for the process being killed at that point."""


def test_a_kill_while_retraining_leaves_a_loadable_model(tmp_path, monkeypatch, quick_training):
    from vitlens.training import checkpoints as training

    torch.manual_seed(4)  # the model trained before: a checkpoint and its manifest entry
    sha = training.save_checkpoint(build_zoo_model("vit-cls"), tmp_path / "vit-cls.safetensors")
    first = {"file": "vit-cls.safetensors", "sha256": sha}
    training.write_manifest_entry(tmp_path, "vit-cls", first)
    old_state = load_model("vit-cls", zoo=tmp_path).state_dict()
    write = training.write_manifest_entry

    def killed(*args, **kwargs):
        raise Killed

    # killed after the new weights are on disk, before the manifest names them
    monkeypatch.setattr(training, "write_manifest_entry", killed)
    with pytest.raises(Killed):
        quick_training(tmp_path, seed=1)
    monkeypatch.setattr(training, "write_manifest_entry", write)
    assert read_manifest(tmp_path)["vit-cls"]["sha256"] == first["sha256"]
    reloaded = load_model("vit-cls", zoo=tmp_path).state_dict()
    assert all(torch.equal(reloaded[k], v) for k, v in old_state.items())


@pytest.mark.parametrize("step", [1, 2, 3, 4, 5])
def test_every_step_of_installing_a_checkpoint_leaves_a_loadable_model(tmp_path, monkeypatch, step):
    from vitlens.training import checkpoints as training

    torch.manual_seed(4)
    old = build_zoo_model("vit-cls")
    sha = training.save_checkpoint(old, tmp_path / "vit-cls.safetensors")
    first = {"file": "vit-cls.safetensors", "sha256": sha}
    training.write_manifest_entry(tmp_path, "vit-cls", first)
    torch.manual_seed(5)
    newer = build_zoo_model("vit-cls")
    sha = training.save_checkpoint(newer, tmp_path / "vit-cls.pending.safetensors")
    entry = {**first, "sha256": sha}
    calls = {"n": 0}
    real_write, real_atomic = training.write_manifest_entry, training.atomic_write_bytes

    def counting(real):
        def run(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == step:
                raise Killed
            return real(*args, **kwargs)

        return run

    monkeypatch.setattr(training, "write_manifest_entry", counting(real_write))
    monkeypatch.setattr(training, "atomic_write_bytes", counting(real_atomic))
    with pytest.raises(Killed):
        training.install_checkpoint(tmp_path, "vit-cls", entry, "vit-cls.pending.safetensors")
    monkeypatch.setattr(training, "write_manifest_entry", real_write)
    monkeypatch.setattr(training, "atomic_write_bytes", real_atomic)
    # steps: manifest names pending (1: write, 2: its atomic replace), final file (3),
    # manifest names final (4: write, 5: its atomic replace)
    named = read_manifest(tmp_path)["vit-cls"]
    assert named["sha256"] == (first["sha256"] if step <= 2 else sha)
    loaded = load_model("vit-cls", zoo=tmp_path).state_dict()  # old or new, never unloadable
    expected = (newer if step > 2 else old).state_dict()
    assert all(torch.equal(loaded[k], v.half().float()) for k, v in expected.items())
