"""The training loop that produced the zoo, reproducible from a recipe.

:func:`fit` trains any classifier on in-memory uint8 images with AdamW, linear warm-up then
cosine decay, optional label smoothing, random flips and shifts, mixed precision on CUDA
only, and a fixed seed. :func:`train_zoo_model` renders a zoo model's training set (the
dataset its recipe names), trains it by its :data:`vitlens.models.zoo.ZOO_RECIPES` entry
(optionally with another seed), writes the safetensors checkpoint atomically
and records the manifest entry (architecture, recipe, data, accuracies, sha256, wall time,
device).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vitlens.data import SHAPES_MEAN, SHAPES_STD, ShapesConfig, normalize_shapes
from vitlens.data.datasets import dataset_config, render_dataset
from vitlens.models import (
    ZOO_ARCHS,
    build_zoo_model,
    load_model,
    model_info,
    read_manifest,
    sha256_file,
    zoo_dir,
)
from vitlens.models.recipe import Recipe
from vitlens.models.zoo import (
    MANIFEST_FORMAT,
    ZOO_FINETUNE_FROM,
    ZOO_PRETRAIN,
    ZOO_RECIPES,
    ZOO_SWEEPS,
    CorruptCheckpointError,
    zoo_key,
)
from vitlens.streaming import resolve_device

HELDOUT_SIZE = 2048
"""Held-out images (shapes ``test`` split, indices ``0 ..``) behind the manifest accuracy."""

VERIFY_SIZE = 512
"""The first images of the held-out set that ``vitlens zoo verify`` and the tests re-measure."""


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
    """Random flips and shifts of a float ``(n, 3, S, S)`` batch (same shape out).

    Then, where the recipe asks, random resized crops and colour jitter (in that order).
    Mixup/CutMix mix labels too and live in :func:`mix_batch`.
    """
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
    if recipe.crop_scale < 1:
        images = random_resized_crop(images, recipe.crop_scale, generator)
    if recipe.color_jitter:
        images = color_jitter(images, recipe.color_jitter, generator)
    return images


def _layer_decay_groups(model: nn.Module, weight_decay: float, lr: float, decay: float):
    """AdamW groups for a timm ViT with layer-wise learning rates (see ``Recipe.layer_decay``)."""
    if model_info(model).family != "vit":
        raise ValueError("layer_decay applies to ViTs only")
    depth = len(model.blocks)
    skip = set(getattr(model, "no_weight_decay", set)())
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("blocks."):
            layer = int(name.split(".")[1]) + 1
        elif name.startswith(("patch_embed", "cls_token", "pos_embed", "reg_token")):
            layer = 0
        else:
            layer = depth + 1
        no_decay = p.ndim <= 1 or name in skip
        group = groups.setdefault(
            (layer, no_decay),
            {
                "params": [],
                "weight_decay": 0.0 if no_decay else weight_decay,
                "lr": lr * decay ** (depth + 1 - layer),
            },
        )
        group["params"].append(p)
    return [groups[k] for k in sorted(groups)]


def random_resized_crop(images: Tensor, min_scale: float, generator: torch.Generator) -> Tensor:
    """Random crops of ``min_scale .. 1`` of the area (aspect 3/4 .. 4/3), resized back.

    ``(n, C, S, S) -> (n, C, S, S)``, bilinear (``grid_sample``), one crop per image.
    """
    n = images.shape[0]
    area = min_scale + (1 - min_scale) * torch.rand(n, generator=generator)
    log_ratio = math.log(3 / 4) + math.log(16 / 9) * torch.rand(n, generator=generator)
    ratio = log_ratio.exp()
    w = (area * ratio).sqrt().clamp(max=1.0)
    h = (area / ratio).sqrt().clamp(max=1.0)
    tx = (1 - w) * (2 * torch.rand(n, generator=generator) - 1)
    ty = (1 - h) * (2 * torch.rand(n, generator=generator) - 1)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w, tx, h, ty
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(
        images, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )


def color_jitter(images: Tensor, strength: float, generator: torch.Generator) -> Tensor:
    """Brightness, contrast and saturation jitter of normalised shapes images (same shape).

    Each factor is drawn per image from ``1 ± strength``; the jitter acts on [0, 1] pixels
    (undoing the shapes normalisation), clamps to [0, 1] and normalises back.
    """
    n = images.shape[0]
    mean = torch.tensor(SHAPES_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(SHAPES_STD).view(1, 3, 1, 1)
    x = images * std + mean
    b, c, s = (1 + strength * (2 * torch.rand(3, n, 1, 1, 1, generator=generator) - 1)).unbind(0)
    x = x * b
    gray = x.mean(1, keepdim=True)
    x = (x - gray.mean((2, 3), keepdim=True)) * c + gray.mean((2, 3), keepdim=True)
    gray = x.mean(1, keepdim=True)
    x = gray + (x - gray) * s
    return (x.clamp(0, 1) - mean) / std


def mix_batch(
    images: Tensor, recipe: Recipe, generator: torch.Generator
) -> tuple[Tensor, Tensor, float]:
    """Mixup or CutMix of a batch with its reverse (timm's batch mode).

    Returns:
        ``(mixed images, partner index (n,), lam)``: the loss is ``lam * CE(y) +
        (1 - lam) * CE(y[partner])``; for CutMix ``lam`` is the kept area fraction.
    """
    import numpy as np

    n, _, h, w = images.shape
    rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=generator)))
    partner = torch.arange(n - 1, -1, -1)
    use_cutmix = recipe.cutmix > 0 and (recipe.mixup <= 0 or rng.random() < 0.5)
    if not use_cutmix:
        lam = float(rng.beta(recipe.mixup, recipe.mixup))
        return lam * images + (1 - lam) * images[partner], partner, lam
    lam = float(rng.beta(recipe.cutmix, recipe.cutmix))
    cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    mixed = images.clone()
    mixed[:, :, y0:y1, x0:x1] = images[partner][:, :, y0:y1, x0:x1]
    return mixed, partner, 1 - (y1 - y0) * (x1 - x0) / (h * w)


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """``(n, C, H, W) -> (n, patches, patch_size**2 * C)``, patches row-major like timm's."""
    n, c, _, _ = images.shape
    p = patch_size
    x = images.unfold(2, p, p).unfold(3, p, p)  # (n, C, gh, gw, p, p)
    return x.permute(0, 2, 3, 4, 5, 1).reshape(n, -1, p * p * c)


class MaskedPatchPretrainer(nn.Module):
    """Masked-patch prediction around a timm ViT, in the manner of SimMIM.

    A fraction of each image's patch embeddings is replaced by a learned mask token before
    the position embeddings; the encoder runs on all tokens (class token included); a
    linear decoder maps each output patch token to the pixels of its patch, and the loss is
    the L1 error on the masked patches' pixels, each patch normalised to zero mean and unit
    variance (MAE's normalised-pixel target). The wrapped ViT is trained in place; the mask
    token and decoder are discarded after pretraining.

    Args:
        vit: a timm ``VisionTransformer``.
        mask_ratio: fraction of patches masked per image (exactly ``round(ratio * P)``).
        seed: seed of the mask token's and decoder's initialisation.
    """

    def __init__(self, vit: nn.Module, mask_ratio: float = 0.5, *, seed: int = 0) -> None:
        super().__init__()
        info = model_info(vit)
        if info.family != "vit":
            raise ValueError("masked-patch pretraining applies to ViTs only")
        if not 0 < mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.vit, self.mask_ratio = vit, mask_ratio
        self.patch_size, self.num_patches = info.patch_size, info.grid[0] * info.grid[1]
        self.num_prefix_tokens = info.num_prefix_tokens
        dim = vit.embed_dim
        g = torch.Generator().manual_seed(seed)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.decoder = nn.Linear(dim, self.patch_size**2 * 3)
        with torch.no_grad():
            nn.init.trunc_normal_(self.mask_token, std=0.02, generator=g)
            nn.init.trunc_normal_(self.decoder.weight, std=0.02, generator=g)
            self.decoder.bias.zero_()

    def no_weight_decay(self) -> set[str]:
        """Parameter names AdamW leaves undecayed (the ViT's plus the mask token)."""
        inner = getattr(self.vit, "no_weight_decay", set)()
        return {f"vit.{name}" for name in inner} | {"mask_token"}

    def random_mask(self, n: int, generator: torch.Generator) -> Tensor:
        """Boolean ``(n, patches)``: exactly ``round(mask_ratio * patches)`` True per row."""
        k = round(self.mask_ratio * self.num_patches)
        ranks = torch.rand(n, self.num_patches, generator=generator).argsort(1).argsort(1)
        return ranks < k

    def forward(self, images: Tensor, mask: Tensor) -> Tensor:
        """Mean L1 loss on the masked patches: ``images`` ``(n, 3, H, W)``, ``mask`` ``(n, P)``."""
        vit = self.vit
        x = vit.patch_embed(images)
        x = torch.where(mask[..., None], self.mask_token.to(x.dtype), x)
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(x)))
        x = vit.norm(vit.blocks(x))
        pred = self.decoder(x[:, self.num_prefix_tokens :]).float()
        target = patchify(images.float(), self.patch_size)
        target = (target - target.mean(-1, keepdim=True)) / (
            target.var(-1, keepdim=True) + 1e-6
        ).sqrt()
        per_patch = (pred - target).abs().mean(-1)
        return (per_patch * mask).sum() / mask.sum().clamp(min=1)


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
    if recipe.objective not in ("supervised", "masked"):
        raise ValueError(f"unknown objective {recipe.objective!r}; use 'supervised' or 'masked'")
    masked = recipe.objective == "masked"
    trainee = MaskedPatchPretrainer(model, recipe.mask_ratio, seed=recipe.seed) if masked else model
    trainee.train().to(dev)
    generator = torch.Generator().manual_seed(recipe.seed)
    if recipe.layer_decay != 1:
        groups = _layer_decay_groups(model, recipe.weight_decay, recipe.lr, recipe.layer_decay)
        if masked:
            groups.append({"params": [trainee.mask_token], "weight_decay": 0.0, "lr": recipe.lr})
            groups.append({"params": list(trainee.decoder.parameters()), "lr": recipe.lr})
    else:
        groups = _param_groups(trainee, recipe.weight_decay)
    opt = torch.optim.AdamW(groups, lr=recipe.lr, betas=(0.9, 0.999))
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
        x = augment(normalize_shapes(images[idx]), recipe, generator)
        y = labels[idx]
        partner, lam = None, 1.0
        mask = trainee.random_mask(len(y), generator).to(dev) if masked else None
        if not masked and (recipe.mixup > 0 or recipe.cutmix > 0):
            x, partner, lam = mix_batch(x, recipe, generator)
        x, y = x.to(dev), y.to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            if masked:
                logits, loss = None, trainee(x, mask)
            else:
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
                if partner is not None:
                    other = F.cross_entropy(
                        logits.float(), y[partner.to(dev)], label_smoothing=recipe.label_smoothing
                    )
                    loss = lam * loss + (1 - lam) * other
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.grad_clip:
            nn.utils.clip_grad_norm_(trainee.parameters(), recipe.grad_clip)
        opt.step()
        sched.step()
        loss_sum += float(loss.detach()) * len(y)
        if logits is not None:
            hits += int((logits.argmax(-1) == y).sum())
        seen += len(y)
        if (step + 1) % log_every == 0 or step + 1 == recipe.steps:
            row = {
                "step": step + 1,
                "lr": max(group["lr"] for group in opt.param_groups),
                "loss": loss_sum / seen,
                "train_acc": None if masked else hits / seen,
            }
            if callback is not None:
                callback(model, row)
                trainee.train()
            history.append(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['train_acc'] or 0:.3f}")
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


def remove_manifest_entry(directory: str | Path, name: str) -> None:
    """Remove ``name`` from ``directory/manifest.json`` (atomically, under the folder's lock)."""
    directory = Path(directory)
    with _locked(directory):
        models = read_manifest(directory)
        models.pop(name, None)
        manifest = {"format": MANIFEST_FORMAT, "models": models}
        _atomic_write_bytes(
            directory / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode()
        )


ZOO_DATA = ShapesConfig()
"""Shapes appearance of the zoo models trained on shapes (``Recipe.dataset == "shapes"``)."""


def data_record(recipe: Recipe) -> dict:
    """The manifest's ``data`` record of a recipe: dataset, its config, seed, training images."""
    return {
        "dataset": recipe.dataset,
        "config": dataset_config(recipe.dataset).to_dict(),
        "seed": recipe.data_seed,
        "n_train": recipe.n_train,
    }


def heldout(data: dict | None = None, *, n: int = HELDOUT_SIZE):
    """The held-out sample (``test`` split, indices ``0 .. n-1``) as a ShapesBatch.

    Args:
        data: a manifest ``data`` record (:func:`data_record`); ``None``: the default shapes.
        n: number of images.
    """
    data = data or {"dataset": "shapes", "config": ZOO_DATA.to_dict(), "seed": 0}
    return render_dataset(
        data.get("dataset", "shapes"),
        range(n),
        split="test",
        seed=data["seed"],
        config=data["config"],
    )


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
    from vitlens.analyses.attention import (
        LOCAL_THRESHOLD,
        count_local_heads,
        relative_attention_distance,
    )

    was_training = model.training
    rel = relative_attention_distance(
        model, normalize_shapes(images[:n]), device="cpu", progress=False
    )
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
            :data:`VERIFY_SIZE` held-out images, ``heldout_acc``).

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
        row["heldout_acc"] = accuracy(model, *watch, device=dev)[0]

    def watch_locality(model: nn.Module, row: dict) -> None:
        """Two-stage models also log their lower half's local heads along the way."""
        if row.get("train_acc") is not None:
            watch_heldout(model, row)
        summary = attention_summary(model, test.images)
        row["local_heads_lower_half"] = summary["local_heads_lower_half"]
        row["local_heads_per_block"] = summary["local_heads_per_block"]
        model.to(dev)

    two_stage = pretrain is not None and ZOO_ARCHS[name]["family"] == "vit"

    torch.manual_seed((pretrain or recipe).seed)
    model = build_zoo_model(name)
    init_from = _init_from_zoo_model(model, name, directory)
    first = None
    cached = _cached_stage(pretrain_cache, name, pretrain, init_from) if pretrain else None
    if cached is not None:
        model.load_state_dict(cached[0])
        first = {**cached[1], "reused": True}
    elif pretrain is not None:
        t0, c0 = time.perf_counter(), time.process_time()
        stage = fit(
            model,
            train.images[: pretrain.n_train],
            train.labels[: pretrain.n_train],
            pretrain,
            device=dev,
            progress=progress,
            log_every=log_every,
            callback=watch_locality if two_stage else watch_heldout,
        )
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
            _store_stage(pretrain_cache, name, pretrain, init_from, model, first)
    history = fit(
        model,
        train.images[: recipe.n_train],
        train.labels[: recipe.n_train],
        recipe,
        device=dev,
        progress=progress,
        log_every=log_every,
        callback=watch_locality if two_stage else watch_heldout,
    )
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    # The new weights go to a pending file first: the manifest never names a checkpoint
    # that is not (yet, or any more) on disk, so a kill at any point leaves a loadable model.
    file, pending = f"{key}.safetensors", f"{key}.pending.safetensors"
    sha = save_checkpoint(
        model, directory / pending, metadata={"name": key, "arch": ZOO_ARCHS[name]}
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
    _install_checkpoint(directory, key, entry, pending)
    load_model(key, zoo=directory)  # the hash check passes on what was just written
    return entry


def _stage_path(cache: str | Path, name: str, pretrain: Recipe, init_from: dict | None) -> Path:
    """Where a first stage is cached: a hash of everything that decides its weights."""
    facts = {"arch": ZOO_ARCHS[name], "pretrain": asdict(pretrain), "init_from": init_from}
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:24]
    return Path(cache) / f"{digest}.safetensors"


def _cached_stage(
    cache: str | Path | None, name: str, pretrain: Recipe, init_from: dict | None
) -> tuple[dict, dict] | None:
    """``(state dict, stage record)`` of a cached first stage, or ``None`` if not cached.

    Raises:
        CorruptCheckpointError: a cached stage whose weights differ from its recorded sha256.
    """
    if cache is None:
        return None
    path = _stage_path(cache, name, pretrain, init_from)
    if not path.exists():
        return None
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    state = load_file(str(path))
    if _state_digest(state) != json.loads(meta["sha256"]):
        raise CorruptCheckpointError(
            f"cached first stage {path} does not match its recorded sha256; delete it"
        )
    return state, json.loads(meta["record"])


def _state_digest(state: dict[str, Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].contiguous().numpy().tobytes())
    return digest.hexdigest()


def _store_stage(
    cache: str | Path, name: str, pretrain: Recipe, init_from: dict | None, model, record: dict
) -> None:
    """Cache a finished first stage in float32, atomically, with its record and sha256."""
    from safetensors.torch import save

    state = {
        k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()
    }
    meta = {"record": json.dumps(record), "sha256": json.dumps(_state_digest(state))}
    _atomic_write_bytes(_stage_path(cache, name, pretrain, init_from), save(state, metadata=meta))


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
    with _locked(path.parent):
        runs = json.loads(path.read_text()) if path.exists() else {}
        runs[label] = {"sweep_recipe": run["recipe"], **entry}
        _atomic_write_bytes(
            path, (json.dumps(dict(sorted(runs.items())), indent=2) + "\n").encode()
        )
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
