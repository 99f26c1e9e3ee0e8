"""The local-head study: query attention maps, the study table, its figures."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from vitlens.analyses.attention import query_attention, relative_attention_distance
from vitlens.analyses.local_heads import (
    StudyRow,
    describe_training,
    factor_effects,
    lowest_local_block,
    study_images,
    study_markdown,
    study_runs,
    study_table,
)
from vitlens.models import read_manifest
from vitlens.plotting import (
    attention_maps_row,
    local_heads_over_training,
    relative_distance_panels,
)
from vitlens.streaming import RunOptions
from vitlens.training.zoo import record_study_run


def _selfish(shared: torch.nn.Module) -> torch.nn.Module:
    """Queries equal keys at a large scale: each patch attends to itself.

    A copy: ``zoo_shaped`` models are shared by every test of the session.
    """
    vit = copy.deepcopy(shared)
    with torch.no_grad():
        for block in vit.blocks:
            dim = block.attn.qkv.in_features
            block.attn.qkv.weight[:dim] = 30 * torch.eye(dim)
            block.attn.qkv.weight[dim : 2 * dim] = 30 * torch.eye(dim)
    return vit


def test_query_attention_is_a_distribution_over_the_grid(zoo_shaped, small_images):
    maps = query_attention(zoo_shaped("vit-cls"), small_images(4), block=1, query=(2, 5))
    assert maps.shape == (4, 4, 8, 8) and maps.dtype == torch.float64
    torch.testing.assert_close(maps.sum((-2, -1)), torch.ones(4, 4, dtype=torch.float64))
    selfish = query_attention(
        _selfish(zoo_shaped("vit-cls")), small_images(4), block=0, query=(2, 5)
    )
    assert (selfish.flatten(-2).argmax(-1) == 2 * 8 + 5).all()  # it looks at itself
    centre = query_attention(_selfish(zoo_shaped("vit-pt-gap")), small_images(2), block=0)
    assert (centre.flatten(-2).argmax(-1) == 4 * 8 + 4).all()  # default: the centre patch
    with pytest.raises(ValueError, match="outside"):
        query_attention(zoo_shaped("vit-cls"), small_images(2), block=0, query=(8, 0))


def _entry(**recipe) -> dict:
    base = {"steps": 400, "flip": True, "shift": 2, "objective": "supervised"}
    return {
        "recipe": {**base, **recipe},
        "data": {"n_train": 30000},
        "heldout": {"accuracy": 0.9},
        "train_time_s": 600.0,
    }


def test_describe_training_reads_both_stages():
    one = describe_training(_entry(crop_scale=0.35, mixup=0.8))
    assert one["objective"] == "supervised 400" and one["steps"] == 400
    assert one["augmentation"] == "flips, 2 px shifts, resized crops (0.35-1), Mixup 0.8"
    two = _entry(layer_decay=0.75)
    two["pretrain"] = {"recipe": {"steps": 900, "objective": "masked"}}
    described = describe_training(two)
    assert described["objective"] == "masked 900 + supervised 400, layer decay 0.75"
    assert described["steps"] == 1300 and described["train_images"] == 30000


def _row(name: str, relative, accuracy: float) -> StudyRow:
    rel = torch.tensor(relative, dtype=torch.float64)
    return StudyRow(
        name=name,
        objective="supervised 10",
        steps=10,
        augmentation="flips",
        train_images=100,
        accuracy=accuracy,
        cpu_minutes=None,
        wall_minutes=1.0,
        relative=rel,
        local_lower_half=int((rel[: len(rel) // 2] < 0.5).sum()),
    )


def test_factor_effects_and_markdown_on_known_rows():
    base = _row("a", [[0.9, 0.95], [0.9, 0.8], [1.0, 1.0], [1.0, 0.3]], 0.8)
    changed = _row("b", [[0.9, 0.45], [0.2, 0.8], [1.0, 1.0], [1.0, 1.0]], 0.7)
    same = _row("c", [[0.9, 0.95], [0.9, 0.8], [1.0, 1.0], [1.0, 1.0]], 0.85)
    effects = factor_effects(
        [base, changed, same], [("x", "a", "b"), ("y", "a", "c"), ("z", "a", "q")]
    )
    assert [e["factor"] for e in effects] == ["x", "y"]  # "q" is not in the rows
    assert effects[0]["local_base"] == 0 and effects[0]["local_changed"] == 2
    assert effects[0]["mattered"] and not effects[1]["mattered"]
    assert effects[0]["accuracy_changed"] == 0.7
    assert lowest_local_block(base.relative) == 3 and lowest_local_block(changed.relative) == 0
    assert lowest_local_block(same.relative) is None
    table = study_markdown([base, changed])
    lines = table.splitlines()
    assert len(lines) == 4 and "| `b` |" in lines[3] and "0.90 0.45 | 0.20 0.80 | 2 |" in lines[3]


def test_study_table_measures_the_shipped_zoo(small_images):
    images = small_images(8)
    rows = study_table(images, ["vit-cls-data3", "vit-cls"])
    manifest = read_manifest()
    assert [r.name for r in rows] == ["vit-cls-data3", "vit-cls"]
    from vitlens.models import load_model

    again = relative_attention_distance(
        load_model("vit-cls"), images, run=RunOptions(progress=False)
    )
    torch.testing.assert_close(rows[1].relative, again)
    assert rows[1].accuracy == manifest["vit-cls"]["heldout"]["accuracy"]
    assert rows[0].train_images == 900 and rows[1].train_images == 30000
    assert rows[1].local_lower_half == int((again[:4] < 0.5).sum())
    with pytest.raises(FileNotFoundError, match="not trained"):
        study_table(images, ["vit-cls"], zoo="/nonexistent")


def test_relative_distance_panels_colour_local_heads():
    rel = {"m": np.array([[0.2, 0.9], [1.0, 0.4]]), "n": np.ones((2, 2))}
    panels = relative_distance_panels(rel, title="t")
    assert len(panels) == 2
    assert panels[0].get_title() == "m: 2 local" and panels[1].get_title() == "n: 0 local"
    local_points = panels[0].collections[1].get_offsets()
    np.testing.assert_array_equal(np.asarray(local_points), [[0, 0.2], [1, 0.4]])
    with pytest.raises(ValueError, match="empty"):
        relative_distance_panels({})


def test_attention_maps_row_draws_image_and_maps():
    image = np.random.default_rng(0).random((3, 32, 32))
    maps = {"local": np.eye(8), "global": np.full((8, 8), 1 / 64)}
    panels = attention_maps_row(image, maps, query=(1, 2), patch_size=4)
    assert len(panels) == 3 and panels[1].get_title() == "local"
    outline = panels[2].patches[0]
    assert outline.get_xy() == (2 * 4 - 0.5, 1 * 4 - 0.5)
    shown = attention_maps_row(
        2 * image - 1, maps, query=(1, 2), patch_size=4, mean=(0.5,) * 3, std=(0.5,) * 3
    )
    np.testing.assert_allclose(shown[0].images[0].get_array(), image.transpose(1, 2, 0))
    with pytest.raises(ValueError, match="image"):
        attention_maps_row(np.ones((5, 5)), maps, query=(0, 0), patch_size=4)


def test_study_images_are_the_manifest_attention_sample():
    images = study_images(4)
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1


def test_local_heads_over_training_chains_the_stages():
    pre = [{"step": 100, "local_heads_lower_half": 0}, {"step": 200, "local_heads_lower_half": 5}]
    tune = [{"step": 100, "local_heads_lower_half": 3}]
    ax = local_heads_over_training({"m": [pre, tune], "s": [tune]})
    line = ax.lines[0]
    assert list(line.get_xdata()) == [0, 100, 200, 300] and list(line.get_ydata()) == [0, 0, 5, 3]
    assert [v.get_xdata()[0] for v in ax.lines[1:2]] == [200]  # end of m's first stage
    with pytest.raises(ValueError, match="local_heads_lower_half"):
        local_heads_over_training({"m": [[{"step": 1}]]})


def test_study_runs_round_trip(tmp_path):
    path = tmp_path / "runs.json"
    assert study_runs(path) == []
    rel = [[0.3, 0.9], [1.0, 1.0], [0.2, 0.2], [1.0, 1.0]]
    record = {
        "name": "r",
        "stages": [
            {"recipe": {"steps": 100, "objective": "masked"}},
            {"recipe": {"steps": 50, "objective": "supervised", "crop_scale": 0.5}},
        ],
        "data": {"n_train": 10},
        "heldout": {"accuracy": 0.5},
        "attention": {"relative_distance": rel},
        "train_time_s": 120.0,
        "train_cpu_s": 60.0,
    }
    record_study_run(record, path)
    record_study_run({**record, "heldout": {"accuracy": 0.6}}, path)  # replaces by name
    (row,) = study_runs(path)
    assert row.accuracy == 0.6 and row.cpu_minutes == 1.0 and row.steps == 150
    assert row.objective == "masked 100 + supervised 50" and "resized crops" in row.augmentation
    assert row.local_lower_half == 1  # blocks 0-1 of 4
