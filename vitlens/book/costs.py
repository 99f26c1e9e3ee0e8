"""What a chapter costs on the ``paper`` profile: GPU time and memory, from a CPU dry run.

``scripts/paper_dry_run.py`` runs every chapter on the paper profile's architectures with
random weights on a few images (a CPU, no network) and keeps a record
(``benchmarks/results/paper_dry_run.json``): per chapter, its wall and CPU seconds and the
kernel's peak resident memory, and, per model it loaded, how many images went forward
through the model and how many backward (an input gradient of ``k`` channels over ``n``
images counts ``k * n``); per model, what :func:`model_cost` measures (parameters, forward
FLOPs of one image, activation memory of one forward pass). This module turns that record
into the teacher's guide's estimates at the profile's own image counts:

* **Passes.** A chapter's pass over images the profile draws at its ``num_images`` (or at a
  number computed from it, e.g. half of it) scales with ``num_images``: at the profile's
  count it is the dry run's count times ``num_images / images``, with ``images`` the dry
  run's ``num_images``. A pass over a number of images the chapter fixes itself (256 in
  chapter 2b, 1,024 probe images, 16 images for receptive fields) is as counted. The dry
  run tells the two apart by the number the images were drawn with (see its ``SETUP``).
* **GPU time** (seconds) = sum over models of ``forward FLOPs per image x (forward images
  + 2 x backward images)`` / the reference GPU's sustained FLOP/s (:data:`T4`). A backward
  pass costs about twice a forward one (a gradient for each operand of each product); the
  receptive fields' backward passes start at the tapped layer, not at the output, so this
  bounds them from above. Only the models' passes count: data loading, the analyses' own
  arithmetic (Gram matrices, bootstraps, probes) and Python are left out.
* **GPU memory** (bytes) = the CUDA context (:data:`CUDA_CONTEXT_BYTES`) + the 32-bit
  weights of every model the chapter loads (they stay on the GPU) + the largest activation
  memory of one batch: a model's ``fixed + per_image x batch`` from :func:`model_cost`,
  with the autograd graph (and the receptive fields' budget for batched gradients) where
  the chapter takes gradients. The batch is the profile's ``batch_size`` where the chapter
  runs at the profile's batch size, else the largest batch the chapter fixes itself (as
  the dry run saw it, or as asked for where the images scale).
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from vitlens.analyses.receptive import DEFAULT_MAX_MEMORY
from vitlens.book.profiles import PROFILES, Profile
from vitlens.models import ZOO_ARCHS, build_zoo_model, parameter_count
from vitlens.models.zoo import SEED_TAG

__all__ = [
    "BACKWARD_FACTOR",
    "CUDA_CONTEXT_BYTES",
    "T4",
    "ChapterEstimate",
    "ReferenceGPU",
    "assumptions",
    "chapter_label",
    "cost_table",
    "estimate",
    "forward_cost",
    "is_zoo_model",
    "model_cost",
    "passes_at",
]

BACKWARD_FACTOR = 2.0
"""FLOPs of a backward pass per FLOP of the forward pass it differentiates."""

CUDA_CONTEXT_BYTES = 0.5e9
"""Bytes a CUDA context and PyTorch's kernels take on the GPU before any tensor (about
0.3-0.5 GB, by driver and GPU)."""


@dataclass(frozen=True)
class ReferenceGPU:
    """The GPU the estimates are stated for.

    Attributes:
        name: the GPU in words.
        peak_flops: its peak 32-bit floating-point throughput, FLOP/s.
        efficiency: the fraction of the peak a whole forward or backward pass sustains.
        memory_bytes: its memory, bytes.
    """

    name: str
    peak_flops: float
    efficiency: float
    memory_bytes: float

    def __post_init__(self) -> None:
        if not 0 < self.efficiency <= 1:
            raise ValueError(f"efficiency is a fraction of the peak, in (0, 1]: {self.efficiency}")
        if self.peak_flops <= 0 or self.memory_bytes <= 0:
            raise ValueError("peak_flops and memory_bytes must be positive")

    @property
    def sustained_flops(self) -> float:
        """The FLOP/s the estimates assume, ``peak_flops x efficiency``."""
        return self.peak_flops * self.efficiency


T4 = ReferenceGPU(
    name="NVIDIA T4 (Colab's free GPU)",
    peak_flops=8.1e12,
    efficiency=0.4,
    memory_bytes=16e9,
)
"""The reference GPU, a T4, 8.1 TFLOP/s at fp32 (it has no TF32), of which a whole pass
through a model sustains an assumed 40 %; 16 GB."""


# --------------------------------------------------------- measured on PyTorch's meta device


class _Allocation:
    """Stands for one tensor's memory, freed when no tensor using it (it, or a view of it)
    is left."""


class _LiveBytes(TorchDispatchMode):
    """Bytes of the tensors that PyTorch operations created and that are still alive, and
    their peak. A view, or the result of an in-place operation, shares its input's memory:
    it is not counted again, but keeps that memory alive."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._held: dict[int, _Allocation] = {}  # id(tensor) -> the memory it uses

    def _free(self, size: int) -> None:
        self.live -= size

    def _hold(self, tensor: torch.Tensor, allocation: _Allocation) -> None:
        if id(tensor) not in self._held:
            self._held[id(tensor)] = allocation
            weakref.finalize(tensor, self._held.pop, id(tensor), None)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if any(ret.alias_info is not None for ret in func._schema.returns):
            inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
            shared = next((self._held[id(t)] for t in inputs if id(t) in self._held), None)
            if shared is not None:
                for tensor in outputs:
                    self._hold(tensor, shared)
            return out
        for tensor in outputs:
            size = tensor.numel() * tensor.element_size()
            allocation = _Allocation()
            weakref.finalize(allocation, self._free, size)
            self.live += size
            self.peak = max(self.peak, self.live)
            self._hold(tensor, allocation)
        return out


def _peak_bytes(model: nn.Module, images: torch.Tensor, gradients: bool) -> int:
    """Peak bytes of the tensors one forward pass creates (with its autograd graph, kept
    until the pass's end, when ``gradients``)."""
    images = images.detach().requires_grad_(gradients)
    mode = _LiveBytes()
    context = torch.enable_grad() if gradients else torch.inference_mode()
    with context, mode:
        out = model(images)
        peak = mode.peak
    del out
    return peak


def forward_cost(model: nn.Module, input_size: tuple[int, int, int]) -> dict[str, Any]:
    """FLOPs and activation memory of ``model``'s forward pass, per image.

    Run on whatever device the model is on; on PyTorch's ``meta`` device it computes
    nothing and costs no memory.

    Args:
        model: any module taking an ``(n, C, H, W)`` batch.
        input_size: ``(C, H, W)`` of one image.

    Returns:
        ``{"forward_flops": ..., "activation_bytes": {"inference": ..., "gradients": ...}}``:
        the FLOPs of one image (a multiply-add counts 2), and the peak bytes of the tensors
        a forward pass creates, each ``{"fixed": bytes, "per_image": bytes}`` (``fixed +
        per_image x n`` for ``n`` images, fitted at 1 and 8 images), without gradients
        (inference mode) and with the autograd graph of a gradient with respect to the
        input. The weights are not included.
    """
    device = next(model.parameters()).device
    model = model.eval()
    one = torch.zeros(1, *input_size, device=device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(one)
    activations = {}
    for key, gradients in (("inference", False), ("gradients", True)):
        small, large = (
            _peak_bytes(model, torch.zeros(n, *input_size, device=device), gradients)
            for n in (1, 8)
        )
        per_image = (large - small) / 7
        activations[key] = {"fixed": max(0.0, small - per_image), "per_image": per_image}
    return {"forward_flops": float(counter.get_total_flops()), "activation_bytes": activations}


def is_zoo_model(name: str) -> bool:
    """Whether ``name`` is one of the zoo's models (shipped with vitlens: nothing to
    download), ``"vit-cls"`` or ``"vit-cls.seed1"``, rather than a timm model."""
    return name.partition(SEED_TAG)[0] in ZOO_ARCHS


def model_cost(name: str) -> dict[str, Any]:
    """What one image costs through the model ``name``, measured on the meta device.

    A timm model is built with the head its weights come with (``.augreg_in21k``: the
    ImageNet-21k classifier), a zoo model (:func:`is_zoo_model`) as the zoo builds it, on
    PyTorch's ``meta`` device (no memory, no network). Attention is computed explicitly
    (timm's fused kernel off), as the attention analyses run it, which bounds the fused
    kernel's memory from above.

    Returns:
        :func:`forward_cost`'s record, with ``"parameters"`` (count) and ``"input_size"``
        (``[C, H, W]``).
    """
    import timm

    with torch.device("meta"):
        if is_zoo_model(name):
            model = build_zoo_model(name.partition(SEED_TAG)[0])
        else:
            model = timm.create_model(name, pretrained=False)
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = False
    input_size = tuple(model.pretrained_cfg["input_size"])
    return {
        "parameters": parameter_count(model),
        "input_size": list(input_size),
        **forward_cost(model, input_size),
    }


# ------------------------------------------------------------------- from the record


def _chapter(record: Mapping[str, Any], chapter: str) -> Mapping[str, Any]:
    chapters = record.get("chapters", {})
    if chapter not in chapters:
        raise ValueError(
            f"the dry run's record has no chapter {chapter!r}; recorded: "
            f"{', '.join(sorted(chapters)) or 'none'}. Run: python scripts/paper_dry_run.py "
            f"notebooks/{chapter}"
        )
    entry = chapters[chapter]
    if entry.get("error"):
        raise ValueError(f"the dry run of {chapter} failed, so it has no cost: {entry['error']}")
    return entry


def _model(record: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    models = record.get("models", {})
    if name not in models:
        raise ValueError(f"the dry run's record has no cost of model {name!r} (model_cost)")
    return models[name]


def passes_at(record: Mapping[str, Any], chapter: str, num_images: int) -> dict[str, dict]:
    """Each model's image passes in ``chapter`` when the profile draws ``num_images``.

    Returns:
        ``{model name: {"forward": images, "backward": images}}``: each is the dry run's
        fixed count plus its per-image count times ``num_images / images`` (the dry run's
        ``num_images``); a float, since the scaled part need not be whole.
    """
    if num_images < 1:
        raise ValueError(f"num_images must be positive, got {num_images}")
    entry = _chapter(record, chapter)
    scale = num_images / entry["images"]
    return {
        name: {
            direction: counts[direction]["fixed"] + counts[direction]["per_image"] * scale
            for direction in ("forward", "backward")
        }
        for name, counts in entry["passes"].items()
    }


@dataclass(frozen=True)
class ChapterEstimate:
    """A chapter's cost on a profile, estimated from the dry run (see the module).

    Attributes:
        chapter: the notebook's file name.
        num_images: the profile's images per analysis the estimate is for.
        passes: ``{model: {"forward": images, "backward": images}}`` at ``num_images``.
        flops: FLOPs of all those passes.
        gpu_seconds: ``flops`` over the reference GPU's sustained FLOP/s.
        weights_bytes: 32-bit weights of every model the chapter loads.
        activation_bytes: the largest activation memory of one batch.
        gpu_bytes: CUDA context + weights + activations.
    """

    chapter: str
    num_images: int
    passes: dict[str, dict[str, float]]
    flops: float
    gpu_seconds: float
    weights_bytes: float
    activation_bytes: float
    gpu_bytes: float


def _largest_activations(
    record: Mapping[str, Any], name: str, counts: Mapping[str, Any], batch_size: int
) -> float:
    """One model's largest activation bytes over the chapter's batches (see the module):
    forward passes without gradients, or with their graph where the chapter takes them."""
    cost = _model(record, name)["activation_bytes"]
    largest = 0.0
    for direction, key in (("forward", "inference"), ("backward", "gradients")):
        done, batches = counts[direction], counts["batch"][direction]
        if not done["per_image"] and not done["fixed"]:
            continue
        batch = max(batch_size if batches["profile"] else 0, batches["chapter"])
        extra = DEFAULT_MAX_MEMORY if direction == "backward" else 0
        largest = max(largest, cost[key]["fixed"] + cost[key]["per_image"] * batch + extra)
    return largest


def estimate(
    record: Mapping[str, Any],
    chapter: str,
    profile: Profile | None = None,
    gpu: ReferenceGPU = T4,
) -> ChapterEstimate:
    """``chapter``'s GPU time and memory on ``profile`` (default ``paper``), from ``record``.

    Args:
        record: the dry run's record (``benchmarks/results/paper_dry_run.json``).
        chapter: a notebook's file name, e.g. ``"03_local_global.ipynb"``.
        profile: its ``num_images`` scales the passes, its ``batch_size`` the activations.
        gpu: the GPU whose sustained throughput turns FLOPs into seconds.

    Raises:
        ValueError: the record lacks the chapter (or a model's cost), or its dry run failed.
    """
    profile = PROFILES["paper"] if profile is None else profile
    passes = passes_at(record, chapter, profile.num_images)
    counts = _chapter(record, chapter)["passes"]
    flops = weights = activations = 0.0
    for name, done in passes.items():
        cost = _model(record, name)
        flops += cost["forward_flops"] * (done["forward"] + BACKWARD_FACTOR * done["backward"])
        weights += 4 * cost["parameters"] * counts[name]["loaded"]
        activations = max(
            activations, _largest_activations(record, name, counts[name], profile.batch_size)
        )
    return ChapterEstimate(
        chapter=chapter,
        num_images=profile.num_images,
        passes=passes,
        flops=flops,
        gpu_seconds=flops / gpu.sustained_flops,
        weights_bytes=weights,
        activation_bytes=activations,
        gpu_bytes=CUDA_CONTEXT_BYTES + weights + activations,
    )


# ------------------------------------------------------------------- the guide's tables

SHORT_NAMES = {
    "vit_base_patch16_224.augreg_in21k": "ViT-B/16",
    "vit_base_patch16_224.augreg_in1k": "ViT-B/16 (ImageNet-1k)",
    "vit_medium_patch16_gap_240.sw_in12k": "ViT-M/16 GAP",
    "vit_base_patch32_224.augreg_in21k": "ViT-B/32",
    "vit_large_patch16_224.augreg_in21k": "ViT-L/16",
    "vit_huge_patch14_224.orig_in21k": "ViT-H/14",
    "resnetv2_50x1_bit.goog_in21k": "BiT-R50x1",
    "resnetv2_152x2_bit.goog_in21k": "BiT-R152x2",
    "mixer_b16_224.goog_in21k": "Mixer-B/16",
}
"""The paper's models in the guide's words (a timm name not listed is shown as is)."""


DATASET_NAMES = {"cifar10": "CIFAR-10 (0.17 GB)", "imagenette": "Imagenette (0.35 GB)"}
"""Downloaded datasets by their :func:`vitlens.data.sources.load_images` names, in the
guide's words, with their download size."""


def chapter_label(chapter: str) -> str:
    """``"03b_local_heads.ipynb"`` -> ``"3b"``: the chapter's number as the book shows it."""
    match = re.match(r"0*(\d+[a-z]?)_", chapter)
    if match is None:
        raise ValueError(f"{chapter!r} is not a chapter's file name (NN_name.ipynb)")
    return match.group(1)


def _why_not(profile: Profile, role: str) -> str:
    """Why ``profile`` has no model for ``role``: the first clause of its reason."""
    reason = profile.missing.get(role) or f"no model for role {role!r}"
    return re.split(r" \(|; ", reason)[0]


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    minutes = seconds / 60
    return f"{minutes:.1f} min" if minutes < 10 else f"{round(minutes)} min"


def _gb(size: float) -> str:
    return f"{size / 1e9:.1f} GB"


def _count(images: float) -> str:
    return f"{math.ceil(images):,}"


def _reduced_channels(chapters: Mapping[str, Any]) -> str:
    """The dry run's receptive fields in words, where it sampled fewer channels than the
    chapters do (its times are then those of the fewer channels)."""
    runs = {entry.get("erf_channels_run") for entry in chapters.values()} - {None}
    if not runs:
        return ""
    return (
        f". Where a chapter samples more channels of a layer for a receptive field, the dry "
        f"run sampled {', '.join(map(str, sorted(runs)))} and counted each backward pass as "
        "the chapter's many (its times are those of the fewer channels)"
    )


def assumptions(profile: Profile | None = None, gpu: ReferenceGPU = T4) -> str:
    """How :func:`estimate` turns the dry run into GPU time and memory, in words (Markdown
    bullets), every number taken from the constants it uses."""
    profile = PROFILES["paper"] if profile is None else profile
    return (
        f"* **Images.** A pass over the images the profile draws for an analysis (its "
        f"{profile.num_images:,}, or a number computed from it) is scaled from the dry run's "
        "count to the profile's; a pass over a number of images the chapter fixes itself is "
        "as counted.\n"
        "* **GPU time** = the FLOPs of the models' passes (each model's forward FLOPs per "
        "image, counted by PyTorch's `FlopCounterMode`; a backward pass counted as "
        f"{BACKWARD_FACTOR:g} forward ones, an upper bound for the receptive fields, whose "
        f"backward passes start at the layer they read) / the throughput of an {gpu.name}: "
        f"{gpu.peak_flops / 1e12:.1f} TFLOP/s at fp32, of which an assumed "
        f"{gpu.efficiency:.0%} is sustained, {gpu.sustained_flops / 1e12:.1f} TFLOP/s. "
        "Reading and decoding images, the analyses' own arithmetic and Python are not "
        "counted.\n"
        f"* **GPU memory** = {CUDA_CONTEXT_BYTES / 1e9:.1f} GB for the CUDA context + the "
        "32-bit weights of every model the chapter loads (they stay on the GPU) + the "
        "largest activations of one batch, measured per image on PyTorch's meta device with "
        f"attention computed explicitly: at the profile's batch of {profile.batch_size} "
        "images, or at the chapter's own batch of the images whose gradients it takes, then "
        f"with the autograd graph and the {DEFAULT_MAX_MEMORY / 2**20:.0f} MiB budget of the "
        "batched gradients.\n"
    )


def cost_table(
    record: Mapping[str, Any],
    profile: Profile | None = None,
    gpu: ReferenceGPU = T4,
    *,
    book: Sequence[str] = (),
) -> str:
    """The teacher's guide's cost section, Markdown, every number computed from ``record``.

    The :func:`assumptions`, then two tables: what a chapter downloads and its estimated
    GPU memory and time on ``profile`` (default ``paper``) on ``gpu``; and what the dry
    run measured on the CPU (seconds, peak memory, image passes at its own image count
    and at the profile's). A chapter whose dry run failed is shown failed, and a chapter of
    ``book`` (the notebooks' file names) the record lacks is shown not yet measured, with
    the command that measures it: none is left out.
    """
    profile = PROFILES["paper"] if profile is None else profile
    models, chapters = record["models"], dict(record["chapters"])
    for chapter in book:
        chapters.setdefault(chapter, {"missing": True})
    short = gpu.name.split(" (")[0]
    download = (
        "| chapter | paper models | weights (download) | GPU memory (est.) "
        f"| {short.split()[-1]} time (est.) |\n"
        "|---|---|---|---|---|\n"
    )
    dry = (
        "| chapter | images | wall, CPU time | peak memory (CPU) "
        f"| image passes forward / backward | at {profile.num_images:,} images |\n"
        "|---|---|---|---|---|---|\n"
    )
    everything: set[str] = set()
    untestable: list[str] = []
    unmeasured: list[str] = []
    for chapter in sorted(chapters):
        entry, label = chapters[chapter], chapter_label(chapter)
        if entry.get("missing"):
            unmeasured.append(chapter)
            download += f"| {label} | not yet measured (below) | - | - | - |\n"
            dry += f"| {label} | not yet measured | - | - | - | - |\n"
            continue
        order = list(SHORT_NAMES)
        names = sorted(
            entry.get("passes", {}),
            key=lambda n: (order.index(n) if n in order else len(order), n),
        )
        downloaded = [name for name in names if not is_zoo_model(name)]
        everything |= set(downloaded)
        shown = ", ".join(SHORT_NAMES.get(name, name) for name in downloaded)
        zoo = len(names) - len(downloaded)
        if zoo:
            shown += f"; {zoo} of the zoo's models (shipped, no download)"
        datasets = [d for d in entry.get("datasets", []) if d != profile.image_source]
        if datasets:
            shown += "; " + ", ".join(DATASET_NAMES.get(d, d) for d in datasets)
        missing = "; ".join(
            dict.fromkeys(_why_not(profile, role) for role in entry.get("not_testable", []))
        )
        if missing:
            untestable.append(f"* chapter {label}: {missing}")
        if entry.get("error"):
            download += f"| {label} | {shown} | - | failed | failed: {entry['error']} |\n"
            dry += f"| {label} | {entry['images']} | failed | - | - | - |\n"
            continue
        cost = estimate(record, chapter, profile, gpu)
        weights = sum(4 * models[name]["parameters"] for name in downloaded)
        memory = _gb(cost.gpu_bytes)
        if cost.gpu_bytes > gpu.memory_bytes:
            memory += f" (over the {short}'s {_gb(gpu.memory_bytes)})"
        download += (
            f"| {label} | {shown} | {_gb(weights)} | {memory} | {_duration(cost.gpu_seconds)} |\n"
        )
        counted = entry["passes"].values()
        forward = sum(c["forward"]["fixed"] + c["forward"]["per_image"] for c in counted)
        backward = sum(c["backward"]["fixed"] + c["backward"]["per_image"] for c in counted)
        scaled_forward = sum(p["forward"] for p in cost.passes.values())
        scaled_backward = sum(p["backward"] for p in cost.passes.values())
        dry += (
            f"| {label} | {entry['images']} | {_duration(entry['wall_seconds'])}, "
            f"{_duration(entry['cpu_seconds'])} | {entry['peak_mib'] / 1024:.1f} GiB "
            f"| {_count(forward)} / {_count(backward)} "
            f"| {_count(scaled_forward)} / {_count(scaled_backward)} |\n"
        )
    total = sum(4 * models[name]["parameters"] for name in everything)
    machine = record.get("machine", {})
    return (
        "<!-- Written by scripts/paper_dry_run.py from benchmarks/results/paper_dry_run.json "
        "(vitlens.book.costs.cost_table); do not edit. -->\n\n"
        + assumptions(profile, gpu)
        + "\n"
        + download
        + (
            "\nNot yet measured: "
            + ", ".join(f"chapter {chapter_label(c)}" for c in unmeasured)
            + "; `python scripts/paper_dry_run.py "
            + " ".join(f"notebooks/{c}" for c in unmeasured)
            + ("` measures it.\n" if len(unmeasured) == 1 else "` measures them.\n")
            if unmeasured
            else ""
        )
        + f"\nAll {'measured ' if unmeasured else ''}chapters together download {_gb(total)} "
        "of weights (each model once).\n\n"
        + (
            'What this profile cannot test (its premise left "not testable here"):\n\n'
            + "\n".join(untestable)
            + "\n\n"
            if untestable
            else ""
        )
        + "What the dry run measured, per chapter: the images per analysis it ran with, its "
        f"wall and CPU time and the kernel's peak memory on the CPU ({machine.get('cores', '?')} "
        f"cores, {machine.get('threads', '?')} thread per chapter"
        + (f"; {machine['note']}" if machine.get("note") else "")
        + "), "
        "and the images that went forward through a model and backward to the input, "
        "summed over the chapter's models, as counted and at the profile's images"
        + _reduced_channels(chapters)
        + ":\n\n"
        + dry
    )
