"""The training loop that produced the zoo: :func:`fit` trains any classifier on in-memory
uint8 images with AdamW, linear warm-up then cosine decay, optional label smoothing and
layer-wise learning-rate decay, the augmentations of :mod:`vitlens.training.augment`, an
optional masked-patch objective (:mod:`vitlens.training.masked`), mixed precision on CUDA
only, and a fixed seed; :func:`accuracy` measures a classifier on uint8 images."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from vitlens.data import normalize_shapes
from vitlens.models import model_info
from vitlens.models.recipe import Recipe
from vitlens.streaming import resolve_device
from vitlens.training.augment import augment, mix_batch
from vitlens.training.masked import MaskedPatchPretrainer


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


EMBEDDING_PARAMETERS = {
    "vit": ("patch_embed", "cls_token", "pos_embed", "reg_token"),
    "mixer": ("stem",),
}
"""Per family, the parameters below the first block (layer 0 of layer-wise decay)."""


def layer_decay_groups(model: nn.Module, weight_decay: float, lr: float, decay: float):
    """AdamW groups with layer-wise learning rates (see ``Recipe.layer_decay``) for a timm
    ViT or MLP-Mixer: the embedding (layer 0) at ``lr * decay ** (depth + 1)``, block ``i`` at
    ``lr * decay ** (depth - i)``, the final norm and head at ``lr``."""
    family = model_info(model).family
    if family not in EMBEDDING_PARAMETERS:
        raise ValueError(
            f"layer_decay applies to {' and '.join(EMBEDDING_PARAMETERS)} models (a stack of "
            f"blocks), not to a {family}"
        )
    depth = len(model.blocks)
    skip = set(getattr(model, "no_weight_decay", set)())
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("blocks."):
            layer = int(name.split(".")[1]) + 1
        elif name.startswith(EMBEDDING_PARAMETERS[family]):
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
    caller seeds the initialisation, see :func:`~vitlens.training.zoo.train_zoo_model`).
    Mixed precision (bf16 autocast) is used on CUDA only.

    Returns:
        One dict per ``log_every`` steps and the last step: ``step``, ``lr``,
        ``loss`` (mean over the interval) and ``train_acc`` (same interval, augmented).
        ``callback(model, row)`` runs on each row before it is logged and may add to it
        (e.g. a held-out accuracy); the model is put back in train mode after it.
    """
    dev = resolve_device(device)
    if recipe.objective not in ("supervised", "masked"):
        raise ValueError(f"unknown objective {recipe.objective!r}; use 'supervised' or 'masked'")
    masked = recipe.objective == "masked"
    trainee = MaskedPatchPretrainer(model, recipe.mask_ratio, seed=recipe.seed) if masked else model
    trainee.train().to(dev)
    generator = torch.Generator().manual_seed(recipe.seed)
    if recipe.layer_decay != 1:
        groups = layer_decay_groups(model, recipe.weight_decay, recipe.lr, recipe.layer_decay)
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
