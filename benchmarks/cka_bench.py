"""Full CKA heatmaps with vitlens, pytorch-cka and torch-cka, side by side in one run.

Workload: a depth-8 ViT (width 128, patch 4 on 32 px; 48 layers) against itself, and
against a BiT-style ResNetV2 (33 layers), on random 32x32 images in minibatches of 256.
Every contender runs in its own subprocess (so peak memory is its own), interleaved with
the others, ``--repeats`` times. Each matrix is compared with a float64 reference computed
here from Song et al.'s three-term unbiased HSIC formula on the same float32 features cast
to float64 (no library's output is taken as the truth).

The floor is what the arithmetic must cost: the forward pass alone (timed here, no hooks)
plus the Gram matrices' FLOPs (2 n^2 d per layer and batch) at this machine's float32
matmul rate, measured here on a Gram of the same shape.

Usage:
    python benchmarks/cka_bench.py                      # the table in the closing note
    python benchmarks/cka_bench.py --images 1024 --repeats 1 --quick
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SEED = 0
THREADS = 2
PAIRS = ("vit-vit", "vit-resnet")


# --------------------------------------------------------------------------- workload


def build_models() -> dict[str, torch.nn.Module]:
    from timm.models.resnetv2 import ResNetV2
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(SEED)
    vit = VisionTransformer(
        img_size=32, patch_size=4, embed_dim=128, depth=8, num_heads=4, num_classes=10
    )
    resnet = ResNetV2(
        layers=(6, 8, 12, 6),
        channels=(128, 128, 256, 256),
        stem_chs=32,
        stem_type="fixed",
        num_classes=10,
    )
    return {"vit": vit.eval(), "resnet": resnet.eval()}


def bench_layers(name: str, model: torch.nn.Module) -> list[str]:
    """Module paths only, so every library can hook them."""
    if name == "vit":
        per_block = ["norm1", "attn", "norm2", "mlp.act", "mlp", ""]
        return [f"blocks.{i}.{p}".rstrip(".") for i in range(len(model.blocks)) for p in per_block]
    return ["stem"] + [
        f"stages.{s}.blocks.{b}"
        for s, stage in enumerate(model.stages)
        for b in range(len(stage.blocks))
    ]


def make_images(n: int) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(SEED))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# --------------------------------------------------------------------------- contenders


def run_vitlens(a, b, layers_a, layers_b, images, batch_size):
    from vitlens import cka_matrix
    from vitlens.streaming import RunOptions

    result = cka_matrix(
        a,
        images,
        None if b is a else b,
        layers_a=layers_a,
        layers_b=layers_b,
        run=RunOptions(batch_size=batch_size, device="cpu", progress=False),
    )
    return result.matrix


def run_pytorch_cka(a, b, layers_a, layers_b, images, batch_size):
    from cka import compute_cka
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(images), batch_size=batch_size)
    (matrix,) = compute_cka(
        a, b, loader, layers=layers_a, model2_layers=layers_b, device="cpu", progress=False
    )
    return matrix.double().numpy()


def run_torch_cka(a, b, layers_a, layers_b, images, batch_size):
    from torch.utils.data import DataLoader, TensorDataset
    from torch_cka import CKA

    loader = DataLoader(TensorDataset(images), batch_size=batch_size)
    cka = CKA(
        a,
        b,
        model1_name="A",
        model2_name="B",
        model1_layers=layers_a,
        model2_layers=layers_b,
        device="cpu",
    )
    with torch.no_grad():  # torch-cka does not disable autograd itself
        cka.compare(loader)
    # torch-cka's rows and columns follow the order in which its hooks fire (a block's hook
    # fires after its children's), not its own layer list; reorder to the requested order.
    fired_a, fired_b = list(cka.model1_features), list(cka.model2_features)
    order_a = [fired_a.index(n) for n in layers_a]
    order_b = [fired_b.index(n) for n in layers_b]
    return cka.hsic_matrix.double().numpy()[np.ix_(order_a, order_b)]


CONTENDERS = {"vitlens": run_vitlens, "pytorch-cka": run_pytorch_cka, "torch-cka": run_torch_cka}


# --------------------------------------------------------------------------- reference and floor


def capture_batches(model, layers, images, batch_size):
    from vitlens import run_with_cache

    for batch in images.split(batch_size):
        yield [
            f.reshape(len(batch), -1).double()
            for f in run_with_cache(model, batch, layers).values()
        ]


def song_hsic_all_pairs(grams_x: torch.Tensor, grams_y: torch.Tensor) -> torch.Tensor:
    """Song et al. (2012) Eq. 5 for every pair of (Lx, n, n) and (Ly, n, n) Grams, float64."""
    n = grams_x.shape[-1]
    kx, ly = grams_x.clone(), grams_y.clone()
    torch.diagonal(kx, dim1=-2, dim2=-1).zero_()
    torch.diagonal(ly, dim1=-2, dim2=-1).zero_()
    term1 = torch.einsum("aij,bij->ab", kx, ly)
    sum_x, sum_y = kx.sum(dim=(1, 2)), ly.sum(dim=(1, 2))
    term2 = torch.outer(sum_x, sum_y) / ((n - 1) * (n - 2))
    term3 = 2 / (n - 2) * kx.sum(dim=1) @ ly.sum(dim=1).T
    return (term1 + term2 - term3) / (n * (n - 3))


def reference(a, b, layers_a, layers_b, images, batch_size) -> np.ndarray:
    cross = self_a = self_b = 0.0
    for feats_a, feats_b in zip(
        capture_batches(a, layers_a, images, batch_size),
        capture_batches(b, layers_b, images, batch_size),
        strict=True,
    ):
        grams_a = torch.stack([f @ f.T for f in feats_a])
        grams_b = torch.stack([f @ f.T for f in feats_b])
        cross = cross + song_hsic_all_pairs(grams_a, grams_b)
        self_a = self_a + torch.diagonal(song_hsic_all_pairs(grams_a, grams_a))
        self_b = self_b + torch.diagonal(song_hsic_all_pairs(grams_b, grams_b))
    return (cross / torch.sqrt(torch.outer(self_a, self_b))).numpy()


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def gram_seconds(n: int, d: int, repeats: int = 5) -> float:
    """Best-of-``repeats`` time of one float32 ``(n, d) @ (d, n)`` Gram product."""
    x = torch.randn(n, d)
    x @ x.T
    return min(_timed(lambda: x @ x.T) for _ in range(repeats))


def floor(models, layers, images, batch_size) -> dict:
    """Forward pass alone plus every layer's Gram product, each timed at its real shape."""
    from vitlens import run_with_cache

    dims = []
    for model, names in zip(models, layers, strict=True):
        feats = run_with_cache(model, images[:2], names)
        dims += [f[0].numel() for f in feats.values()]
    per_dim = {d: gram_seconds(batch_size, d) for d in set(dims)}
    batches = len(images) // batch_size
    gram_s = sum(per_dim[d] for d in dims) * batches
    gram_flop = sum(2 * batch_size**2 * d for d in dims) * batches
    with torch.inference_mode():
        forward = sum(
            min(_timed(lambda m=m: [m(x) for x in images.split(batch_size)]) for _ in range(3))
            for m in models
        )
    return {
        "forward_s": forward,
        "gram_s": gram_s,
        "gram_gflop": gram_flop / 1e9,
        "matmul_gflops": gram_flop / 1e9 / gram_s,
        "floor_s": forward + gram_s,
    }


# --------------------------------------------------------------------------- worker / driver


def worker(args) -> None:
    torch.set_num_threads(THREADS)
    models = build_models()
    name_a, name_b = args.pair.split("-")
    a, b = models[name_a], models[name_b]
    layers_a, layers_b = bench_layers(name_a, a), bench_layers(name_b, b)
    images = make_images(args.images)
    if args.worker == "floor":  # forward passes are timed best-of-3 inside
        print(
            json.dumps(
                floor(
                    [a] if b is a else [a, b],
                    [layers_a] if b is a else [layers_a, layers_b],
                    images,
                    args.batch_size,
                )
            )
        )
        return
    if args.worker == "reference":
        np.save(args.matrix_out, reference(a, b, layers_a, layers_b, images, args.batch_size))
        return
    with torch.inference_mode():  # warm-up, the same for every contender
        for model in {id(a): a, id(b): b}.values():
            model(images[: args.batch_size])
    baseline = rss_mb()
    start = time.perf_counter()
    matrix = CONTENDERS[args.worker](a, b, layers_a, layers_b, images, args.batch_size)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    np.save(args.matrix_out, matrix)
    print(json.dumps({"seconds": seconds, "peak_delta_mb": peak - baseline}))


def spawn(kind: str, pair: str, images: int, batch_size: int, matrix_out: str) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--pair",
        pair,
        "--images",
        str(images),
        "--batch-size",
        str(batch_size),
        "--matrix-out",
        matrix_out,
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()
    return json.loads(out.splitlines()[-1]) if out else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--torch-cka-images",
        type=int,
        default=256,
        help="torch-cka loops over layer pairs in Python with n^3 products per "
        "pair; it runs on this many images (its time is reported as measured)",
    )
    parser.add_argument(
        "--torch-cka-repeats",
        type=int,
        default=1,
        help="rounds in which torch-cka runs (it is 10-50x slower than the others)",
    )
    parser.add_argument(
        "--memory-images",
        type=int,
        default=8192,
        help="vitlens also runs once on this many images to show flat memory",
    )
    parser.add_argument("--libraries", default="vitlens,pytorch-cka,torch-cka")
    parser.add_argument("--out", default="benchmarks/results/cka_bench.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--pair", default="vit-vit", help=argparse.SUPPRESS)
    parser.add_argument("--matrix-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    libraries = args.libraries.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="cka_bench_"))
    results: dict = {"config": vars(args), "torch": torch.__version__, "pairs": {}}
    for pair in PAIRS:
        print(f"[{pair}] float64 reference and floor ...", flush=True)
        row = results["pairs"][pair] = {"libraries": {}}
        refs = {}
        for n in sorted({args.images, args.torch_cka_images}):
            spawn("reference", pair, n, args.batch_size, str(tmp / f"ref-{pair}-{n}.npy"))
            refs[n] = np.load(tmp / f"ref-{pair}-{n}.npy")
        row["floor"] = [
            spawn("floor", pair, args.images, args.batch_size, "-") for _ in range(args.repeats)
        ]
        for rep in range(args.repeats):
            for lib in libraries:  # interleaved: one run of each contender per round
                if lib == "torch-cka" and rep >= args.torch_cka_repeats:
                    continue
                n = args.torch_cka_images if lib == "torch-cka" else args.images
                path = tmp / f"{lib}-{pair}.npy"
                run = spawn(lib, pair, n, args.batch_size, str(path))
                run["max_abs_err"] = float(np.max(np.abs(np.load(path) - refs[n])))
                run["images"] = n
                row["libraries"].setdefault(lib, []).append(run)
                print(
                    f"  round {rep + 1} {lib:12s} {run['seconds']:8.2f} s  "
                    f"err {run['max_abs_err']:.1e}  mem +{run['peak_delta_mb']:.0f} MB",
                    flush=True,
                )
        if "vitlens" in libraries:
            big = spawn("vitlens", pair, args.memory_images, args.batch_size, str(tmp / "big.npy"))
            row["vitlens_memory_images"] = {"images": args.memory_images, **big}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print_table(results)


def print_table(results: dict) -> None:
    """Markdown table: one row per pair x contender, times per 1,000 images, ratio to floor."""
    images = results["config"]["images"]
    print(
        "\n| pair | contender | images | median s | best s | s per 1k images | vs floor | "
        "max abs err | peak mem +MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for pair, row in results["pairs"].items():
        floors = row["floor"]
        floor_s = statistics.median(f["floor_s"] for f in floors)
        floor_per_k = floor_s / images * 1000
        forward = statistics.median(f["forward_s"] for f in floors)
        gram = statistics.median(f["gram_s"] for f in floors)
        rate = statistics.median(f["matmul_gflops"] for f in floors)
        label = f"floor: forward {forward:.2f} s + Grams {gram:.2f} s ({rate:.0f} GFLOP/s)"
        best_floor = min(f["floor_s"] for f in floors)
        print(
            f"| {pair} | {label} | {images} | {floor_s:.2f} | {best_floor:.2f} | "
            f"{floor_per_k:.2f} | 1.00 | - | - |"
        )
        for lib, runs in row["libraries"].items():
            med = statistics.median(r["seconds"] for r in runs)
            best = min(r["seconds"] for r in runs)
            per_k = med / runs[0]["images"] * 1000
            err = max(r["max_abs_err"] for r in runs)
            mem = statistics.median(r["peak_delta_mb"] for r in runs)
            print(
                f"| {pair} | {lib} | {runs[0]['images']} | {med:.2f} | {best:.2f} | "
                f"{per_k:.2f} | {per_k / floor_per_k:.2f} | {err:.1e} | {mem:.0f} |"
            )
        if "vitlens_memory_images" in row:
            big = row["vitlens_memory_images"]
            per_k = big["seconds"] / big["images"] * 1000
            print(
                f"| {pair} | vitlens (memory check) | {big['images']} | {big['seconds']:.2f} | "
                f"- | {per_k:.2f} | {per_k / floor_per_k:.2f} | - | {big['peak_delta_mb']:.0f} |"
            )


if __name__ == "__main__":
    main()
