"""The training loop, checkpoints and manifest entries."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import pytest
import torch

from vitlens.cli import main
from vitlens.data import render_shapes
from vitlens.models import CorruptCheckpointError, build_zoo_model, load_model, read_manifest
from vitlens.models.train import (
    Recipe,
    augment,
    fit,
    lr_factor,
    save_checkpoint,
    train_zoo_model,
    write_manifest_entry,
)

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
    model = build_zoo_model("vit-small")
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
        model = build_zoo_model("vit-small")
        fit(model, data.images, data.labels, r, progress=False)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_checkpoint_round_trip_and_corruption(tmp_path):
    torch.manual_seed(0)
    model = build_zoo_model("vit-small")
    sha = save_checkpoint(model, tmp_path / "vit-small.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["vit-small.safetensors"]  # no temp left
    write_manifest_entry(tmp_path, "vit-small", {"file": "vit-small.safetensors", "sha256": sha})
    loaded = load_model("vit-small", zoo=tmp_path)
    for k, v in model.state_dict().items():
        assert torch.allclose(loaded.state_dict()[k], v.half().float())
    raw = bytearray((tmp_path / "vit-small.safetensors").read_bytes())
    raw[-10] ^= 0xFF
    (tmp_path / "vit-small.safetensors").write_bytes(bytes(raw))
    with pytest.raises(CorruptCheckpointError, match="corrupted"):
        load_model("vit-small", zoo=tmp_path)


def test_untrained_zoo_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="vitlens zoo train"):
        load_model("vit-cls", zoo=tmp_path)


def test_train_zoo_model_writes_checkpoint_and_manifest(tmp_path, capsys):
    recipe = replace(TINY, steps=2, n_train=64)
    entry = train_zoo_model("vit-small", directory=tmp_path, recipe=recipe, progress=False)
    assert read_manifest(tmp_path)["vit-small"] == entry
    assert entry["data"]["n_train"] == 64 and entry["recipe"]["steps"] == 2
    assert 0 <= entry["heldout"]["accuracy"] <= 1 and entry["params"] > 0
    for key in ("sha256", "train_time_s", "device", "arch", "verify"):
        assert key in entry
    json.loads((tmp_path / "manifest.json").read_text())  # valid JSON on disk
    assert load_model("vit-small", zoo=tmp_path) is not None
    # the command line sees the same zoo: list it, verify it, then catch a corruption
    assert main(["zoo", "--zoo", str(tmp_path), "list"]) == 0
    assert main(["zoo", "--zoo", str(tmp_path), "verify"]) == 0
    assert "ok   vit-small" in capsys.readouterr().out
    (tmp_path / "vit-small.safetensors").write_bytes(b"not a checkpoint")
    assert main(["zoo", "--zoo", str(tmp_path), "verify", "vit-small"]) == 1
    assert "corrupted" in capsys.readouterr().out
