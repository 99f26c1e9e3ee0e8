"""The training loop that produced the zoo, reproducible from a recipe.

:func:`fit` trains any classifier on in-memory uint8 images with AdamW, linear warm-up then
cosine decay, optional label smoothing, random flips and shifts, mixed precision on CUDA
only, and a fixed seed. :func:`train_zoo_model` renders a zoo model's shapes training set,
trains it by its :data:`ZOO_RECIPES` entry, writes the safetensors checkpoint atomically
and records the manifest entry (architecture, recipe, data, accuracies, sha256, wall time,
device).
"""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vitlens.data import ShapesConfig, normalize_shapes, render_shapes
from vitlens.models import (
    ZOO_ARCHS,
    build_zoo_model,
    load_model,
    read_manifest,
    sha256_file,
    zoo_dir,
)
from vitlens.models.zoo import MANIFEST_FORMAT
from vitlens.streaming import resolve_device

HELDOUT_SIZE = 2048
"""Held-out images (shapes ``test`` split, indices ``0 ..``) behind the manifest accuracy."""

VERIFY_SIZE = 512
"""The first images of the held-out set that ``vitlens zoo verify`` and the tests re-measure."""


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a training run besides the architecture.

    Attributes:
        steps: optimiser steps.
        batch_size: images per step.
        lr: peak learning rate (AdamW).
        weight_decay: AdamW weight decay (not applied to biases, norms, embeddings/tokens).
        warmup_steps: linear warm-up steps from 0 to ``lr``.
        min_lr_ratio: final learning rate as a fraction of ``lr`` (cosine decay).
        label_smoothing: cross-entropy label smoothing.
        grad_clip: max global gradient norm (0 disables).
        shift: random translation of up to this many pixels (reflect padding); 0 disables.
        flip: random horizontal flips.
        n_train: number of training images (shapes ``train`` split, indices ``0 .. n-1``).
        data_seed: seed of the shapes dataset.
        seed: seed of initialisation, batch order and augmentation.
    """

    steps: int = 3000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 200
    min_lr_ratio: float = 0.01
    label_smoothing: float = 0.1
    grad_clip: float = 1.0
    shift: int = 2
    flip: bool = True
    n_train: int = 30000
    data_seed: int = 0
    seed: int = 0


def lr_factor(step: int, recipe: Recipe) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then cosine to ``min_lr_ratio``."""
    if step < recipe.warmup_steps:
        return (step + 1) / recipe.warmup_steps
    span = max(1, recipe.steps - recipe.warmup_steps)
    progress = min(1.0, (step - recipe.warmup_steps) / span)
    return recipe.min_lr_ratio + (1 - recipe.min_lr_ratio) * 0.5 * (
        1 + math.cos(math.pi * progress)
    )


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    skip = set(getattr(model, "no_weight_decay", set)())
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name in skip else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def augment(images: Tensor, recipe: Recipe, generator: torch.Generator) -> Tensor:
    """Random flips and shifts of a float ``(n, 3, S, S)`` batch (same shape out)."""
    n, _, s, _ = images.shape
    if recipe.flip:
        flip = torch.rand(n, generator=generator) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    if recipe.shift:
        k = recipe.shift
        padded = F.pad(images, (k, k, k, k), mode="reflect")
        dx, dy = torch.randint(0, 2 * k + 1, (2, n), generator=generator)
        rows = (dy[:, None] + torch.arange(s))[:, None, :, None].expand(n, 3, s, s + 2 * k)
        images = padded.gather(2, rows)
        cols = (dx[:, None] + torch.arange(s))[:, None, None, :].expand(n, 3, s, s)
        images = images.gather(3, cols)
    return images


@torch.inference_mode()
def accuracy(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    batch_size: int = 256,
    device: str | torch.device = "auto",
) -> tuple[float, int]:
    """Top-1 accuracy and number correct of ``model`` on uint8 shapes images ``(n, 3, S, S)``."""
    dev = resolve_device(device)
    model.eval().to(dev)
    correct = 0
    for i in range(0, len(labels), batch_size):
        x = normalize_shapes(images[i : i + batch_size]).to(dev)
        correct += int((model(x).argmax(-1).cpu() == labels[i : i + batch_size]).sum())
    return correct / max(1, len(labels)), correct


def fit(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    recipe: Recipe,
    *,
    device: str | torch.device = "auto",
    progress: bool = True,
    log_every: int = 100,
    callback: Callable[[nn.Module, dict], None] | None = None,
) -> list[dict]:
    """Train ``model`` in place on uint8 images ``(n, 3, S, S)`` with integer ``labels``.

    Deterministic for a given ``recipe.seed`` on a given device and thread count (the
    caller seeds the initialisation, see :func:`train_zoo_model`). Mixed precision (bf16
    autocast) is used on CUDA only.

    Returns:
        One dict per ``log_every`` steps and the last step: ``step``, ``lr``,
        ``loss`` (mean over the interval) and ``train_acc`` (same interval, augmented).
        ``callback(model, row)`` runs on each row before it is logged and may add to it
        (e.g. a held-out accuracy); the model is put back in train mode after it.
    """
    from tqdm.auto import tqdm

    dev = resolve_device(device)
    model.train().to(dev)
    generator = torch.Generator().manual_seed(recipe.seed)
    opt = torch.optim.AdamW(
        _param_groups(model, recipe.weight_decay), lr=recipe.lr, betas=(0.9, 0.999)
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, recipe))
    n = len(labels)
    order, pos = torch.randperm(n, generator=generator), 0
    history, loss_sum, hits, seen = [], 0.0, 0, 0
    bar = tqdm(range(recipe.steps), desc="train", disable=not progress, mininterval=10)
    for step in bar:
        if pos + recipe.batch_size > n:
            order, pos = torch.randperm(n, generator=generator), 0
        idx = order[pos : pos + recipe.batch_size]
        pos += recipe.batch_size
        x = augment(normalize_shapes(images[idx]), recipe, generator).to(dev)
        y = labels[idx].to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        opt.step()
        sched.step()
        loss_sum += float(loss.detach()) * len(y)
        hits += int((logits.argmax(-1) == y).sum())
        seen += len(y)
        if (step + 1) % log_every == 0 or step + 1 == recipe.steps:
            row = {
                "step": step + 1,
                "lr": opt.param_groups[0]["lr"],
                "loss": loss_sum / seen,
                "train_acc": hits / seen,
            }
            if callback is not None:
                callback(model, row)
                model.train()
            history.append(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['train_acc']:.3f}")
            if not progress:
                print(json.dumps(row), flush=True)
            loss_sum, hits, seen = 0.0, 0, 0
    return history


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync, ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; shipped files are world-readable
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(model: nn.Module, path: str | Path, *, metadata: dict | None = None) -> str:
    """Write ``model``'s state dict as float16 safetensors, atomically; returns its sha256.

    Float16 halves the shipped size; loading casts back to float32, and the manifest's
    accuracies are measured on the reloaded float16 weights.
    """
    from safetensors.torch import save

    state = {
        k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()
    }
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    path = Path(path)
    _atomic_write_bytes(path, save(state, metadata=meta))
    return sha256_file(path)


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (POSIX; no-op elsewhere)."""
    try:
        import fcntl
    except ImportError:  # Windows: trainings there run one at a time
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_manifest_entry(directory: str | Path, name: str, entry: dict) -> None:
    """Add or replace ``name`` in ``directory/manifest.json``, atomically.

    The read-modify-write holds a lock on the folder, so trainings running side by side
    do not lose each other's entries.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "manifest.json"
    with _locked(directory):
        manifest = {"format": MANIFEST_FORMAT, "models": read_manifest(directory)}
        manifest["models"][name] = entry
        manifest["models"] = dict(sorted(manifest["models"].items()))
        _atomic_write_bytes(path, (json.dumps(manifest, indent=2) + "\n").encode())


_BASE = Recipe(steps=2400, batch_size=64, lr=1e-3, warmup_steps=100, n_train=30000)

ZOO_RECIPES: dict[str, Recipe] = {
    "vit-cls": _BASE,
    "vit-gap": _BASE,
    "vit-noskip-2": _BASE,
    "vit-noskip-6": _BASE,
    "vit-cls-data3": replace(_BASE, n_train=900),
    "vit-cls-data10": replace(_BASE, n_train=3000),
    "vit-cls-data30": replace(_BASE, n_train=9000),
    "vit-small": _BASE,
    "vit-large": _BASE,
    "resnet": replace(_BASE, steps=500, batch_size=128, lr=2e-3),
    "mixer": _BASE,
}
"""The recipe of every zoo model; ``vit-cls-data{f}`` use ``f`` % of ``vit-cls``'s images."""

ZOO_DATA = ShapesConfig()
"""Shapes appearance all zoo models are trained and measured on."""


def heldout(config: ShapesConfig = ZOO_DATA, *, seed: int = 0, n: int = HELDOUT_SIZE):
    """The held-out shapes sample (``test`` split, indices ``0 .. n-1``) as a ShapesBatch."""
    return render_shapes(range(n), split="test", seed=seed, config=config)


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
) -> dict:
    """Train zoo model ``name`` by its recipe, save it and record its manifest entry.

    Args:
        name: a key of :data:`ZOO_RECIPES`.
        directory: zoo folder (the shipped one if ``None``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        recipe: override the registered recipe (e.g. fewer steps for a smoke test).
        progress: tqdm bar (else one JSON line per logged interval).
        log_every: steps between logged rows (each also measures accuracy on the first
            :data:`VERIFY_SIZE` held-out images, ``heldout_acc``).

    Returns:
        The manifest entry written.
    """
    if name not in ZOO_RECIPES:
        raise ValueError(f"unknown zoo model {name!r}; zoo models: {sorted(ZOO_RECIPES)}")
    recipe = recipe or ZOO_RECIPES[name]
    directory = Path(directory or zoo_dir())
    dev = resolve_device(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    train = render_shapes(
        range(recipe.n_train),
        split="train",
        seed=recipe.data_seed,
        config=ZOO_DATA,
        progress=progress,
    )
    test = heldout(ZOO_DATA, seed=recipe.data_seed)
    watch = test.images[:VERIFY_SIZE], test.labels[:VERIFY_SIZE]

    def watch_heldout(model: nn.Module, row: dict) -> None:
        row["heldout_acc"] = accuracy(model, *watch, device=dev)[0]

    torch.manual_seed(recipe.seed)
    model = build_zoo_model(name)
    history = fit(
        model,
        train.images,
        train.labels,
        recipe,
        device=dev,
        progress=progress,
        log_every=log_every,
        callback=watch_heldout,
    )
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    # The new weights go to a pending file first: the manifest never names a checkpoint
    # that is not (yet, or any more) on disk, so a kill at any point leaves a loadable model.
    file, pending = f"{name}.safetensors", f"{name}.pending.safetensors"
    sha = save_checkpoint(
        model, directory / pending, metadata={"name": name, "arch": ZOO_ARCHS[name]}
    )
    # measure the reloaded (float16) weights, exactly what users and the tests load
    from safetensors.torch import load_file

    reloaded = build_zoo_model(name)
    reloaded.load_state_dict({k: v.float() for k, v in load_file(str(directory / pending)).items()})
    acc, _ = accuracy(reloaded, test.images, test.labels, device="cpu")
    vacc, vcorrect = accuracy(
        reloaded, test.images[:VERIFY_SIZE], test.labels[:VERIFY_SIZE], device="cpu"
    )
    import timm

    entry = {
        "file": file,
        "sha256": sha,
        "bytes": (directory / pending).stat().st_size,
        "params": sum(p.numel() for p in model.parameters()),
        "family": ZOO_ARCHS[name]["family"],
        "arch": ZOO_ARCHS[name],
        "recipe": asdict(recipe),
        "data": {
            "dataset": "shapes",
            "config": ZOO_DATA.to_dict(),
            "seed": recipe.data_seed,
            "n_train": recipe.n_train,
        },
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
    _install_checkpoint(directory, name, entry, pending)
    load_model(name, zoo=directory)  # the hash check passes on what was just written
    return entry


def _install_checkpoint(directory: Path, name: str, entry: dict, pending: str) -> None:
    """Make ``pending`` the checkpoint ``entry["file"]`` of ``name``, safe against a kill.

    1. the manifest names ``pending`` (on disk, hash matching); 2. its bytes replace
    ``entry["file"]`` atomically; 3. the manifest names ``entry["file"]``; 4. ``pending`` goes.
    Between any two steps the manifest names a file whose sha256 it holds.
    """
    write_manifest_entry(directory, name, {**entry, "file": pending})
    _atomic_write_bytes(directory / entry["file"], (directory / pending).read_bytes())
    write_manifest_entry(directory, name, entry)
    (directory / pending).unlink()
