"""Training the zoo: :func:`train_zoo_model` renders a zoo model's training set (the dataset
its recipe names), trains it by its registered recipe (one or two stages, optionally with
another seed or from another zoo model's weights), writes the safetensors checkpoint
atomically and records the manifest entry (architecture, recipes, data, accuracies,
attention distances, sha256, wall and CPU time, device); :func:`train_sweep_run` trains one
run of a recipe sweep and records it without a checkpoint."""

from __future__ import annotations

import json
import platform
import tempfile
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from vitlens.analyses.attention import (
    LOCAL_THRESHOLD,
    count_local_heads,
    relative_attention_distance,
)
from vitlens.analyses.local_heads import study_runs_path
from vitlens.data import normalize_shapes
from vitlens.data.datasets import HELDOUT_SIZE, VERIFY_SIZE, dataset_config, heldout, render_dataset
from vitlens.models import (
    ZOO_ARCHS,
    build_zoo_model,
    load_model,
    parameter_count,
    read_manifest,
    zoo_dir,
)
from vitlens.models.recipe import Recipe
from vitlens.models.zoo import ZOO_FINETUNE_FROM, ZOO_PRETRAIN, ZOO_RECIPES, ZOO_SWEEPS, zoo_key
from vitlens.streaming import RunOptions, resolve_device
from vitlens.training.checkpoints import (
    atomic_write_json,
    cached_stage,
    install_checkpoint,
    locked,
    save_checkpoint,
    store_stage,
)
from vitlens.training.loop import accuracy, fit


def data_record(recipe: Recipe) -> dict:
    """The manifest's ``data`` record of a recipe: dataset, its config, seed, training images."""
    return {
        "dataset": recipe.dataset,
        "config": dataset_config(recipe.dataset).to_dict(),
        "seed": recipe.data_seed,
        "n_train": recipe.n_train,
    }


ATTENTION_SIZE = 256
"""Held-out images (``test`` split, indices ``0 ..``) behind the manifest's attention distances."""


def attention_summary(model: nn.Module, images: Tensor, n: int = ATTENTION_SIZE) -> dict:
    """Relative attention distances of a ViT on the first ``n`` uint8 ``images``, for a manifest.

    Returns:
        A dict with keys ``n``, ``relative_distance`` (a blocks x heads list),
        ``threshold``, ``local_heads``, ``local_heads_lower_half`` and
        ``local_heads_per_block`` (one count per block); "local" is under
        ``threshold`` times uniform attention's distance
        (:func:`vitlens.analyses.attention.count_local_heads`).
    """

    was_training = model.training
    quiet = RunOptions(device="cpu", progress=False)
    rel = relative_attention_distance(model, normalize_shapes(images[:n]), run=quiet)
    model.train(was_training)
    depth = rel.shape[0]
    return {
        "n": min(n, len(images)),
        "relative_distance": [[round(float(v), 4) for v in row] for row in rel],
        "threshold": LOCAL_THRESHOLD,
        "local_heads": count_local_heads(rel),
        "local_heads_lower_half": count_local_heads(rel, blocks=range(depth // 2)),
        "local_heads_per_block": [count_local_heads(rel, blocks=[b]) for b in range(depth)],
    }


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def train_zoo_model(
    name: str,
    *,
    directory: str | Path | None = None,
    device: str | torch.device = "auto",
    recipe: Recipe | None = None,
    progress: bool = True,
    log_every: int = 100,
    pretrain: Recipe | None = None,
    seed: int | None = None,
    pretrain_cache: str | Path | None = None,
) -> dict:
    """Train zoo model ``name`` by its recipe, save it and record its manifest entry.

    With ``seed`` (another than the recipe's), both stages' training seeds are replaced and
    the model is stored as ``name.seedK`` (:func:`vitlens.models.zoo.zoo_key`); its data
    are the same images.

    A model with a :data:`vitlens.models.zoo.ZOO_PRETRAIN` entry is trained in two stages on
    the same images and the manifest records both (``pretrain``: recipe, final loss, wall
    and CPU time, and the attention distances after it). Every ViT's entry records
    ``attention``: each head's mean attention distance relative to uniform attention on
    :data:`ATTENTION_SIZE` held-out images and its number of local heads.

    Args:
        name: a key of :data:`vitlens.models.zoo.ZOO_RECIPES`.
        directory: zoo folder (the shipped one if ``None``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        recipe: override the registered recipe (e.g. fewer steps for a smoke test).
        pretrain: override the registered first-stage recipe (``None``: the registered one,
            if any).
        seed: training seed (initialisation, batch order, augmentation, masks); ``None``:
            the recipe's.
        pretrain_cache: folder of finished first stages (float32 weights and their
            record), keyed by architecture, first-stage recipe and initial weights: a
            model whose first stage is there skips it (its record is marked ``reused``; the
            second stage is the same as after a fresh first stage), and a fresh first stage
            is stored there. ``None``: no cache.
        progress: tqdm bar (else one JSON line per logged interval).
        log_every: steps between logged rows (each also measures accuracy on the first
            ``vitlens.data.VERIFY_SIZE`` held-out images, ``heldout_acc``).

    Returns:
        The manifest entry written.
    """
    if name not in ZOO_RECIPES:
        raise ValueError(f"unknown zoo model {name!r}; zoo models: {sorted(ZOO_RECIPES)}")
    key = zoo_key(name, seed)
    recipe = recipe or ZOO_RECIPES[name]
    pretrain = pretrain or ZOO_PRETRAIN.get(name)
    if seed is not None:
        recipe = replace(recipe, seed=seed)
        pretrain = pretrain and replace(pretrain, seed=seed)
    if pretrain is not None and (pretrain.data_seed, pretrain.dataset) != (
        recipe.data_seed,
        recipe.dataset,
    ):
        raise ValueError("both stages must train on the same dataset and data seed")
    directory = Path(directory or zoo_dir())
    dev = resolve_device(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    n_render = max(recipe.n_train, pretrain.n_train if pretrain else 0)
    data = data_record(recipe)
    train = render_dataset(recipe.dataset, range(n_render), split="train", seed=recipe.data_seed)
    test = heldout(data)
    watch = test.images[:VERIFY_SIZE], test.labels[:VERIFY_SIZE]

    def watch_heldout(model: nn.Module, row: dict) -> None:
        """Held-out accuracy along the way, in supervised stages (a masked stage's rows have
        no ``train_acc``: its classifier is not trained yet)."""
        if row.get("train_acc") is not None:
            row["heldout_acc"] = accuracy(model, *watch, device=dev)[0]

    def watch_locality(model: nn.Module, row: dict) -> None:
        """Two-stage ViTs also log their lower half's local heads along the way."""
        watch_heldout(model, row)
        summary = attention_summary(model, test.images)
        row["local_heads_lower_half"] = summary["local_heads_lower_half"]
        row["local_heads_per_block"] = summary["local_heads_per_block"]
        model.to(dev)

    two_stage = pretrain is not None and ZOO_ARCHS[name]["family"] == "vit"

    def run_stage(stage_recipe: Recipe) -> list[dict]:
        """Train ``model`` by one stage's recipe on its first ``n_train`` images."""
        return fit(
            model,
            train.images[: stage_recipe.n_train],
            train.labels[: stage_recipe.n_train],
            stage_recipe,
            device=dev,
            progress=progress,
            log_every=log_every,
            callback=watch_locality if two_stage else watch_heldout,
        )

    torch.manual_seed((pretrain or recipe).seed)
    model = build_zoo_model(name)
    init_from = _init_from_zoo_model(model, name, directory)
    first = None
    cached = cached_stage(pretrain_cache, name, pretrain, init_from) if pretrain else None
    if cached is not None:
        model.load_state_dict(cached[0])
        first = {**cached[1], "reused": True}
    elif pretrain is not None:
        t0, c0 = time.perf_counter(), time.process_time()
        stage = run_stage(pretrain)
        first = {
            "recipe": asdict(pretrain),
            "final_train_loss": stage[-1]["loss"],
            "final_train_acc": stage[-1]["train_acc"],
            "train_time_s": round(time.perf_counter() - t0, 1),
            "train_cpu_s": round(time.process_time() - c0, 1),
            "history": stage,
        }
        if ZOO_ARCHS[name]["family"] == "vit":
            first["attention"] = attention_summary(model, test.images)
        if pretrain_cache is not None:
            store_stage(pretrain_cache, name, pretrain, init_from, model, first)
    history = run_stage(recipe)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    # The new weights go to a pending file first: the manifest never names a checkpoint
    # that is not (yet, or any more) on disk, so a kill at any point leaves a loadable model.
    file, pending = f"{key}.safetensors", f"{key}.pending.safetensors"
    sha = save_checkpoint(
        model, directory / pending, metadata={"name": key, "arch": ZOO_ARCHS[name]}
    )
    # measure the reloaded (float16) weights, exactly what users and the tests load
    reloaded = build_zoo_model(name)
    reloaded.load_state_dict({k: v.float() for k, v in load_file(str(directory / pending)).items()})
    acc, _ = accuracy(reloaded, test.images, test.labels, device="cpu")
    vacc, vcorrect = accuracy(
        reloaded, test.images[:VERIFY_SIZE], test.labels[:VERIFY_SIZE], device="cpu"
    )

    entry = {
        "file": file,
        "sha256": sha,
        "bytes": (directory / pending).stat().st_size,
        "params": parameter_count(model),
        "family": ZOO_ARCHS[name]["family"],
        "arch": ZOO_ARCHS[name],
        "recipe": asdict(recipe),
        "data": data,
        "heldout": {"split": "test", "n": HELDOUT_SIZE, "accuracy": acc},
        "verify": {"split": "test", "n": VERIFY_SIZE, "accuracy": vacc, "correct": vcorrect},
        "final_train_loss": history[-1]["loss"],
        "final_train_acc": history[-1]["train_acc"],
        "train_time_s": round(wall, 1),
        "train_cpu_s": round(cpu, 1),
        "device": _device_name(dev),
        "versions": {"torch": torch.__version__, "timm": timm.__version__},
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if init_from is not None:
        entry["init_from"] = init_from
    if first is not None:
        entry["pretrain"] = first
        entry["history"] = history
    if ZOO_ARCHS[name]["family"] == "vit":
        entry["attention"] = attention_summary(reloaded, test.images)
    install_checkpoint(directory, key, entry, pending)
    load_model(key, zoo=directory)  # the hash check passes on what was just written
    return entry


def train_sweep_run(
    sweep: str,
    label: str,
    *,
    directory: str | Path | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
    pretrain_cache: str | Path | None = None,
) -> dict:
    """Train one run of a recipe sweep (:data:`vitlens.models.zoo.ZOO_SWEEPS`) and record it.

    The run is its zoo model with the sweep's second-stage recipe fields replaced, trained
    by :func:`train_zoo_model` in a scratch folder; its manifest entry, without checkpoint
    fields, is added under ``label`` to ``sweeps/SWEEP.json`` in the zoo folder (atomically,
    under the folder's lock). The checkpoint is not kept.

    Returns:
        The recorded entry.
    """
    if sweep not in ZOO_SWEEPS or label not in ZOO_SWEEPS[sweep]:
        known = {k: sorted(v) for k, v in ZOO_SWEEPS.items()}
        raise ValueError(f"unknown sweep run {sweep}/{label}; sweeps and their runs: {known}")
    run = ZOO_SWEEPS[sweep][label]
    name = run["model"]
    recipe = replace(ZOO_RECIPES[name], **run["recipe"])
    directory = Path(directory or zoo_dir())
    if name in ZOO_FINETUNE_FROM:
        raise ValueError(
            f"sweep runs of models fine-tuned from another ({name!r}) are not supported"
        )
    with tempfile.TemporaryDirectory(prefix="vitlens-sweep-") as scratch:
        entry = train_zoo_model(
            name,
            directory=scratch,
            device=device,
            recipe=recipe,
            progress=progress,
            pretrain_cache=pretrain_cache,
        )
    for key in ("file", "sha256", "bytes"):
        entry.pop(key)
    path = directory / "sweeps" / f"{sweep}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(path.parent):
        runs = json.loads(path.read_text()) if path.exists() else {}
        runs[label] = {"sweep_recipe": run["recipe"], **entry}
        atomic_write_json(path, dict(sorted(runs.items())))
    return runs[label]


def _init_from_zoo_model(model: nn.Module, name: str, directory: Path) -> dict | None:
    """Copy the trained weights ``name`` starts from (:data:`ZOO_FINETUNE_FROM`), if any.

    Every parameter but the classifier (``head.*``, which keeps its fresh initialisation)
    comes from the source checkpoint, loaded with its sha256 checked.

    Returns:
        ``{"name", "sha256"}`` of the source for the manifest, or ``None``.
    """
    source = ZOO_FINETUNE_FROM.get(name)
    if source is None:
        return None
    trained = load_model(source, zoo=directory).state_dict()
    fresh = model.state_dict()
    if trained.keys() != fresh.keys():
        raise ValueError(f"{name!r} and its source {source!r} have different architectures")
    model.load_state_dict(
        {k: (fresh[k] if k.startswith("head.") else trained[k].float()) for k in fresh}
    )
    return {"name": source, "sha256": read_manifest(directory)[source]["sha256"]}


def record_study_run(record: dict, path: str | Path | None = None) -> None:
    """Add or replace (by ``record["name"]``) one run of the local-heads study, atomically.

    The record comes from ``scripts/sweep_local_heads.py``: ``name``, ``stages`` (each
    with its ``recipe``), ``data``, ``heldout``, ``attention`` (as in a manifest),
    ``train_time_s`` and ``train_cpu_s``; it goes to ``path`` (default: the shipped
    ``study_runs.json``, :func:`vitlens.analyses.local_heads.study_runs` reads it back).
    """
    path = study_runs_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(path.parent):
        runs = json.loads(path.read_text())["runs"] if path.exists() else []
        runs = [r for r in runs if r["name"] != record["name"]] + [record]
        atomic_write_json(path, {"format": 1, "runs": runs})


CONVERGED_GAIN = 0.01
"""A stage has converged when held-out accuracy gains less than this (one point) over its
last :data:`CONVERGENCE_SHARE` of steps."""

CONVERGENCE_SHARE = 0.2
"""The closing share of a stage's steps over which :func:`final_stage_gain` is measured."""


def final_stage_gain(history: list[dict], share: float = CONVERGENCE_SHARE) -> float:
    """Held-out accuracy gained over the last ``share`` of a stage, from its logged rows.

    Args:
        history: a stage's rows as :func:`vitlens.training.loop.fit` logs them (``step``,
            ``heldout_acc``), e.g. a manifest entry's ``history``.
        share: the closing fraction of the stage's steps, in ``(0, 1)``.

    Returns:
        ``heldout_acc`` at the last row minus ``heldout_acc`` at the last row logged at or
        before step ``(1 - share) * steps`` (a fraction, 0.01 is one point).

    Raises:
        ValueError: ``share`` out of range, rows without ``heldout_acc``, or no row logged
            early enough to compare with.
    """
    if not 0 < share < 1:
        raise ValueError(f"share must be in (0, 1), got {share}")
    rows = [r for r in history if r.get("heldout_acc") is not None]
    if len(rows) < 2:
        raise ValueError("need at least two logged rows with a held-out accuracy")
    last = rows[-1]
    cut = (1 - share) * last["step"]
    earlier = [r for r in rows if r["step"] <= cut]
    if not earlier:
        raise ValueError(f"no row logged at or before step {cut:.0f} of {last['step']}")
    return last["heldout_acc"] - earlier[-1]["heldout_acc"]
