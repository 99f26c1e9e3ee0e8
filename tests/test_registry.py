"""The registry of analyses: the report and every command are made from its entries."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from vitlens.analyses.localization import MIN_LOCALIZATION_GRID, default_localization_layer
from vitlens.analyses.measures import similarity_matrix
from vitlens.analyses.receptive import effective_receptive_field, sampled_receptive_field
from vitlens.cli import main
from vitlens.cli.main import build_parser
from vitlens.data import ShapesConfig, ShapesDataset, load_images
from vitlens.models import load_model
from vitlens.models.layers import layer_names
from vitlens.registry import ANALYSES, Inputs, MissingInput, analysis
from vitlens.report import section_keys
from vitlens.streaming import RunOptions, run_with_cache

RUN = RunOptions(batch_size=16, device="cpu", progress=False)


def test_every_entry_is_a_command_whose_flags_are_its_settings():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for entry in ANALYSES:
        command = commands[entry.command]
        flags = {flag for action in command._actions for flag in action.option_strings}
        assert {s.flag for s in entry.settings} <= flags, entry.key
        positionals = [a.dest for a in command._actions if not a.option_strings]
        assert positionals == [p.role for p in entry.models], entry.key
        assert command.get_default("batch_size") == entry.batch_size
    report = commands["report"]
    flags = {flag for action in report._actions for flag in action.option_strings}
    reportable = {s.flag for e in ANALYSES if e.in_report for s in e.settings if s.in_report}
    expected = {"--measure", "--shots", "--seeds", "--sample-channels"}
    assert reportable == expected and reportable <= flags


def test_report_sections_are_the_entries_marked_for_it_in_order():
    expected = []
    for entry in ANALYSES:
        if entry.in_report:
            expected.append(entry.key)
            if entry.reference == "optional":
                expected.append(f"{entry.key}_against")
    assert section_keys() == expected
    assert "layerwise_cka" not in expected and analysis("layerwise-cka").reference == "none"


def test_settings_are_filled_from_defaults_and_unknown_names_refused():
    entry = analysis("probe")
    assert entry.settings_with({"shots": 3}) == {"shots": 3, "seeds": 5, "pooling": None}
    with pytest.raises(ValueError, match=r"no setting 'shot'.*pooling, seeds, shots"):
        entry.settings_with({"shot": 3})
    with pytest.raises(KeyError, match="no analysis 'cca'"):
        analysis("cca")


def test_run_options_are_one_frozen_value_and_refuse_a_bad_batch_size():
    assert (RUN.batch_size, RUN.device, RUN.progress) == (16, "cpu", False)
    assert RUN.with_batch_size(4) == RunOptions(4, "cpu", False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        RUN.batch_size = 4
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            RunOptions(batch_size=bad)


def test_the_cka_command_takes_any_similarity_measure(tmp_path):
    out = tmp_path / "procrustes.png"
    argv = ["cka", "vit-cls", "--layers", "blocks", "--measure", "procrustes", "--data"]
    argv += ["shapes", "--num-images", "48", "--batch-size", "16", "--out", str(out)]
    assert main(argv) == 0
    numbers = np.load(out.with_suffix(".npz"))
    vit = load_model("vit-cls")
    images = load_images("shapes", vit, num_images=48)
    direct = similarity_matrix(vit, images, measure="procrustes", run=RUN)
    np.testing.assert_allclose(numbers["cka"], direct.matrix, rtol=0, atol=1e-12)
    assert not np.allclose(numbers["cka"], np.eye(8))  # a real comparison, not a default


def test_a_probe_whose_pool_is_too_small_says_what_it_needs():
    vit = load_model("vit-cls")
    images = ShapesDataset(20, split="test", config=ShapesConfig(image_size=32))
    entry = analysis("probe")
    inputs = Inputs(vit, "vit-cls", images, RUN, entry.settings_with({"shots": 2}))
    with pytest.raises(MissingInput, match=r"every class needs 4.*smallest with 1 image"):
        entry.run(inputs)
    bare = Inputs(vit, "vit-cls", torch.randn(8, 3, 32, 32), RUN, entry.settings_with())
    with pytest.raises(MissingInput, match="no labels: the images are a bare tensor"):
        entry.run(bare)


def test_an_analysis_refuses_a_family_it_cannot_measure_with_the_reason():
    resnet = load_model("resnet-local")
    with pytest.raises(ValueError, match="does not apply: a ResNet has no attention"):
        analysis("attention_distance").check_family(resnet)
    analysis("skip_norms").check_family(resnet)  # every family has skip connections


def test_the_default_localization_layer_keeps_a_grid_of_cells():
    resnet, vit = load_model("resnet-local"), load_model("vit-cls")
    layer = default_localization_layer(resnet)
    blocks = layer_names(resnet, "blocks")
    shapes = {
        name: value.shape
        for name, value in run_with_cache(resnet, torch.zeros(1, 3, 32, 32), blocks).items()
    }
    assert min(shapes[layer][-2:]) >= MIN_LOCALIZATION_GRID
    later = blocks[blocks.index(layer) + 1 :]
    assert all(min(shapes[name][-2:]) < MIN_LOCALIZATION_GRID for name in later)
    assert default_localization_layer(vit) == layer_names(vit, "blocks")[-1]


def test_named_synthetic_datasets_load_at_the_model_input_size():
    vit = load_model("vit-cls")
    junctions = load_images("junctions", vit, split="train", num_images=5)
    assert len(junctions) == 5 and junctions[0][0].shape == (3, 32, 32)
    with pytest.raises(ValueError, match="neither a named dataset"):
        load_images("no-such-data", vit)
    with pytest.raises(ValueError, match="num_images must be a positive integer"):
        load_images("shapes", vit, num_images=0)


def test_the_receptive_field_command_samples_channels_unless_told_every_channel():
    vit = load_model("vit-cls")
    images = torch.randn(2, 3, 32, 32)
    entry = analysis("receptive_field")
    layers = {"layers": ["blocks.1"]}
    exact = entry.run(
        Inputs(vit, "v", images, RUN, entry.settings_with(layers | {"sample_channels": 0}))
    )
    reference = effective_receptive_field(vit, images, ["blocks.1"], run=RUN)
    torch.testing.assert_close(exact.result["blocks.1"], reference["blocks.1"])
    assert exact.numbers["channels per layer"] == "every channel (the exact field)"
    sampled = entry.run(Inputs(vit, "v", images, RUN, entry.settings_with(layers)))
    draw = sampled_receptive_field(vit, images, ["blocks.1"], sample_channels=32, run=RUN)
    torch.testing.assert_close(sampled.result["blocks.1"], draw["blocks.1"].field)
    width = draw["blocks.1"].num_channels
    assert sampled.numbers["channels per layer"].startswith(f"32 of {width},")
    bad = Inputs(vit, "v", images, RUN, entry.settings_with(layers | {"sample_channels": -1}))
    with pytest.raises(ValueError, match=r"sample_channels must be 0 \(every channel"):
        entry.run(bad)
    too_many = entry.settings_with(layers | {"sample_channels": width + 1})
    with pytest.raises(ValueError, match=str(width)):
        entry.run(Inputs(vit, "v", images, RUN, too_many))
