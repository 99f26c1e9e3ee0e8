"""The paper profile's costs: measured per model on the meta device, scaled from the dry run's
record to the profile's images, and the teacher's guide's tables generated from the record."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from vitlens.analyses.receptive import DEFAULT_MAX_MEMORY
from vitlens.book.costs import (
    BACKWARD_FACTOR,
    CUDA_CONTEXT_BYTES,
    T4,
    ReferenceGPU,
    chapter_label,
    cost_table,
    estimate,
    forward_cost,
    is_zoo_model,
    model_cost,
    passes_at,
)
from vitlens.book.profiles import PROFILES

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "benchmarks" / "results" / "paper_dry_run.json"
PAPER = PROFILES["paper"]


def split(per_image: float = 0, fixed: float = 0) -> dict:
    return {"per_image": per_image, "fixed": fixed}


def batches(profile: bool = False, chapter: int = 0) -> dict:
    return {"profile": profile, "chapter": chapter}


def synthetic_record(forward=None, backward=None, largest=None) -> dict:
    """One chapter, one model of 1 GFLOP and 1e6 parameters, run on 32 images."""
    forward, backward = forward or split(32), backward or split()
    largest = largest or {"forward": batches(profile=True), "backward": batches()}
    return {
        "models": {
            "net": {
                "parameters": 1_000_000,
                "input_size": [3, 224, 224],
                "forward_flops": 1e9,
                "activation_bytes": {
                    "inference": {"fixed": 100.0, "per_image": 1e6},
                    "gradients": {"fixed": 1000.0, "per_image": 1e7},
                },
            }
        },
        "chapters": {
            "01_one.ipynb": {
                "error": "",
                "wall_seconds": 10.0,
                "cpu_seconds": 9.0,
                "peak_mib": 2048.0,
                "images": 32,
                "batch_size": 8,
                "passes": {
                    "net": {
                        "loaded": 2,
                        "forward": forward,
                        "backward": backward,
                        "batch": largest,
                    }
                },
                "not_testable": ["vit-seed"],
                "datasets": ["imagenette", "cifar10"],
            }
        },
    }


# ----------------------------------------------------------------------- measured per model


def test_forward_cost_counts_each_product_and_the_memory_alive_at_once():
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(3, 4, 2, stride=2), nn.Flatten(), nn.Linear(16, 5))
    cost = forward_cost(model, (3, 4, 4))
    # conv: 16 outputs x 12 multiply-adds; linear: 16 x 5; two FLOPs each
    assert cost["forward_flops"] == 2 * (16 * 12 + 16 * 5)
    # the conv's 16 floats stay alive (the flattened view) while the linear writes 5
    assert cost["activation_bytes"]["inference"] == {"fixed": 0.0, "per_image": 4 * (16 + 5)}


def test_model_cost_of_a_vit_counts_its_attention_and_its_graph():
    cost = model_cost("vit_tiny_patch16_224")
    d, depth, tokens = 192, 12, 197
    linear = depth * (d * 3 * d + d * d + 2 * d * 4 * d)  # qkv, proj, two MLP layers
    attention = depth * 2 * tokens * tokens * d  # q k^T and attention x v
    embed, head = 196 * 3 * 16 * 16 * d, d * 1000
    assert cost["forward_flops"] == pytest.approx(
        2 * (tokens * linear + attention + embed + head), rel=0.01
    )
    assert cost["parameters"] == 5_717_416
    assert cost["input_size"] == [3, 224, 224]
    memory = cost["activation_bytes"]
    # explicit attention: two (heads, T, T) maps per block are alive at once
    assert memory["inference"]["per_image"] >= 2 * 3 * tokens * tokens * 4
    # the autograd graph keeps every block's activations
    assert memory["gradients"]["per_image"] > depth * memory["inference"]["per_image"]


# ------------------------------------------------------------------------ scaled to a profile


def test_passes_scale_with_the_profile_images_and_fixed_ones_do_not():
    record = synthetic_record(forward=split(per_image=32, fixed=100), backward=split(fixed=64))
    passes = passes_at(record, "01_one.ipynb", 2048)["net"]
    assert passes == {"forward": 100 + 32 * 2048 / 32, "backward": 64}


def test_doubling_the_images_doubles_the_time_of_passes_that_scale():
    record = synthetic_record(forward=split(per_image=32))
    once = estimate(record, "01_one.ipynb", PAPER)
    twice = estimate(
        record, "01_one.ipynb", dataclasses.replace(PAPER, num_images=2 * PAPER.num_images)
    )
    assert twice.gpu_seconds == pytest.approx(2 * once.gpu_seconds)
    assert once.gpu_seconds == pytest.approx(1e9 * PAPER.num_images / T4.sustained_flops)


def test_fixed_passes_cost_the_same_at_any_number_of_images():
    record = synthetic_record(forward=split(fixed=1024))
    times = {
        n: estimate(record, "01_one.ipynb", dataclasses.replace(PAPER, num_images=n)).gpu_seconds
        for n in (64, 2048)
    }
    assert times[64] == times[2048] == pytest.approx(1024 * 1e9 / T4.sustained_flops)


def test_a_backward_pass_costs_twice_a_forward_one():
    forward = estimate(synthetic_record(forward=split(fixed=10)), "01_one.ipynb")
    both = estimate(
        synthetic_record(forward=split(fixed=10), backward=split(fixed=10)), "01_one.ipynb"
    )
    assert BACKWARD_FACTOR == 2
    assert both.flops == pytest.approx(3 * forward.flops)


def test_a_slower_gpu_takes_longer():
    record = synthetic_record()
    half = ReferenceGPU("half a T4", T4.peak_flops, T4.efficiency / 2, T4.memory_bytes)
    slow, fast = estimate(record, "01_one.ipynb", gpu=half), estimate(record, "01_one.ipynb")
    assert slow.gpu_seconds == pytest.approx(2 * fast.gpu_seconds)
    with pytest.raises(ValueError, match="fraction"):
        ReferenceGPU("impossible", 1e12, 1.5, 1e9)


def test_memory_is_context_weights_of_every_load_and_the_largest_batch():
    record = synthetic_record(forward=split(per_image=32))
    cost = estimate(record, "01_one.ipynb")
    assert cost.weights_bytes == 2 * 4 * 1_000_000  # loaded twice, 32-bit
    assert cost.activation_bytes == 100 + 1e6 * PAPER.batch_size  # at the profile's batch
    assert cost.gpu_bytes == CUDA_CONTEXT_BYTES + cost.weights_bytes + cost.activation_bytes


def test_gradients_hold_their_graph_at_the_batch_the_chapter_fixed():
    largest = {"forward": batches(chapter=16), "backward": batches(chapter=16)}
    record = synthetic_record(forward=split(fixed=16), backward=split(fixed=512), largest=largest)
    cost = estimate(record, "01_one.ipynb")
    assert cost.activation_bytes == 1000 + 1e7 * 16 + DEFAULT_MAX_MEMORY


def test_a_batch_the_chapter_fixes_counts_where_it_is_larger_than_the_profiles():
    larger = {"forward": batches(profile=True, chapter=1024), "backward": batches()}
    record = synthetic_record(forward=split(per_image=32), largest=larger)
    assert estimate(record, "01_one.ipynb").activation_bytes == 100 + 1e6 * 1024
    smaller = {"forward": batches(profile=True, chapter=16), "backward": batches()}
    record = synthetic_record(forward=split(per_image=32), largest=smaller)
    assert estimate(record, "01_one.ipynb").activation_bytes == 100 + 1e6 * PAPER.batch_size


def test_a_chapter_missing_from_the_record_says_which_and_how_to_record_it():
    with pytest.raises(ValueError, match=r"no chapter '09_new.ipynb'.*paper_dry_run.py"):
        estimate(synthetic_record(), "09_new.ipynb")


def test_a_failed_dry_run_has_no_cost():
    record = synthetic_record()
    record["chapters"]["01_one.ipynb"]["error"] = "ValueError: boom"
    with pytest.raises(ValueError, match=r"failed.*boom"):
        estimate(record, "01_one.ipynb")
    assert "failed: ValueError: boom" in cost_table(record)


def test_a_model_without_its_cost_is_refused():
    record = synthetic_record()
    del record["models"]["net"]
    with pytest.raises(ValueError, match="no cost of model 'net'"):
        estimate(record, "01_one.ipynb")


def test_zoo_models_are_costed_but_not_downloaded():
    record = synthetic_record()
    entry = record["chapters"]["01_one.ipynb"]
    entry["passes"]["vit-cls"] = copy.deepcopy(entry["passes"]["net"])
    record["models"]["vit-cls"] = model_cost("vit-cls")
    assert is_zoo_model("vit-cls") and is_zoo_model("vit-cls.seed1")
    assert not is_zoo_model("vit_base_patch16_224.augreg_in21k")
    row = next(line for line in cost_table(record).splitlines() if line.startswith("| 1 |"))
    assert "1 of the zoo's models (shipped, no download)" in row
    assert "| 0.0 GB |" in row  # only net's 4 MB are downloaded
    cost = estimate(record, "01_one.ipynb")
    assert cost.weights_bytes == 2 * 4 * (1_000_000 + record["models"]["vit-cls"]["parameters"])


def test_chapter_labels():
    assert chapter_label("01_cka.ipynb") == "1"
    assert chapter_label("03b_local_heads.ipynb") == "3b"
    with pytest.raises(ValueError, match="chapter"):
        chapter_label("README.md")


def test_the_table_shows_each_chapter_from_the_record():
    table = cost_table(synthetic_record(forward=split(per_image=32)))
    row = next(line for line in table.splitlines() if line.startswith("| 1 | net"))
    # the profile's own source, Imagenette, is stated once, above the table
    assert "CIFAR-10 (0.17 GB)" in row and "Imagenette" not in row
    assert "* chapter 1: no second training seed of the paper's ViT is public" in table
    assert "0.0 GB" in row  # 4 MB of weights
    assert "| 1 | 32 | 10 s, 9 s | 2.0 GiB | 32 / 0 | 2,048 / 0 |" in table


def test_a_chapter_the_record_lacks_is_shown_with_the_command_that_measures_it():
    table = cost_table(synthetic_record(), book=["01_one.ipynb", "05_localization.ipynb"])
    rows = [line for line in table.splitlines() if line.startswith("| 5 |")]
    assert len(rows) == 2  # in both tables
    assert all("not yet measured" in row for row in rows)
    assert (
        "Not yet measured: chapter 5; `python scripts/paper_dry_run.py "
        "notebooks/05_localization.ipynb` measures it." in table
    )


# ----------------------------------------------------------------- the committed record


def committed_record() -> dict:
    return json.loads(RECORD.read_text())


BOOK = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]*.ipynb"))


def test_the_recorded_chapters_are_the_books_and_none_failed():
    record = committed_record()
    assert set(record["chapters"]) <= set(BOOK)
    failed = {name: e["error"] for name, e in record["chapters"].items() if e["error"]}
    assert not failed, f"chapters whose paper dry run failed: {failed}"
    for name, entry in record["chapters"].items():
        assert entry["passes"], f"{name}: no model ran in the dry run"
        paper = {model for model in entry["passes"] if not is_zoo_model(model)}
        assert paper <= set(PAPER.models.values()), name
        assert set(entry["passes"]) <= set(record["models"]), name


def test_the_guide_includes_the_tables_computed_from_the_record():
    included = (ROOT / "book" / "_paper_cost.md").read_text()
    assert included == cost_table(committed_record(), book=BOOK), (
        "book/_paper_cost.md is not what the record gives: python scripts/paper_dry_run.py "
        "--table-only"
    )
    guide = (ROOT / "book" / "teachers.md").read_text()
    assert re.search(r"```\{include\} _paper_cost\.md\n```", guide)


def test_the_recorded_model_costs_are_what_model_cost_measures():
    name = "vit_base_patch32_224.augreg_in21k"
    recorded, measured = committed_record()["models"][name], model_cost(name)
    assert recorded["parameters"] == measured["parameters"]
    assert recorded["forward_flops"] == measured["forward_flops"]
    for key in ("inference", "gradients"):
        assert recorded["activation_bytes"][key] == pytest.approx(measured["activation_bytes"][key])
