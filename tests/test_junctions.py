"""The junctions dataset: deterministic by index, balanced, and no colour cue to the class."""

from __future__ import annotations

import pytest
import torch

from vitlens.data import ShapesConfig
from vitlens.data.datasets import DATASETS, dataset_config, render_dataset
from vitlens.data.junctions import JUNCTION_CLASSES, JunctionsConfig, render_junctions


def test_a_sample_depends_only_on_seed_split_and_index():
    some = render_junctions([3, 17, 42], split="test", seed=1)
    alone = render_junctions([17], split="test", seed=1)
    assert torch.equal(some.images[1], alone.images[0])
    assert not torch.equal(render_junctions([17], split="train", seed=1).images[0], alone.images[0])
    assert not torch.equal(render_junctions([17], split="test", seed=2).images[0], alone.images[0])


def test_shapes_labels_and_boxes():
    batch = render_junctions(range(40), config=JunctionsConfig(image_size=40))
    assert batch.images.shape == (40, 3, 40, 40) and batch.images.dtype == torch.uint8
    assert batch.labels.tolist() == [i % len(JUNCTION_CLASSES) for i in range(40)]
    x0, y0, x1, y1 = batch.boxes.T
    assert ((0 <= x0) & (x0 < x1) & (x1 <= 40) & (0 <= y0) & (y0 < y1) & (y1 <= 40)).all()
    cx, cy = batch.centers.T
    assert ((x0 <= cx) & (cx <= x1) & (y0 <= cy) & (cy <= y1)).all()
    # the arrangement decides the class: side by side boxes are wider than tall, on average
    width, height = (x1 - x0).float(), (y1 - y0).float()
    horizontal = batch.labels % 2 == 0
    assert (width / height)[horizontal].mean() > 1.3 * (width / height)[~horizontal].mean()


def test_colour_says_nothing_about_the_class():
    batch = render_junctions(range(1000), split="val")
    images = batch.images.float() / 255
    per_class = torch.stack([images[batch.labels == k].mean((0, 2, 3)) for k in range(10)])
    spread = per_class.amax(0) - per_class.amin(0)  # per RGB channel, over classes
    assert spread.max() < 0.03, f"class-mean colours differ by {spread.tolist()}"


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown split"):
        render_junctions([0], split="training")
    with pytest.raises(ValueError, match="non-negative"):
        render_junctions([-1])
    with pytest.raises(ValueError, match="empty"):
        render_junctions([])


def test_a_dataset_renders_by_name_from_its_recorded_config():
    config = JunctionsConfig(pixel_noise=0.0).to_dict()
    by_name = render_dataset("junctions", range(3), split="test", seed=2, config=config)
    direct = render_junctions(range(3), split="test", seed=2, config=JunctionsConfig(pixel_noise=0))
    assert torch.equal(by_name.images, direct.images)
    assert dataset_config("junctions", config) == JunctionsConfig(pixel_noise=0.0)
    assert dataset_config("shapes") == ShapesConfig()
    assert set(DATASETS) == {"shapes", "junctions"}


def test_a_dataset_refuses_unknown_names_and_fields():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        render_dataset("cifar", range(2))
    with pytest.raises(ValueError, match=r"no fields \['radius'\].*part_size"):
        dataset_config("junctions", {"radius": [0.2, 0.3]})
