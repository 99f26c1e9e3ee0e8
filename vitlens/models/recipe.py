"""What decides a training run besides the architecture: :class:`Recipe`.

Kept apart from the training loop (:mod:`vitlens.training.loop`) so the registry
(:mod:`vitlens.models.zoo`) can name each model's recipe beside its architecture without
importing the trainer.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields, replace


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
        n_train: number of training images (``train`` split, indices ``0 .. n-1``).
        dataset: the synthetic dataset trained and measured on
            (:data:`vitlens.data.datasets.DATASETS`, default appearance).
        data_seed: seed of the dataset.
        seed: seed of initialisation, batch order and augmentation.
        objective: ``"supervised"`` (cross-entropy on the labels) or ``"masked"``
            (masked-patch prediction,
            :class:`vitlens.training.masked.MaskedPatchPretrainer`; labels unused).
        mask_ratio: fraction of patches masked per image (``"masked"`` only).
        crop_scale: random resized crops keeping ``crop_scale .. 1`` of the image area
            (aspect ratio 3/4 .. 4/3), resized back bilinearly; 1 disables.
        color_jitter: brightness, contrast and saturation each scaled by a random factor
            in ``1 ± color_jitter`` per image; 0 disables.
        mixup: Mixup's Beta(alpha, alpha) parameter; 0 disables.
        cutmix: CutMix's Beta(alpha, alpha) parameter; 0 disables (with both on, each
            batch uses one of them with probability 1/2, as timm's ``Mixup`` does).
        layer_decay: layer-wise learning-rate decay for ViTs and Mixers (BEiT/MAE
            fine-tuning): block ``i`` of ``depth`` gets ``lr * layer_decay ** (depth - i)``,
            the embeddings ``lr * layer_decay ** (depth + 1)``, the final norm and head
            ``lr``; 1 disables.
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
    dataset: str = "shapes"
    data_seed: int = 0
    seed: int = 0
    objective: str = "supervised"
    mask_ratio: float = 0.5
    crop_scale: float = 1.0
    color_jitter: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    layer_decay: float = 1.0


def _boolean(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """One optional ``--field-name`` per :class:`Recipe` field (booleans: true/false)."""
    for f in fields(Recipe):
        kind = _boolean if isinstance(f.default, bool) else type(f.default)
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=None)


def recipe_from_arguments(args: argparse.Namespace, base: Recipe | None = None) -> Recipe:
    """``base`` (default: :class:`Recipe`'s defaults) with the fields given on the command line."""
    given = {f.name: getattr(args, f.name) for f in fields(Recipe)}
    return replace(base or Recipe(), **{k: v for k, v in given.items() if v is not None})
