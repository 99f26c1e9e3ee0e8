"""Short training runs of a zoo architecture with held-out accuracy along the way.

Used to choose the dataset difficulty and the recipe before training the zoo. Example::

    python scripts/sweep_vit.py --model vit-cls --steps 500 --lr 1e-3 --batch-size 128
    python scripts/sweep_vit.py --model resnet --arch 'stem="local"' --dataset junctions

Prints one JSON line per logged interval (train loss/accuracy, held-out accuracy on 512
``test`` images) and a final summary line.
"""

from __future__ import annotations

import argparse
import functools
import json
import time

import torch

from vitlens.analyses.attention import mean_attention_distance, patch_distances
from vitlens.data import normalize_shapes
from vitlens.data.datasets import dataset_config, render_dataset
from vitlens.models import ZOO_ARCHS, build_arch, model_info
from vitlens.models.recipe import add_recipe_arguments, recipe_from_arguments
from vitlens.streaming import RunOptions
from vitlens.training.checkpoints import save_checkpoint
from vitlens.training.loop import accuracy, fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit-cls")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="FIELD=JSON",
        help="override a field of the dataset's config, e.g. --data pixel_noise=0.02",
    )
    parser.add_argument(
        "--arch",
        action="append",
        default=[],
        metavar="FIELD=JSON",
        help="override a field of the model's ZOO_ARCHS table, e.g. --arch 'stem=\"local\"'",
    )
    parser.add_argument(
        "--save", default=None, help="write the trained weights here (float16 safetensors)"
    )
    add_recipe_arguments(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = recipe_from_arguments(args)
    config = {**dataset_config(recipe.dataset).to_dict(), **_json_fields(args.data)}
    arch = {**ZOO_ARCHS[args.model], **_json_fields(args.arch)}
    print(
        json.dumps(
            {
                "model": args.model,
                "arch": arch,
                "recipe": recipe.__dict__,
                "data": dataset_config(recipe.dataset, config).to_dict(),
            }
        ),
        flush=True,
    )
    start, cpu_start = time.perf_counter(), time.process_time()
    render = functools.partial(render_dataset, recipe.dataset, seed=recipe.data_seed, config=config)
    train = render(range(recipe.n_train))
    test = render(range(512), split="test")
    print(json.dumps({"render_s": round(time.perf_counter() - start, 1)}), flush=True)

    def held_out(model: torch.nn.Module, row: dict) -> None:
        row["heldout_acc"] = accuracy(model, test.images, test.labels)[0]
        if model_info(model).family == "vit":
            row["distance_over_uniform"] = blocks_0_1_distances(model, test.images[:256])
        row["elapsed_s"] = round(time.perf_counter() - start, 1)
        row["cpu_s"] = round(time.process_time() - cpu_start, 1)

    torch.manual_seed(recipe.seed)
    model = build_arch(arch)
    history = fit(
        model,
        train.images,
        train.labels,
        recipe,
        progress=False,
        log_every=args.log_every,
        callback=held_out,
    )
    final = {"final": history[-1], "model": args.model, "dataset": recipe.dataset}
    final["cpu_s"] = round(time.process_time() - cpu_start, 1)
    if args.save:
        meta = {
            "name": args.model,
            "arch": arch,
            "recipe": recipe.__dict__,
            "dataset": recipe.dataset,
        }
        final["sha256"] = save_checkpoint(model, args.save, metadata=meta)
    print(json.dumps(final), flush=True)


def _json_fields(items: list[str]) -> dict:
    """``["a=1", 'b="x"']`` -> ``{"a": 1, "b": "x"}`` (each value parsed as JSON)."""
    pairs = dict(item.split("=", 1) for item in items)
    return {key: json.loads(value) for key, value in pairs.items()}


def blocks_0_1_distances(model: torch.nn.Module, images: torch.Tensor) -> list:
    """Mean attention distance over uniform attention's, blocks 0-1 by head: (2, heads)."""
    info = model_info(model)
    quiet = RunOptions(progress=False)
    distances = mean_attention_distance(model, normalize_shapes(images), blocks=[0, 1], run=quiet)
    uniform = float(patch_distances(info.grid, info.patch_size).mean())
    return (distances / uniform).round(decimals=3).tolist()


if __name__ == "__main__":
    main()
