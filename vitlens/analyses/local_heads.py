"""Where local attention heads come from: the zoo's controlled study (an extension of
the paper's Section 5).

The paper observes that a ViT trained on enough data mixes local and global heads in its
lower blocks (Fig. 3) and that the local heads resemble a CNN's lower layers (Fig. 5). The
zoo's supervised ViTs have no local head. This module tabulates, for a set of zoo models
that differ one training factor at a time, what each factor did: held-out accuracy, every
head's attention distance relative to uniform attention
(:func:`vitlens.analyses.attention.relative_attention_distance`), the number of local heads and
the compute spent, read from each model's manifest entry.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vitlens.analyses.attention import (
    LOCAL_THRESHOLD,
    count_local_heads,
    relative_attention_distance,
)
from vitlens.data import heldout, normalize_shapes
from vitlens.models import load_model, read_manifest, zoo_dir
from vitlens.streaming import RunOptions

__all__ = [
    "FACTORS",
    "STUDY_MODELS",
    "StudyRow",
    "describe_training",
    "factor_effects",
    "lowest_local_block",
    "study_images",
    "study_markdown",
    "study_runs",
    "study_runs_path",
    "study_table",
]

STUDY_MODELS: tuple[str, ...] = (
    "vit-cls-data3",
    "vit-cls-data10",
    "vit-cls-data30",
    "vit-cls",
    "vit-mim-sup",
    "vit-mim",
)
"""Zoo models of the study, in the order the table lists them."""

FACTORS: tuple[tuple[str, str, str], ...] = (
    ("training images (900 -> 30,000)", "vit-cls-data3", "vit-cls"),
    ("first-stage objective (supervised -> masked patches)", "vit-mim-sup", "vit-mim"),
    ("training length (600 -> 2,400 steps)", "sup-600", "vit-cls"),
    ("augmentation (flips and shifts -> strong)", "sup-600", "sup-600-strong"),
)
"""``(factor, base, changed)``: pairs of study models or runs that differ in one factor.

``sup-600`` and ``sup-600-strong`` are runs recorded by ``scripts/sweep_local_heads.py``
(:func:`study_runs`): ``vit-cls``'s recipe cut to 600 steps, the second with random
resized crops (scale 0.35-1), colour jitter 0.4, Mixup 0.8 and CutMix 1.0; ``vit-cls``
is the 4x-length run of that 600-step base. A pair whose models are missing is skipped."""


def _augmentation(recipe: dict) -> str:
    parts = []
    if recipe.get("flip"):
        parts.append("flips")
    if recipe.get("shift"):
        parts.append(f"{recipe['shift']} px shifts")
    if recipe.get("crop_scale", 1.0) < 1:
        parts.append(f"resized crops ({recipe['crop_scale']:.2f}-1)")
    if recipe.get("color_jitter", 0):
        parts.append(f"colour jitter {recipe['color_jitter']}")
    if recipe.get("mixup", 0):
        parts.append(f"Mixup {recipe['mixup']}")
    if recipe.get("cutmix", 0):
        parts.append(f"CutMix {recipe['cutmix']}")
    return ", ".join(parts) or "none"


def describe_training(entry: dict) -> dict:
    """Objective, steps, augmentation and data of a manifest entry, in words.

    Returns:
        ``{"objective", "steps", "augmentation", "train_images"}``; a two-stage entry
        (``entry["pretrain"]``) reads e.g. ``"masked 900 + supervised 400"``.
    """
    recipe = entry["recipe"]
    stages = [entry["pretrain"]["recipe"]] if "pretrain" in entry else []
    stages.append(recipe)

    def stage_words(r: dict) -> str:
        name = r.get("objective", "supervised")
        extra = f", layer decay {r['layer_decay']}" if r.get("layer_decay", 1.0) != 1.0 else ""
        return f"{name} {r['steps']:,}{extra}"

    return {
        "objective": " + ".join(stage_words(r) for r in stages),
        "steps": sum(r["steps"] for r in stages),
        "augmentation": _augmentation(recipe),
        "train_images": entry["data"]["n_train"],
    }


@dataclass
class StudyRow:
    """One model of the study.

    Attributes:
        name: zoo name.
        objective: training stages in words (:func:`describe_training`).
        steps: optimiser steps, all stages.
        augmentation: the supervised stage's augmentation in words.
        train_images: shapes training images.
        accuracy: held-out accuracy from the manifest (2,048 ``test`` images).
        cpu_minutes: training CPU time from the manifest (``None`` where not recorded).
        wall_minutes: training wall time from the manifest.
        relative: ``(blocks, heads)`` attention distance relative to uniform attention.
        local_lower_half: local heads in blocks ``0 .. depth // 2 - 1``.
        pretrain_relative: the same after the first stage, for two-stage models.
    """

    name: str
    objective: str
    steps: int
    augmentation: str
    train_images: int
    accuracy: float
    cpu_minutes: float | None
    wall_minutes: float
    relative: torch.Tensor
    local_lower_half: int
    pretrain_relative: torch.Tensor | None = field(default=None, repr=False)

    def local_in(self, blocks: Sequence[int]) -> int:
        """Local heads among ``blocks``."""
        return count_local_heads(self.relative, blocks=blocks)


def study_table(
    images: torch.Tensor,
    names: Sequence[str] = STUDY_MODELS,
    *,
    zoo: str | Path | None = None,
    run: RunOptions = RunOptions(batch_size=128, progress=False),
) -> list[StudyRow]:
    """Measure every model of the study on the same held-out ``images``.

    Args:
        images: ``(n, 3, 32, 32)`` preprocessed shapes images.
        names: zoo models (default :data:`STUDY_MODELS`).
        zoo: zoo folder (the shipped one if ``None``).
        run: batch size, device, progress (:class:`~vitlens.streaming.RunOptions`).
    """
    manifest = read_manifest(zoo)
    rows = []
    for name in names:
        entry = manifest.get(name)
        if entry is None:
            raise FileNotFoundError(f"zoo model {name!r} is not trained (vitlens zoo train {name})")
        model = load_model(name, zoo=zoo)
        rel = relative_attention_distance(model, images, run=run)
        pre = entry.get("pretrain", {}).get("attention")
        cpu = entry.get("train_cpu_s")
        rows.append(
            StudyRow(
                name=name,
                **describe_training(entry),
                accuracy=entry["heldout"]["accuracy"],
                cpu_minutes=None if cpu is None else cpu / 60,
                wall_minutes=entry["train_time_s"] / 60,
                relative=rel,
                local_lower_half=count_local_heads(rel, blocks=range(rel.shape[0] // 2)),
                pretrain_relative=None
                if pre is None
                else torch.tensor(pre["relative_distance"], dtype=torch.float64),
            )
        )
    return rows


def lowest_local_block(relative: torch.Tensor, threshold: float = LOCAL_THRESHOLD) -> int | None:
    """The lowest block with a local head, or ``None`` if no block has one."""
    counts = [
        count_local_heads(relative, blocks=[b], threshold=threshold) for b in range(len(relative))
    ]
    return next((b for b, k in enumerate(counts) if k > 0), None)


def factor_effects(
    rows: Sequence[StudyRow], factors: Sequence[tuple[str, str, str]] = FACTORS
) -> list[dict]:
    """For each one-factor pair, the change in local heads (lower half) and in accuracy.

    Returns:
        One dict per factor whose two models are in ``rows``: ``factor``, ``base``,
        ``changed``, ``local_base``, ``local_changed``, ``accuracy_base``,
        ``accuracy_changed``, ``mattered`` (the lower half's local-head count changed).
    """
    by_name = {row.name: row for row in rows}
    effects = []
    for factor, base, changed in factors:
        if base not in by_name or changed not in by_name:
            continue
        a, b = by_name[base], by_name[changed]
        effects.append(
            {
                "factor": factor,
                "base": base,
                "changed": changed,
                "local_base": a.local_lower_half,
                "local_changed": b.local_lower_half,
                "accuracy_base": a.accuracy,
                "accuracy_changed": b.accuracy,
                "mattered": a.local_lower_half != b.local_lower_half,
            }
        )
    return effects


def study_markdown(rows: Sequence[StudyRow], blocks: Sequence[int] = (0, 1)) -> str:
    """The study as a Markdown table (the zoo README's and the chapter's)."""
    head = (
        "| model | objective (steps) | augmentation | train images | held-out | "
        + " | ".join(f"block {b} (x uniform)" for b in blocks)
        + " | local heads, lower half | CPU min |"
    )
    rule = "|---|---|---|--:|--:|" + "---|" * len(blocks) + "--:|--:|"
    lines = [head, rule]
    for r in rows:
        dist = " | ".join(" ".join(f"{float(v):.2f}" for v in r.relative[b]) for b in blocks)
        cpu = "n/a" if r.cpu_minutes is None else f"{r.cpu_minutes:.1f}"
        lines.append(
            f"| `{r.name}` | {r.objective} | {r.augmentation} | {r.train_images:,} | "
            f"{100 * r.accuracy:.1f} % | {dist} | {r.local_lower_half} | {cpu} |"
        )
    return "\n".join(lines)


def study_images(n: int = 256) -> torch.Tensor:
    """The first ``n`` held-out shapes images, preprocessed: what the study measures on.

    The same images as the manifest's ``attention`` entries (``test`` split, data seed 0).
    """
    return normalize_shapes(heldout(n=n).images)


def study_runs_path(path: str | Path | None = None) -> Path:
    """``path``, or the shipped ``study_runs.json`` in the zoo folder if ``None``."""
    return Path(path) if path is not None else zoo_dir() / "study_runs.json"


def study_runs(path: str | Path | None = None) -> list[StudyRow]:
    """The study's recorded runs that are not zoo models, as table rows.

    Their distances are those recorded at training time (the study's held-out images,
    :func:`study_images`), not re-measured: their weights are not shipped.
    """
    path = study_runs_path(path)
    if not path.exists():
        return []
    rows = []
    for run in json.loads(path.read_text())["runs"]:
        *first, last = run["stages"]
        entry = {"recipe": last["recipe"], "data": run["data"]}
        if first:
            entry["pretrain"] = first[0]
        rel = torch.tensor(run["attention"]["relative_distance"], dtype=torch.float64)
        rows.append(
            StudyRow(
                name=run["name"],
                **describe_training(entry),
                accuracy=run["heldout"]["accuracy"],
                cpu_minutes=run["train_cpu_s"] / 60,
                wall_minutes=run["train_time_s"] / 60,
                relative=rel,
                local_lower_half=count_local_heads(rel, blocks=range(rel.shape[0] // 2)),
            )
        )
    return rows
