"""Wall time of each paper analysis on the zoo ViT (vit-cls) for 1,000 images on this CPU.

Model: ``load_model("vit-cls")`` when the zoo has a trained checkpoint, else the same
architecture randomly initialised (timm VisionTransformer, img_size 32, patch 4, width 128,
depth 8, 4 heads; the table says which). Images: 1,000 shapes test images (rendered before
timing). The first row, the plain forward pass, is the floor every analysis pays.
Every analysis runs once, after a warm-up on 40 images, with its default batch size
(``--batch-size`` overrides it for all).

Usage:
    python benchmarks/analyses_bench.py                 # 1,000 images, torch's threads
    python benchmarks/analyses_bench.py --threads 1 --images 256
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import torch

from vitlens.analyses.attention import head_subset_cka, mean_attention_distance
from vitlens.analyses.localization import localization_map
from vitlens.analyses.probes import dataset_labels, fewshot_linear_probe, pooled_features
from vitlens.analyses.receptive import effective_receptive_field
from vitlens.analyses.residual import residual_branches, residual_norm_ratios
from vitlens.analyses.training_similarity import layerwise_cka
from vitlens.data import ShapesDataset
from vitlens.models import build_zoo_model, load_model, read_manifest


def zoo_model(name: str) -> tuple[torch.nn.Module, str]:
    """The trained zoo model, or its architecture with random weights; and which one."""
    if name in read_manifest():
        return load_model(name), "trained"
    torch.manual_seed(0)
    return build_zoo_model(name), "random init"


def analyses(batch: dict) -> list[tuple[str, str, Callable]]:
    """``(name, workload, function(images, labels))`` of every analysis."""
    vit, _ = zoo_model("vit-cls")
    resnet, _ = zoo_model("resnet")
    trained_fraction = "vit-cls-data3" in read_manifest()
    other = zoo_model("vit-cls-data3")[0] if trained_fraction else copy.deepcopy(vit)
    sums = [b.name for b in residual_branches(vit)]

    def probe(images: torch.Tensor, labels: torch.Tensor) -> None:
        half = len(images) // 2
        train = pooled_features(vit, images[:half], pooling="first", progress=False, **batch)
        test = pooled_features(vit, images[half:], pooling="first", progress=False, **batch)
        for layer in train:
            shots = min(10, half // 20)  # 10-shot; fewer on the warm-up's 20 training images
            fewshot_linear_probe(
                train[layer], labels[:half], test[layer], labels[half:], shots=shots
            )

    def forward_only(images: torch.Tensor, _) -> None:
        with torch.inference_mode():
            for chunk in images.split(64):
                vit(chunk)

    return [
        ("forward pass only", "baseline: no hooks, batches of 64", forward_only),
        ("attention distance", "8 blocks x 4 heads", lambda x, _: mean_attention_distance(
            vit, x, progress=False, **batch)),
        ("head-subset CKA", "block 0 heads vs ResNet lower half", lambda x, _: head_subset_cka(
            vit, resnet, x, progress=False, **batch)),
        ("receptive field post", "8 block outputs", lambda x, _: effective_receptive_field(
            vit, x, progress=False, **batch)),
        ("receptive field pre", f"{len(sums)} residual branches", lambda x, _: (
            effective_receptive_field(vit, x, sums, branch="pre", progress=False, **batch))),
        ("skip norm ratios", f"{len(sums)} residual additions", lambda x, _: residual_norm_ratios(
            vit, x, progress=False, **batch)),
        ("localization", "blocks.4: 65 tokens x 64 patches", lambda x, _: localization_map(
            vit, x, "blocks.4", progress=False, **batch)),
        ("few-shot probes", "first token, 8 blocks, 5 seeds, 10-shot", probe),
        ("layerwise CKA", "8 blocks, two models", lambda x, _: layerwise_cka(
            other, vit, x, progress=False, **batch)),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--batch-size", type=int, default=None, help="override the defaults")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = ShapesDataset(args.images, split="test")
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    labels = dataset_labels(dataset)
    batch = {} if args.batch_size is None else {"batch_size": args.batch_size}
    _, weights = zoo_model("vit-cls")
    print(
        f"vit-cls ({weights}), {args.images} shapes images 32x32, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}"
    )
    print(f"{'analysis':<22}{'workload':<42}{'seconds':>9}{'images/s':>10}")
    for name, what, function in analyses(batch):
        function(images[:40], labels[:40])  # warm-up
        start = time.perf_counter()
        function(images, labels)
        seconds = time.perf_counter() - start
        print(f"{name:<22}{what:<42}{seconds:>9.2f}{args.images / seconds:>10.0f}", flush=True)


if __name__ == "__main__":
    main()
