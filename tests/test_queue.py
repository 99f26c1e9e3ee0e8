"""The zoo's training queue: its plan, what counts as done, leftovers of a killed run, the
cache of finished first stages, sweep runs, and committing a result alone."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from vitlens.models import CorruptCheckpointError, build_zoo_model
from vitlens.models.zoo import ZOO_PLAN, ZOO_PRETRAIN, ZOO_RECIPES, ZOO_SWEEPS, split_zoo_key
from vitlens.training import zoo as training
from vitlens.training.checkpoints import save_checkpoint, write_manifest_entry
from vitlens.training.queue import (
    QueueEntry,
    check_plan,
    commit_files,
    landing_summary,
    pending_entries,
    remove_leftovers,
    run_queue,
)


def test_the_plan_names_registered_models_and_sweep_runs_once_each():
    entries = check_plan()
    assert [e.key for e in entries] == list(ZOO_PLAN)
    for entry in entries:
        if entry.sweep is None:
            split_zoo_key(entry.key)  # raises for an unknown model
        else:
            sweep, label = entry.sweep
            assert label in ZOO_SWEEPS[sweep]


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (("vit-pt", "vit-pt"), "twice"),
        (("sweep:vit-pt-gap-lr/lr9",), "unknown sweep run"),
        (("no-such-model",), "unknown zoo model"),
    ],
)
def test_a_bad_plan_is_refused(plan, message):
    with pytest.raises(ValueError, match=message):
        check_plan(plan)


def test_entries_say_how_they_are_trained_and_what_they_write(tmp_path):
    model = QueueEntry("vit-pt.seed2")
    command = model.command(tmp_path, tmp_path / "cache")
    assert command[-7:] == [
        "vit-pt",
        "--seed",
        "2",
        "--threads",
        "1",
        "--pretrain-cache",
        str(tmp_path / "cache"),
    ]
    assert model.outputs(tmp_path) == [
        tmp_path / "vit-pt.seed2.safetensors",
        tmp_path / "manifest.json",
    ]
    # the queue outlives the code it imported: a model registered on disk after it started
    # is named as written, not looked up in this process's registry (which would refuse it)
    later = QueueEntry("a-model-registered-later").command(tmp_path, None)
    assert later[-4:] == ["train", "a-model-registered-later", "--threads", "1"]
    sweep = QueueEntry("sweep:vit-pt-gap-lr/lr2e-3")
    assert sweep.sweep == ("vit-pt-gap-lr", "lr2e-3")
    assert "sweep-run" in sweep.command(tmp_path, None)
    assert sweep.outputs(tmp_path) == [tmp_path / "sweeps" / "vit-pt-gap-lr.json"]


def _fake_entry(directory, key, file=None):
    torch.manual_seed(0)
    file = file or f"{key}.safetensors"
    sha = save_checkpoint(build_zoo_model(split_zoo_key(key)[0]), directory / file)
    write_manifest_entry(directory, key, {"file": file, "sha256": sha})


def test_pending_entries_skip_what_the_manifest_and_sweep_records_hold(tmp_path):
    plan = (
        "vit-pt-small",
        "vit-pt-small.seed1",
        "sweep:vit-pt-gap-lr/lr2e-3",
        "sweep:vit-pt-gap-lr/lr5e-4",
    )
    assert pending_entries(tmp_path, plan) == list(plan)
    _fake_entry(tmp_path, "vit-pt-small.seed1")
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "vit-pt-gap-lr.json").write_text(json.dumps({"lr5e-4": {}}))
    assert pending_entries(tmp_path, plan) == ["vit-pt-small", "sweep:vit-pt-gap-lr/lr2e-3"]


def test_leftovers_of_a_killed_training_are_removed_and_it_counts_as_pending(tmp_path):
    _fake_entry(tmp_path, "vit-pt-small")  # a finished model stays
    _fake_entry(tmp_path, "vit-pt-small.seed1", file="vit-pt-small.seed1.pending.safetensors")
    (tmp_path / ".manifest.json.abc.tmp").write_text("half")
    removed = remove_leftovers(tmp_path)
    assert sorted(p.name for p in removed) == [
        ".manifest.json.abc.tmp",
        "vit-pt-small.seed1.pending.safetensors",
    ]
    assert pending_entries(tmp_path, ("vit-pt-small", "vit-pt-small.seed1")) == [
        "vit-pt-small.seed1"
    ]
    assert (tmp_path / "vit-pt-small.safetensors").exists()


def _tiny_two_stage():
    recipe = replace(ZOO_RECIPES["vit-pt"], steps=2, batch_size=8, warmup_steps=1, n_train=16)
    pretrain = replace(ZOO_PRETRAIN["vit-pt"], steps=2, batch_size=8, warmup_steps=1, n_train=16)
    return recipe, pretrain


def _train_tiny_vit_pt(directory, cache):
    """``vit-pt`` by a two-step version of both its stages; its manifest entry."""
    recipe, pretrain = _tiny_two_stage()
    training.train_zoo_model(
        "vit-pt",
        directory=directory,
        recipe=recipe,
        pretrain=pretrain,
        pretrain_cache=cache,
        progress=False,
    )
    return json.loads((directory / "manifest.json").read_text())["models"]["vit-pt"]


@pytest.fixture
def small_heldout(monkeypatch):
    full = training.heldout
    monkeypatch.setattr(training, "heldout", lambda data=None, *, n=32: full(data, n=min(n, 32)))


def test_a_cached_first_stage_gives_the_same_model_as_a_fresh_one(tmp_path, small_heldout):
    cache = tmp_path / "cache"
    _train_tiny_vit_pt(tmp_path / "a", None)
    stored = _train_tiny_vit_pt(tmp_path / "b", cache)
    reused = _train_tiny_vit_pt(tmp_path / "c", cache)
    assert len(list(cache.glob("*.safetensors"))) == 1
    assert "reused" not in stored["pretrain"] and reused["pretrain"]["reused"] is True
    assert reused["pretrain"]["history"] == stored["pretrain"]["history"]
    weights = [load_file(str(tmp_path / d / "vit-pt.safetensors")) for d in "abc"]
    for name, value in weights[0].items():
        assert torch.equal(weights[1][name], value) and torch.equal(weights[2][name], value)


def test_a_corrupt_cached_stage_is_refused(tmp_path, small_heldout):
    cache = tmp_path / "cache"
    _train_tiny_vit_pt(tmp_path / "a", cache)
    (stage,) = cache.glob("*.safetensors")
    data = bytearray(stage.read_bytes())
    data[-8] ^= 0xFF  # flip bits in the last tensor's bytes
    stage.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="does not match"):
        _train_tiny_vit_pt(tmp_path / "b", cache)


@pytest.mark.slow
def test_a_sweep_run_is_recorded_without_its_checkpoint(tmp_path, small_heldout, monkeypatch):
    recipe, pretrain = _tiny_two_stage()
    monkeypatch.setitem(training.ZOO_RECIPES, "vit-pt", recipe)
    monkeypatch.setitem(training.ZOO_PRETRAIN, "vit-pt", pretrain)
    entry = training.train_sweep_run(
        "vit-pt-finetune-length", "ft800", directory=tmp_path, progress=False
    )
    record = json.loads((tmp_path / "sweeps" / "vit-pt-finetune-length.json").read_text())
    assert record["ft800"] == entry
    assert entry["recipe"]["steps"] == 800 and entry["sweep_recipe"] == {"steps": 800}
    assert "file" not in entry and "sha256" not in entry
    assert not list(tmp_path.glob("*.safetensors"))
    with pytest.raises(ValueError, match="unknown sweep run"):
        training.train_sweep_run("vit-pt-finetune-length", "ft1", directory=tmp_path)


def test_a_landed_result_is_committed_alone(tmp_path):
    def git(*args):
        return subprocess.run(
            ["git", "-C", str(tmp_path), *args], capture_output=True, text=True, check=True
        ).stdout

    git("init", "-q")
    git("config", "user.email", "zoo@example.org")
    git("config", "user.name", "zoo")
    (tmp_path / "other.txt").write_text("work in progress")
    git("add", "other.txt")  # someone's staged change must stay staged, uncommitted
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "manifest.json").write_text("{}")
    (tmp_path / "zoo" / "m.safetensors").write_bytes(b"weights")
    messages = []
    commit_files(
        tmp_path,
        [tmp_path / "zoo" / "m.safetensors", tmp_path / "zoo" / "manifest.json"],
        "Zoo: m",
        messages.append,
    )
    assert git("log", "--format=%s").strip() == "Zoo: m"
    assert sorted(git("show", "--name-only", "--format=", "HEAD").split()) == [
        "zoo/m.safetensors",
        "zoo/manifest.json",
    ]
    assert git("diff", "--cached", "--name-only").split() == ["other.txt"]
    assert messages == ["committed: Zoo: m"]


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"workers": 0}, "workers"), ({"nice": 25}, "nice")]
)
def test_bad_queue_settings_are_refused_before_anything_runs(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run_queue(tmp_path, **kwargs)
    assert list(tmp_path.iterdir()) == []  # no lock, no log folder


def test_the_landing_summary_counts_the_runs_cpu_once():
    entry = {
        "heldout": {"accuracy": 0.14},
        "attention": {"local_heads_per_block": [0, 0, 2]},
        "train_cpu_s": 1600.8,  # both stages: the first is inside the run's CPU time
        "pretrain": {"train_cpu_s": 600.8},
    }
    summary = landing_summary(entry)
    assert summary == "held-out 14.0 %, local heads per block [0, 0, 2], 27 CPU-min"
    assert landing_summary({"heldout": {"accuracy": 1.0}, "train_cpu_s": 3420}) == (
        "held-out 100.0 %, 57 CPU-min"
    )
