"""The analysis commands, end to end on random-weight zoo models and small image sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vitlens.cli import main
from vitlens.cli.analyses import save_numbers
from vitlens.data import load_images
from vitlens.data.sampling import evaluation_sample
from vitlens.models import build_zoo_model

COMMON = ["--data", "shapes", "--num-images", "24", "--random-weights", "--batch-size", "8"]


def run(tmp_path, *argv: str) -> dict:
    out = tmp_path / "figure.png"
    assert main([*argv, *COMMON, "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    return dict(np.load(out.with_suffix(".npz")))


def test_cka_of_two_models(tmp_path):
    numbers = run(tmp_path, "cka", "vit-cls", "resnet-local", "--layers", "blocks")
    assert numbers["cka"].shape == (8, 9)
    assert list(numbers["layers_a"]) == [f"blocks.{i}" for i in range(8)]


def test_cka_of_one_model_with_itself(tmp_path):
    numbers = run(tmp_path, "cka", "mixer-pt", "--layers", "blocks")
    np.testing.assert_allclose(np.diagonal(numbers["cka"]), 1.0, atol=1e-6)


def test_attention_distance(tmp_path):
    numbers = run(tmp_path, "attention-distance", "vit-pt-gap")
    assert numbers["distance_pixels"].shape == (8, 4)


def test_head_subsets(tmp_path):
    numbers = run(tmp_path, "head-subsets", "vit-cls", "resnet-local", "--heads-per-subset", "2")
    assert numbers["cka"].shape == (3, 4) and numbers["heads"].shape == (3, 2)
    assert numbers["distance_pixels"].shape == (4,)


def test_receptive_field(tmp_path):
    numbers = run(tmp_path, "receptive-field", "vit-cls", "--layers", "blocks.0", "--branch", "pre")
    assert numbers["erf"].shape == (1, 32, 32) and list(numbers["layers"]) == ["blocks.0"]


def test_skip_norms(tmp_path):
    numbers = run(tmp_path, "skip-norms", "vit-cls")
    assert numbers["mean_norm_ratio"].shape == (16,)
    assert numbers["class_token_norm_ratio"].shape == (16,)


def test_localization(tmp_path):
    numbers = run(tmp_path, "localization", "resnet-local", "--layer", "stages.2.blocks.0")
    assert numbers["cka"].shape == (64, 8, 8)  # the local stem's third stage: 8x8 locations


def test_probe(tmp_path):
    out = tmp_path / "probe.png"
    argv = ["probe", "vit-cls", *COMMON, "--num-images", "40", "--shots", "2", "--seeds", "2"]
    argv += ["--out", str(out)]
    assert main([*argv, "--pooling", "first", "mean", "--numbers", str(tmp_path / "p.csv")]) == 0
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0] == "quantity,i0,i1,value"
    assert sum(row.startswith("accuracy_mean,") for row in rows) == 2 * 8


def test_layerwise_cka(tmp_path):
    numbers = run(tmp_path, "layerwise-cka", "vit-cls", "vit-cls-data3", "vit-cls-data10")
    assert numbers["cka"].shape == (2, 8)
    assert list(numbers["models"]) == ["vit-cls-data3", "vit-cls-data10"]


def test_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "images" / cls).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / cls / f"{i}.png")
    out = tmp_path / "loc.png"
    argv = ["localization", "vit-cls", "--layer", "blocks.1", "--data", str(tmp_path / "images")]
    assert main([*argv, "--random-weights", "--out", str(out)]) == 0
    assert np.load(out.with_suffix(".npz"))["cka"].shape == (65, 8, 8)
    images = load_images(str(tmp_path / "images"), build_zoo_model("vit-cls"), num_images=3)
    assert len(images) == 3 and images[0][0].shape == (3, 32, 32)
    # the CLI samples images by the book's rule: the same three images as a profile would
    every = load_images(str(tmp_path / "images"), build_zoo_model("vit-cls"))
    assert list(images.indices) == list(evaluation_sample(every, 3).indices)


def test_bad_input_exits_with_a_message(tmp_path, capsys):
    argv = ["attention-distance", "resnet-local", *COMMON, "--out", str(tmp_path / "x.png")]
    assert main(argv) == 2
    assert "a ResNet has no attention" in capsys.readouterr().err
    argv = ["skip-norms", "vit-cls", "--random-weights", "--data", "no/such/folder"]
    argv += ["--out", str(tmp_path / "x.png")]
    assert main(argv) == 2
    assert "neither a named dataset" in capsys.readouterr().err


def test_save_numbers_formats(tmp_path):
    arrays = {"values": torch.arange(6.0).reshape(2, 3).numpy(), "names": ["a", "b"]}
    assert save_numbers(tmp_path / "n.npz", arrays).exists()
    rows = save_numbers(tmp_path / "n.csv", arrays).read_text().splitlines()
    assert rows[0] == "quantity,i0,i1,value" and rows[-1] == "names,1,,b"
    with pytest.raises(ValueError, match=r"\.npz or \.csv"):
        save_numbers(tmp_path / "n.txt", arrays)
