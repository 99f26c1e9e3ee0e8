"""Short training runs of a zoo architecture with held-out accuracy along the way.

Used to choose the dataset difficulty and the recipe before training the zoo. Example::

    python scripts/sweep_vit.py --model vit-cls --steps 500 --lr 1e-3 --batch-size 128

Prints one JSON line per logged interval (train loss/accuracy, held-out accuracy on 512
``test`` images) and a final summary line.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from dataclasses import fields, replace

import torch

from vitlens.analyses.attention import mean_attention_distance, patch_distances
from vitlens.data import ShapesConfig, normalize_shapes, render_shapes
from vitlens.data.junctions import render_junctions
from vitlens.models import build_zoo_model, model_info
from vitlens.models.train import ZOO_DATA, Recipe, accuracy, fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit-cls")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument(
        "--dataset", choices=("shapes", "junctions"), default="shapes", help="training images"
    )
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="FIELD=JSON",
        help="override a ShapesConfig field, e.g. --data pixel_noise=0.02 --data strokes=[1,3]",
    )
    for f in fields(Recipe):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {f.name: getattr(args, f.name) for f in fields(Recipe)}
    recipe = replace(Recipe(), **{k: v for k, v in overrides.items() if v is not None})
    fixes = dict(item.split("=", 1) for item in args.data)
    data = ShapesConfig.from_dict(
        {**ZOO_DATA.to_dict(), **{k: json.loads(v) for k, v in fixes.items()}}
    )
    print(
        json.dumps({"model": args.model, "recipe": recipe.__dict__, "data": data.to_dict()}),
        flush=True,
    )
    start, cpu_start = time.perf_counter(), time.process_time()
    if args.dataset == "junctions":
        render = functools.partial(render_junctions, seed=recipe.data_seed)
    else:
        render = functools.partial(render_shapes, seed=recipe.data_seed, config=data)
    train = render(range(recipe.n_train))
    test = render(range(512), split="test")
    print(json.dumps({"render_s": round(time.perf_counter() - start, 1)}), flush=True)

    def held_out(model: torch.nn.Module, row: dict) -> None:
        row["heldout_acc"] = accuracy(model, test.images, test.labels)[0]
        row["elapsed_s"] = round(time.perf_counter() - start, 1)

    torch.manual_seed(recipe.seed)
    model = build_zoo_model(args.model)
    history = fit(
        model,
        train.images,
        train.labels,
        recipe,
        progress=False,
        log_every=args.log_every,
        callback=held_out,
    )
    final = {"final": history[-1], "model": args.model, "dataset": args.dataset}
    if model_info(model).family == "vit":
        distances = mean_attention_distance(
            model, normalize_shapes(test.images[:256]), blocks=[0, 1], progress=False
        )
        uniform = float(
            patch_distances(model_info(model).grid, model_info(model).patch_size).mean()
        )
        final["distance_over_uniform"] = (distances / uniform).round(decimals=3).tolist()
    final["cpu_s"] = round(time.process_time() - cpu_start, 1)
    print(json.dumps(final), flush=True)


if __name__ == "__main__":
    main()
