"""Every paper analysis beside its floor, the work it cannot avoid, timed side by side in one run.

Models: the zoo's trained ``vit-cls`` (timm ViT, 32 px, patch 4, width 128, depth 8, 4 heads),
``resnet-local`` (the other model of head-subset CKA) and ``vit-cls-data3`` (the second model of
layer-wise CKA). Images: the first ``--images`` held-out shapes test images of the ViT's
data (``vitlens.data.heldout``), normalised; the receptive field uses the first
``--erf-images`` of them. Every analysis runs on the CPU with its default batch size; its
floor uses the same batches.

A *floor* is written out here with plain torch (no vitlens streaming, capture or CKA code;
``vitlens.models.resolve_layers`` only turns layer names into hook points) and does only
what the analysis's definition forces:

* attention distance: forward passes with timm's fused attention switched off in every
  block (so the softmax probabilities are materialised, as the analysis needs them), no
  hooks, no distance arithmetic.
* head-subset CKA, layer-wise CKA, CKA heatmap, localization: the forward passes with raw
  torch hooks that turn each needed activation ``X`` into its float32 Gram ``X @ X.T``
  (batched ``bmm`` over heads, tokens and patches), then, per batch, the one float64 matrix
  product of the stacked Grams (flattened ``(L, n*n) @ (n*n, L')``). No centring, no
  shift, no checks. Head-subset CKA also materialises block 0's attention, like the analysis.
* residual norm ratios: a forward pass written out block by block, with the per-token
  channel norms of ``z``, ``f(z)`` and ``z + f(z)`` and the dot product for the cosine, in
  float32, summed over images.
* probes: the forward pass reading the class token of every block, then one batched ridge
  solve (dual form, one L2 strength, every layer x seed at once, float64) and its test
  predictions. The analysis also standardises, tries 11 strengths and picks one on
  held-out examples.
* effective receptive field, per layer: the forward pass (with input gradients) up to the
  layer, then a plain python loop of ``torch.autograd.grad`` over the channels of the
  centre token, one backward per channel, on the same images. The analysis is timed on
  that one layer (``layers=[layer]``), so rows are per layer, for two layers, not all
  blocks.

Each round runs every row's analysis and floor back to back, rows in a rotating order and
the pair's order alternating (analysis first on even rounds, floor first on odd ones), so
both see the same background load; one untimed warm-up of each function on a slice first.
The table gives median wall seconds over the rounds and their ratio (analysis / floor);
the JSON also keeps every round and the process CPU seconds.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/analyses_bench.py --threads 1        # the results file
    python benchmarks/analyses_bench.py --images 512 --rounds 7
    python benchmarks/analyses_bench.py --threads 1 --profile localization   # why a ratio is high
    python benchmarks/analyses_bench.py --render     # notes and markdown again, from the JSON
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from vitlens.analyses.attention import head_subset_cka, mean_attention_distance
from vitlens.analyses.compare import cka_matrix
from vitlens.analyses.localization import localization_map
from vitlens.analyses.probes import fewshot_linear_probe, pooled_features
from vitlens.analyses.receptive import effective_receptive_field
from vitlens.analyses.residual import residual_norm_ratios
from vitlens.analyses.training_similarity import layerwise_cka
from vitlens.data import heldout, normalize_shapes
from vitlens.models import layer_names, load_model, model_info, read_manifest, resolve_layers
from vitlens.streaming import RunOptions

RESULTS = Path(__file__).parent / "results"
NOTE_ABOVE = 1.3
"""Rows whose ratio exceeds this get a note saying what the profiler found."""

NOTE_BELOW = 0.95
"""Rows under this ratio get a note too: the floor is then not a lower bound."""

NOTES = {
    # What ``--profile NAME`` (cProfile and torch.profiler, 256 images, 1 thread) showed; a
    # note is printed where the ratio is over NOTE_ABOVE or under NOTE_BELOW.
    "residual norm ratios": (
        "skip_statistics takes three sums over channels per residual addition (||z||^2, "
        "||f||^2, z . f, float32 as the activations) and combines them in float64; the "
        "rest is the clones of the 32 captured activations, which the floor does not make"
    ),
    "CKA heatmap": (
        "under the floor: the library's Gram (vitlens.core.cka._self_product) computes "
        "X X^T from three of its four row blocks, 3/4 of the FLOPs of the floor's plain "
        "X @ X.T (Gram mm 2.0 s of 4.9 s under cProfile)"
    ),
    "layer-wise CKA": (
        "same Gram code as the CKA heatmap (cka_matrix, 3/4-FLOP Gram), so at or under the "
        "floor; not profiled separately"
    ),
    "few-shot probes": (
        "the forward pass is the time (probe fits, eigh included, 0.14 s of 2.8 s under "
        "cProfile); the gap to the floor is noise"
    ),
    "receptive field blocks.0": (
        "on the CPU the analysis runs the floor's plain loop, one backward per channel "
        "(its batched backward, autograd.grad with is_grads_batched=True, took 1.3x to "
        "1.9x the loop's time here, so it is kept for GPUs); what is left is the capture "
        "hooks and accumulating each channel's map"
    ),
    "receptive field blocks.7": "the same plain loop as blocks.0, over 8 blocks",
}


@dataclass
class Row:
    """One analysis and its floor: two functions of no argument, timed alike."""

    name: str
    workload: str
    analysis: Callable[[], object]
    floor: Callable[[], object]
    floor_is: str
    warmup: Callable[[], object] | None = None
    times: dict[str, list[float]] = field(default_factory=lambda: {"analysis": [], "floor": []})
    cpu: dict[str, list[float]] = field(default_factory=lambda: {"analysis": [], "floor": []})


# --------------------------------------------------------------------------- floor helpers


@contextmanager
def hooked(model: nn.Module, names: list[str], fn: Callable[[str, torch.Tensor], None]):
    """Raw torch hooks calling ``fn(name, tensor)`` at each layer point (inputs: pre-hooks)."""
    modules = dict(model.named_modules())
    handles = []
    for point in resolve_layers(model, names):
        module = modules[point.module]
        if point.where == "input":
            hook = module.register_forward_pre_hook(lambda _m, a, n=point.name: fn(n, a[0]))
        else:
            hook = module.register_forward_hook(lambda _m, _a, out, n=point.name: fn(n, out))
        handles.append(hook)
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def unfused(model: nn.Module, blocks: list[int]) -> Iterator[None]:
    """timm's explicit attention (softmax probabilities materialised) on ``blocks``."""
    flags = [model.blocks[b].attn.fused_attn for b in blocks]
    for b in blocks:
        model.blocks[b].attn.fused_attn = False
    try:
        yield
    finally:
        for b, flag in zip(blocks, flags, strict=True):
            model.blocks[b].attn.fused_attn = flag


def gram(x: torch.Tensor) -> torch.Tensor:
    """``(n, ...)`` features to the float32 ``(n, n)`` Gram ``X X^T``."""
    x = x.reshape(x.shape[0], -1)
    return x @ x.T


def stacked_product(grams_a: list[torch.Tensor], grams_b: list[torch.Tensor]) -> torch.Tensor:
    """The one float64 product of flattened stacked Grams, ``(La, n*n) @ (n*n, Lb)``."""
    flat_a = torch.stack(grams_a).double().flatten(1)
    flat_b = flat_a if grams_b is grams_a else torch.stack(grams_b).double().flatten(1)
    return flat_a @ flat_b.T


def tokens_in(vit: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The ViT's token sequence before the first block."""
    return vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(images))))


def gram_forward_floor(
    models: list[nn.Module], layers: list[list[str]], images: torch.Tensor, batch_size: int
) -> list[torch.Tensor]:
    """Forward passes with a Gram hook per layer, then one stacked product per batch."""
    stores: list[dict[str, torch.Tensor]] = [{} for _ in models]
    products = []
    with ExitStack() as stack:
        stack.enter_context(torch.inference_mode())
        for model, names, store in zip(models, layers, stores, strict=True):
            keep = store.__setitem__
            stack.enter_context(hooked(model, names, lambda n, x, k=keep: k(n, gram(x))))
        for batch in images.split(batch_size):
            for model in models:
                model(batch)
            stacks = [[s[n] for n in names] for s, names in zip(stores, layers, strict=True)]
            products.append(stacked_product(stacks[0], stacks[-1]))
    return products


# --------------------------------------------------------------------------- the rows


def build_rows(images: torch.Tensor, labels: torch.Tensor, erf_images: torch.Tensor) -> list[Row]:
    vit = load_model("vit-cls").eval()
    resnet = load_model("resnet-local").eval()
    other = load_model("vit-cls-data3").eval()
    info = model_info(vit)
    depth, heads = len(vit.blocks), vit.blocks[0].attn.num_heads
    vit_blocks = layer_names(vit, "blocks")
    # on the CPU, each analysis with its default batch size: 64, CKA 256, receptive fields 16
    cpu = RunOptions(device="cpu", progress=False)
    cka_cpu, erf_cpu = cpu.with_batch_size(256), cpu.with_batch_size(16)
    rows = []

    # ---- attention distance (Figures 3, 4): batches of 64
    def attention_floor(x=images) -> None:
        with torch.inference_mode(), unfused(vit, list(range(depth))):
            for batch in x.split(64):
                vit(batch)

    rows.append(
        Row(
            "attention distance",
            f"{depth} blocks x {heads} heads, batch 64",
            lambda: mean_attention_distance(vit, images, run=cpu),
            attention_floor,
            "forward, fused attention off in every block, no hooks",
            lambda: (
                mean_attention_distance(vit, images[:64], run=cpu),
                attention_floor(images[:64]),
            ),
        )
    )

    # ---- head-subset CKA (Figure 5): block 0's heads vs the ResNet's lower half, batch 64
    resnet_half = layer_names(resnet, "blocks")[: len(layer_names(resnet, "blocks")) // 2]

    def head_subset_floor(x=images) -> list[torch.Tensor]:
        store: dict[str, torch.Tensor] = {}

        def head_grams(_name: str, out: torch.Tensor) -> None:
            n = out.shape[0]
            per_head = out.reshape(n, out.shape[1], heads, -1).permute(2, 0, 1, 3)
            per_head = per_head.reshape(heads, n, -1)
            store["heads"] = per_head @ per_head.transpose(1, 2)  # (heads, n, n)

        products = []
        with (
            torch.inference_mode(),
            unfused(vit, [0]),
            hooked(vit, ["blocks.0.attn.norm"], head_grams),
            hooked(resnet, resnet_half, lambda name, t: store.__setitem__(name, gram(t))),
        ):
            for batch in x.split(64):
                vit(batch)
                resnet(batch)
                products.append(
                    stacked_product(list(store["heads"]), [store[n] for n in resnet_half])
                )
        return products

    rows.append(
        Row(
            "head-subset CKA",
            f"block 0's {heads} heads x resnet {len(resnet_half)} blocks, batch 64",
            lambda: head_subset_cka(vit, resnet, images, run=cpu),
            head_subset_floor,
            "vit (block 0 unfused) + resnet forwards, float32 Grams, stacked product",
            lambda: (
                head_subset_cka(vit, resnet, images[:64], run=cpu),
                head_subset_floor(images[:64]),
            ),
        )
    )

    # ---- layer-wise CKA across two models (Figure 12): 8 block outputs, batch 256
    rows.append(
        Row(
            "layer-wise CKA",
            f"vit-cls-data3 vs vit-cls, {depth} blocks, batch 256",
            lambda: layerwise_cka(other, vit, images, run=cka_cpu),
            lambda: gram_forward_floor([other, vit], [vit_blocks, vit_blocks], images, 256),
            "two forwards, float32 Gram per layer, stacked product",
            lambda: (
                layerwise_cka(other, vit, images[:64], run=cka_cpu),
                gram_forward_floor([other, vit], [vit_blocks, vit_blocks], images[:64], 256),
            ),
        )
    )

    # ---- CKA heatmap (Figure 1): every layer of the ViT against itself, batch 256
    every = layer_names(vit)
    rows.append(
        Row(
            "CKA heatmap",
            f"vit-cls x itself, {len(every)} layers, batch 256",
            lambda: cka_matrix(vit, images, run=cka_cpu),
            lambda: gram_forward_floor([vit], [every], images, 256),
            "one forward, float32 Gram per layer, stacked product",
            lambda: (
                cka_matrix(vit, images[:64], run=cka_cpu),
                gram_forward_floor([vit], [every], images[:64], 256),
            ),
        )
    )

    # ---- localization (Figures 9, 10): blocks.4 tokens x input patches, batch 64
    side = info.patch_size

    def localization_floor(x=images) -> list[torch.Tensor]:
        store: dict[str, torch.Tensor] = {}
        products = []
        with (
            torch.inference_mode(),
            hooked(vit, ["blocks.4"], lambda name, t: store.__setitem__(name, t)),
        ):
            for batch in x.split(64):
                vit(batch)
                tokens = store["blocks.4"].transpose(0, 1)  # (T, n, C)
                patches = F.unfold(batch, kernel_size=side, stride=side).permute(2, 0, 1)
                token_grams = tokens @ tokens.transpose(1, 2)
                patch_grams = patches @ patches.transpose(1, 2)
                products.append(stacked_product(list(token_grams), list(patch_grams)))
        return products

    tokens = info.num_prefix_tokens + info.grid[0] * info.grid[1]
    rows.append(
        Row(
            "localization",
            f"blocks.4: {tokens} tokens x {info.grid[0] * info.grid[1]} patches, batch 64",
            lambda: localization_map(vit, images, "blocks.4", run=cpu),
            localization_floor,
            "forward, float32 token and patch Grams (bmm), stacked product",
            lambda: (
                localization_map(vit, images[:64], "blocks.4", run=cpu),
                localization_floor(images[:64]),
            ),
        )
    )

    # ---- residual norm ratios (Figure 7): 16 residual additions, batch 64
    def residual_floor(x=images) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        ratios: list[torch.Tensor] = []
        cosines: list[torch.Tensor] = []
        with torch.inference_mode():
            for batch in x.split(64):
                t = tokens_in(vit, batch)
                sums = []
                for blk in vit.blocks:
                    for branch in (
                        lambda z, b=blk: b.drop_path1(b.ls1(b.attn(b.norm1(z)))),
                        lambda z, b=blk: b.drop_path2(b.ls2(b.mlp(b.norm2(z)))),
                    ):
                        f = branch(t)
                        out = t + f
                        z_norm, out_norm = t.norm(dim=-1), out.norm(dim=-1)
                        ratio = (z_norm / f.norm(dim=-1)).sum(0)
                        cosine = ((t * out).sum(-1) / (z_norm * out_norm)).sum(0)
                        sums.append((ratio, cosine))
                        t = out
                vit.forward_head(vit.norm(t))
                ratios.append(torch.stack([r for r, _ in sums]))
                cosines.append(torch.stack([c for _, c in sums]))
        return ratios, cosines

    rows.append(
        Row(
            "residual norm ratios",
            f"{2 * depth} residual additions, batch 64",
            lambda: residual_norm_ratios(vit, images, run=cpu),
            residual_floor,
            "forward written block by block, float32 norms and dot products",
            lambda: (residual_norm_ratios(vit, images[:64], run=cpu), residual_floor(images[:64])),
        )
    )

    # ---- few-shot probes (Figures 11, 13): class token of 8 blocks, 5 seeds
    half = len(images) // 2
    per_class = torch.bincount(labels[:half])
    shots = int(min(10, per_class.min() // 2))  # shots + as many held out, per class
    classes = len(per_class)
    if shots < 1:
        raise SystemExit(f"--images {len(images)} leaves fewer than 2 images of some class")

    def probe(x=images, y=labels, k=shots) -> None:
        h = len(x) // 2
        train = pooled_features(vit, x[:h], pooling="first", run=cpu)
        test = pooled_features(vit, x[h:], pooling="first", run=cpu)
        for layer in train:
            fewshot_linear_probe(train[layer], y[:h], test[layer], y[h:], shots=k)

    def probe_floor(x=images, y=labels, k=shots) -> torch.Tensor:
        parts: dict[str, list[torch.Tensor]] = {n: [] for n in vit_blocks}
        with torch.inference_mode():
            with hooked(vit, vit_blocks, lambda n, t: parts[n].append(t[:, 0].clone())):
                for batch in x.split(64):
                    vit(batch)
        features = torch.stack([torch.cat(parts[n]) for n in vit_blocks]).double()  # (L, N, d)
        h = len(x) // 2
        generator = torch.Generator().manual_seed(0)
        fit = torch.stack([torch.randperm(h, generator=generator)[: k * classes] for _ in range(5)])
        xs = features[:, fit]  # (L, seeds, m, d)
        targets = 2.0 * F.one_hot(y[fit], classes).double() - 1  # (seeds, m, C)
        kernel = xs @ xs.transpose(-1, -2) + torch.eye(xs.shape[-2], dtype=torch.float64)
        weights = xs.transpose(-1, -2) @ torch.linalg.solve(kernel, targets)  # (L, seeds, d, C)
        return (features[:, None, h:] @ weights).argmax(-1)

    rows.append(
        Row(
            "few-shot probes",
            f"class token, {depth} blocks x 5 seeds, {shots}-shot, {classes} classes",
            probe,
            probe_floor,
            "forward reading class tokens, one batched ridge solve (1 L2) + test predictions",
            lambda: (
                probe(images[:128], labels[:128], 1),
                probe_floor(images[:128], labels[:128], 1),
            ),
        )
    )

    # ---- effective receptive field (Figure 6), per layer: 16 images, one batch
    centre = info.num_prefix_tokens + (info.grid[0] // 2) * info.grid[1] + info.grid[1] // 2

    def erf_floor(block: int, x: torch.Tensor = erf_images) -> torch.Tensor:
        x = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            t = tokens_in(vit, x)
            for blk in vit.blocks[: block + 1]:
                t = blk(t)
            features = t[:, centre]  # (n, C)
            total = torch.zeros(x.shape[0], *x.shape[-2:])
            for c in range(features.shape[1]):
                (grad,) = torch.autograd.grad(features[:, c].sum(), x, retain_graph=True)
                total += grad.abs().sum(1)
        return total / features.shape[1]

    for block in (0, depth - 1):
        layer = f"blocks.{block}"
        rows.append(
            Row(
                f"receptive field {layer}",
                f"{len(erf_images)} images, {vit.embed_dim} channels of the centre token",
                lambda layer=layer: effective_receptive_field(
                    vit, erf_images, [layer], run=erf_cpu
                ),
                lambda block=block: erf_floor(block),
                "forward to the layer, one autograd.grad per channel (python loop)",
                lambda layer=layer, block=block: (
                    effective_receptive_field(vit, erf_images[:4], [layer], run=erf_cpu),
                    erf_floor(block, erf_images[:4]),
                ),
            )
        )
    return rows


# --------------------------------------------------------------------------- timing


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(rows: list[Row], rounds: int) -> None:
    """Rotating order of rows each round; within a row, analysis and floor alternate first."""
    for row in rows:
        if row.warmup is not None:
            row.warmup()
    for r in range(rounds):
        start = time.perf_counter()
        shift = r % len(rows)
        for row in rows[shift:] + rows[:shift]:
            kinds = ["analysis", "floor"] if r % 2 == 0 else ["floor", "analysis"]
            for kind in kinds:
                wall, cpu = timed(getattr(row, kind))
                row.times[kind].append(wall)
                row.cpu[kind].append(cpu)
        print(f"round {r + 1}/{rounds}: {time.perf_counter() - start:.1f} s", flush=True)


def note_for(name: str, ratio: float) -> str:
    """The profiler's note where the ratio is over NOTE_ABOVE or under NOTE_BELOW."""
    if NOTE_BELOW <= ratio <= NOTE_ABOVE:
        return ""
    return NOTES.get(name, "not investigated")


def summary(row: Row) -> dict:
    analysis = statistics.median(row.times["analysis"])
    floor = statistics.median(row.times["floor"])
    ratio = analysis / floor
    cpu_ratio = statistics.median(row.cpu["analysis"]) / statistics.median(row.cpu["floor"])
    return {
        "analysis": row.name,
        "workload": row.workload,
        "floor_is": row.floor_is,
        "analysis_s": analysis,
        "floor_s": floor,
        "ratio": ratio,
        "cpu_ratio": cpu_ratio,
        "note": note_for(row.name, ratio),
        "analysis_rounds_s": row.times["analysis"],
        "floor_rounds_s": row.times["floor"],
        "analysis_cpu_s": row.cpu["analysis"],
        "floor_cpu_s": row.cpu["floor"],
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def table(results: list[dict]) -> str:
    lines = [
        "| analysis | workload | analysis s | floor s | ratio | floor is | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['analysis']} | {r['workload']} | {r['analysis_s']:.2f} | {r['floor_s']:.2f} | "
            f"{r['ratio']:.2f} | {r['floor_is']} | {r['note']} |"
        )
    return "\n".join(lines)


def profile(rows: list[Row], name: str) -> None:
    """cProfile and torch.profiler of one analysis (after a warm-up), top entries."""
    (row,) = [r for r in rows if r.name == name]
    row.analysis()
    profiler = cProfile.Profile()
    profiler.runcall(row.analysis)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
    print(out.getvalue())
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        row.analysis()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    print(f"floor: {timed(row.floor)[0]:.2f} s, analysis: {timed(row.analysis)[0]:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="images for every analysis")
    parser.add_argument("--erf-images", type=int, default=16, help="images for receptive fields")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (medians)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--profile", metavar="ANALYSIS", help="profile one row's analysis")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    parser.add_argument(
        "--conditions", default="", help="what else ran on the machine, for the markdown file"
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="only rewrite the notes and the markdown from --out's JSON (after profiling)",
    )
    args = parser.parse_args()
    json_path, md_path = args.out / "analyses_bench.json", args.out / "analyses_bench.md"
    if args.render:
        record = json.loads(json_path.read_text())
        for row in record["rows"]:
            row["note"] = note_for(row["analysis"], row["ratio"])
        json_path.write_text(json.dumps(record, indent=1) + "\n")
        md_path.write_text(markdown(record))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    data = read_manifest()["vit-cls"]["data"]
    sample = heldout(data, n=max(args.images, args.erf_images))
    images = normalize_shapes(sample.images)
    labels = torch.as_tensor(sample.labels).long()
    rows = build_rows(images[: args.images], labels[: args.images], images[: args.erf_images])
    if args.profile:
        profile(rows, args.profile)
        return
    machine = (
        f"{cpu_model()} ({os.cpu_count()} cores), {torch.get_num_threads()} torch thread(s), "
        f"torch {torch.__version__}, python {platform.python_version()}"
    )
    print(f"{machine}; {args.images} shapes test images, {args.rounds} rounds", flush=True)
    start = time.perf_counter()
    measure(rows, args.rounds)
    results = [summary(row) for row in rows]
    total = time.perf_counter() - start
    print(table(results))
    args.out.mkdir(parents=True, exist_ok=True)
    threads = os.environ.get("OMP_NUM_THREADS")
    record = {
        "command": (f"OMP_NUM_THREADS={threads} " if threads else "")
        + shlex.join(["python", *sys.argv]),
        "config": {
            "images": args.images,
            "erf_images": args.erf_images,
            "rounds": args.rounds,
            "threads": torch.get_num_threads(),
        },
        "machine": machine,
        "conditions": args.conditions,
        "total_s": total,
        "rows": results,
    }
    json_path.write_text(json.dumps(record, indent=1) + "\n")
    md_path.write_text(markdown(record))


def markdown(record: dict) -> str:
    config = record["config"]
    profiled = [f"- **{name}**: {note}." for name, note in NOTES.items()]
    lines = [
        "# Every analysis beside its floor",
        "",
        f"Command: `{record['command']}`",
        "",
        f"Machine: {record['machine']}.",
        *([f"Conditions: {record['conditions']}."] if record.get("conditions") else []),
        "",
        f"{config['images']} shapes test images ({config['erf_images']} for the receptive "
        "fields), zoo models vit-cls, resnet-local, vit-cls-data3; median wall seconds of "
        f"{config['rounds']} interleaved rounds (analysis and floor back to back, order "
        f"rotating); ratio = analysis / floor. Whole run: {record['total_s']:.0f} s. What each "
        "floor does: the docstring of `benchmarks/analyses_bench.py`. Notes where the ratio "
        f"is over {NOTE_ABOVE} or under {NOTE_BELOW}.",
        "",
        table(record["rows"]),
        "",
        "What `--profile NAME` showed (cProfile and torch.profiler, whatever the ratio):",
        "",
        *profiled,
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
